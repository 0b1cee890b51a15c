using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.Merchants;

public sealed record CreatedMerchant(string MerchantId, string SecretKey);

public sealed class MerchantStore(NpgsqlDataSource db)
{
    private const string InsertMerchant = """
        INSERT INTO merchants (merchant_id, name) VALUES (@MerchantId, @Name)
        """;

    /// <summary>A merchant, its merchant-wide ledger accounts and its first secret key, all or nothing.</summary>
    public async Task<CreatedMerchant> CreateAsync(string name, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var merchantId = Ids.New("mer");
        await connection.ExecuteAsync(new CommandDefinition(InsertMerchant, new { MerchantId = merchantId, Name = name }, tx, cancellationToken: ct));
        await Ledger.LedgerAccounts.CreateMerchantAccountsAsync(connection, tx, merchantId, ct);
        var (_, secret) = await SecretKeyStore.CreateAsync(connection, tx, merchantId, "Default key", KeyScopes.Full, ct);
        await tx.CommitAsync(ct);
        return new CreatedMerchant(merchantId, secret);
    }

    private const string SelectByIdOrName = """
        SELECT merchant_id FROM merchants WHERE merchant_id = @Key OR name = @Key ORDER BY merchant_id LIMIT 10
        """;

    /// <summary>The merchant with this id, or every merchant with this name (operators name merchants, not ids).</summary>
    public async Task<IReadOnlyList<string>> FindAsync(string idOrName, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var ids = (await connection.QueryAsync<string>(new CommandDefinition(SelectByIdOrName, new { Key = idOrName }, cancellationToken: ct))).ToList();
        return ids.Contains(idOrName) ? [idOrName] : ids;
    }
}
