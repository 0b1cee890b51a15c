using System.Text.Json;
using FluentValidation;
using OpenTelemetry.Metrics;
using Lava.Billing.Customers;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Forward;
using Lava.Billing.Merchants;
using Lava.Billing.Meters;

namespace Lava.Billing.Infrastructure;

/// <summary>Service registration and start-up steps, so Program.cs reads as a list.</summary>
public static class Startup
{
    public static IServiceCollection AddLavaHttp(this IServiceCollection services, IConfiguration configuration)
    {
        services.ConfigureHttpJsonOptions(o => LavaJson.Configure(o.SerializerOptions));
        // Binding failures (wrong JSON types, unreadable bodies) become exceptions the error handler turns into problems.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen();
        services.AddOptions<MerchantLimitOptions>().BindConfiguration("Limits:PerMerchant").ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<MerchantLimits>();
        return services;
    }

    public static IServiceCollection AddLavaFeatures(this IServiceCollection services)
    {
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<SecretKeyStore>();
        services.AddSingleton<MerchantStore>();
        services.AddSingleton<Meters.MeterStore>();
        services.AddSingleton<Customers.CustomerStore>();
        services.AddSingleton<Requests.RequestStore>();
        services.AddSingleton(sp => sp.GetRequiredService<IConfiguration>().GetSection("Requests:GroupCommit").Get<Requests.Posting.GroupCommitOptions>() ?? new Requests.Posting.GroupCommitOptions());
        services.AddSingleton<Requests.Posting.GroupCommit>();
        services.AddHostedService(sp => sp.GetRequiredService<Requests.Posting.GroupCommit>());
        services.AddSingleton<Requests.RequestListStore>();
        services.AddSingleton<Requests.Posting.MeterPriceCache>();
        // Group commit's writers and the gateway's posting queue (one batch at a time) on a pool of their own.
        services.AddSingleton(sp => Database.Database.PostingConnectionsBeside(sp.GetRequiredService<Npgsql.NpgsqlDataSource>(),
            sp.GetRequiredService<IConfiguration>().GetConnectionString("Billing")!, sp.GetRequiredService<Requests.Posting.GroupCommitOptions>().Writers + 1,
            sp.GetRequiredService<ILoggerFactory>()));
        services.AddSingleton<Requests.Posting.ReportPoster>();
        services.AddSingleton<Requests.Posting.PostingPlans>();
        services.AddHostedService(sp => sp.GetRequiredService<Requests.Posting.PostingPlans>());
        services.AddSingleton<Plans.PlanStore>();
        services.AddSingleton<Subscriptions.SubscriptionStore>();
        services.AddSingleton<Subscriptions.CycleProcessor>();
        services.AddHostedService<Subscriptions.CycleWorker>();
        services.AddSingleton<Credits.CreditStore>();
        services.AddSingleton<Credits.OpenHoldsGauge>();
        services.AddOptions<Credits.HoldOptions>().BindConfiguration("Holds")
            .Validate(o => o.ExpirySweepMs > 0, "Holds: the expiry sweep's interval must be positive").ValidateOnStart();
        services.AddSingleton(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<Credits.HoldOptions>>().Value);
        services.AddHostedService<Credits.HoldExpirySweep>();
        services.ConfigureOpenTelemetryMeterProvider(m => m.AddInstrumentation(sp => sp.GetRequiredService<Credits.OpenHoldsGauge>()));
        services.AddSingleton(sp => sp.GetRequiredService<IConfiguration>().GetSection("Billing").Get<Requests.Posting.BillingOptions>() ?? new Requests.Posting.BillingOptions());
        services.AddForward();
        services.AddSingleton<Requests.RequestExport>();
        services.AddSingleton<Ledger.LedgerSequencer>();
        services.AddHostedService(sp => sp.GetRequiredService<Ledger.LedgerSequencer>());
        services.AddSingleton<Ledger.LedgerReadStore>();
        services.AddSingleton<Ledger.LedgerVerifier>();
        services.AddSingleton<Finance.UsageStore>();
        services.AddSingleton<Finance.StatementStore>();
        services.AddSingleton<Finance.ExportLimits>();
        AddValidators(services);
        return services;
    }

    private static void AddValidators(IServiceCollection services)
    {
        ValidatorOptions.Global.LanguageManager = new ValidationMessages();
        // Field errors are keyed by the wire name ("meter_slug"), as the JSON binding errors already are.
        ValidatorOptions.Global.PropertyNameResolver = (_, member, expression) =>
        {
            var chain = expression is null ? null : FluentValidation.Internal.PropertyChain.FromExpression(expression).ToString();
            var name = string.IsNullOrEmpty(chain) ? member?.Name : chain;
            return name is null ? null : string.Join('.', name.Split('.').Select(JsonNamingPolicy.SnakeCaseLower.ConvertName));
        };
        // Validators are stateless: one instance each.
        services.AddValidatorsFromAssembly(typeof(Startup).Assembly, ServiceLifetime.Singleton);
    }

    public static async Task MigrateOnStartAsync(this WebApplication app)
    {
        if (app.Configuration.GetValue("Database:MigrateOnStart", true))
            await app.Services.GetRequiredService<Migrator>().MigrateAsync(app.Lifetime.ApplicationStopping);
    }

    /// <summary>openapi.yaml at the repository root is the contract; Swagger UI at /swagger renders it.</summary>
    public static WebApplication UseLavaApiDocs(this WebApplication app)
    {
        app.MapGet("/openapi.yaml", () => Results.File(
                typeof(Startup).Assembly.GetManifestResourceStream("openapi.yaml")!, "application/yaml"))
            .ExcludeFromDescription();
        app.UseSwaggerUI(o =>
        {
            o.RoutePrefix = "swagger";
            o.SwaggerEndpoint("/openapi.yaml", "Lava Billing");
        });
        return app;
    }
}
