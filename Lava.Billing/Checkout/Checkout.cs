using Microsoft.Extensions.Options;

namespace Lava.Billing.Checkout;

public static class Checkout
{
    public static IServiceCollection AddCheckout(this IServiceCollection services)
    {
        services.AddOptions<CheckoutOptions>().BindConfiguration("Checkout")
            .Validate(o => o.SessionLifetimeMinutes is > 0 and <= 43_200, "Checkout: SessionLifetimeMinutes must be 1 to 43200 (30 days)")
            .ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<CheckoutOptions>>().Value);
        services.AddSingleton<CheckoutStore>();
        return services;
    }
}
