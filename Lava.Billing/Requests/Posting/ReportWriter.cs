using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// The write step: one statement writes every request, ledger transaction (with its entries, through
/// <see cref="LedgerWriter"/>), usage total and hold capture that a planned batch produced. Each table's columns are
/// declared once below; the statement's column lists, unnests and parameters are made from them.
/// </summary>
public static class ReportWriter
{
    public sealed record NewRequest(
        string MerchantId, string RequestId, byte[] Fingerprint, string Mode, string? CustomerId, string MeterId, int PriceVersion,
        Pricing.Usage Usage, decimal? Cost, decimal ChargeAmount, string MetadataJson, DateTimeOffset OccurredAt, DateTimeOffset CreatedAt,
        string TransactionId, int StatusCode, string Response, string? HoldId);

    public sealed record UsageIncrement(string MerchantId, string MeterId, string CustomerKey, DateTimeOffset PeriodStart, decimal Quantity);

    public sealed record HoldCapture(string MerchantId, string HoldId, decimal Charge, string RequestId, DateTimeOffset At);

    /// <summary>What a planned batch writes. Ledger transactions carry their entries.</summary>
    public sealed record Writes(
        List<NewRequest> Requests, List<LedgerWriter.Row> Transactions, List<UsageIncrement> Usage, List<HoldCapture> Holds);

    private static readonly Columns<NewRequest> RequestColumns = new(
        Column<NewRequest>.Text("merchant_id", r => r.MerchantId),
        Column<NewRequest>.Text("request_id", r => r.RequestId),
        Column<NewRequest>.Bytea("fingerprint", r => r.Fingerprint),
        Column<NewRequest>.Text("mode", r => r.Mode),
        Column<NewRequest>.Text("customer_id", r => r.CustomerId),
        Column<NewRequest>.Text("meter_id", r => r.MeterId),
        Column<NewRequest>.Integer("price_version", r => r.PriceVersion),
        Column<NewRequest>.Bigint("input_tokens", r => r.Usage.InputTokens),
        Column<NewRequest>.Bigint("output_tokens", r => r.Usage.OutputTokens),
        Column<NewRequest>.Bigint("input_characters", r => r.Usage.InputCharacters),
        Column<NewRequest>.Bigint("output_characters", r => r.Usage.OutputCharacters),
        Column<NewRequest>.Numeric("input_seconds", r => r.Usage.InputSeconds),
        Column<NewRequest>.Numeric("output_seconds", r => r.Usage.OutputSeconds),
        Column<NewRequest>.Numeric("cost", r => r.Cost),
        Column<NewRequest>.Numeric("charge_amount", r => r.ChargeAmount),
        Column<NewRequest>.Jsonb("metadata", r => r.MetadataJson),
        Column<NewRequest>.TimestampTz("occurred_at", r => r.OccurredAt),
        Column<NewRequest>.TimestampTz("created_at", r => r.CreatedAt),
        Column<NewRequest>.Text("transaction_id", r => r.TransactionId),
        Column<NewRequest>.Smallint("status_code", r => (short)r.StatusCode),
        Column<NewRequest>.Text("response", r => r.Response),
        Column<NewRequest>.Text("hold_id", r => r.HoldId));

    private static readonly Columns<UsageIncrement> UsageColumns = new(
        Column<UsageIncrement>.Text("merchant_id", u => u.MerchantId),
        Column<UsageIncrement>.Text("meter_id", u => u.MeterId),
        Column<UsageIncrement>.Text("customer_id", u => u.CustomerKey),
        Column<UsageIncrement>.TimestampTz("period_start", u => u.PeriodStart),
        Column<UsageIncrement>.Numeric("quantity", u => u.Quantity));

    private static readonly Columns<HoldCapture> HoldColumns = new(
        Column<HoldCapture>.Text("merchant_id", h => h.MerchantId),
        Column<HoldCapture>.Text("hold_id", h => h.HoldId),
        Column<HoldCapture>.Numeric("charge", h => h.Charge),
        Column<HoldCapture>.Text("request_id", h => h.RequestId),
        Column<HoldCapture>.TimestampTz("at", h => h.At));

    private const int RequestsFrom = 1;
    private static readonly int LedgerFrom = RequestsFrom + RequestColumns.Count;
    private static readonly int UsageFrom = LedgerFrom + LedgerWriter.ParameterCount;
    private static readonly int HoldsFrom = UsageFrom + UsageColumns.Count;

    // A plain INSERT: a request id taken meanwhile by another transaction fails the whole statement (23505), and the poster
    // retries the batch, which then answers it as a replay. Two texts: with the hold captures (the gateway's reports),
    // and without them, so that a batch capturing none never touches holds, a table many ledgers leave empty.
    private static string WriteAll(bool holds) => $"""
        WITH req AS (
            INSERT INTO requests ({RequestColumns.Names})
            {RequestColumns.SelectUnnest(RequestsFrom, "r")}
        ), {LedgerWriter.WriteCtes(LedgerFrom, idempotent: false)}, used AS (
            UPDATE usage_totals u SET quantity = u.quantity + d.quantity
              FROM {UsageColumns.Unnest(UsageFrom, "d")}
             WHERE u.merchant_id = d.merchant_id AND u.meter_id = d.meter_id AND u.customer_id = d.customer_id
               AND u.period_start = d.period_start
        ){(holds ? $"""
        , captured AS (
            UPDATE holds h SET status = 'captured', captured_amount = least(h.amount, c.charge), request_id = c.request_id, closed_at = c.at
              FROM {HoldColumns.Unnest(HoldsFrom, "c")}
             WHERE h.merchant_id = c.merchant_id AND h.hold_id = c.hold_id AND h.status = 'active'
        )
        """ : "")}
        SELECT 1
        """;

    private static readonly string WithHolds = WriteAll(holds: true);
    private static readonly string WithoutHolds = WriteAll(holds: false);

    /// <summary>
    /// The tables the write looks rows up in (accounts for the entries' currency, usage totals to add to, and holds when
    /// it captures some): whether it may run its cached plan (<see cref="PostingPlans"/>). The tables it only inserts into
    /// plan nothing; their triggers plan their own statements.
    /// </summary>
    public static readonly string[] TablesRead = ["accounts", "usage_totals"];

    /// <inheritdoc cref="TablesRead"/>
    public static readonly string[] TablesReadCapturingHolds = [.. TablesRead, "holds"];

    /// <summary>
    /// Whether the write of <paramref name="w"/> runs its cached plan: its tables analysed with rows. An UPDATE joined to
    /// its keys may be turned round, the table read whole on the outer side, where the table is estimated at one row; a
    /// read's lateral lookups cannot be, which is why a read may cache its plan on a table analysed empty and the write
    /// may not (ReportPlanEmptyTablesTests, where the capture of holds analysed empty read holds_pkey whole). The capture
    /// also waits for holds to be analysed with <see cref="PostingPlans.HoldsForCachedCapture"/> rows: analysed with 50,
    /// its plan read the active holds' index whole (ReportPlanSmallLedgerTests).
    /// </summary>
    public static bool RunsCachedPlan(Writes w, PostingPlans plans) =>
        w.Holds.Count > 0
            ? plans.Generic(TablesReadCapturingHolds, rowsRequired: true) && plans.AnalysedWithAtLeast("holds", PostingPlans.HoldsForCachedCapture)
            : plans.Generic(TablesRead, rowsRequired: true);

    public static NpgsqlBatchCommand Command(Writes w)
    {
        var holds = w.Holds.Count > 0;
        var command = new NpgsqlBatchCommand(holds ? WithHolds : WithoutHolds);
        command.Parameters.AddRange(RequestColumns.Parameters(w.Requests)
            .Concat(LedgerWriter.Parameters(w.Transactions))
            .Concat(UsageColumns.Parameters(w.Usage)).ToArray());
        if (holds) command.Parameters.AddRange(HoldColumns.Parameters(w.Holds).ToArray());
        return command;
    }
}
