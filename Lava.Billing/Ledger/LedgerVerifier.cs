using System.Data;
using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.Ledger;

/// <summary>
/// Checks every ledger invariant of a merchant in one REPEATABLE READ snapshot of the primary, and reports what is
/// wrong (at most <see cref="MaxProblemsPerCheck"/> findings per check). The database enforces these as rows are
/// written; this finds what got past it (a superuser's hand, a restore, a bug in a trigger).
/// </summary>
public sealed class LedgerVerifier(NpgsqlDataSource db, LedgerSequencer sequencer, TimeProvider clock)
{
    public const int MaxProblemsPerCheck = 100;

    public static readonly IReadOnlyList<string> Checks =
        ["transactions_balanced", "cached_balances", "sequence_gap_free", "entries_sequenced", "requests_priced", "charges_posted",
         "amounts_in_bounds", "spend_keys_posted"];

    private const string SelectUnbalanced = """
        SELECT transaction_id, currency::text AS currency, sum(amount)::text AS total
          FROM entries
         WHERE merchant_id = @MerchantId
         GROUP BY transaction_id, currency
        HAVING sum(amount) <> 0
         ORDER BY transaction_id
         LIMIT @Max
        """;

    // A cached account without its balance row is as wrong as a row that disagrees with the entries.
    private const string SelectDriftedBalances = """
        SELECT a.account_id, b.balance::text AS cached, coalesce(s.total, 0::numeric(38,10))::text AS total
          FROM accounts a
          LEFT JOIN account_balances b ON b.merchant_id = a.merchant_id AND b.account_id = a.account_id
          LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries WHERE merchant_id = @MerchantId GROUP BY account_id) s
                 ON s.account_id = a.account_id
         WHERE a.merchant_id = @MerchantId
           AND a.cached
           AND b.balance IS DISTINCT FROM coalesce(s.total, 0)
         ORDER BY a.account_id
         LIMIT @Max
        """;

    private const string SelectSequenceGaps = """
        SELECT previous + 1 AS missing_from, first_seq - 1 AS missing_to
          FROM (SELECT first_seq, lag(first_seq + cardinality(entry_ids) - 1, 1, 0::bigint) OVER (ORDER BY first_seq) AS previous
                  FROM ledger_sequence WHERE merchant_id = @MerchantId) s
         WHERE first_seq <> previous + 1
         ORDER BY first_seq
         LIMIT @Max
        """;

    // A seq stands for one entry of its row's transaction: one naming anything else is a number no reader returns, a gap
    // in every export as much as a missing number. The database refuses overlapping rows and an entry numbered twice in
    // its transaction, not a row naming an entry that is not its transaction's; this finds one, and a NULL in a row (which
    // the database refuses in rows written since it checks, not in older ones).
    private const string SelectSeqsWithoutEntry = """
        SELECT r.first_seq + p.position - 1 AS seq, r.transaction_id, p.entry_id
          FROM ledger_sequence r
         CROSS JOIN LATERAL unnest(r.entry_ids) WITH ORDINALITY AS p(entry_id, position)
         WHERE r.merchant_id = @MerchantId
           AND NOT EXISTS (SELECT 1 FROM entries e
                            WHERE e.merchant_id = r.merchant_id AND e.entry_id = p.entry_id AND e.transaction_id = r.transaction_id)
         ORDER BY 1
         LIMIT @Max
        """;

    // An entry with two seqs (named twice by one row, or by two rows of its transaction) would be listed twice by every
    // export; the database refuses both as rows are written, so only a hand past the triggers leaves one.
    private const string SelectEntriesNumberedTwice = """
        SELECT seq, first_named_at, transaction_id, entry_id
          FROM (SELECT r.first_seq + p.position - 1 AS seq, r.transaction_id, p.entry_id,
                       first_value(r.first_seq + p.position - 1) OVER (PARTITION BY p.entry_id ORDER BY r.first_seq, p.position) AS first_named_at
                  FROM ledger_sequence r
                 CROSS JOIN LATERAL unnest(r.entry_ids) WITH ORDINALITY AS p(entry_id, position)
                 WHERE r.merchant_id = @MerchantId) s
         WHERE seq <> first_named_at AND entry_id IS NOT NULL   -- a NULL names no entry: SelectSeqsWithoutEntry reports it
         ORDER BY seq
         LIMIT @Max
        """;

    // Committed entries are numbered or queued for numbering (named by a queue row of their posting statement); one that
    // is neither would never reach an export.
    private const string SelectUnsequencedEntries = """
        SELECT e.entry_id, e.transaction_id
          FROM entries e
         WHERE e.merchant_id = @MerchantId
           AND NOT EXISTS (SELECT 1 FROM ledger_sequence r
                            WHERE r.merchant_id = e.merchant_id AND r.transaction_id = e.transaction_id AND e.entry_id = ANY (r.entry_ids))
           AND e.entry_id NOT IN (SELECT q.entry_id FROM entry_unsequenced u CROSS JOIN LATERAL unnest(u.entry_ids) AS q(entry_id)
                                   WHERE u.merchant_id = @MerchantId AND q.entry_id IS NOT NULL)
         ORDER BY e.entry_id
         LIMIT @Max
        """;

    // Exactly one priced transaction per request: the request points at a usage transaction whose reference is the
    // request (UNIQUE (kind, reference) rules out a second), and no usage transaction lacks its request.
    private const string SelectUnpricedRequests = """
        SELECT r.request_id, r.transaction_id, t.kind, t.reference
          FROM requests r
          LEFT JOIN ledger_transactions t ON t.merchant_id = r.merchant_id AND t.transaction_id = r.transaction_id
         WHERE r.merchant_id = @MerchantId
           AND (t.transaction_id IS NULL OR t.kind <> 'usage' OR t.reference <> r.request_id)
         ORDER BY r.request_id
         LIMIT @Max;

        SELECT t.transaction_id, t.reference
          FROM ledger_transactions t
         WHERE t.merchant_id = @MerchantId
           AND t.kind = 'usage'
           AND NOT EXISTS (SELECT 1 FROM requests r
                            WHERE r.merchant_id = t.merchant_id AND r.request_id = t.reference AND r.transaction_id = t.transaction_id)
         ORDER BY t.transaction_id
         LIMIT @Max
        """;

    // The posting carries the request's numbers: revenue is the charge when a customer was charged, provider cost
    // is the reported cost (docs/ledger.md, "Postings").
    private const string SelectMispostedCharges = """
        SELECT r.request_id, r.transaction_id,
               CASE WHEN r.mode = 'customer' THEN r.charge_amount ELSE 0 END AS expected_revenue,
               coalesce(-sum(e.amount) FILTER (WHERE e.account_id = 'usage_revenue'), 0) AS revenue,
               coalesce(r.cost, 0) AS expected_cost,
               coalesce(sum(e.amount) FILTER (WHERE e.account_id = 'provider_cost'), 0) AS cost
          FROM requests r
          LEFT JOIN entries e ON e.merchant_id = r.merchant_id AND e.transaction_id = r.transaction_id
         WHERE r.merchant_id = @MerchantId
         GROUP BY r.request_id, r.transaction_id, r.mode, r.charge_amount, r.cost
        HAVING coalesce(-sum(e.amount) FILTER (WHERE e.account_id = 'usage_revenue'), 0)
                   <> CASE WHEN r.mode = 'customer' THEN r.charge_amount ELSE 0 END
            OR coalesce(sum(e.amount) FILTER (WHERE e.account_id = 'provider_cost'), 0) <> coalesce(r.cost, 0)
         ORDER BY r.request_id
         LIMIT @Max
        """;

    // Rows past the bounds the database enforces (migration 0040): only a dropped constraint or a superuser lets one in,
    // and no reader could load it. Amounts are read as text, so whatever is there is reported, never an overflow.
    private const string SelectOutOfBounds = """
        SELECT 'entry' AS what, transaction_id AS id, amount::text AS amount FROM entries
         WHERE merchant_id = @MerchantId AND NOT amount BETWEEN -@MaxBalance AND @MaxBalance
        UNION ALL
        SELECT 'balance', account_id, balance::text FROM account_balances
         WHERE merchant_id = @MerchantId AND NOT balance BETWEEN -@MaxBalance AND @MaxBalance
        UNION ALL
        SELECT 'usage total', meter_id || ' ' || customer_id || ' ' || period_start::text, quantity::text FROM usage_totals
         WHERE merchant_id = @MerchantId AND quantity > @MaxBalance
        UNION ALL
        SELECT 'request charge or cost', request_id, greatest(charge_amount, cost)::text FROM requests
         WHERE merchant_id = @MerchantId AND (charge_amount > @Max OR cost > @Max)
        UNION ALL
        SELECT 'credit limit', customer_id, credit_limit::text FROM customers
         WHERE merchant_id = @MerchantId AND credit_limit > @Max
        UNION ALL
        SELECT 'plan amount', plan_id, period_amount::text FROM plans
         WHERE merchant_id = @MerchantId AND period_amount > @Max
        UNION ALL
        SELECT 'bundle amount', credit_bundle_id, greatest(cost, credit_amount)::text FROM credit_bundles
         WHERE merchant_id = @MerchantId AND (cost > @Max OR credit_amount > @Max)
        UNION ALL
        SELECT 'hold amount', hold_id, greatest(amount, captured_amount)::text FROM holds
         WHERE merchant_id = @MerchantId AND (amount > @Max OR captured_amount > @Max)
        LIMIT @MaxProblems
        """;

    // A spend key's spending is its ledger account (docs/spend-keys.md): every captured call has its one usage
    // transaction, whose entry on the key's account is the captured amount, and no such transaction lacks its call.
    private const string SelectUnpostedSpendKeyCharges = """
        SELECT c.charge_id, t.transaction_id, c.amount::text AS expected, coalesce(p.posted, 0)::text AS posted
          FROM spend_key_charges c
          LEFT JOIN ledger_transactions t ON t.merchant_id = c.merchant_id AND t.kind = 'spend_key_usage' AND t.reference = c.charge_id
          LEFT JOIN LATERAL (SELECT sum(e.amount) AS posted
                               FROM entries e
                              WHERE e.merchant_id = t.merchant_id AND e.transaction_id = t.transaction_id
                                AND e.account_id = c.spend_key_id || ':spend_key') p ON true
         WHERE c.merchant_id = @MerchantId
           AND c.status = 'captured'
           AND (t.transaction_id IS NULL OR coalesce(p.posted, 0) <> c.amount)
         ORDER BY c.charge_id
         LIMIT @Max;

        SELECT t.transaction_id, t.reference
          FROM ledger_transactions t
         WHERE t.merchant_id = @MerchantId
           AND t.kind = 'spend_key_usage'
           AND NOT EXISTS (SELECT 1 FROM spend_key_charges c
                            WHERE c.merchant_id = t.merchant_id AND c.charge_id = t.reference AND c.status = 'captured')
         ORDER BY t.transaction_id
         LIMIT @Max
        """;

    public async Task<VerifyResponse> VerifyAsync(string merchantId, CancellationToken ct)
    {
        await sequencer.RunOnceAsync(merchantId, ct);
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
        await connection.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: tx, cancellationToken: ct));
        var args = new { MerchantId = merchantId, Max = MaxProblemsPerCheck };
        CommandDefinition Command(string sql) => new(sql, args, tx, cancellationToken: ct);
        var problems = new List<VerifyProblem>();

        foreach (var r in await connection.QueryAsync<(string TransactionId, string Currency, string Total)>(Command(SelectUnbalanced)))
        {
            problems.Add(new("transactions_balanced", $"transaction {r.TransactionId} leaves {r.Total} {r.Currency} unbalanced",
                TransactionId: r.TransactionId, Expected: Money.Format(0m), Actual: r.Total));
        }
        foreach (var r in await connection.QueryAsync<(string AccountId, string? Cached, string Total)>(Command(SelectDriftedBalances)))
        {
            problems.Add(new("cached_balances", r.Cached is null
                    ? $"account {r.AccountId} has no cached balance row"
                    : $"account {r.AccountId} caches {r.Cached} but its entries sum to {r.Total}",
                AccountId: r.AccountId, Expected: r.Total, Actual: r.Cached));
        }
        foreach (var r in await connection.QueryAsync<(long From, long To)>(Command(SelectSequenceGaps)))
        {
            problems.Add(new("sequence_gap_free", r.From == r.To ? $"seq {r.From} is missing" : $"seq {r.From} to {r.To} are missing",
                Seq: r.From));
        }
        foreach (var r in await connection.QueryAsync<(long Seq, string TransactionId, long? EntryId)>(Command(SelectSeqsWithoutEntry)))
        {
            problems.Add(new("sequence_gap_free", r.EntryId is { } entry
                    ? $"seq {r.Seq} names entry {entry}, which is not an entry of transaction {r.TransactionId}"
                    : $"seq {r.Seq} names no entry (a NULL in the sequence row of transaction {r.TransactionId})",
                Seq: r.Seq, TransactionId: r.TransactionId));
        }
        foreach (var r in await connection.QueryAsync<(long Seq, long FirstNamedAt, string TransactionId, long EntryId)>(Command(SelectEntriesNumberedTwice)))
        {
            problems.Add(new("sequence_gap_free", $"seq {r.Seq} names entry {r.EntryId} of transaction {r.TransactionId}, which seq {r.FirstNamedAt} names already",
                Seq: r.Seq, TransactionId: r.TransactionId));
        }
        foreach (var r in await connection.QueryAsync<(long EntryId, string TransactionId)>(Command(SelectUnsequencedEntries)))
        {
            problems.Add(new("entries_sequenced", $"entry {r.EntryId} is neither numbered nor queued for numbering",
                TransactionId: r.TransactionId));
        }
        await using (var results = await connection.QueryMultipleAsync(Command(SelectUnpricedRequests)))
        {
            foreach (var r in await results.ReadAsync<(string RequestId, string TransactionId, string? Kind, string? Reference)>())
            {
                problems.Add(new("requests_priced", r.Kind is null
                        ? $"request {r.RequestId} points at transaction {r.TransactionId}, which does not exist"
                        : $"request {r.RequestId} points at a {r.Kind} transaction for '{r.Reference}', not its own usage posting",
                    TransactionId: r.TransactionId, RequestId: r.RequestId));
            }
            foreach (var r in await results.ReadAsync<(string TransactionId, string Reference)>())
            {
                problems.Add(new("requests_priced", $"usage transaction {r.TransactionId} has no request '{r.Reference}' pointing at it",
                    TransactionId: r.TransactionId, RequestId: r.Reference));
            }
        }
        foreach (var r in await connection.QueryAsync<(string RequestId, string TransactionId, decimal ExpectedRevenue, decimal Revenue, decimal ExpectedCost, decimal Cost)>(
                     Command(SelectMispostedCharges)))
        {
            problems.Add(r.Revenue != r.ExpectedRevenue
                ? new("charges_posted", $"request {r.RequestId} charged {Money.Format(r.ExpectedRevenue)} but posted {Money.Format(r.Revenue)} revenue",
                    TransactionId: r.TransactionId, RequestId: r.RequestId, Expected: Money.Format(r.ExpectedRevenue), Actual: Money.Format(r.Revenue))
                : new("charges_posted", $"request {r.RequestId} cost {Money.Format(r.ExpectedCost)} but posted {Money.Format(r.Cost)} provider cost",
                    TransactionId: r.TransactionId, RequestId: r.RequestId, Expected: Money.Format(r.ExpectedCost), Actual: Money.Format(r.Cost)));
        }
        foreach (var r in await connection.QueryAsync<(string What, string Id, string Amount)>(new CommandDefinition(SelectOutOfBounds,
                     new { MerchantId = merchantId, Money.Max, Money.MaxBalance, MaxProblems = MaxProblemsPerCheck }, tx, cancellationToken: ct)))
        {
            problems.Add(new("amounts_in_bounds", $"{r.What} {r.Id} is {r.Amount}, past its bound (docs/ledger.md, \"Bounds\")",
                TransactionId: r.What == "entry" ? r.Id : null, AccountId: r.What == "balance" ? r.Id : null, Actual: r.Amount));
        }
        await using (var results = await connection.QueryMultipleAsync(Command(SelectUnpostedSpendKeyCharges)))
        {
            foreach (var r in await results.ReadAsync<(string ChargeId, string? TransactionId, string Expected, string Posted)>())
            {
                problems.Add(new("spend_keys_posted", r.TransactionId is null
                        ? $"spend key charge {r.ChargeId} was captured but has no spend_key_usage transaction"
                        : $"spend key charge {r.ChargeId} captured {r.Expected} but its transaction posted {r.Posted} to the key's account",
                    TransactionId: r.TransactionId, Expected: r.Expected, Actual: r.Posted));
            }
            foreach (var r in await results.ReadAsync<(string TransactionId, string Reference)>())
            {
                problems.Add(new("spend_keys_posted", $"spend_key_usage transaction {r.TransactionId} has no captured charge '{r.Reference}'",
                    TransactionId: r.TransactionId));
            }
        }
        await tx.CommitAsync(ct);
        return new VerifyResponse(problems.Count == 0, clock.GetUtcNow().UtcDateTime, Checks, problems);
    }

    private const string SelectMerchants = """
        SELECT merchant_id FROM merchants ORDER BY merchant_id
        """;

    /// <summary>Every merchant's id, for the operator command that verifies them all.</summary>
    public async Task<List<string>> MerchantsAsync(CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return (await connection.QueryAsync<string>(new CommandDefinition(SelectMerchants, cancellationToken: ct))).AsList();
    }
}
