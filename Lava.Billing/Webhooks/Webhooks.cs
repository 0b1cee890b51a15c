using Microsoft.Extensions.Options;

namespace Lava.Billing.Webhooks;

public static class Webhooks
{
    public static IServiceCollection AddWebhooks(this IServiceCollection services)
    {
        services.AddOptions<WebhookOptions>().BindConfiguration("Webhooks")
            .Validate(o => o.AttemptTimeoutMs > 0 && o.MaxInFlight > 0 && o.MaxInFlightPerEndpoint > 0 && o.MaxInFlightPerMerchant > 0 && o.PollIntervalMs > 0 && o.FanOutBatch > 0,
                "Webhooks: timeouts, limits and the poll interval must be positive")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<WebhookOptions>>().Value);
        services.AddSingleton<WebhookSecrets>();
        services.AddSingleton<WebhookStore>();
        services.AddSingleton<WebhookDeliveryStore>();
        services.AddSingleton<BalanceAlertStore>();
        services.AddSingleton<WebhookSender>();
        services.AddHostedService<WebhookDispatcher>();
        return services;
    }
}
