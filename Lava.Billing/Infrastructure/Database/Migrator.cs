using System.ComponentModel.DataAnnotations;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Npgsql;

namespace Lava.Billing.Infrastructure.Database;

/// <summary>
/// How a migration waits for the locks it takes (<c>Database:Migrations</c>). A statement such as <c>ALTER TABLE</c>
/// queues behind every transaction already reading its table, and every read and write of the table that comes after
/// queues behind it: one long export would stop the ledger's writers for as long as it runs. So each statement of a
/// migration waits at most <see cref="LockTimeoutMs"/> for a lock; when it times out the migration rolls back, the
/// writers go on, and it is tried again after <see cref="RetryDelayMs"/>, <see cref="Attempts"/> times in all.
/// </summary>
public sealed class MigrationOptions
{
    [Range(1, 600_000)] public int LockTimeoutMs { get; set; } = 2_000;

    [Range(1, 100_000)] public int Attempts { get; set; } = 30;

    [Range(0, 600_000)] public int RetryDelayMs { get; set; } = 1_000;
}

/// <summary>
/// Applies <c>migrations/NNNN_what.sql</c> (embedded in the assembly) in order, each in its own transaction, under a
/// session advisory lock so a second instance waits instead of racing. Refuses to run when the SQL of a file that was
/// already applied has changed: migrations are forward only.
/// </summary>
/// <remarks>
/// A file's checksum (<c>sql:</c> + SHA-256) covers its SQL without its whole-line <c>--</c> comments, so a comment can
/// be corrected without breaking databases that applied the file. Databases migrated before that record a SHA-256 of
/// the whole file; such a row is accepted when it matches the file as it is, or when it is one of
/// <see cref="CommentOnlyRewrites"/>, and is then rewritten to the new form.
/// </remarks>
public sealed class Migrator(NpgsqlDataSource db, ILogger<Migrator> log, MigrationOptions? options = null)
{
    private readonly MigrationOptions _options = options ?? new MigrationOptions();

    private const long LockKey = 0x4C41_5641_4D49_47; // "LAVAMIG"

    public sealed record Script(int Version, string Name, string Sql, string Checksum);

    public static IReadOnlyList<Script> Scripts { get; } = LoadScripts();

    /// <summary>
    /// Files whose comments were reworded after they were applied (they cited documents outside the repository). Each
    /// holds the whole-file checksum databases recorded for the old text, and the checksum of the old text's SQL
    /// without comments, which must equal the current file's: that proves the rewrite touched comments only.
    /// </summary>
    public static readonly IReadOnlyDictionary<int, (string WholeFile, string Sql)> CommentOnlyRewrites = new Dictionary<int, (string, string)>
    {
        [1] = ("d77aa547ee462e9381ded69d3698d2e4bc36ae621d4f2bf0963a6c8e2e98a665", "sql:7ea384bb417b8b01bed2afa0114667860044bcea32fa61fcab0f652dbda761c8"),
        [2] = ("5b792f971215fbab61c4324fbe354b5fd4be61570e79114ee70f6f27b06bfc37", "sql:9f8664df1ffd5360fc592da43df0e90e178a34713900f729144fbae20b54ae93"),
        [4] = ("dbbf922e22b4f1a0d802d261953754161fe65cdd1cd64d714dedb0ef0331ddaf", "sql:af337e3e132d432d3035dbf77a660d1c931e20466b2d397e8147fea38c8c777c"),
        [5] = ("a00337d00c208c75c26336b28130e5f4615a40c75006851c8df5f5543868f032", "sql:0e8f35c2a2566a87ffdeefe03b312411bd6dcaab1233d13026feba1939cadb03"),
        [20] = ("70be7110ee27183a96dddfc73cc9f39c34dea2b8f520b3f4bd9b661ac28afa74", "sql:b50f6b90aa778d995a3b607fd5122d8ddb7db0777f534b1ea8450142af66cd8d"),
        [31] = ("a5fad2787a51a589b34721149b820f7db11cf96b422d8a44fc477ad3c2b1cabf", "sql:5a440c6d6c0412fe9b69c9976b1ce698fe036e59b28c3d20dce5b7a3218cfccc"),
    };

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

    private const string UpdateChecksum = """
        UPDATE schema_migrations SET checksum = @Checksum WHERE version = @Version
        """;

    // Tables PostgreSQL has never analysed (reltuples = -1): the planner assumes such a table holds at least 10 pages of
    // rows whatever it holds, and every lookup on it estimates one row, so indexes that lead with the same column tie and
    // a lookup by (merchant, request id) can walk a merchant-wide index instead of the primary key (ReportPlanUnanalysedTests).
    // Analysed once, even empty, a table is estimated from its real size from then on, so the plans of a freshly
    // migrated database do not wait for autovacuum.
    private const string SelectNeverAnalysed = """
        SELECT format('%I.%I', n.nspname, c.relname)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND c.reltuples < 0 AND n.nspname = current_schema()
        """;

    // SQLSTATEs after which a migration is rolled back and tried again: its lock wait ran out (lock_not_available), or
    // PostgreSQL broke a deadlock by cancelling it (deadlock_detected).
    private static bool IsLockWait(Exception e) => e is PostgresException { SqlState: "55P03" or "40P01" };

    public Task<int> MigrateAsync(CancellationToken ct) => MigrateAsync(Scripts, ct);

    internal async Task<int> MigrateAsync(IReadOnlyList<Script> scripts, CancellationToken ct)
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
            foreach (var script in scripts)
            {
                if (applied.TryGetValue(script.Version, out var checksum))
                {
                    if (checksum != script.Checksum && IsOlderChecksumOfTheSameSql(script, checksum))
                    {
                        await connection.ExecuteAsync(new CommandDefinition(UpdateChecksum, script, cancellationToken: ct));
                        log.LogInformation("Recorded migration {Name} under its SQL-only checksum", script.Name);
                    }
                    else if (checksum != script.Checksum)
                    {
                        throw new InvalidOperationException(
                            $"Migration {script.Name} was changed after it was applied (checksum {checksum} in the database, " +
                            $"{script.Checksum} on disk). Migrations are forward only: add a new file instead.");
                    }
                    continue;
                }
                await ApplyAsync(connection, script, ct);
                log.LogInformation("Applied migration {Name}", script.Name);
                count++;
            }
            foreach (var table in await connection.QueryAsync<string>(new CommandDefinition(SelectNeverAnalysed, cancellationToken: ct)))
                await connection.ExecuteAsync(new CommandDefinition($"ANALYZE {table}", cancellationToken: ct));
            return count;
        }
        finally
        {
            await connection.ExecuteAsync(new CommandDefinition("SELECT pg_advisory_unlock(@LockKey)", new { LockKey }, cancellationToken: CancellationToken.None));
        }
    }

    /// <summary>
    /// Runs one file and records it in one transaction, each of its lock waits bounded by the lock timeout; a file whose
    /// wait ran out is rolled back, so the writers queued behind it go on, and tried again (<see cref="MigrationOptions"/>).
    /// </summary>
    private async Task ApplyAsync(NpgsqlConnection connection, Script script, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await using var tx = await connection.BeginTransactionAsync(ct);
                await connection.ExecuteAsync(new CommandDefinition(
                    "SELECT set_config('lock_timeout', @Timeout, true)", new { Timeout = $"{_options.LockTimeoutMs}ms" }, tx, cancellationToken: ct));
                // No command timeout: a migration that rewrites a table takes as long as the table is large, and one cut off
                // at the pool's 30 s would roll back and fail again at every retry of the deploy.
                await connection.ExecuteAsync(new CommandDefinition(script.Sql, transaction: tx, commandTimeout: 0, cancellationToken: ct));
                await connection.ExecuteAsync(new CommandDefinition(InsertApplied, script, tx, cancellationToken: ct));
                await tx.CommitAsync(ct);
                return;
            }
            catch (Exception e) when (IsLockWait(e) && attempt < _options.Attempts)
            {
                log.LogWarning("Migration {Name} waited {LockTimeoutMs} ms for a lock and was rolled back ({Reason}); attempt {Attempt} of {Attempts}, next in {RetryDelayMs} ms",
                    script.Name, _options.LockTimeoutMs, ((PostgresException)e).MessageText, attempt, _options.Attempts, _options.RetryDelayMs);
                await Task.Delay(_options.RetryDelayMs, ct);
            }
            catch (Exception e) when (IsLockWait(e))
            {
                throw new InvalidOperationException(
                    $"Migration {script.Name} could not take its locks in {_options.Attempts} attempts of {_options.LockTimeoutMs} ms each: " +
                    "a transaction held a table it changes all that time (look for long transactions in pg_stat_activity). " +
                    "Nothing of it was applied; run the migration again, or raise Database__Migrations__Attempts.", e);
            }
        }
    }

    /// <summary>A whole-file checksum (the older form) of this very file, or of its documented comment-only rewrite.</summary>
    private static bool IsOlderChecksumOfTheSameSql(Script script, string recorded) =>
        recorded == WholeFileChecksum(script.Sql) ||
        (CommentOnlyRewrites.TryGetValue(script.Version, out var rewrite) && rewrite.WholeFile == recorded && rewrite.Sql == script.Checksum);

    private static string Normalize(string sql) => sql.ReplaceLineEndings("\n");

    public static string WholeFileChecksum(string sql) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Normalize(sql))));

    /// <summary>SHA-256 of the file without its whole-line comments: what the database runs, and nothing else.</summary>
    public static string SqlChecksum(string sql)
    {
        var lines = Normalize(sql).Split('\n').Where(line => !line.TrimStart().StartsWith("--", StringComparison.Ordinal));
        return "sql:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', lines))));
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
            scripts.Add(new Script(version, name, sql, SqlChecksum(sql)));
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
