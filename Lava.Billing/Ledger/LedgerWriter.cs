using Lava.Billing.Infrastructure.Database;
using Npgsql;

namespace Lava.Billing.Ledger;

/// <summary>
/// The one writer of ledger transactions and their entries: grants, expiries, purchases and gateway calls post one at a
/// time through <see cref="PostAsync"/>; the report path writes many inside its own write statement through
/// <see cref="WriteCtes"/>. Both insert the same columns, declared once here. A transaction and its entries are always
/// one statement, so the database's balance check (per statement) sees them whole.
/// </summary>
public static class LedgerWriter
{
    /// <summary>
    /// One business event: its kind and reference (<see cref="LedgerKinds"/>) make it unique per merchant. Entries of zero
    /// are not written. <see cref="CreatedAt"/>: when the event happened, where that is not the posting's own time (a
    /// gateway call posted after it was served); null is the database transaction's start.
    /// </summary>
    public sealed record Transaction(
        string TransactionId, string Kind, string Reference, string? CustomerId, DateTimeOffset EffectiveAt,
        IReadOnlyList<Posting> Postings, string LineageJson = "{}")
    {
        public string? MeterId { get; init; }
        public int? PriceVersion { get; init; }
        public DateTimeOffset? CreatedAt { get; init; }
        /// <summary>A usage transaction's lineage, stored compactly (the lineage JSON then stays empty; docs/ledger.md).</summary>
        public string? CompactLineage { get; init; }
    }

    /// <summary>A transaction of one merchant, as the set-based statements take it.</summary>
    public sealed record Row(string MerchantId, Transaction Transaction);

    private sealed record EntryRow(string MerchantId, string TransactionId, string AccountId, decimal Amount);

    private static readonly Columns<Row> TransactionColumns = new(
        Column<Row>.Text("merchant_id", r => r.MerchantId),
        Column<Row>.Text("transaction_id", r => r.Transaction.TransactionId),
        Column<Row>.Text("kind", r => r.Transaction.Kind),
        Column<Row>.Text("reference", r => r.Transaction.Reference),
        Column<Row>.Text("customer_id", r => r.Transaction.CustomerId),
        Column<Row>.Text("meter_id", r => r.Transaction.MeterId),
        Column<Row>.Integer("price_version", r => r.Transaction.PriceVersion),
        Column<Row>.Jsonb("lineage", r => r.Transaction.LineageJson),
        Column<Row>.Text("lineage_compact", r => r.Transaction.CompactLineage),
        Column<Row>.TimestampTz("effective_at", r => r.Transaction.EffectiveAt),
        Column<Row>.TimestampTz("created_at", r => r.Transaction.CreatedAt, orElse: "now()"));

    private static readonly Columns<EntryRow> EntryColumns = new(
        Column<EntryRow>.Text("merchant_id", e => e.MerchantId),
        Column<EntryRow>.Text("transaction_id", e => e.TransactionId),
        Column<EntryRow>.Text("account_id", e => e.AccountId),
        Column<EntryRow>.Numeric("amount", e => e.Amount));

    /// <summary>How many positional parameters <see cref="WriteCtes"/> takes.</summary>
    public static int ParameterCount => TransactionColumns.Count + EntryColumns.Count;

    /// <summary>
    /// The common table expressions <c>txn</c> and <c>ent</c> that insert transactions and their entries, numbering their
    /// parameters from <paramref name="first"/>. <paramref name="idempotent"/>: a transaction whose (kind, reference) is
    /// taken is skipped with its entries (the statement then answers how many were inserted); otherwise the statement
    /// fails (23505), as the report path wants, whose request row is taken in the same statement.
    /// </summary>
    public static string WriteCtes(int first, bool idempotent)
    {
        var entries = first + TransactionColumns.Count;
        return $"""
            txn AS (
                INSERT INTO ledger_transactions ({TransactionColumns.Names})
                {TransactionColumns.SelectUnnest(first, "t")}
                {(idempotent ? "ON CONFLICT (merchant_id, kind, reference) DO NOTHING RETURNING merchant_id, transaction_id" : "")}
            ), ent AS (
                INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
                SELECT e.merchant_id, e.transaction_id, e.account_id, a.currency, e.amount
                  FROM {EntryColumns.Unnest(entries, "e")}
                  {(idempotent ? "JOIN txn ON txn.merchant_id = e.merchant_id AND txn.transaction_id = e.transaction_id" : "")}
                  JOIN accounts a ON a.merchant_id = e.merchant_id AND a.account_id = e.account_id
            )
            """;
    }

    /// <summary>The parameters of <see cref="WriteCtes"/>, in its order.</summary>
    public static IEnumerable<NpgsqlParameter> Parameters(IReadOnlyList<Row> rows)
    {
        var entries = rows.SelectMany(r => r.Transaction.Postings.Where(p => p.Amount != 0)
            .Select(p => new EntryRow(r.MerchantId, r.Transaction.TransactionId, p.AccountId, p.Amount))).ToList();
        return TransactionColumns.Parameters(rows).Concat(EntryColumns.Parameters(entries));
    }

    private static readonly string PostOne = $"""
        WITH {WriteCtes(1, idempotent: true)}
        SELECT count(*)::int FROM txn
        """;

    /// <summary>
    /// Posts one ledger transaction in the caller's transaction (or alone, without one). Idempotent on (kind, reference):
    /// a second post of the same business event writes nothing and answers false.
    /// </summary>
    public static async Task<bool> PostAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string merchantId, Transaction t, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(PostOne, connection, tx);
        command.Parameters.AddRange(Parameters([new Row(merchantId, t)]).ToArray());
        return (int)(await command.ExecuteScalarAsync(ct))! == 1;
    }
}
