using System.Net;
using Dapper;
using Lava.Billing.Customers;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>One pooled connection, so every statement of every request runs on the same PostgreSQL session.</summary>
public sealed class SingleConnectionApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("ConnectionStrings:Billing", new NpgsqlConnectionStringBuilder(ConnectionString) { MaxPoolSize = 1 }.ConnectionString);
}

/// <summary>
/// A statement that fails while its parameters are bound must leave its connection usable (docs/input.md, "Why at the
/// edge"): with auto-prepare, the fifth use of a statement on a connection carries its Parse, and a failure at Bind
/// then left Npgsql believing the statement was prepared without its row description.
/// </summary>
public class PooledConnectionTests(SingleConnectionApp app) : IClassFixture<SingleConnectionApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task AStatementRefusedForANulDoesNotBreakTheNextUseOfItOnTheSameConnection()
    {
        var m = await app.NewMerchantAsync();
        var customerId = await app.CustomerAsync(m.MerchantId);
        var valid = $"/v1/ledger/accounts?customer_id={customerId}";
        // Fresh sessions, so the statement's uses are counted from zero on the one connection.
        NpgsqlConnection.ClearAllPools();
        for (var i = 0; i < 4; i++) Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync(valid)).Status);

        var nul = await m.Client.GetJsonAsync(valid + "%00");
        Assert.Equal(HttpStatusCode.BadRequest, nul.Status);

        for (var i = 0; i < 3; i++)
        {
            var r = await m.Client.GetJsonAsync(valid);
            Assert.True(r.Status == HttpStatusCode.OK, $"use {i + 6}: {(int)r.Status} {r.Body?.ToJsonString()}");
            Assert.Equal(3, r.Body!["data"]!.AsArray().Count);
        }
    }

    // The same statement refused at Bind, without the edge: the store is called directly, on the service's own data
    // source (one connection), so only the connection guard stands between the failure and the next caller.
    [Fact]
    public async Task AStoreCalledDirectlyWithTextPostgreSqlRefusesLeavesItsConnectionUsable()
    {
        var m = await app.NewMerchantAsync();
        var customerId = await app.CustomerAsync(m.MerchantId);
        var store = app.Services.GetRequiredService<CustomerStore>();
        app.Services.GetRequiredService<NpgsqlDataSource>().Clear();
        for (var i = 0; i < 4; i++) Assert.True(await store.ExistsAsync(m.MerchantId, customerId, CancellationToken.None));

        var refused = await Assert.ThrowsAsync<PostgresException>(() => store.ExistsAsync(m.MerchantId, "cus_\0", CancellationToken.None));
        Assert.Equal(PostgresErrorCodes.CharacterNotInRepertoire, refused.SqlState);

        for (var i = 0; i < 3; i++) Assert.True(await store.ExistsAsync(m.MerchantId, customerId, CancellationToken.None));
    }

    // A value clean as text that PostgreSQL cannot convert while it plans the statement with its values (a custom plan
    // folds the cast): the same path as a NUL, with nothing the edge could have refused.
    [Fact]
    public async Task ACastThatFailsWhileTheStatementIsPlannedLeavesTheConnectionUsable()
    {
        const string sql = "SELECT CAST(@Value AS integer) + n FROM generate_series(1, 2) AS n";
        var source = app.Services.GetRequiredService<NpgsqlDataSource>();
        source.Clear();
        async Task<int[]> RunAsync(string value)
        {
            await using var connection = await source.OpenConnectionAsync();
            return (await connection.QueryAsync<int>(sql, new { Value = value })).ToArray();
        }
        for (var i = 0; i < 4; i++) Assert.Equal(new[] { 11, 12 }, await RunAsync("10"));

        var refused = await Assert.ThrowsAsync<PostgresException>(() => RunAsync("ten"));
        Assert.Equal(PostgresErrorCodes.InvalidTextRepresentation, refused.SqlState);

        for (var i = 0; i < 3; i++) Assert.Equal(new[] { 21, 22 }, await RunAsync("20"));
    }
}
