using Lava.Billing.Webhooks;

namespace Lava.Billing.Tests.Webhooks;

public class WebhookRetriesTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly WebhookOptions Options = new();

    [Fact]
    public void TheDefaultScheduleSpreadsNineRetriesOverAboutThreeDays()
    {
        var total = Options.RetrySchedule.Aggregate(TimeSpan.Zero, (a, b) => a + b);
        Assert.Equal(9, Options.RetrySchedule.Count);
        Assert.InRange(total.TotalDays, 2.5, 3.5);
    }

    [Fact]
    public void EachWaitFallsWithinTheJitterBandOfItsStep()
    {
        var failed = new AttemptResult(500, null, null);
        for (var attempt = 1; attempt <= Options.RetrySchedule.Count; attempt++)
        {
            var step = Options.RetrySchedule[attempt - 1];
            var low = WebhookRetries.Decide(failed, attempt, Options, Now, 0).NextAttemptAt!.Value - Now;
            var high = WebhookRetries.Decide(failed, attempt, Options, Now, 0.999999).NextAttemptAt!.Value - Now;
            Assert.Equal(step * 0.8, low);
            Assert.InRange(high, step * 1.19, step * 1.2);
        }
    }

    [Fact]
    public void TheDeliveryFailsForGoodAfterTheLastStep()
    {
        var outcome = WebhookRetries.Decide(new AttemptResult(null, null, "refused"), Options.RetrySchedule.Count + 1, Options, Now, 0.5);
        Assert.Equal("failed", outcome.Status);
        Assert.Null(outcome.NextAttemptAt);
    }

    [Theory]
    [InlineData(429)]
    [InlineData(503)]
    public void RetryAfterOn429And503SetsTheNextAttempt(int status)
    {
        var outcome = WebhookRetries.Decide(new AttemptResult(status, TimeSpan.FromSeconds(42), null), 1, Options, Now, 0.5);
        Assert.Equal(Now.AddSeconds(42), outcome.NextAttemptAt);
    }

    [Fact]
    public void RetryAfterOnOtherStatusesIsIgnored()
    {
        var outcome = WebhookRetries.Decide(new AttemptResult(500, TimeSpan.FromHours(9), null), 1, Options, Now, 0.5);
        Assert.Equal(Now + Options.RetrySchedule[0], outcome.NextAttemptAt);
    }

    [Fact]
    public void GoneDisablesTheEndpointAndKeepsTheDeliveryWaiting()
    {
        var outcome = WebhookRetries.Decide(new AttemptResult(410, null, null), 1, Options, Now, 0.5);
        Assert.Equal("pending", outcome.Status);
        Assert.NotNull(outcome.DisableReason);
    }

    [Fact]
    public void A2xxIsDelivered()
    {
        Assert.Equal("delivered", WebhookRetries.Decide(new AttemptResult(204, null, null), 3, Options, Now, 0.5).Status);
        Assert.Equal("pending", WebhookRetries.Decide(new AttemptResult(302, null, null), 1, Options, Now, 0.5).Status);
    }
}
