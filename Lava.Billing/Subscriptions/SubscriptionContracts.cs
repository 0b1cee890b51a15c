namespace Lava.Billing.Subscriptions;

public sealed record CreateSubscriptionBody(string? CustomerId, string? PlanId);

/// <summary>An absent member leaves the top-up as it is; null clears it.</summary>
public sealed record UpdateSubscriptionBody(Lava.Billing.Infrastructure.Optional<string> AutoTopUpBundleId);

public sealed record SubscriptionPlan(string Name, string PeriodAmount, string IncludedCredit, string BillingInterval,
    string RolloverType, string BundleRolloverType);

public sealed record SubscriptionCredits(string TotalRemaining, string CycleRemaining, string BundleRemaining);

public sealed record PendingChange(string Type, DateTimeOffset? EffectiveAt);

/// <summary>SDK <c>RestSubscriptionBase</c>, plus <c>customer_id</c> and <c>customer</c> (as in <c>RestSubscription</c>).</summary>
public sealed record RestSubscription(
    string SubscriptionId, string PlanId, string Status, string? AutoTopUpBundleId, DateTimeOffset StartedAt,
    DateTimeOffset? CancelledAt, DateTimeOffset? CycleStartAt, DateTimeOffset? CycleEndAt, SubscriptionPlan Plan,
    SubscriptionCredits Credits, PendingChange? PendingChange, string CustomerId, SubscriptionCustomer Customer);

public sealed record SubscriptionCustomer(string Phone, string? Email, string? FirstName, string? LastName);

public sealed record SubscriptionEnvelope(RestSubscription? Subscription);
