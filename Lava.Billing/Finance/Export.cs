using System.Buffers;
using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Json;
using CsvHelper;
using CsvHelper.Configuration;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Microsoft.Net.Http.Headers;

namespace Lava.Billing.Finance;

public enum ExportFormat { Json, Csv, Ndjson }

/// <summary>How a column is written: CSV gets text, NDJSON gets the JSON type (money and timestamps as strings).</summary>
public enum ColumnKind { Text, Integer, Number, Money, Timestamp, Json }

public sealed record ExportColumn(string Name, ColumnKind Kind);

/// <summary>
/// Streams a query's rows as CSV or NDJSON (docs/exports.md): one REPEATABLE READ, READ ONLY snapshot, rows read one
/// at a time and written straight to the response body, flushed every <see cref="FlushEveryRows"/> rows, so memory
/// stays constant whatever the size and the first bytes leave before the last row is read. Exports run on their own
/// pool and within <see cref="ExportLimits"/>.
/// </summary>
public static class Exports
{
    public const int FlushEveryRows = 1_000;

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
        string sql, object args) => new ExportResult(db, format, fileStem, columns, sql, args);

    private sealed class ExportResult(ReadDataSource db, ExportFormat format, string fileStem, IReadOnlyList<ExportColumn> columns,
        string sql, object args) : IResult
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
            await connection.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: tx, cancellationToken: ct));
            await using (var reader = await connection.ExecuteReaderAsync(
                             new CommandDefinition(sql, args, tx, CommandTimeoutSeconds, cancellationToken: ct), CommandBehavior.SequentialAccess))
            {
                var csv = format == ExportFormat.Csv;
                http.Response.StatusCode = StatusCodes.Status200OK;
                http.Response.ContentType = csv ? CsvMediaType + "; charset=utf-8" : NdjsonMediaType + "; charset=utf-8";
                http.Response.Headers[HeaderNames.ContentDisposition] = $"attachment; filename=\"{fileStem}.{(csv ? "csv" : "ndjson")}\"";
                if (csv) await WriteCsvAsync(http.Response, reader, ct);
                else await WriteNdjsonAsync(http.Response, reader, ct);
            }
            await tx.CommitAsync(ct);
        }

        private async Task WriteCsvAsync(HttpResponse response, DbDataReader reader, CancellationToken ct)
        {
            await using var text = new StreamWriter(response.Body, new UTF8Encoding(false), 16 * 1024, leaveOpen: true);
            await using var csv = new CsvWriter(text, new CsvConfiguration(CultureInfo.InvariantCulture), leaveOpen: true);
            foreach (var column in columns) csv.WriteField(column.Name);
            await csv.NextRecordAsync();
            var rows = 0;
            while (await reader.ReadAsync(ct))
            {
                for (var i = 0; i < columns.Count; i++) csv.WriteField(CsvText(reader, i, columns[i].Kind));
                await csv.NextRecordAsync();
                if (++rows % FlushEveryRows == 0) await csv.FlushAsync();
            }
            LavaMetrics.Exported("csv", rows);
            await csv.FlushAsync();
        }

        private async Task WriteNdjsonAsync(HttpResponse response, DbDataReader reader, CancellationToken ct)
        {
            var pipe = response.BodyWriter;
            await using var json = new Utf8JsonWriter(pipe);
            var rows = 0;
            while (await reader.ReadAsync(ct))
            {
                json.WriteStartObject();
                for (var i = 0; i < columns.Count; i++)
                {
                    json.WritePropertyName(columns[i].Name);
                    WriteJson(json, reader, i, columns[i].Kind);
                }
                json.WriteEndObject();
                json.Flush();
                pipe.Write("\n"u8);
                json.Reset();
                if (++rows % FlushEveryRows == 0) await pipe.FlushAsync(ct);
            }
            LavaMetrics.Exported("ndjson", rows);
            await pipe.FlushAsync(ct);
        }
    }

    private static string? CsvText(DbDataReader reader, int i, ColumnKind kind) => reader.IsDBNull(i) ? null : kind switch
    {
        ColumnKind.Integer => reader.GetInt64(i).ToString(CultureInfo.InvariantCulture),
        ColumnKind.Number => Canonical(reader.GetDecimal(i)),
        ColumnKind.Money => Money.Format(reader.GetDecimal(i)),
        ColumnKind.Timestamp => Timestamp(reader.GetFieldValue<DateTime>(i)),
        _ => reader.GetString(i),
    };

    private static void WriteJson(Utf8JsonWriter json, DbDataReader reader, int i, ColumnKind kind)
    {
        if (reader.IsDBNull(i))
        {
            json.WriteNullValue();
            return;
        }
        switch (kind)
        {
            case ColumnKind.Integer: json.WriteNumberValue(reader.GetInt64(i)); break;
            case ColumnKind.Number: json.WriteRawValue(Canonical(reader.GetDecimal(i)), skipInputValidation: true); break;
            case ColumnKind.Money: json.WriteStringValue(Money.Format(reader.GetDecimal(i))); break;
            case ColumnKind.Timestamp: json.WriteStringValue(Timestamp(reader.GetFieldValue<DateTime>(i))); break;
            case ColumnKind.Json: json.WriteRawValue(reader.GetString(i)); break;
            default: json.WriteStringValue(reader.GetString(i)); break;
        }
    }

    /// <summary>UTC with the database's microsecond precision: <c>2026-03-01T08:15:00.123456Z</c>.</summary>
    private static string Timestamp(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    private static string Canonical(decimal d) => d.ToString("0.############################", CultureInfo.InvariantCulture);
}
