using System.Net;
using Lava.Billing.SpendKeys;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.SpendKeys;

public class SpendKeyLimitsTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    private SpendKeyLimits Limits => App.Services.GetRequiredService<SpendKeyLimits>();

    private Task<(SpendKeyGrant? Grant, SpendKeyRefusal? Refusal, TimeSpan? RetryAfter)> ReserveAsync(string key, string model, string provider,
        decimal worstCase, decimal estimate = 0m) =>
        Limits.ReserveAsync(key, new SpendKeyCall(model, provider, worstCase, estimate, TimeSpan.FromMinutes(10)), CancellationToken.None);

    private async Task<(LavaApp.Merchant M, string Id, string Key)> KeyAsync(object body)
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", body);
        Assert.Equal(HttpStatusCode.Created, created.Status);
        return (m, (string)created.Body!["spend_key_id"]!, (string)created.Body["key"]!);
    }

    private async Task<List<(SpendKeyGrant? Grant, SpendKeyRefusal? Refusal, TimeSpan? RetryAfter)>> FiftyAtOnceAsync(string key, decimal worstCase)
    {
        using var start = new ManualResetEventSlim();
        var calls = Enumerable.Range(0, 50).Select(_ => Task.Run(async () =>
        {
            start.Wait();
            return await ReserveAsync(key, "gpt-4o", "openai", worstCase);
        })).ToList();
        start.Set();
        return (await Task.WhenAll(calls)).ToList();
    }

    [Fact]
    public async Task FiftyConcurrentCallsAgainstABudgetForExactlyThreeGrantExactlyThree()
    {
        var (m, id, key) = await KeyAsync(new { name = "budget", spend_limit = new { amount = "3.00", cycle = "total" } });
        var results = await FiftyAtOnceAsync(key, 1.00m);
        Assert.Equal(3, results.Count(r => r.Grant is not null));
        Assert.Equal(47, results.Count(r => r.Refusal == SpendKeyRefusal.SpendLimitReached));
        Assert.Equal(3, await App.QueryAsync<long>("SELECT count(*) FROM spend_key_charges WHERE spend_key_id = @Id", new { Id = id }));
        Assert.Equal(3, (long)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["current_requests"]!);
    }

    [Fact]
    public async Task FiftyConcurrentCallsAgainstARequestLimitOfThreeGrantExactlyThree()
    {
        var (_, _, key) = await KeyAsync(new { name = "count", request_limit = new { count = 3, cycle = "daily" } });
        var results = await FiftyAtOnceAsync(key, 0m);
        Assert.Equal(3, results.Count(r => r.Grant is not null));
        Assert.All(results.Where(r => r.Grant is null), r => Assert.Equal(SpendKeyRefusal.RequestLimitReached, r.Refusal));
    }

    [Fact]
    public async Task ADailyLimitResetsAtUtcMidnightAndSaysWhenItWill()
    {
        App.Clock.Set(new DateTimeOffset(2026, 1, 15, 23, 59, 30, TimeSpan.Zero));
        var (_, _, key) = await KeyAsync(new { name = "daily", request_limit = new { count = 1, cycle = "daily" } });
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        var refused = await ReserveAsync(key, "gpt-4o", "openai", 0m);
        Assert.Equal(SpendKeyRefusal.RequestLimitReached, refused.Refusal);
        Assert.Equal(TimeSpan.FromSeconds(30), refused.RetryAfter);
        App.Clock.Advance(TimeSpan.FromSeconds(30));
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
    }

    [Fact]
    public async Task AWeeklyLimitResetsOnMondayAtUtcMidnight()
    {
        App.Clock.Set(new DateTimeOffset(2026, 1, 18, 23, 59, 59, TimeSpan.Zero));
        Assert.Equal(DayOfWeek.Sunday, App.Clock.GetUtcNow().DayOfWeek);
        var (_, _, key) = await KeyAsync(new { name = "weekly", request_limit = new { count = 1, cycle = "weekly" } });
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        var refused = await ReserveAsync(key, "gpt-4o", "openai", 0m);
        Assert.Equal(TimeSpan.FromSeconds(1), refused.RetryAfter);
        App.Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
    }

    [Fact]
    public async Task ATotalLimitNeverResetsAndGivesNoRetryAfter()
    {
        var (_, _, key) = await KeyAsync(new { name = "total", request_limit = new { count = 1, cycle = "total" } });
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        App.Clock.Advance(TimeSpan.FromDays(400));
        var refused = await ReserveAsync(key, "gpt-4o", "openai", 0m);
        Assert.Equal(SpendKeyRefusal.RequestLimitReached, refused.Refusal);
        Assert.Null(refused.RetryAfter);
    }

    [Fact]
    public async Task AMonthlySpendLimitCountsOnlyThisMonthsCharges()
    {
        App.Clock.Set(new DateTimeOffset(2026, 1, 31, 23, 0, 0, TimeSpan.Zero));
        var (m, id, key) = await KeyAsync(new { name = "monthly", spend_limit = new { amount = "5", cycle = "monthly" } });
        var grant = (await ReserveAsync(key, "gpt-4o", "openai", 5m)).Grant!;
        Assert.True(await Limits.CaptureAsync(grant, 4.25m, estimated: false, CancellationToken.None));
        Assert.Equal(SpendKeyRefusal.SpendLimitReached, (await ReserveAsync(key, "gpt-4o", "openai", 1m)).Refusal);
        Assert.Equal("4.2500000000", (string)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["current_spend"]!);

        App.Clock.Advance(TimeSpan.FromHours(1));
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 5m)).Grant);
        var read = await m.Client.GetJsonAsync($"/v1/spend_keys/{id}");
        Assert.Equal("0.0000000000", (string)read.Body!["current_spend"]!);
        Assert.Equal("4.2500000000", (string)read.Body["total_spend"]!);
    }

    [Fact]
    public async Task AReleasedCallGivesItsHoldAndItsRequestSlotBack()
    {
        var (_, _, key) = await KeyAsync(new { name = "release", spend_limit = new { amount = "1", cycle = "total" }, request_limit = new { count = 1, cycle = "total" } });
        var grant = (await ReserveAsync(key, "gpt-4o", "openai", 1m)).Grant!;
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 1m)).Refusal);
        Assert.True(await Limits.ReleaseAsync(grant, CancellationToken.None));
        Assert.False(await Limits.CaptureAsync(grant, 1m, estimated: false, CancellationToken.None));
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 1m)).Grant);
    }

    [Fact]
    public async Task TheRateLimitAllowsItsBurstThenOneCallPerRefill()
    {
        var (_, _, key) = await KeyAsync(new { name = "rate", rate_limit = new { rpm = 60, burst = 2 } });
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        var refused = await ReserveAsync(key, "gpt-4o", "openai", 0m);
        Assert.Equal(SpendKeyRefusal.RateLimited, refused.Refusal);
        Assert.Equal(TimeSpan.FromSeconds(1), refused.RetryAfter);
        App.Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        Assert.Equal(SpendKeyRefusal.RateLimited, (await ReserveAsync(key, "gpt-4o", "openai", 0m)).Refusal);
    }

    [Fact]
    public async Task PausedExpiredAndRevokedKeysAndModelsOrProvidersOutsideTheListsAreRefused()
    {
        var (m, id, key) = await KeyAsync(new
        {
            name = "rules", allowed_models = new[] { "gpt-4o" }, allowed_providers = new[] { "openai" }, expires_at = "2026-01-15T13:00:00Z",
        });
        Assert.Equal(SpendKeyRefusal.ModelNotAllowed, (await ReserveAsync(key, "gpt-5", "openai", 0m)).Refusal);
        Assert.Equal(SpendKeyRefusal.ProviderNotAllowed, (await ReserveAsync(key, "gpt-4o", "azure", 0m)).Refusal);
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);

        await m.Client.SendAsync(HttpMethod.Put, $"/v1/spend_keys/{id}", new { status = "paused" });
        Assert.Equal(SpendKeyRefusal.Paused, (await ReserveAsync(key, "gpt-4o", "openai", 0m)).Refusal);
        await m.Client.SendAsync(HttpMethod.Put, $"/v1/spend_keys/{id}", new { status = "active" });
        App.Clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(SpendKeyRefusal.Expired, (await ReserveAsync(key, "gpt-4o", "openai", 0m)).Refusal);

        await m.Client.DeleteJsonAsync($"/v1/spend_keys/{id}");
        Assert.Equal(SpendKeyRefusal.UnknownKey, (await ReserveAsync(key, "gpt-4o", "openai", 0m)).Refusal);
    }

    [Fact]
    public async Task ARotatedKeysOldKeyIsRefusedAndItsHistoryStays()
    {
        var (m, id, key) = await KeyAsync(new { name = "rotate", request_limit = new { count = 2, cycle = "total" } });
        Assert.NotNull((await ReserveAsync(key, "gpt-4o", "openai", 0m)).Grant);
        var rotated = (string)(await m.Client.SendAsync(HttpMethod.Post, $"/v1/spend_keys/{id}/rotate")).Body!["key"]!;
        Assert.Equal(SpendKeyRefusal.UnknownKey, (await ReserveAsync(key, "gpt-4o", "openai", 0m)).Refusal);
        Assert.NotNull((await ReserveAsync(rotated, "gpt-4o", "openai", 0m)).Grant);
        Assert.Equal(SpendKeyRefusal.RequestLimitReached, (await ReserveAsync(rotated, "gpt-4o", "openai", 0m)).Refusal);
    }
}
