namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Bounded waits for what happens on another thread, so a test that would hang fails and says what it waited for.</summary>
public static class Waits
{
    /// <summary>Returns once <paramref name="condition"/> holds, checked every 10 ms; fails after 10 s.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"not within 10 s: {what}");
            await Task.Delay(10);
        }
    }

    /// <summary>Returns once <paramref name="condition"/> holds (a query, say), checked every 20 ms; fails after 10 s.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"not within 10 s: {what}");
            await Task.Delay(20);
        }
    }

    /// <summary>
    /// <paramref name="call"/>'s result, which must come within 5 s: less than a posting's lock waits (5 s, three times),
    /// so a call queued behind them fails here.
    /// </summary>
    public static async Task<T> WithinAsync<T>(Task<T> call, string what)
    {
        var finished = await Task.WhenAny(call, Task.Delay(TimeSpan.FromSeconds(5)));
        Assert.True(finished == call, $"{what} was not answered within 5 s");
        return await call;
    }
}
