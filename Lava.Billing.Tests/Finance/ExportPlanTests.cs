using System.Text.Json;
using Dapper;
using Lava.Billing.Finance;
using Lava.Billing.Ledger;
using Lava.Billing.Requests;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Finance;

/// <summary>
/// The whole-ledger export walks the merchant's sequence in order and sends its first row at once, also when the
/// merchant's rows are spread among other merchants' (a shared database some time into its life), where PostgreSQL on
/// its own collects them all and sorts them before the first row.
/// </summary>
public class ExportPlanTests(LavaApp app) : ApiTest(app)
{
    /// <summary>
    /// 200,000 sequence rows of 40 merchants, one in eight of them the exporting merchant's, analysed: the shape of a
    /// ledger several merchants post to at once. Written as a replica session, past the numbering's triggers; the
    /// entries they name do not exist, which the plan does not ask.
    /// </summary>
    private async Task<string> InterleavedSequenceAsync()
    {
        var m = await App.NewMerchantAsync();
        var replica = new NpgsqlConnectionStringBuilder(App.AdminConnectionString) { Options = "-c session_replication_role=replica" };
        await using var connection = new NpgsqlConnection(replica.ConnectionString);
        await connection.OpenAsync();
        await connection.ExecuteAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            SELECT CASE WHEN i % 8 = 0 THEN @m ELSE 'mer_other_' || (i % 40) END,
                   CASE WHEN i % 8 = 0 THEN (i / 8) * 4 - 3 ELSE i END, 'txn_' || i, ARRAY[i * 4, i * 4 + 1, i * 4 + 2, i * 4 + 3]
              FROM generate_series(1, 200000) AS i;
            ANALYZE ledger_sequence;
            """, new { m = m.MerchantId });
        return m.MerchantId;
    }

    private async Task<JsonElement> PlanAsync(string settings, string merchantId)
    {
        await using var connection = new NpgsqlConnection(App.ConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead);
        await connection.ExecuteAsync(settings, transaction: tx);
        var json = await connection.QuerySingleAsync<string>("EXPLAIN (FORMAT JSON) " + LedgerReadStore.ExportAllEntries,
            new { MerchantId = merchantId, AfterSeq = 0L }, tx);
        return JsonDocument.Parse(json).RootElement[0].GetProperty("Plan").Clone();
    }

    private static IEnumerable<string> NodeTypes(JsonElement node)
    {
        yield return node.GetProperty("Node Type").GetString()!;
        if (!node.TryGetProperty("Plans", out var children)) yield break;
        foreach (var child in children.EnumerateArray())
            foreach (var type in NodeTypes(child))
                yield return type;
    }

    [Fact]
    public async Task TheWholeLedgerExportWalksTheSequenceInOrderWhereThePlannerAloneWouldSortItFirst()
    {
        var merchantId = await InterleavedSequenceAsync();

        // What the test stands on: without the export's setting, this ledger is read whole and sorted first.
        var chosen = NodeTypes(await PlanAsync(Exports.Settings(ExportPlan.Chosen), merchantId)).ToList();
        Assert.True(chosen.Contains("Sort"), "PostgreSQL no longer sorts this ledger first on its own: " + string.Join(", ", chosen));

        var all = new LedgerReadStore.EntryFilter(null, null, null, null, null, null);
        var walked = await PlanAsync(Exports.Settings(LedgerReadStore.PlanFor(all)), merchantId);
        var types = NodeTypes(walked).ToList();
        Assert.DoesNotContain("Sort", types);
        Assert.DoesNotContain("Bitmap Heap Scan", types);
        Assert.Contains(IndexScans(walked), scan => scan == ("ledger_sequence", "ledger_sequence_pkey"));
    }

    [Fact]
    public void TheRequestsExportWalksItsIndexWhereOneServesItsWholeFilter()
    {
        Assert.Equal(ExportPlan.InIndexOrder, RequestExport.PlanFor(new RequestListStore.Filter(null, null, null)));
        Assert.Equal(ExportPlan.InIndexOrder, RequestExport.PlanFor(new RequestListStore.Filter("cus_1", null, null)));
        Assert.Equal(ExportPlan.InIndexOrder, RequestExport.PlanFor(new RequestListStore.Filter(null, "mtr_1", null)));
        // Two filters, or metadata (no index): PostgreSQL may combine indexes or scan, and sorts only what matched.
        Assert.Equal(ExportPlan.Chosen, RequestExport.PlanFor(new RequestListStore.Filter("cus_1", "mtr_1", null)));
        Assert.Equal(ExportPlan.Chosen, RequestExport.PlanFor(new RequestListStore.Filter(null, null, """{"a":"b"}""")));
    }

    /// <summary>The index scans of a plan, as (table, index).</summary>
    private static IEnumerable<(string Table, string Index)> IndexScans(JsonElement node)
    {
        if (node.GetProperty("Node Type").GetString() == "Index Scan")
            yield return (node.GetProperty("Relation Name").GetString()!, node.GetProperty("Index Name").GetString()!);
        if (!node.TryGetProperty("Plans", out var children)) yield break;
        foreach (var child in children.EnumerateArray())
            foreach (var scan in IndexScans(child))
                yield return scan;
    }
}
