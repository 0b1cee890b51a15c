using Lava.Billing.Customers;
using Lava.Billing.Forward;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Merchants;
using Lava.Billing.Plans;
using Lava.Billing.Requests;
using Lava.Billing.Subscriptions;
using Lava.Billing.Credits;
using Lava.Billing.Meters;
using Lava.Billing.SpendKeys;

var builder = WebApplication.CreateBuilder(args);
// Operator commands log to stderr so their stdout stays machine-readable.
builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
builder.Services.AddLavaDatabase();
builder.Services.AddLavaHttp(builder.Configuration);
builder.Services.AddLavaFeatures();
builder.Services.AddSpendKeys();

var app = builder.Build();
if (Cli.IsCommand(args)) return await Cli.RunAsync(app, args);
await app.MigrateOnStartAsync();

app.UseLavaErrorHandling();
app.UseLavaBodyLimit(builder.Configuration.GetValue("Limits:MaxRequestBodyBytes", BodyLimit.DefaultBytes));
app.UseLavaApiDocs();
app.UseSpendKeyGateway();
app.UseLavaAuth();
app.MapHealth();
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
app.MapModelPricesApi();
app.MapSpendKeysApi();
app.MapUsageApi();
app.MapLedgerApi();
app.MapStatementApi();
app.MapFinancePage();
app.MapLavaFallback();

await app.RunAsync();
return 0;

public partial class Program;
