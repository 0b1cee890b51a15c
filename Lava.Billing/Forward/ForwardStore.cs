using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.Forward;

/// <summary>What the gateway itself writes and reads; priced usage goes through the Requests feature's poster.</summary>
public sealed class ForwardStore(NpgsqlDataSource db)
{
    public sealed record GatewayCall(
        string MerchantId, string RequestId, string TransactionId, string? CustomerId,
        string LineageJson, DateTimeOffset At, IReadOnlyList<Posting> Postings);

    /// <summary>
    /// A gateway call that charges nobody: one ledger transaction (kind <c>gateway</c>, reference = request id)
    /// carrying its lineage, with the provider cost as expense when it is known (docs/ledger.md); a repeat of the request
    /// id writes nothing.
    /// </summary>
    public async Task RecordGatewayCallAsync(GatewayCall call, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await LedgerWriter.PostAsync(connection, null, call.MerchantId, new LedgerWriter.Transaction(call.TransactionId, LedgerKinds.Gateway,
            call.RequestId, call.CustomerId, call.At, call.Postings, call.LineageJson) { CreatedAt = call.At }, ct);
    }
}
