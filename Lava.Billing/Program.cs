using Lava.Billing.Customers;
using Lava.Billing.Forward;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Infrastructure.Resilience;
using Lava.Billing.Ledger;
using Lava.Billing.Merchants;
using Lava.Billing.Plans;
using Lava.Billing.Requests;
using Lava.Billing.Subscriptions;
using Lava.Billing.Credits;
using Lava.Billing.Meters;
using Lava.Billing.Webhooks;
using Lava.Billing.SpendKeys;
using Lava.Billing.Checkout;
using Lava.Billing.Translation;

var builder = WebApplication.CreateBuilder(args);
// Operator commands log to stderr so their stdout stays machine-readable.
builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
builder.AddLavaLoggingDefaults();
// The host's "Request starting/finished" lines carry the whole URL, and a gateway URL can carry a provider key (u=…?key=).
builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);
builder.AddLavaMetrics();
// Every command and serving need the database: without its setting, one line saying what to set, never a stack trace.
if (!Cli.HasDatabase(builder.Configuration)) return 2;
builder.Services.AddLavaDatabase(builder.Configuration);
builder.Services.AddLavaResilience();
builder.Services.AddLavaHttp(builder.Configuration);
builder.Services.AddLavaFeatures();
builder.Services.AddWebhooks();
builder.Services.AddSpendKeys();
builder.Services.AddCheckout();

var app = builder.Build();
if (Cli.IsCommand(args)) return await Cli.RunAsync(app, args);
await app.MigrateOnStartAsync();

app.UseLavaRequestLog();
app.UseLavaErrorHandling();
app.UseLavaBodyLimit(builder.Configuration.GetValue("Limits:MaxRequestBodyBytes", BodyLimit.DefaultBytes));
app.UseLavaApiDocs();
app.UseSpendKeyGateway();
app.UseLavaAuth();
app.UseLavaInputGuard();
app.UseMerchantLimits();
app.MapHealth();
app.MapLavaMetrics();
app.MapSecretKeysApi();
app.MapMetersApi();
app.MapCustomersApi();
app.MapRequestsApi();
app.MapSubscriptionsApi();
app.MapCreditsApi();
app.MapPlansApi();
app.MapCreditBundlesApi();
app.MapRequestBatchApi();
app.MapForwardApi();
app.MapRewriteApi();
app.MapModelPricesApi();
app.MapSpendKeysApi();
app.MapUsageApi();
app.MapLedgerApi();
app.MapStatementApi();
app.MapWebhooksApi();
app.MapBalanceAlertsApi();
app.MapCheckoutApi();
app.MapCheckoutPage();
app.MapFinancePage();
app.MapLavaFallback();

await app.RunAsync();
return 0;

public partial class Program;
