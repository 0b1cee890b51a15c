using System.Text.Json;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Merchants;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// Operator commands on the service binary: <c>migrate</c>, <c>merchants create --name NAME</c> and
/// <c>ledger verify</c>. They print their result on stdout and nothing else (logs go to stderr), so scripts can capture it.
/// </summary>
public static class Cli
{
    public static bool IsCommand(string[] args) => args.Length > 0 && args[0] is "migrate" or "merchants" or "ledger";

    public static async Task<int> RunAsync(WebApplication app, string[] args)
    {
        var ct = app.Lifetime.ApplicationStopping;
        switch (args)
        {
            case ["migrate", ..]:
                var applied = await app.Services.GetRequiredService<Migrator>().MigrateAsync(ct);
                await Console.Error.WriteLineAsync($"migrate: {applied} migration(s) applied");
                return 0;
            case ["merchants", "create", "--name", var name, ..] when !string.IsNullOrWhiteSpace(name) && name.Length <= 200:
                await app.Services.GetRequiredService<Migrator>().MigrateAsync(ct);
                var created = await app.Services.GetRequiredService<MerchantStore>().CreateAsync(name, ct);
                Console.Out.WriteLine(JsonSerializer.Serialize(new { merchant_id = created.MerchantId, secret_key = created.SecretKey }));
                return 0;
            case ["ledger", "verify"]:
                return await VerifyLedgersAsync(app.Services.GetRequiredService<Ledger.LedgerVerifier>(), ct);
            default:
                await Console.Error.WriteLineAsync("usage: Lava.Billing [migrate | merchants create --name NAME | ledger verify]   (no command: serve)");
                return 2;
        }
    }

    /// <summary>One JSON line per merchant (its verification report); exits 1 when any merchant has a problem.</summary>
    private static async Task<int> VerifyLedgersAsync(Ledger.LedgerVerifier verifier, CancellationToken ct)
    {
        var failed = 0;
        var merchants = await verifier.MerchantsAsync(ct);
        foreach (var merchantId in merchants)
        {
            var report = await verifier.VerifyAsync(merchantId, ct);
            if (!report.Ok) failed++;
            Console.Out.WriteLine(JsonSerializer.Serialize(new { merchant_id = merchantId, report.Ok, report.CheckedAt, report.Problems }, Http.LavaJson.Options));
        }
        await Console.Error.WriteLineAsync($"ledger verify: {merchants.Count} merchant(s) checked, {failed} with problems");
        return failed == 0 ? 0 : 1;
    }
}
