using System.Net;
using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Npgsql;

namespace Lava.Billing.Tests.Finance;

/// <summary>The service with ConnectionStrings:BillingReadOnly pointing at a role that can only SELECT.</summary>
public sealed class ReadReplicaLavaApp : LavaApp
{
    public const string Role = "lava_finance_reader";

    public string ReadOnlyConnectionString =>
        new NpgsqlConnectionStringBuilder(ConnectionString) { Username = Role, Password = Role + "_pw" }.ConnectionString;

    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("ConnectionStrings:BillingReadOnly", ReadOnlyConnectionString);

    public async Task GrantReaderAsync()
    {
        await using var admin = new NpgsqlConnection(AdminConnectionString);
        await admin.ExecuteAsync($"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{Role}') THEN
                    CREATE ROLE {Role} LOGIN PASSWORD '{Role}_pw';
                END IF;
            END $$;
            GRANT SELECT ON ALL TABLES IN SCHEMA public TO {Role};
            """);
    }
}

/// <summary>Exports and analytics read from the read data source; nothing they do needs more than SELECT there.</summary>
public class ReadReplicaTests(ReadReplicaLavaApp app) : IClassFixture<ReadReplicaLavaApp>, IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        await app.GrantReaderAsync();
        await app.ResetAsync();
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task FinanceReadsWorkOnAConnectionThatCannotWrite()
    {
        await using (var reader = new NpgsqlConnection(app.ReadOnlyConnectionString))
        {
            var refused = await Assert.ThrowsAsync<PostgresException>(() => reader.ExecuteAsync("DELETE FROM entry_unsequenced"));
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, refused.SqlState);
        }
        var m = await app.NewMerchantAsync();
        var customer = await app.CustomerAsync(m.MerchantId);
        await app.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        await app.GrantAsync(m.MerchantId, customer, 1m);
        var transactionId = await m.ReportAsync("r1", customer, "gpt", cost: "0.5", metadata: new() { ["team"] = "core" });
        var client = app.ClientWithKey(await m.ReadOnlyKeyAsync());

        var csv = await client.GetStringAsync("/v1/ledger/entries?format=csv");
        Assert.Equal(1 + 7, csv.Split("\r\n", StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains("r1", await client.GetStringAsync("/v1/requests?format=ndjson"));
        var usage = (await client.GetJsonAsync("/v1/usage?start=2026-01-01")).Body!;
        Assert.Equal("2.0000000000", (string)usage["totals"]!["total_charge"]!);
        foreach (var path in new[]
                 {
                     "/v1/ledger/accounts", "/v1/ledger/trial-balance", $"/v1/ledger/transactions/{transactionId}",
                     $"/v1/customers/{customer}/statement", "/v1/ledger/entries", "/v1/ledger/verify",
                 })
        {
            var r = await client.GetJsonAsync(path);
            Assert.True(r.Status == HttpStatusCode.OK, $"{path}: {(int)r.Status} {r.Body?.ToJsonString()}");
        }
    }
}
