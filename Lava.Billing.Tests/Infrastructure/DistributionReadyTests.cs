using System.Reflection;
using System.Text.RegularExpressions;
using Dapper;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// The schema is ready to be distributed by merchant (Citus, docs/operations.md "Past one primary"): every key of a
/// distributed table leads with merchant_id, and every statement the service keeps in a static field (a constant, or
/// built once at start-up) is routed by it.
/// </summary>
public partial class DistributionReadyTests(LavaApp app) : IClassFixture<LavaApp>
{
    /// <summary>
    /// Tables that would be reference tables (copied to every node) rather than distributed, each with why. Citus allows
    /// a unique key without the distribution column only there, and a reference table may reference only reference tables.
    /// </summary>
    private static readonly Dictionary<string, string> ReferenceTables = new()
    {
        ["schema_migrations"] = "the migrator's own bookkeeping",
        ["merchants"] = "small and read by every node; secret_keys references it",
        ["secret_keys"] = "authentication finds the merchant from the key's hash (unique on key_hash), before any merchant is known",
    };

    private sealed record Key(string Table, string Name, string Kind, string FirstColumn);

    [Fact]
    public async Task EveryPrimaryKeyAndUniqueIndexOfADistributedTableLeadsWithMerchantId()
    {
        await using var c = new NpgsqlConnection(app.AdminConnectionString);
        var tables = (await c.QueryAsync<string>("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
            """)).ToList();
        var keys = (await c.QueryAsync<(string Table, string Name, string Kind, string FirstColumn)>("""
            SELECT t.relname AS table, i.relname AS name, CASE WHEN x.indisprimary THEN 'primary key' ELSE 'unique index' END AS kind,
                   coalesce(a.attname, 'an expression') AS first_column
              FROM pg_index x
              JOIN pg_class t ON t.oid = x.indrelid
              JOIN pg_class i ON i.oid = x.indexrelid
              JOIN pg_namespace n ON n.oid = t.relnamespace
              LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
             WHERE n.nspname = 'public' AND (x.indisprimary OR x.indisunique)
            """)).Select(k => new Key(k.Table, k.Name, k.Kind, k.FirstColumn)).ToList();
        var distributed = tables.Where(t => !ReferenceTables.ContainsKey(t)).ToList();

        Assert.Contains("entries", distributed);
        var withoutPrimaryKey = distributed.Where(t => !keys.Any(k => k.Table == t && k.Kind == "primary key"));
        var notLeading = keys.Where(k => distributed.Contains(k.Table) && k.FirstColumn != "merchant_id")
            .Select(k => $"{k.Table}: {k.Kind} {k.Name} leads with {k.FirstColumn}");
        var problems = withoutPrimaryKey.Select(t => $"{t}: no primary key").Concat(notLeading).ToList();
        Assert.True(problems.Count == 0, "Not distributable by merchant_id (lead the key with it, or make the table a reference table " +
                                         "in ReferenceTables with the reason):\n  " + string.Join("\n  ", problems));
    }

    [Fact]
    public async Task EveryForeignKeyBetweenDistributedTablesCarriesMerchantIdAndNoReferenceTableReferencesOne()
    {
        await using var c = new NpgsqlConnection(app.AdminConnectionString);
        var foreignKeys = await c.QueryAsync<(string Child, string Parent, string Name, string ChildFirst, string ParentFirst)>("""
            SELECT ch.relname, pa.relname, k.conname, ca.attname, pa_a.attname
              FROM pg_constraint k
              JOIN pg_class ch ON ch.oid = k.conrelid
              JOIN pg_class pa ON pa.oid = k.confrelid
              JOIN pg_namespace n ON n.oid = ch.relnamespace
              JOIN pg_attribute ca ON ca.attrelid = k.conrelid AND ca.attnum = k.conkey[1]
              JOIN pg_attribute pa_a ON pa_a.attrelid = k.confrelid AND pa_a.attnum = k.confkey[1]
             WHERE k.contype = 'f' AND n.nspname = 'public'
            """);
        var problems = new List<string>();
        foreach (var fk in foreignKeys)
        {
            var childIsReference = ReferenceTables.ContainsKey(fk.Child);
            var parentIsReference = ReferenceTables.ContainsKey(fk.Parent);
            if (childIsReference && !parentIsReference) problems.Add($"{fk.Name}: reference table {fk.Child} references distributed {fk.Parent}");
            if (!childIsReference && !parentIsReference && (fk.ChildFirst, fk.ParentFirst) != ("merchant_id", "merchant_id"))
                problems.Add($"{fk.Name}: {fk.Child}({fk.ChildFirst}, …) → {fk.Parent}({fk.ParentFirst}, …) is not co-located by merchant_id");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    /// <summary>
    /// Statements that are not routed to one merchant's shard, each with why. Everything else must filter by merchant_id,
    /// insert it, or bind @MerchantId (e.g. an advisory lock keyed by it).
    /// </summary>
    private static readonly Dictionary<string, string> NotRoutedByMerchant = new()
    {
        ["Migrator.SelectApplied"] = "schema_migrations is a reference table",
        ["Migrator.InsertApplied"] = "schema_migrations is a reference table",
        ["Migrator.UpdateChecksum"] = "schema_migrations is a reference table",
        ["Migrator.SelectNeverAnalysed"] = "reads the catalogue (pg_class) for the tables to analyse after migrating",
        ["SecretKeyStore.SelectByHash"] = "authentication: finds the merchant (secret_keys is a reference table)",
        ["LedgerSequencer.SelectPendingMerchants"] = "finds which merchants have entries to number, then works merchant by merchant",
        ["LedgerVerifier.SelectMerchants"] = "the operator's `ledger verify` walks every merchant, then checks each alone",
        ["CycleProcessor.SelectDue"] = "finds due subscriptions across merchants, then closes each in its merchant's transaction",
        ["WebhookDeliveryStore.TryLock"] = "one webhook fan-out at a time across instances (a global advisory lock, no table)",
        ["WebhookDeliveryStore.LockClaims"] = "claims across instances take turns, so each sees every endpoint's live leases (a global advisory lock, no table)",
        ["LockedReads.Settings"] = "sets the posting transaction's own lock timeout and plan settings (set_config, no table)",
        ["LockedReads.GenericPlans"] = "switches the posting transaction's plan cache mode (set_config, no table)",
        ["LockedReads.CustomPlans"] = "switches the posting transaction's plan cache mode (set_config, no table)",
        ["PostingPlans.SelectStatistics"] = "reads the catalogue's statistics of the tables the posting reads (pg_class, no merchant)",
        ["CheckoutStore.SelectByToken"] = "the test page has only the session token, not the merchant; it then reads the session by merchant",
        ["HoldExpirySweep.NoteExpired"] = "notes expired holds across merchants; its trigger then records each merchant's event on its own key",
        ["WebhookDeliveryStore.Claim"] = "the dispatcher claims due deliveries across merchants, in turns by endpoint, then leases each by its key",
        ["WebhookDeliveryStore.SelectUnfanned"] = "the dispatcher finds new events across merchants, then works on each by its key",
        ["SpendKeyLimits.LockKey"] = "a spend key is found by its hash before its merchant is known (the gateway's authentication)",
        ["SpendKeyStore.SelectLive"] = "a spend key is found by its hash before its merchant is known (the gateway's authentication)",
        ["SpendKeyLimits.SelectDue"] = "the settle worker finds crashed calls across merchants, then settles each in its merchant's transaction",
        ["OpenHoldsGauge.CountSql"] = "the /metrics gauge of open holds counts across merchants by design",
    };

    [GeneratedRegex(@"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", RegexOptions.IgnoreCase)]
    private static partial Regex Statement();

    [GeneratedRegex(@"merchant_id\s*(=|IN\b)|\(\s*(\w+\.)?merchant_id\s*,|USING\s*\(\s*merchant_id|INSERT\s+INTO\s+\w+\s*\(\s*merchant_id|@MerchantId\b", RegexOptions.IgnoreCase)]
    private static partial Regex RoutedByMerchant();

    /// <summary>
    /// The SQL statements the types keep in static string fields: constants, and statements built once at start-up from
    /// column lists (<c>static readonly string</c>), read after their type is initialised.
    /// </summary>
    internal static List<(string Name, string Sql)> SqlFieldsOf(IEnumerable<Type> types) =>
        types.Where(t => !t.ContainsGenericParameters)
            .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly)
                .Where(f => f.FieldType == typeof(string))
                .Select(f => (Name: $"{t.Name}.{f.Name}", Sql: (f.IsLiteral ? (string?)f.GetRawConstantValue() : (string?)f.GetValue(null)) ?? "")))
            .Where(c => Statement().IsMatch(c.Sql))
            .ToList();

    /// <summary>The statements among <paramref name="statements"/> that are not routed by merchant_id and not listed with a reason.</summary>
    internal static List<string> Unrouted(IEnumerable<(string Name, string Sql)> statements, IReadOnlyDictionary<string, string> listed) =>
        statements.Where(c => !RoutedByMerchant().IsMatch(c.Sql) && !listed.ContainsKey(c.Name))
            .Select(c => $"{c.Name}: {string.Join(' ', c.Sql.Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries))}")
            .ToList();

    [Fact]
    public void EverySqlStatementOfTheServiceIsRoutedByMerchantIdOrSaysWhyNot()
    {
        var statements = SqlFieldsOf(typeof(Program).Assembly.GetTypes());

        Assert.True(statements.Count > 50, $"found only {statements.Count} SQL statements: the scan is looking in the wrong place");
        // The posting's write and the ledger insert are built from column lists at start-up: the scan must see them.
        Assert.Contains(statements, c => c.Name == "ReportWriter.WithHolds");
        Assert.Contains(statements, c => c.Name == "ReportWriter.WithoutHolds");
        Assert.Contains(statements, c => c.Name == "LedgerWriter.PostOne");
        var unrouted = Unrouted(statements, NotRoutedByMerchant);
        Assert.True(unrouted.Count == 0, "These statements do not filter by merchant_id (add the filter, or list the field in " +
                                         "NotRoutedByMerchant with the reason):\n  " + string.Join("\n  ", unrouted));
        var stale = NotRoutedByMerchant.Keys.Where(k => !statements.Any(c => c.Name == k)).ToList();
        Assert.True(stale.Count == 0, "NotRoutedByMerchant names statements that no longer exist: " + string.Join(", ", stale));
    }

    /// <summary>A statement built at start-up, as the posting's are, that forgot the merchant.</summary>
    private static class BuiltWithoutMerchant
    {
        private static readonly string[] Columns = ["request_id", "customer_id"];

        public static readonly string SelectByRequest = $"SELECT {string.Join(", ", Columns)} FROM requests WHERE request_id = @RequestId";
    }

    /// <summary>The same statement, built with the merchant's filter.</summary>
    private static class BuiltWithMerchant
    {
        private static readonly string[] Columns = ["request_id", "customer_id"];

        public static readonly string SelectByRequest =
            $"SELECT {string.Join(", ", Columns)} FROM requests WHERE merchant_id = @MerchantId AND request_id = @RequestId";
    }

    [Fact]
    public void TheScanCatchesABuiltStatementThatDoesNotFilterByMerchantId()
    {
        var unrouted = Unrouted(SqlFieldsOf([typeof(BuiltWithoutMerchant), typeof(BuiltWithMerchant)]), NotRoutedByMerchant);

        Assert.Equal(["BuiltWithoutMerchant.SelectByRequest: SELECT request_id, customer_id FROM requests WHERE request_id = @RequestId"], unrouted);
    }
}
