using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

/// <summary>
/// The lock of a customer's three balance rows (every hold, the gateway's on every billed call, and the credit and
/// subscription writes) runs the plan cached on its connection once the statement is prepared, instead of being planned
/// afresh at every execution: with the three accounts as one array parameter PostgreSQL's cached plan always looked
/// dearer than one made for the values, and it planned the statement every time.
/// </summary>
public class CustomerBalancesPlanTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task TheBalanceLockRunsItsCachedPlanOnceItIsPrepared()
    {
        // A ledger of 2,000 customers, analysed: on a table of a few rows every plan costs about the same.
        var m = await App.NewMerchantAsync();
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync(Seed.CustomersWithBalancesSql + "\nANALYZE accounts, account_balances;",
                new { m = m.MerchantId, prefix = "cus_lock_", n = 2000 });
        }
        string[] customers = ["cus_lock_1", "cus_lock_500", "cus_lock_2000"];

        var db = App.Services.GetRequiredService<NpgsqlDataSource>();
        await using var connection = await db.OpenConnectionAsync();
        // Npgsql prepares a statement at its fifth use; PostgreSQL weighs its cached plan after five more.
        for (var i = 0; i < 15; i++)
        {
            await using var tx = await connection.BeginTransactionAsync();
            Assert.NotNull(await CustomerBalances.LockAsync(connection, tx, m.MerchantId, customers[i % 3], CancellationToken.None));
            await tx.CommitAsync();
        }
        var (generic, custom) = await connection.QuerySingleAsync<(long Generic, long Custom)>("""
            SELECT generic_plans, custom_plans FROM pg_prepared_statements
             WHERE statement LIKE '%FROM account_balances%' AND statement LIKE '%FOR UPDATE%'
            """);
        Assert.True(generic > 0, $"the balance lock was planned afresh at each of its {custom} prepared executions");
    }
}
