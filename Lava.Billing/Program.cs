using Lava.Billing.Finance;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Merchants;
using Lava.Billing.Requests;

var builder = WebApplication.CreateBuilder(args);
// Operator commands log to stderr so their stdout stays machine-readable.
builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
builder.Services.AddLavaDatabase();
builder.Services.AddLavaHttp(builder.Configuration);
builder.Services.AddLavaFeatures();

var app = builder.Build();
if (Cli.IsCommand(args)) return await Cli.RunAsync(app, args);
await app.MigrateOnStartAsync();

app.UseLavaErrorHandling();
app.UseLavaBodyLimit(builder.Configuration.GetValue("Limits:MaxRequestBodyBytes", BodyLimit.DefaultBytes));
app.UseLavaApiDocs();
app.UseLavaAuth();
app.MapHealth();
app.MapSecretKeysApi();
app.MapRequestsApi();
app.MapUsageApi();
app.MapLedgerApi();
app.MapStatementApi();
app.MapFinancePage();
app.MapFallback(() => Problems.RouteNotFound());

await app.RunAsync();
return 0;

public partial class Program;
