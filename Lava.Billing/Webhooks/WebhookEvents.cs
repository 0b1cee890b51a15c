namespace Lava.Billing.Webhooks;

/// <summary>Event names, as Lava spells its own and in the same style for the ones it lacks.</summary>
public static class WebhookEvents
{
    public const string CustomerCreated = "customer.created";
    public const string CustomerDeleted = "customer.deleted";
    public const string BalanceUpdated = "customer.wallet.balance.updated";
    public const string SubscriptionRenewed = "subscription.renewed";
    public const string SubscriptionCancelled = "subscription.cancelled";
    public const string BalanceLow = "customer.balance.low";
    public const string CreditsExhausted = "customer.credits.exhausted";
    public const string HoldExpired = "hold.expired";

    public static readonly IReadOnlyList<string> All =
        [CustomerCreated, CustomerDeleted, BalanceUpdated, SubscriptionRenewed, SubscriptionCancelled, BalanceLow, CreditsExhausted, HoldExpired];
}
