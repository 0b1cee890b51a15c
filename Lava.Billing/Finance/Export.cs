using System.Data;
using System.IO.Pipelines;
using Dapper;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Microsoft.Net.Http.Headers;

namespace Lava.Billing.Finance;

public enum ExportFormat { Json, Csv, Ndjson }

/// <summary>
/// How a column is written: CSV gets text, NDJSON gets the JSON type (money and timestamps as strings). Debit and Credit
/// are money the query does not return: the row's last Money column when positive (debit) or its negation when negative
/// (credit), else 0, so PostgreSQL neither computes nor sends them.
/// </summary>
public enum ColumnKind { Text, Integer, Number, Money, Timestamp, Json, Debit, Credit }

public sealed record ExportColumn(string Name, ColumnKind Kind);

/// <summary>How an export's rows come in its order.</summary>
public enum ExportPlan
{
    /// <summary>Whatever plan PostgreSQL prefers, a sort of what matched included: a filter that an index serves unordered.</summary>
    Chosen,

    /// <summary>
    /// Walking an index in the export's order, so the first row leaves at once. PostgreSQL itself prefers to collect a
    /// merchant's rows and sort them all first once they are spread among other merchants' rows (a million entries:
    /// seconds before the first byte); sorting is switched off for the export's transaction.
    /// </summary>
    InIndexOrder,
}

/// <summary>
/// Streams a query's rows as CSV or NDJSON (docs/exports.md): one REPEATABLE READ, READ ONLY snapshot, rows read one
/// at a time and written as UTF-8 straight into the response body (<see cref="ExportWriter"/>), flushed every
/// <see cref="FlushBytes"/>, so memory stays constant whatever the size and the first bytes leave before the last row
/// is read. Exports run on their own pool and within <see cref="ExportLimits"/>.
/// </summary>
public static class Exports
{
    /// <summary>Rows a customer statement writes between flushes.</summary>
    public const int FlushEveryRows = 1_000;

    /// <summary>Bytes an export writes between flushes: about 250 ledger entries.</summary>
    public const int FlushBytes = 64 * 1024;

    /// <summary>Generous (a large export scans a lot before its first row), never unbounded.</summary>
    public const int CommandTimeoutSeconds = 600;

    public const string CsvMediaType = "text/csv";
    public const string NdjsonMediaType = "application/x-ndjson";

    /// <summary><c>format=json|csv|ndjson</c> wins; otherwise the Accept header picks CSV or NDJSON; otherwise JSON.</summary>
    public static bool TryNegotiate(HttpRequest request, string? format, out ExportFormat result, out ProblemResult? problem)
    {
        problem = null;
        result = ExportFormat.Json;
        switch (format)
        {
            case null or "":
                break;
            case "json":
                return true;
            case "csv":
                result = ExportFormat.Csv;
                return true;
            case "ndjson":
                result = ExportFormat.Ndjson;
                return true;
            default:
                problem = Problems.Validation(new Dictionary<string, string[]> { ["format"] = ["must be json, csv or ndjson"] });
                return false;
        }
        // The most preferred type we can produce wins; JSON (or anything) listed first stays JSON.
        foreach (var accept in request.GetTypedHeaders().Accept.OrderByDescending(a => a.Quality ?? 1))
        {
            var type = accept.MediaType.Value ?? "";
            if (type.Equals(CsvMediaType, StringComparison.OrdinalIgnoreCase)) result = ExportFormat.Csv;
            else if (type.Equals(NdjsonMediaType, StringComparison.OrdinalIgnoreCase)) result = ExportFormat.Ndjson;
            else if (type is not ("application/json" or "application/*" or "*/*")) continue;
            break;
        }
        return true;
    }

    public static IResult Stream(ReadDataSource db, ExportFormat format, string fileStem, IReadOnlyList<ExportColumn> columns,
        string sql, object args, ExportPlan plan) => new ExportResult(db, format, fileStem, columns, sql, args, plan);

    /// <summary>What the export's transaction sets before its query (read only, its plan's settings).</summary>
    internal static string Settings(ExportPlan plan) => plan == ExportPlan.InIndexOrder ? Snapshot + ";\n" + InIndexOrder : Snapshot;

    // Sorting costs the planner more than anything else then, so the order comes from the index the query walks; a sort
    // of one key's few rows (the entries of one ledger transaction: an incremental sort) is not affected.
    private const string InIndexOrder = "SET LOCAL enable_sort = off";

    // An export is one long read: JIT compiling its plan (the whole ledger costs far above jit_above_cost) only delays
    // the first row, and a plan cached for other filter values (a generic plan of "@X IS NULL OR …") would read the
    // whole ledger for a narrow filter.
    private const string Snapshot = """
        SET TRANSACTION READ ONLY;
        SET LOCAL jit = off;
        SET LOCAL plan_cache_mode = force_custom_plan
        """;

    private sealed class ExportResult(ReadDataSource db, ExportFormat format, string fileStem, IReadOnlyList<ExportColumn> columns,
        string sql, object args, ExportPlan plan) : IResult
    {
        public async Task ExecuteAsync(HttpContext http)
        {
            try
            {
                await http.RequestServices.GetRequiredService<ExportLimits>().RunAsync(http, ct => StreamAsync(http, ct));
            }
            catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
            {
                // The client went away mid-export; the reader's cancellation already stopped the query.
            }
        }

        private async Task StreamAsync(HttpContext http, CancellationToken ct)
        {
            await using var connection = await db.Exports.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
            await connection.ExecuteAsync(new CommandDefinition(Settings(plan), transaction: tx, cancellationToken: ct));
            await using (var reader = await connection.ExecuteReaderAsync(
                             new CommandDefinition(sql, args, tx, CommandTimeoutSeconds, cancellationToken: ct), CommandBehavior.SequentialAccess))
            {
                var csv = format == ExportFormat.Csv;
                http.Response.StatusCode = StatusCodes.Status200OK;
                http.Response.ContentType = csv ? CsvMediaType + "; charset=utf-8" : NdjsonMediaType + "; charset=utf-8";
                http.Response.Headers[HeaderNames.ContentDisposition] = $"attachment; filename=\"{fileStem}.{(csv ? "csv" : "ndjson")}\"";
                // Our own writer on the body (the stall-limited stream): its buffers are a flush's worth, so each
                // flush is a few large writes to the socket rather than one per 4 KB segment.
                var body = PipeWriter.Create(http.Response.Body, new StreamPipeWriterOptions(minimumBufferSize: FlushBytes, leaveOpen: true));
                var rows = csv ? await ExportWriter.WriteCsvAsync(body, reader, columns, ct) : await ExportWriter.WriteNdjsonAsync(body, reader, columns, ct);
                LavaMetrics.Exported(csv ? "csv" : "ndjson", rows);
                await body.CompleteAsync();
            }
            await tx.CommitAsync(ct);
        }
    }
}
