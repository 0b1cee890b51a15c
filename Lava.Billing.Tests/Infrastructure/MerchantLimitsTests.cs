using System.Net;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Merchants;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Two turns and three places in line per merchant, so the tests can fill them.</summary>
public sealed class FewTurnsApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        builder.UseSetting("Limits:PerMerchant:Requests", "2");
        builder.UseSetting("Limits:PerMerchant:RequestsWaiting", "3");
    }
}

/// <summary>One merchant's share of the service's connections (docs/operations.md, "One merchant's share").</summary>
public class MerchantLimitsTests(FewTurnsApp app) : IClassFixture<FewTurnsApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private MerchantLimits Limits => app.Services.GetRequiredService<MerchantLimits>();

    // Turns held here stand for the merchant's calls that are slow in the database.
    private async Task<List<MerchantLimits.Turn>> HoldTurnsAsync(string merchantId, int count)
    {
        var turns = new List<MerchantLimits.Turn>();
        for (var i = 0; i < count; i++) turns.Add((await Limits.EnterAsync(merchantId, MerchantLimits.Kind.Requests, CancellationToken.None))!);
        return turns;
    }

    [Fact]
    public async Task CallsBeyondAMerchantsTurnsWaitPastItsLineAreRefusedAndAnotherMerchantIsNotHeldBack()
    {
        var busy = await app.NewMerchantAsync();
        var other = await app.NewMerchantAsync();
        var turns = await HoldTurnsAsync(busy.MerchantId, 2);

        var waiting = Enumerable.Range(0, 3).Select(_ => busy.Client.GetJsonAsync("/v1/customers")).ToList();
        await Waits.UntilAsync(() => Limits.Waiting(busy.MerchantId, MerchantLimits.Kind.Requests) == 3, "three calls in line");
        Assert.All(waiting, w => Assert.False(w.IsCompleted));
        var refused = await Waits.WithinAsync(busy.Client.GetJsonAsync("/v1/customers"), "a call past the line");
        refused.AssertProblem(HttpStatusCode.TooManyRequests, "too_many_requests");
        Assert.Equal("1", refused.Response.Headers.RetryAfter!.ToString());
        // A write is refused before it ran: nothing was created.
        var write = await Waits.WithinAsync(busy.Client.PostJsonAsync("/v1/customers", new { name = "never" }), "a write past the line");
        write.AssertProblem(HttpStatusCode.TooManyRequests, "too_many_requests");

        var otherRead = await Waits.WithinAsync(other.Client.GetJsonAsync("/v1/customers"), "another merchant's call");
        Assert.Equal(HttpStatusCode.OK, otherRead.Status);

        // One turn back: the waiting calls take it one after another.
        turns[0].Dispose();
        var all = Task.WhenAll(waiting);
        Assert.Same(all, await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(10))));
        Assert.All(await all, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Equal(0, await app.QueryAsync<int>("SELECT count(*)::int FROM customers WHERE merchant_id = @m", new { m = busy.MerchantId }));
        turns[1].Dispose();
    }

    [Fact]
    public async Task AUsageReportTakesNoTurn()
    {
        var (busy, customer) = await app.ReportingMerchantAsync();
        var turns = await HoldTurnsAsync(busy.MerchantId, 2);
        try
        {
            var report = await Waits.WithinAsync(busy.Client.PostJsonAsync("/v1/requests",
                new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 0, output_tokens = 0 }), "a report");
            Assert.Equal(HttpStatusCode.Created, report.Status);
        }
        finally
        {
            turns.ForEach(t => t.Dispose());
        }
    }

    [Fact]
    public void OnlySingleReportsAndTheGatewayTakeNoTurnOfTheMiddlewaresAndBatchesTakeTheirOwn()
    {
        var kinds = app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? ["*"])
                .Select(m => (Route: $"{m} {e.RoutePattern.RawText}", Limit: e.Metadata.GetMetadata<MerchantLimits.LimitMetadata>())))
            .ToDictionary(x => x.Route, x => x.Limit);
        Assert.Equal(new MerchantLimits.LimitMetadata(MerchantLimits.Kind.Batches), kinds["POST /v1/requests/batch"]);
        // Single reports take none; the gateway takes its turn by hand around its admission (GatewayTurnTests).
        Assert.Equal(["GET /v1/forward/", "POST /v1/forward/", "POST /v1/requests/", "POST /v1/rewrite/{format}/{**url}"],
            kinds.Where(k => k.Value is { Kind: null }).Select(k => k.Key).Order(StringComparer.Ordinal));
        // Everything else takes a turn of Requests (no metadata).
        Assert.Null(kinds["GET /v1/customers/"]);
        Assert.Null(kinds["GET /v1/ledger/entries"]);
    }

    [Fact]
    public async Task ATurnGivenBackTwiceFreesOnePlace()
    {
        var limits = new MerchantLimits(Options.Create(new MerchantLimitOptions { Requests = 2, RequestsWaiting = 0 }));
        var first = await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, CancellationToken.None);
        using var second = await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, CancellationToken.None);

        first!.Dispose();
        first.Dispose();

        Assert.NotNull(await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, CancellationToken.None));
        Assert.Null(await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, CancellationToken.None));
    }

    [Fact]
    public async Task AnExportGivesItsMerchantsTurnBackOnceItStreams()
    {
        var limits = new MerchantLimits(Options.Create(new MerchantLimitOptions { Requests = 1, RequestsWaiting = 0 }));
        var exports = new ExportLimits(Options.Create(new ExportOptions()), NullLogger<ExportLimits>.Instance);
        var http = new DefaultHttpContext { RequestServices = new ServiceCollection().AddLogging().BuildServiceProvider() };
        http.Items[Caller.ItemKey] = new Caller("mer_x", "key_x", KeyScopes.ReadOnly);
        http.Items[MerchantLimits.ItemKey] = await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, CancellationToken.None);
        Assert.Null(await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, CancellationToken.None));

        MerchantLimits.Turn? next = null;
        await exports.RunAsync(http, async ct => next = await limits.EnterAsync("mer_x", MerchantLimits.Kind.Requests, ct));

        Assert.NotNull(next);
    }
}

/// <summary>Group commit off: each report posts on its caller's time, on the shared pool; one turn per merchant, no line.</summary>
public sealed class OneTurnWithoutGroupCommitApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        builder.UseSetting("Requests:GroupCommit:Enabled", "false");
        builder.UseSetting("Limits:PerMerchant:Requests", "1");
        builder.UseSetting("Limits:PerMerchant:RequestsWaiting", "0");
    }
}

public class MerchantLimitsWithoutGroupCommitTests(OneTurnWithoutGroupCommitApp app) : IClassFixture<OneTurnWithoutGroupCommitApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task AReportPostedOnItsCallersTimeWaitsForItsMerchantsTurnAndIsNeverRefused()
    {
        var (m, customer) = await app.ReportingMerchantAsync();
        var limits = app.Services.GetRequiredService<MerchantLimits>();
        Task<(HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body, HttpResponseMessage Response)> report;
        using (await limits.EnterAsync(m.MerchantId, MerchantLimits.Kind.Requests, CancellationToken.None))
        {
            report = m.Client.PostJsonAsync("/v1/requests",
                new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 0, output_tokens = 0 });
            // In line although the line holds none (RequestsWaiting 0): a report is not refused.
            await Waits.UntilAsync(() => limits.Waiting(m.MerchantId, MerchantLimits.Kind.Requests) == 1, "the report in line");
            Assert.False(report.IsCompleted);
        }
        Assert.Equal(HttpStatusCode.Created, (await Waits.WithinAsync(report, "the report")).Status);
    }

    // The gateway's posting worker and settle worker hand every merchant's served calls to group commit this way, one
    // after another: waiting for one merchant's turn there would hold back every other merchant's postings.
    [Fact]
    public async Task AReportTheServiceHandsToGroupCommitItselfTakesNoTurn()
    {
        var (m, customer) = await app.ReportingMerchantAsync();
        var limits = app.Services.GetRequiredService<MerchantLimits>();
        using (await limits.EnterAsync(m.MerchantId, MerchantLimits.Kind.Requests, CancellationToken.None))
        {
            var posting = app.Services.GetRequiredService<Lava.Billing.Requests.Posting.GroupCommit>().ReportAsync(
                new Lava.Billing.Requests.Posting.ReportItem(m.MerchantId, Requests.ReportBodies.Of("r1", customer, "gpt", 0)), CancellationToken.None);
            Assert.IsType<Lava.Billing.Requests.Posting.ReportOutcome.Created>(await Waits.WithinAsync(posting, "the posting"));
        }
    }
}
