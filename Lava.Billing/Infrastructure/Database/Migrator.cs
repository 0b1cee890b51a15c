using System.Security.Cryptography;
using System.Text;
using Dapper;
using Npgsql;

namespace Lava.Billing.Infrastructure.Database;

/// <summary>
/// Applies <c>migrations/NNNN_what.sql</c> (embedded in the assembly) in order, each in its own transaction, under a
/// session advisory lock so a second instance waits instead of racing. Refuses to run when a file that was already
/// applied has changed: migrations are forward only.
/// </summary>
public sealed class Migrator(NpgsqlDataSource db, ILogger<Migrator> log)
{
    private const long LockKey = 0x4C41_5641_4D49_47; // "LAVAMIG"

    public sealed record Script(int Version, string Name, string Sql, string Checksum);

    public static IReadOnlyList<Script> Scripts { get; } = LoadScripts();

    private const string CreateTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer     PRIMARY KEY,
            name       text        NOT NULL,
            checksum   text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """;

    private const string SelectApplied = "SELECT version, checksum FROM schema_migrations";

    private const string InsertApplied = """
        INSERT INTO schema_migrations (version, name, checksum) VALUES (@Version, @Name, @Checksum)
        """;

    public async Task<int> MigrateAsync(CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_lock(@LockKey)", new { LockKey }, cancellationToken: ct));
        try
        {
            await connection.ExecuteAsync(new CommandDefinition(CreateTable, cancellationToken: ct));
            var applied = (await connection.QueryAsync<(int Version, string Checksum)>(
                    new CommandDefinition(SelectApplied, cancellationToken: ct)))
                .ToDictionary(r => r.Version, r => r.Checksum);

            var count = 0;
            foreach (var script in Scripts)
            {
                if (applied.TryGetValue(script.Version, out var checksum))
                {
                    if (checksum != script.Checksum)
                    {
                        throw new InvalidOperationException(
                            $"Migration {script.Name} was changed after it was applied (checksum {checksum} in the database, " +
                            $"{script.Checksum} on disk). Migrations are forward only: add a new file instead.");
                    }
                    continue;
                }
                await using var tx = await connection.BeginTransactionAsync(ct);
                await connection.ExecuteAsync(new CommandDefinition(script.Sql, transaction: tx, cancellationToken: ct));
                await connection.ExecuteAsync(new CommandDefinition(InsertApplied, script, tx, cancellationToken: ct));
                await tx.CommitAsync(ct);
                log.LogInformation("Applied migration {Name}", script.Name);
                count++;
            }
            return count;
        }
        finally
        {
            await connection.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_unlock(@LockKey)", new { LockKey }, cancellationToken: CancellationToken.None));
        }
    }

    private static List<Script> LoadScripts()
    {
        var assembly = typeof(Migrator).Assembly;
        var scripts = new List<Script>();
        foreach (var resource in assembly.GetManifestResourceNames().Where(n => n.StartsWith("migrations/", StringComparison.Ordinal)))
        {
            var name = resource["migrations/".Length..];
            var version = int.Parse(name.AsSpan(0, name.IndexOf('_')), System.Globalization.CultureInfo.InvariantCulture);
            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var sql = reader.ReadToEnd();
            var checksum = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sql.ReplaceLineEndings("\n"))));
            scripts.Add(new Script(version, name, sql, checksum));
        }
        scripts.Sort((a, b) => a.Version.CompareTo(b.Version));
        for (var i = 1; i < scripts.Count; i++)
        {
            if (scripts[i].Version == scripts[i - 1].Version)
                throw new InvalidOperationException($"Two migrations share version {scripts[i].Version}.");
        }
        return scripts;
    }
}
