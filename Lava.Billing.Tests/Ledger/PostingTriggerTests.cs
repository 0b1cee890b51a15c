using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

/// <summary>
/// What the database runs per row of a posting: a report's rows are written a thousand at a time, so a trigger per row
/// is a call (and, under the posting's forced custom plans, a planning) per report (docs/ledger.md, "What a posting
/// costs the database").
/// </summary>
public class PostingTriggerTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task APostingFiresNoPerRowTriggerButTheBalanceWebhookWhichPlansItsQueriesAsTheServerDefault()
    {
        // Row triggers on what a posting inserts (requests, ledger transactions, entries, the sequencer's queue) or
        // updates (balances, usage totals, holds), other than those that fire only on columns the posting never sets.
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var perRow = (await c.QueryAsync<(string Table, string Trigger, string? Config)>("""
            SELECT c.relname, t.tgname, array_to_string(p.proconfig, ',')
              FROM pg_trigger t
              JOIN pg_class c ON c.oid = t.tgrelid
              JOIN pg_proc p ON p.oid = t.tgfoid
             WHERE NOT t.tgisinternal AND pg_table_is_visible(c.oid)
               AND (t.tgtype & 1) = 1
               AND cardinality(t.tgattr::int2[]) = 0
               AND ((c.relname IN ('requests', 'ledger_transactions', 'entries', 'entry_unsequenced') AND (t.tgtype & 4) = 4)
                 OR (c.relname IN ('account_balances', 'usage_totals', 'holds') AND (t.tgtype & 16) = 16))
             ORDER BY 1, 2
            """)).ToList();

        Assert.Equal([("account_balances", "account_balances_webhook_events", "plan_cache_mode=auto")], perRow);
    }
}
