using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Merchants;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Merchants;

/// <summary>
/// The key cache of the routes that re-check the key when they write (usage reports, gateway calls): an entry that ran
/// out is looked up once, however many requests find it so at the same moment.
/// </summary>
public class SecretKeyCacheTests(LavaApp app) : ApiTest(app)
{
    private const int Callers = 20;

    [Fact]
    public async Task CallersThatFindTheEntryExpiredTogetherShareOneLookup()
    {
        var (store, secret, _, before) = await ArrangeExpiredAsync();

        // Every caller arrives while the lookup cannot finish: the table is locked, so each caller that looks up for
        // itself is held in the database, where it is counted.
        List<Task<Caller?>> callers;
        await using (var blocker = await OpenLockedAsync())
        {
            callers = Enumerable.Range(0, Callers).Select(_ => Task.Run(() => store.AuthenticateAsync(secret, cached: true, CancellationToken.None))).ToList();
            await Task.Delay(300);
            Assert.DoesNotContain(callers, c => c.IsCompleted);
        }
        var answered = await Task.WhenAll(callers);

        Assert.All(answered, c => Assert.NotNull(c));
        Assert.Equal(1, store.LookupCount - before);
        // And the entry it filled answers the next caller from memory.
        Assert.NotNull(await store.AuthenticateAsync(secret, cached: true, CancellationToken.None));
        Assert.Equal(1, store.LookupCount - before);
    }

    [Fact]
    public async Task ACallerThatLeavesDoesNotCancelTheLookupOthersWaitFor()
    {
        var (store, secret, _, before) = await ArrangeExpiredAsync();

        using var leaving = new CancellationTokenSource();
        Task<Caller?> first, second;
        await using (var blocker = await OpenLockedAsync())
        {
            first = store.AuthenticateAsync(secret, cached: true, leaving.Token);
            second = store.AuthenticateAsync(secret, cached: true, CancellationToken.None);
            leaving.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => first);
        }
        Assert.NotNull(await second);
        Assert.Equal(1, store.LookupCount - before);
    }

    [Fact]
    public async Task ACallerAfterTheKeyIsForgottenDoesNotJoinALookupStartedBefore()
    {
        var (store, secret, caller, before) = await ArrangeExpiredAsync();

        Task<Caller?> early, late;
        await using (var blocker = await OpenLockedAsync())
        {
            early = store.AuthenticateAsync(secret, cached: true, CancellationToken.None);
            await WaitForAsync(() => store.LookupCount - before == 1);
            store.Forget(caller.MerchantId, caller.SecretKeyId);
            late = store.AuthenticateAsync(secret, cached: true, CancellationToken.None);
            await WaitForAsync(() => store.LookupCount - before == 2);
        }
        await Task.WhenAll(early, late);
        Assert.Equal(2, store.LookupCount - before);
    }

    [Fact]
    public async Task ALookupInFlightWhenTheKeyIsForgottenFillsNoEntry()
    {
        var (store, secret, caller, before) = await ArrangeExpiredAsync();

        Task<Caller?> early;
        await using (var blocker = await OpenLockedAsync())
        {
            early = store.AuthenticateAsync(secret, cached: true, CancellationToken.None);
            await WaitForAsync(() => store.LookupCount - before == 1);
            store.Forget(caller.MerchantId, caller.SecretKeyId);
        }
        Assert.NotNull(await early);

        // It read the key before it was forgotten: what it found is not kept, and the next caller looks up again.
        Assert.NotNull(await store.AuthenticateAsync(secret, cached: true, CancellationToken.None));
        Assert.Equal(2, store.LookupCount - before);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (var i = 0; i < 200 && !condition(); i++) await Task.Delay(10);
        Assert.True(condition());
    }

    /// <summary>
    /// A store of its own whose entry for a new merchant's key was filled by one lookup and has since run out; the lookups
    /// it made so far.
    /// </summary>
    private async Task<(SecretKeyStore Store, string Secret, Caller Caller, long Before)> ArrangeExpiredAsync()
    {
        var merchant = await App.NewMerchantAsync();
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var store = new SecretKeyStore(App.Services.GetRequiredService<NpgsqlDataSource>(), clock);
        var caller = await store.AuthenticateAsync(merchant.SecretKey, cached: true, CancellationToken.None);
        Assert.NotNull(caller);
        clock.Advance(SecretKeyStore.CacheLifetime + TimeSpan.FromSeconds(1));
        return (store, merchant.SecretKey, caller, store.LookupCount);
    }

    /// <summary>A transaction holding the keys' table so that no lookup of it finishes until it is disposed.</summary>
    private async Task<NpgsqlConnection> OpenLockedAsync()
    {
        var connection = new NpgsqlConnection(App.ConnectionString);
        await connection.OpenAsync();
        await using (var begin = new NpgsqlCommand("BEGIN; LOCK TABLE secret_keys IN ACCESS EXCLUSIVE MODE", connection))
            await begin.ExecuteNonQueryAsync();
        return connection;
    }
}
