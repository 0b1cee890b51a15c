using System.Net.Sockets;
using System.Text.Json;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Merchants;
using Npgsql;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// Operator commands on the service binary: <c>migrate</c>, <c>merchants create --name NAME</c>,
/// <c>merchants key --merchant ID-OR-NAME [--read-only] [--name KEYNAME]</c> and <c>ledger verify</c>. They print their
/// result on stdout and nothing else (logs go to stderr), so scripts can capture it. A missing or unreachable database
/// is one line on stderr and a non-zero exit, never a stack trace.
/// </summary>
public static class Cli
{
    public const string Usage =
        "usage: Lava.Billing [migrate | merchants create --name NAME | merchants key --merchant ID-OR-NAME [--read-only] [--name KEYNAME] | ledger verify]   (no command: serve)";

    public const string NoDatabase =
        "lava: no database configured: set ConnectionStrings__Billing to an Npgsql connection string " +
        "(e.g. Host=127.0.0.1;Port=5433;Database=lava;Username=lava;Password=...); " +
        "scripts/run.sh, scripts/merchant.sh and scripts/verify.sh find the local cluster of scripts/run.sh themselves";

    public static bool IsCommand(string[] args) => args.Length > 0 && args[0] is "migrate" or "merchants" or "ledger";

    /// <summary>False (with the reason on stderr) when the service cannot start for want of a database setting.</summary>
    public static bool HasDatabase(IConfiguration configuration)
    {
        if (!string.IsNullOrWhiteSpace(configuration.GetConnectionString("Billing"))) return true;
        Console.Error.WriteLine(NoDatabase);
        return false;
    }

    public static async Task<int> RunAsync(WebApplication app, string[] args)
    {
        try
        {
            return await RunCommandAsync(app, args, app.Lifetime.ApplicationStopping);
        }
        catch (Exception e) when (e is NpgsqlException or SocketException or TimeoutException or ArgumentException)
        {
            // The operator needs what went wrong and where to look, not the stack.
            await Console.Error.WriteLineAsync($"lava: the database could not be used: {FirstLine(e)}");
            return 1;
        }
    }

    private static string FirstLine(Exception e)
    {
        var message = (e as PostgresException)?.MessageText ?? e.InnerException?.Message ?? e.Message;
        var end = message.IndexOfAny(['\r', '\n']);
        return end < 0 ? message : message[..end];
    }

    private static async Task<int> RunCommandAsync(WebApplication app, string[] args, CancellationToken ct)
    {
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
            case ["merchants", "key", "--merchant", var merchant, .. var options]:
                return await CreateKeyAsync(app, merchant, options, ct);
            case ["ledger", "verify"]:
                return await VerifyLedgersAsync(app.Services.GetRequiredService<Ledger.LedgerVerifier>(), ct);
            default:
                await Console.Error.WriteLineAsync(Usage);
                return 2;
        }
    }

    /// <summary>A new secret key for a merchant named by id or by its (unique) name; read-only with --read-only.</summary>
    private static async Task<int> CreateKeyAsync(WebApplication app, string merchant, string[] options, CancellationToken ct)
    {
        var scope = KeyScopes.Full;
        var keyName = "Operator key";
        for (var i = 0; i < options.Length; i++)
        {
            switch (options[i])
            {
                case "--read-only":
                    scope = KeyScopes.ReadOnly;
                    keyName = "Read-only key";
                    break;
                case "--name" when i + 1 < options.Length && options[i + 1] is { Length: > 0 and <= 200 } given:
                    keyName = given;
                    i++;
                    break;
                default:
                    await Console.Error.WriteLineAsync(Usage);
                    return 2;
            }
        }
        await app.Services.GetRequiredService<Migrator>().MigrateAsync(ct);
        var matches = await app.Services.GetRequiredService<MerchantStore>().FindAsync(merchant, ct);
        if (matches.Count != 1)
        {
            await Console.Error.WriteLineAsync(matches.Count == 0
                ? $"lava: no merchant with id or name '{merchant}'"
                : $"lava: {matches.Count} merchants are named '{merchant}' ({string.Join(", ", matches)}): give the id");
            return 1;
        }
        var (row, secret) = await app.Services.GetRequiredService<SecretKeyStore>().CreateAsync(matches[0], keyName, scope, ct);
        Console.Out.WriteLine(JsonSerializer.Serialize(new
        {
            merchant_id = matches[0], secret_key_id = row.SecretKeyId, scope = row.Scope, secret_key = secret,
        }));
        return 0;
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
