using Dapper;
using Lava.Billing.Checkout;
using Lava.Billing.Credits;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Plans;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Checkout;

/// <summary>
/// Sessions made while tokens were stored as they are keep working once only their hash is kept: the migration hashes
/// in PostgreSQL what the service hashes in C#, so the test page still finds a session by the token its buyer holds.
/// </summary>
public class CheckoutTokenMigrationTests : IAsyncLifetime
{
    private const int HashedFrom = 310;

    private string _database = "";

    public async Task InitializeAsync() => _database = await TestDatabase.CreateEmptyAsync();

    public Task DisposeAsync() => TestDatabase.DropAsync(_database);

    [Fact]
    public async Task ASessionStoredWithItsTokenIsFoundByThatTokenAfterTheMigration()
    {
        await using var db = NpgsqlDataSource.Create(TestDatabase.For(TestDatabase.OwnerConnectionString, _database));
        await TestDatabase.ApplyMigrationsAsync(_database, v => v < HashedFrom);
        await using (var c = await db.OpenConnectionAsync())
        {
            // A backslash and a character outside ASCII: bytes a cast to bytea or another encoding would get wrong.
            await c.ExecuteAsync("""
                INSERT INTO merchants (merchant_id, name) VALUES ('mer_old', 'Old');
                INSERT INTO checkout_sessions (merchant_id, checkout_session_id, token, checkout_mode, origin_url, plan_id, amount, test_mode, expires_at)
                VALUES ('mer_old', 'cs_plain', 'cst_plain', 'subscription', 'https://shop.example', 'pln_old', 1, true, now() + interval '1 day'),
                       ('mer_old', 'cs_odd', E'cst_a\\00\u00e9', 'subscription', 'https://shop.example', 'pln_old', 1, true, now() + interval '1 day');
                """);
        }
        await TestDatabase.ApplyMigrationsAsync(_database, v => v >= HashedFrom);

        // The store's rows map by column name as the service maps them, set when it registers its database.
        DefaultTypeMap.MatchNamesWithUnderscores = true;
        var sessions = new CheckoutStore(db, new CreditStore(db), new PlanStore(db));
        Assert.Equal("cs_plain", (await sessions.FindByTokenAsync("cst_plain", CancellationToken.None))?.Session.CheckoutSessionId);
        Assert.Equal("cs_odd", (await sessions.FindByTokenAsync("cst_a\\00\u00e9", CancellationToken.None))?.Session.CheckoutSessionId);
        Assert.Null(await sessions.FindByTokenAsync("cst_a00\u00e9", CancellationToken.None));
    }
}
