using System.Net;

namespace Lava.Billing.Webhooks;

/// <summary>What an attempt's result means for its delivery; pure, so the schedule is tested without a network.</summary>
public static class WebhookRetries
{
    public sealed record Outcome(string Status, DateTimeOffset? NextAttemptAt, string? DisableReason);

    /// <param name="attempt">1 for the first attempt.</param>
    /// <param name="random">From [0, 1): where in the jitter band the wait falls.</param>
    public static Outcome Decide(AttemptResult result, int attempt, WebhookOptions options, DateTimeOffset now, double random)
    {
        if (result.Delivered) return new Outcome("delivered", null, null);
        var schedule = options.RetrySchedule;
        // 410 Gone: the merchant says the endpoint is no more. It is disabled and its deliveries wait, in order, for it
        // to be enabled again (PATCH status).
        if (result.StatusCode == (int)HttpStatusCode.Gone)
            return new Outcome("pending", now + schedule[0], "the endpoint answered 410 Gone");
        if (attempt > schedule.Count) return new Outcome("failed", null, null);
        var wait = result is { StatusCode: 429 or 503, RetryAfter: { } retryAfter }
            ? retryAfter
            : schedule[attempt - 1] * (1 + options.JitterFraction * (2 * random - 1));
        return new Outcome("pending", now + wait, null);
    }
}
