namespace Lava.Billing.Forward;

public static class ForwardStartup
{
    /// <summary>The gateway's services; its options are read when first needed, so test hosts can add configuration.</summary>
    public static IServiceCollection AddForward(this IServiceCollection services)
    {
        services.AddSingleton(sp => ForwardOptions.From(sp.GetRequiredService<IConfiguration>()));
        services.AddSingleton<UpstreamClient>();
        services.AddSingleton<ForwardStore>();
        services.AddSingleton<ModelPriceStore>();
        services.AddSingleton<ForwardLookups>();
        services.AddSingleton<ForwardCallStore>();
        services.AddSingleton<ForwardBilling>();
        services.AddSingleton<IForwardBilling>(sp => sp.GetRequiredService<ForwardBilling>());
        services.AddHostedService<ForwardSettler>();
        services.AddSingleton<ForwardPostingQueue>();
        services.AddHostedService(sp => sp.GetRequiredService<ForwardPostingQueue>());
        services.AddSingleton<ForwardRelay>();
        services.AddSingleton<ForwardProxy>();
        return services;
    }
}
