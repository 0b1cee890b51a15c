using Lava.Billing.Requests.Posting;
using Npgsql;

namespace Lava.Billing.Requests;

/// <summary>A stored report, answered exactly as it was when it was created.</summary>
public sealed class RequestStore(NpgsqlDataSource db)
{
    public sealed record Stored(int StatusCode, string Response);

    private const string SelectOne = $"""
        SELECT r.status_code, {StoredReport.ResponseSql}
          FROM requests r
          {StoredReport.JoinTransaction}
         WHERE r.merchant_id = $1 AND r.request_id = $2
        """;

    public async Task<Stored?> FindAsync(string merchantId, string requestId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand(SelectOne, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = merchantId });
        command.Parameters.Add(new NpgsqlParameter { Value = requestId });
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? new Stored(reader.GetInt16(0), StoredReport.Body(reader.GetString(1))) : null;
    }
}
