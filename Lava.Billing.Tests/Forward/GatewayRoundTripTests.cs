using System.Diagnostics;
using System.Net;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Forward;

/// <summary>
/// The gateway as shipped, each request run inside an activity of its own, so the database commands a call sends on its
/// client's path (Npgsql traces one activity per command or batch, that is per round trip) can be told from the posting
/// and the background workers of the same process.
/// </summary>
public sealed class TracedGatewayApp : GatewayApp
{
    public const string SourceName = "Lava.Billing.Tests.Requests";

    public static readonly ActivitySource Requests = new(SourceName);

    protected override bool ResponseWaitsForPosting => false;

    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        base.ConfigureTestServices(builder);
        builder.ConfigureServices(services => services.AddTransient<IStartupFilter, TraceEachRequest>());
    }

    private sealed class TraceEachRequest : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (context, inner) =>
            {
                using var activity = Requests.StartActivity("request");
                activity?.SetTag("trace", context.Request.Headers["x-test-trace"].ToString());
                await inner(context);
            });
            next(app);
        };
    }
}

/// <summary>What one call costs its client in database round trips and commits: the count does not move with the machine's load.</summary>
public class GatewayRoundTripTests(TracedGatewayApp app) : GatewayTest<TracedGatewayApp>(app)
{
    private static HttpContent Chat() =>
        Http.Json(new { model = "gpt-4o", max_tokens = 1000, messages = new[] { new { role = "user", content = "Say hello" } } });

    /// <summary>The statements of each round trip the call with <paramref name="trace"/> sent, in order, once its request ended.</summary>
    private static async Task<List<string>> RoundTripsAsync(string trace, Func<Task> call)
    {
        var roundTrips = new List<string>();
        var ended = new TaskCompletionSource();
        using var listener = new ActivityListener
        {
            // By name: the source may be created while this listener is being asked about it.
            ShouldListenTo = s => s.Name is "Npgsql" or TracedGatewayApp.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.Source.Name == TracedGatewayApp.SourceName)
                {
                    if ((string?)a.GetTagItem("trace") == trace) ended.TrySetResult();
                    return;
                }
                for (var parent = a.Parent; parent is not null; parent = parent.Parent)
                {
                    if (parent.Source.Name != TracedGatewayApp.SourceName || (string?)parent.GetTagItem("trace") != trace) continue;
                    lock (roundTrips) roundTrips.Add((a.GetTagItem("db.query.text") as string ?? a.DisplayName).ReplaceLineEndings(" "));
                    return;
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        await call();
        await ended.Task.WaitAsync(TimeSpan.FromSeconds(10));
        lock (roundTrips) return [.. roundTrips];
    }

    private static HttpRequestMessage Traced(string uri, string trace) => new(HttpMethod.Post, uri) { Content = Chat(), Headers = { { "x-test-trace", trace } } };

    [Fact]
    public async Task ACallBilledToACustomerSendsThreeRoundTripsOnceItsKeyPriceAndMeterAreKnown()
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Traced(App.Forward("/v1/chat/completions"), "first"))).StatusCode);
        var trace = Guid.NewGuid().ToString();

        var roundTrips = await RoundTripsAsync(trace, async () =>
            Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Traced(App.Forward("/v1/chat/completions"), trace))).StatusCode));

        // BEGIN with the check of the remembered key, meter and model price, the balance lock and the limits; the hold, the
        // call's record and COMMIT; the served usage (its own commit, before the client has the last byte).
        Assert.True(roundTrips.Count == 3, string.Join("\n", roundTrips));
        Assert.StartsWith("BEGIN", roundTrips[0], StringComparison.Ordinal);
        foreach (var read in new[] { "secret_keys", "meters", "model_prices", "account_balances", "credit_limit" })
            Assert.Contains(read, roundTrips[0], StringComparison.Ordinal);
        Assert.Contains("INSERT INTO holds", roundTrips[1], StringComparison.Ordinal);
        Assert.Contains("INSERT INTO forward_calls", roundTrips[1], StringComparison.Ordinal);
        Assert.EndsWith("COMMIT", roundTrips[1].TrimEnd(), StringComparison.Ordinal);
        Assert.StartsWith("UPDATE forward_calls", roundTrips[2].TrimStart(), StringComparison.Ordinal);
        await App.PostedAsync();
        Assert.Equal(["posted", "posted"], await App.QueryAsync<string[]>("SELECT array_agg(state) FROM forward_calls WHERE merchant_id = @m",
            new { m = m.MerchantId }));
    }

    [Fact]
    public async Task ACallThatHoldsNothingWritesItsCheckedRecordInOneStatementAndTwoRoundTripsInAll()
    {
        var m = await App.NewMerchantAsync();
        var client = App.ClientWithToken(m.SecretKey, providerKey: "sk-callers-own-key");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Traced(App.Forward("/v1/chat/completions"), "first"))).StatusCode);
        var trace = Guid.NewGuid().ToString();

        var roundTrips = await RoundTripsAsync(trace, async () =>
            Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(Traced(App.Forward("/v1/chat/completions"), trace))).StatusCode));

        // The record, written only if the remembered key and model price still hold; the served usage.
        Assert.True(roundTrips.Count == 2, string.Join("\n", roundTrips));
        Assert.Contains("INSERT INTO forward_calls", roundTrips[0], StringComparison.Ordinal);
        Assert.Contains("secret_keys", roundTrips[0], StringComparison.Ordinal);
        Assert.Contains("model_prices", roundTrips[0], StringComparison.Ordinal);
        Assert.StartsWith("UPDATE forward_calls", roundTrips[1].TrimStart(), StringComparison.Ordinal);
        Assert.DoesNotContain(roundTrips, r => r.Contains("BEGIN", StringComparison.Ordinal) || r.Contains("COMMIT", StringComparison.Ordinal));
    }
}
