using System.Text.Json;
using Dapper;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Requests.Posting;

namespace Lava.Billing.Ledger;

/// <summary>
/// Reads of the ledger for finance, on the read data source (a replica when one is configured). Callers run the
/// <see cref="LedgerSequencer"/> for the merchant first, so entries committed before the read carry their seq.
/// </summary>
public sealed class LedgerReadStore(ReadDataSource db)
{
    public sealed record AccountFilter(string? CustomerId, string? Kind, DateTimeOffset? AsOf);

    private sealed record AccountRow(string AccountId, string Kind, string Type, string? CustomerId, string Currency, string Balance, DateTime CreatedAt);

    // Customer accounts answer from their cached balance; merchant-wide accounts (and any account as of a past
    // instant) are summed from entries, which only the accounts on this page pay for. As text with 10 places, never a
    // decimal: a merchant-wide sum has no bound (docs/ledger.md, "Bounds") and may not fit one.
    private const string SelectAccounts = """
        SELECT a.account_id, a.kind, a.type, a.customer_id, a.currency::text AS currency,
               round(CASE WHEN a.cached AND @AsOf::timestamptz IS NULL THEN b.balance
                          ELSE (SELECT coalesce(sum(e.amount), 0) FROM entries e
                                 WHERE e.merchant_id = a.merchant_id AND e.account_id = a.account_id
                                   AND (@AsOf::timestamptz IS NULL OR e.created_at <= @AsOf))
                     END, 10)::text AS balance,
               a.created_at
          FROM accounts a
          LEFT JOIN account_balances b ON b.merchant_id = a.merchant_id AND b.account_id = a.account_id
         WHERE a.merchant_id = @MerchantId
           AND a.account_id > @After
           AND (@CustomerId::text IS NULL OR a.customer_id = @CustomerId)
           AND (@Kind::text IS NULL OR a.kind = @Kind)
         ORDER BY a.account_id
         LIMIT @Take
        """;

    public async Task<List<LedgerAccountResponse>> AccountsAsync(string merchantId, AccountFilter filter, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.Source.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<AccountRow>(new CommandDefinition(SelectAccounts, new
        {
            MerchantId = merchantId, After = after ?? "", filter.CustomerId, filter.Kind, AsOf = filter.AsOf?.UtcDateTime, Take = take,
        }, cancellationToken: ct));
        return rows.Select(r => new LedgerAccountResponse(r.AccountId, r.Kind, r.Type, r.CustomerId, r.Currency, r.Balance, r.CreatedAt)).ToList();
    }

    private sealed record TransactionRow(string TransactionId, string Kind, string Reference, string? CustomerId, string? MeterId,
        int? PriceVersion, DateTime EffectiveAt, DateTime CreatedAt, string Lineage, string? LineageCompact);

    private sealed record TransactionEntryRow(long? Seq, long EntryId, string AccountId, string AccountType, string Currency, decimal Amount);

    private const string SelectTransaction = """
        SELECT transaction_id, kind, reference, customer_id, meter_id, price_version, effective_at, created_at, lineage::text AS lineage,
               lineage_compact
          FROM ledger_transactions
         WHERE merchant_id = @MerchantId AND transaction_id = @TransactionId;

        SELECT s.seq, e.entry_id, e.account_id, a.type AS account_type, e.currency::text AS currency, e.amount
          FROM entries e
          JOIN accounts a ON a.merchant_id = e.merchant_id AND a.account_id = e.account_id
          LEFT JOIN ledger_sequence r ON r.merchant_id = e.merchant_id AND r.transaction_id = e.transaction_id
                                     AND e.entry_id = ANY (r.entry_ids)
          CROSS JOIN LATERAL (SELECT r.first_seq + array_position(r.entry_ids, e.entry_id) - 1 AS seq) s
         WHERE e.merchant_id = @MerchantId AND e.transaction_id = @TransactionId
         ORDER BY e.entry_id
        """;

    public async Task<LedgerTransactionResponse?> TransactionAsync(string merchantId, string transactionId, CancellationToken ct)
    {
        await using var connection = await db.Source.OpenConnectionAsync(ct);
        await using var results = await connection.QueryMultipleAsync(new CommandDefinition(SelectTransaction,
            new { MerchantId = merchantId, TransactionId = transactionId }, cancellationToken: ct));
        var t = await results.ReadSingleOrDefaultAsync<TransactionRow>();
        var entries = (await results.ReadAsync<TransactionEntryRow>())
            .Select(e => new LedgerTransactionEntry(e.Seq, e.EntryId, e.AccountId, e.AccountType, e.Currency, Money.Format(e.Amount)))
            .ToList();
        if (t is null) return null;
        using var lineage = JsonDocument.Parse(t.LineageCompact is { } compact
            ? StoredReport.FullLineage(t.Reference, t.MeterId!, t.PriceVersion!.Value, compact)
            : t.Lineage);
        return new LedgerTransactionResponse(t.TransactionId, t.Kind, t.Reference, t.CustomerId, t.MeterId, t.PriceVersion,
            t.EffectiveAt, t.CreatedAt, lineage.RootElement.Clone(), entries);
    }

    /// <summary>Entry filters: a period (from, to] of created_at, an account, the transaction's customer, meter, kind.</summary>
    public sealed record EntryFilter(DateTimeOffset? From, DateTimeOffset? To, string? AccountId, string? CustomerId, string? MeterId, string? Kind)
    {
        public bool IsEmpty => From is null && To is null && AccountId is null && CustomerId is null && MeterId is null && Kind is null;
    }

    /// <summary>
    /// The export columns, in the order <see cref="SelectEntries"/> returns them (docs/exports.md); debit and credit are
    /// derived from the amount as it is written, so the database neither computes nor sends them.
    /// </summary>
    public static readonly IReadOnlyList<ExportColumn> EntryColumns =
    [
        new("seq", ColumnKind.Integer), new("entry_id", ColumnKind.Integer), new("created_at", ColumnKind.Timestamp),
        new("effective_at", ColumnKind.Timestamp), new("transaction_id", ColumnKind.Text), new("transaction_kind", ColumnKind.Text),
        new("reference", ColumnKind.Text), new("customer_id", ColumnKind.Text), new("meter_id", ColumnKind.Text),
        new("price_version", ColumnKind.Integer), new("account_id", ColumnKind.Text), new("account_kind", ColumnKind.Text),
        new("account_type", ColumnKind.Text), new("currency", ColumnKind.Text), new("amount", ColumnKind.Money),
        new("debit", ColumnKind.Debit), new("credit", ColumnKind.Credit),
    ];

    // Pages by seq, which is gap-free and assigned after commit: a row can never appear behind a cursor already
    // handed out. LIMIT NULL (an export) means every row. An entry's seq is its transaction row's first_seq plus its
    // position in the row; the walk of the sequence's key starts at the last row to start at or before @AfterSeq (the
    // row holding it; a row starting at @AfterSeq + 1 comes next), so no arithmetic on the cursor can overflow. Ordered
    // by first_seq, then seq: with a limit and no filter the plan walks the key and sorts only each row's few entries;
    // with a filter it may start from the entries and look up their rows.
    private const string SelectEntries = """
        SELECT s.seq, e.entry_id, e.created_at, t.effective_at, e.transaction_id, t.kind AS transaction_kind, t.reference,
               t.customer_id, t.meter_id, t.price_version::bigint AS price_version, e.account_id, a.kind AS account_kind,
               a.type AS account_type, e.currency::text AS currency, e.amount
          FROM ledger_sequence r
          JOIN entries e             ON e.merchant_id = r.merchant_id AND e.transaction_id = r.transaction_id
                                    AND e.entry_id = ANY (r.entry_ids)
          JOIN ledger_transactions t ON t.merchant_id = r.merchant_id AND t.transaction_id = r.transaction_id
          JOIN accounts a            ON a.merchant_id = e.merchant_id AND a.account_id = e.account_id
         CROSS JOIN LATERAL (SELECT r.first_seq + array_position(r.entry_ids, e.entry_id) - 1 AS seq) s
         WHERE r.merchant_id = @MerchantId
           AND r.first_seq >= coalesce((SELECT max(first_seq) FROM ledger_sequence
                                         WHERE merchant_id = @MerchantId AND first_seq <= @AfterSeq), 1)
           AND s.seq > @AfterSeq
           AND (@From::timestamptz IS NULL OR e.created_at > @From)
           AND (@To::timestamptz IS NULL OR e.created_at <= @To)
           AND (@AccountId::text IS NULL OR e.account_id = @AccountId)
           AND (@CustomerId::text IS NULL OR t.customer_id = @CustomerId)
           AND (@MeterId::text IS NULL OR t.meter_id = @MeterId)
           AND (@Kind::text IS NULL OR t.kind = @Kind)
         ORDER BY r.first_seq, s.seq
         LIMIT @Take
        """;

    private static object EntryArgs(string merchantId, EntryFilter f, long afterSeq, int? take) => new
    {
        MerchantId = merchantId, AfterSeq = afterSeq, From = f.From?.UtcDateTime, To = f.To?.UtcDateTime,
        f.AccountId, f.CustomerId, f.MeterId, f.Kind, Take = take,
    };

    private sealed record EntryRow(long Seq, long EntryId, DateTime CreatedAt, DateTime EffectiveAt, string TransactionId,
        string TransactionKind, string Reference, string? CustomerId, string? MeterId, long? PriceVersion, string AccountId,
        string AccountKind, string AccountType, string Currency, decimal Amount);

    public async Task<List<LedgerEntryResponse>> EntriesAsync(string merchantId, EntryFilter filter, long afterSeq, int take, CancellationToken ct)
    {
        await using var connection = await db.Source.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<EntryRow>(new CommandDefinition(filter.IsEmpty ? PageAllEntries : SelectEntries,
            EntryArgs(merchantId, filter, afterSeq, take), cancellationToken: ct));
        return rows.Select(r => new LedgerEntryResponse(r.Seq, r.EntryId, r.CreatedAt, r.EffectiveAt, r.TransactionId, r.TransactionKind,
            r.Reference, r.CustomerId, r.MeterId, r.PriceVersion, r.AccountId, r.AccountKind, r.AccountType, r.Currency,
            Money.Format(r.Amount), Money.Format(r.Amount > 0 ? r.Amount : 0m), Money.Format(r.Amount < 0 ? -r.Amount : 0m))).ToList();
    }

    // The whole ledger (after a seq) in seq order straight off the sequence's key: one row per transaction, its
    // transaction looked up once and its entries read with one scan of entries_transaction, each account as it comes.
    // The entries name t's transaction_id rather than r's, so the transaction is looked up before them (once per row);
    // naming r's, the planner may look it up after them, once per entry.
    // As plain joins the planner prefers, on cost, to hash the whole ledger and sort a million rows (to disk) before the
    // first leaves; a LATERAL … OFFSET 0 lookup cannot be turned into that. Consecutive entries share a few accounts, so
    // Memoize answers most of those lookups; it names the merchant as the parameter rather than the outer row's column,
    // so Memoize's key is the one id it hashes per entry. The sort by seq within first_seq only orders each row's entries.
    internal const string ExportAllEntries = """
        SELECT s.seq, e.entry_id, e.created_at, t.effective_at, r.transaction_id, t.kind AS transaction_kind, t.reference,
               t.customer_id, t.meter_id, t.price_version::bigint AS price_version, e.account_id, a.kind AS account_kind,
               a.type AS account_type, e.currency::text AS currency, e.amount
          FROM ledger_sequence r
         CROSS JOIN LATERAL (SELECT t.transaction_id, t.effective_at, t.kind, t.reference, t.customer_id, t.meter_id, t.price_version
                               FROM ledger_transactions t
                              WHERE t.merchant_id = @MerchantId AND t.transaction_id = r.transaction_id OFFSET 0) t
         CROSS JOIN LATERAL (SELECT e.entry_id, e.created_at, e.account_id, e.currency, e.amount
                               FROM entries e
                              WHERE e.merchant_id = @MerchantId AND e.transaction_id = t.transaction_id
                                AND e.entry_id = ANY (r.entry_ids) OFFSET 0) e
         CROSS JOIN LATERAL (SELECT a.kind, a.type
                               FROM accounts a
                              WHERE a.merchant_id = @MerchantId AND a.account_id = e.account_id OFFSET 0) a
         CROSS JOIN LATERAL (SELECT r.first_seq + array_position(r.entry_ids, e.entry_id) - 1 AS seq) s
         WHERE r.merchant_id = @MerchantId
           AND r.first_seq >= coalesce((SELECT max(first_seq) FROM ledger_sequence
                                         WHERE merchant_id = @MerchantId AND first_seq <= @AfterSeq), 1)
           AND s.seq > @AfterSeq
         ORDER BY r.first_seq, s.seq
        """;

    // A page with no filter: the export's walk of the key, stopped at the page's end. The filtered query would, without
    // a filter, number every entry after the cursor and sort them for the first few (its estimate of the rows after the
    // cursor is a handful, so that looks cheap).
    private const string PageAllEntries = ExportAllEntries + """

         LIMIT @Take
        """;

    /// <summary>
    /// An export: with no filter, the whole ledger in seq order as it is read (<see cref="ExportAllEntries"/>); with one,
    /// the page query without a limit, whose plan follows the filter (an account's or a customer's entries by index, a
    /// period by scanning the merchant's entries) and sorts what matched.
    /// </summary>
    public IResult ExportEntries(string merchantId, EntryFilter filter, long afterSeq, ExportFormat format) => filter.IsEmpty
        ? Exports.Stream(db, format, "ledger-entries", EntryColumns, ExportAllEntries, new { MerchantId = merchantId, AfterSeq = afterSeq },
            PlanFor(filter))
        : Exports.Stream(db, format, "ledger-entries", EntryColumns, SelectEntries, EntryArgs(merchantId, filter, afterSeq, null),
            PlanFor(filter));

    /// <summary>Without a filter the export walks the sequence's key in order; with one, the plan follows the filter.</summary>
    internal static ExportPlan PlanFor(EntryFilter filter) => filter.IsEmpty ? ExportPlan.InIndexOrder : ExportPlan.Chosen;

    private sealed record TrialBalanceRow(string? AccountId, string Kind, string Type, string? CustomerId, string Currency,
        string Debits, string Credits, string Balance, string TotalDebits, string TotalCredits, string TotalBalance);

    // Summed from entries (debits and credits separately), then labelled with the account; by kind, the accounts of a
    // kind (every customer's receivable, say) add up to one line. The per-currency totals are window sums of the lines,
    // in the same statement and snapshot. Every amount is summed in numeric and read as text with 10 places, never as a
    // decimal: merchant-wide sums have no bound (docs/ledger.md, "Bounds") and may not fit one.
    private const string SelectTrialBalance = """
        WITH sums AS (
            SELECT account_id,
                   coalesce(sum(amount) FILTER (WHERE amount > 0), 0)  AS debits,
                   coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS credits
              FROM entries
             WHERE merchant_id = @MerchantId
               AND (@AsOf::timestamptz IS NULL OR created_at <= @AsOf)
             GROUP BY account_id
        ), lines AS (
            SELECT CASE WHEN @ByKind THEN NULL ELSE a.account_id END AS account_id, a.kind, a.type,
                   CASE WHEN @ByKind THEN NULL ELSE a.customer_id END AS customer_id, a.currency::text AS currency,
                   sum(s.debits) AS debits, sum(s.credits) AS credits
              FROM sums s
              JOIN accounts a ON a.merchant_id = @MerchantId AND a.account_id = s.account_id
             GROUP BY 1, 2, 3, 4, 5
        )
        SELECT account_id, kind, type, customer_id, currency,
               round(debits, 10)::text AS debits, round(credits, 10)::text AS credits, round(debits - credits, 10)::text AS balance,
               round(sum(debits) OVER w, 10)::text AS total_debits, round(sum(credits) OVER w, 10)::text AS total_credits,
               round(sum(debits - credits) OVER w, 10)::text AS total_balance
          FROM lines
        WINDOW w AS (PARTITION BY currency)
         ORDER BY array_position(ARRAY['asset', 'liability', 'revenue', 'expense'], type), kind, account_id
        """;

    public async Task<TrialBalanceResponse> TrialBalanceAsync(string merchantId, DateTimeOffset? asOf, bool byKind, CancellationToken ct)
    {
        await using var connection = await db.Source.OpenConnectionAsync(ct);
        var rows = (await connection.QueryAsync<TrialBalanceRow>(new CommandDefinition(SelectTrialBalance,
            new { MerchantId = merchantId, AsOf = asOf?.UtcDateTime, ByKind = byKind }, cancellationToken: ct))).AsList();
        var lines = rows.Select(r => new TrialBalanceLine(r.AccountId, r.Kind, r.Type, r.CustomerId, r.Currency, r.Debits, r.Credits, r.Balance)).ToList();
        var totals = rows.GroupBy(r => r.Currency).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new TrialBalanceTotal(g.Key, g.First().TotalDebits, g.First().TotalCredits, g.First().TotalBalance)).ToList();
        return new TrialBalanceResponse(asOf?.UtcDateTime, byKind ? "kind" : "account", lines, totals);
    }
}
