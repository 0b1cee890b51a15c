namespace Lava.Billing.Infrastructure.Resilience;

public static class Resilience
{
    public static IServiceCollection AddLavaResilience(this IServiceCollection services)
    {
        services.AddSingleton(sp => sp.GetRequiredService<IConfiguration>().GetSection("Database:Retry").Get<DatabaseRetryOptions>() ?? new DatabaseRetryOptions());
        services.AddSingleton<DatabaseRetry>();
        return services;
    }
}
