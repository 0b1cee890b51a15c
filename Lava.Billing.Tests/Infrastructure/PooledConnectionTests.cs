using System.Net;
using Microsoft.AspNetCore.Hosting;
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
}
