using Dapper;
using Lava.Billing.Forward;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Forward;

/// <summary>The settle worker deletes records of calls settled long ago, and only those (docs/gateway.md, "Retention").</summary>
public class ForwardCallRetentionTests(LavaApp app) : IClassFixture<LavaApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private ForwardSettler Settler(int retainDays) => new(
        app.Services.GetRequiredService<ForwardCallStore>(), app.Services.GetRequiredService<ForwardBilling>(),
        ForwardOptions.From(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Forward:RetainSettledCallsDays"] = retainDays.ToString() }).Build()),
        TimeProvider.System, NullLogger<ForwardSettler>.Instance);

    /// <summary>
    /// Records last changed <paramref name="daysAgo"/> days ago, named by their request id. Unsettled ones are due only
    /// tomorrow, so the service's own settle worker leaves them alone.
    /// </summary>
    private async Task InsertAsync(string merchantId, string requestId, string state, int daysAgo, string? anomaly = null, int count = 1)
    {
        await using var c = new NpgsqlConnection(app.ConnectionString);
        await c.ExecuteAsync("""
            INSERT INTO forward_calls (merchant_id, request_id, state, mode, call, anomaly, served_at, next_attempt_at, created_at, updated_at)
            SELECT @m, @r || CASE WHEN @count = 1 THEN '' ELSE '_' || n END, @state, 'gateway', '{}', @anomaly,
                   CASE WHEN @state IN ('pending', 'released') THEN NULL ELSE now() - make_interval(days => @days) END,
                   now() + interval '1 day', now() - make_interval(days => @days), now() - make_interval(days => @days)
              FROM generate_series(1, @count) AS n
            """, new { m = merchantId, r = requestId, state, days = daysAgo, anomaly, count });
    }

    private async Task<string[]> RemainingAsync(string merchantId)
    {
        await using var c = new NpgsqlConnection(app.ConnectionString);
        return (await c.QueryAsync<string>("SELECT request_id FROM forward_calls WHERE merchant_id = @m ORDER BY request_id",
            new { m = merchantId })).ToArray();
    }

    [Fact]
    public async Task OnlyCallsSettledWithoutTroubleLongerAgoThanTheRetentionAreDeleted()
    {
        var m = await app.NewMerchantAsync();
        var other = await app.NewMerchantAsync("Other merchant");
        await InsertAsync(m.MerchantId, "old_posted", "posted", 36);
        await InsertAsync(other.MerchantId, "old_released", "released", 40);
        await InsertAsync(m.MerchantId, "old_refused", "refused", 40);
        await InsertAsync(m.MerchantId, "old_flagged", "posted", 40, anomaly: "recovered_after_crash");
        await InsertAsync(m.MerchantId, "old_pending", "pending", 40);
        await InsertAsync(m.MerchantId, "old_served", "served", 40);
        await InsertAsync(m.MerchantId, "recent_posted", "posted", 34);

        Assert.Equal(2, await Settler(35).PruneAsync(CancellationToken.None));

        Assert.Equal(["old_flagged", "old_pending", "old_refused", "old_served", "recent_posted"], await RemainingAsync(m.MerchantId));
        Assert.Empty(await RemainingAsync(other.MerchantId));
    }

    [Fact]
    public async Task ABacklogGoesOneSmallBatchPerRoundUntilNoneIsLeft()
    {
        var m = await app.NewMerchantAsync();
        await InsertAsync(m.MerchantId, "old", "posted", 50, count: ForwardSettler.PruneBatch + 20);
        var settler = Settler(35);

        Assert.Equal(ForwardSettler.PruneBatch, await settler.PruneAsync(CancellationToken.None));
        Assert.Equal(20, await settler.PruneAsync(CancellationToken.None));
        // None left: the next look is an hour away, even for a record that has just grown old enough.
        await InsertAsync(m.MerchantId, "later", "posted", 50);
        Assert.Equal(0, await settler.PruneAsync(CancellationToken.None));
        Assert.Equal(["later"], await RemainingAsync(m.MerchantId));
    }

    [Fact]
    public async Task ARetentionOfZeroDaysKeepsEveryRecord()
    {
        var m = await app.NewMerchantAsync();
        await InsertAsync(m.MerchantId, "ancient", "posted", 3000);

        Assert.Equal(0, await Settler(0).PruneAsync(CancellationToken.None));
        Assert.Equal(["ancient"], await RemainingAsync(m.MerchantId));
    }
}
