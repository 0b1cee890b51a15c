using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Forward;

public class GatewayUsageTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    public static TheoryData<string, string, bool, long, long, decimal> Formats => new()
    {
        // path, body, streamed, input tokens, output tokens, provider cost at the seeded price
        { "/v1/chat/completions", """{"model":"gpt-4o","messages":[]}""", false, 1200, 300, 0.00475m },
        { "/v1/chat/completions", """{"model":"gpt-4o","stream":true,"messages":[]}""", true, 1200, 300, 0.00475m },
        { "/v1/responses", """{"model":"gpt-4o","input":"hi"}""", false, 1200, 300, 0.00475m },
        { "/v1/responses", """{"model":"gpt-4o","input":"hi","stream":true}""", true, 1200, 300, 0.00475m },
        // claude-sonnet-4-5: 100 × 3 + 1,000 cache reads × 0.30 + 200 cache writes × 3.75 + 300 × 15, per 1M.
        { "/v1/messages", """{"model":"claude-sonnet-4-5","max_tokens":500,"messages":[]}""", false, 1300, 300, 0.00585m },
        { "/v1/messages", """{"model":"claude-sonnet-4-5","max_tokens":500,"stream":true,"messages":[]}""", true, 1300, 300, 0.00585m },
        // gemini-2.5-flash: 200 × 0.30 + 1,000 cached × 0.075 + (200 + 100 thoughts) × 2.50, per 1M.
        { "/v1beta/models/gemini-2.5-flash:generateContent", """{"contents":[]}""", false, 1200, 300, 0.000885m },
        { "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", """{"contents":[]}""", true, 1200, 300, 0.000885m },
    };

    [Theory]
    [MemberData(nameof(Formats))]
    public async Task EachProviderFormatIsBilledFromItsOwnUsageStreamedOrNot(string path, string body, bool streamed, long input, long output, decimal cost)
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, 10));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "llm");

        var r = await client.PostAsync(App.Forward(path), Http.Json(body));
        var text = await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(streamed ? "text/event-stream" : "application/json", r.Content.Headers.ContentType?.MediaType);
        var requestId = r.Headers.GetValues("x-lava-request-id").Single();
        var report = await App.QueryAsync<(long, long, decimal, decimal, string)>(
            "SELECT input_tokens, output_tokens, cost, charge_amount, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r",
            new { m = m.MerchantId, r = requestId });
        Assert.Equal((input, output, cost, (input + output) * 10m / 1_000_000m, "{}"), report);
        if (streamed) Assert.EndsWith("\n\n", text);
    }

    [Fact]
    public async Task AStreamedChatCompletionIsAskedForItsUsageAndTheClientGetsTheProvidersEventsUnchanged()
    {
        var m = await App.NewMerchantAsync();

        var r = await m.Client.PostAsync(App.Forward("/v1/chat/completions"), Http.Json("""{"model":"gpt-4o","stream":true,"messages":[]}"""));
        var text = await r.Content.ReadAsStringAsync();

        Assert.Contains("\"include_usage\":true", Assert.Single(Fake.Requests).Body);
        var expected = string.Concat(SseSamples.OpenAiChat("gpt-4o", FakeProvider.Prompt, FakeProvider.Cached, FakeProvider.Completion, FakeProvider.Reasoning)
            .Select(d => SseSamples.Frame(d)));
        Assert.Equal(expected, text);
    }

    [Fact]
    public async Task AStreamIsPassedOnAsItArrivesNotBufferedWhole()
    {
        var m = await App.NewMerchantAsync();
        Fake.HoldAfterEvents = 2;
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/messages"))
        {
            Content = Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[]}"""),
        };

        using var r = await m.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await using var body = await r.Content.ReadAsStreamAsync();
        var seen = await ReadUntilAsync(body, "content_block_start", TimeSpan.FromSeconds(5));

        Assert.Contains("message_start", seen);
        Assert.DoesNotContain("message_stop", seen);
        Fake.Release.SetResult();
        var rest = await new StreamReader(body).ReadToEndAsync();
        Assert.Contains("message_stop", rest);
    }

    [Fact]
    public async Task AClientLeavingMidStreamCancelsTheUpstreamAndIsBilledFromTheUsageSeen()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, 10));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "llm");
        Fake.HoldAfterEvents = 5; // message_start and both text deltas sent; message_delta (the output count) never comes
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/messages"))
        {
            Content = Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":500,"stream":true,"messages":[]}"""),
        };

        string requestId;
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            var r = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
            requestId = r.Headers.GetValues("x-lava-request-id").Single();
            var body = await r.Content.ReadAsStreamAsync(cts.Token);
            await ReadUntilAsync(body, "world", TimeSpan.FromSeconds(5));
            r.Dispose();
        }

        await Fake.CallerLeft.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var args = new { m = m.MerchantId, r = requestId };
        await WaitForRowAsync("SELECT count(*) FROM requests WHERE merchant_id = @m AND request_id = @r", args);
        var report = await App.QueryAsync<(long Input, long Output, decimal Cost, string Metadata)>(
            "SELECT input_tokens, output_tokens, cost, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r", args);
        // The input came with message_start; the output is estimated from the 11 characters seen ("Hello world").
        Assert.Equal(1300, report.Input);
        Assert.Equal(3, report.Output);
        Assert.Equal("""{"estimated": "true"}""", report.Metadata);
        Assert.Equal(0.001395m, report.Cost); // (100 × 3 + 1,000 × 0.30 + 200 × 3.75 + 3 × 15) / 1M
    }

    [Fact]
    public async Task AStreamMayOutlastTheTimeoutWhileItKeepsFlowing()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, 10));
        // 8 events 150 ms apart: 1.2 s in all against a 1 s timeout, and each gap far enough inside it that a loaded machine
        // does not stretch one past it (250 ms apart, a gap did at load 24).
        Fake.EventDelay = TimeSpan.FromMilliseconds(150);

        var r = await App.ClientWithToken(m.SecretKey, meterSlug: "llm").PostAsync(App.Forward("/v1/messages"),
            Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":500,"stream":true,"messages":[]}"""));

        Assert.Contains("message_stop", await r.Content.ReadAsStringAsync());
        Assert.Equal((1300L, 300L, "{}"), await App.QueryAsync<(long, long, string)>(
            "SELECT input_tokens, output_tokens, metadata::text FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AStreamThatStallsIsCutAfterTheTimeoutAndBilledFromWhatWasSeen()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, 10));
        Fake.HoldAfterEvents = 5;

        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/messages"))
        {
            Content = Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":500,"stream":true,"messages":[]}"""),
        };
        var r = await App.ClientWithToken(m.SecretKey, meterSlug: "llm").SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var body = await r.Content.ReadAsStreamAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => new StreamReader(body).ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10)));

        await WaitForRowAsync("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId });
        Assert.Equal((1300L, 3L, """{"estimated": "true"}"""), await App.QueryAsync<(long, long, string)>(
            "SELECT input_tokens, output_tokens, metadata::text FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        await Fake.CallerLeft.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task SpeechIsBilledByTheCharactersItWasAskedToSpeak()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "tts", "fixed", "characters_1m", (0, 30));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "tts");

        var r = await client.PostAsync(App.Forward("/v1/audio/speech"), Http.Json("""{"model":"tts-1","input":"Hello world","voice":"alloy"}"""));

        Assert.Equal(FakeProvider.Audio, await r.Content.ReadAsByteArrayAsync());
        Assert.Equal("audio/mpeg", r.Content.Headers.ContentType?.MediaType);
        var report = await App.QueryAsync<(long, decimal, decimal)>(
            "SELECT input_characters, cost, charge_amount FROM requests WHERE merchant_id = @m", new { m = m.MerchantId });
        Assert.Equal((11L, 0.000165m, 0.00033m), report);
    }

    [Fact]
    public async Task TranscriptionIsBilledByTheAudioSecondsTheProviderReports()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "stt", "fixed", "minutes", (0, 0.01m));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "stt");
        var form = new MultipartFormDataContent
        {
            { new StringContent("whisper-1"), "model" },
            { new ByteArrayContent(Encoding.ASCII.GetBytes("RIFF-fake-wav")) { Headers = { ContentType = new MediaTypeHeaderValue("audio/wav") } }, "file", "a.wav" },
        };

        var r = await client.PostAsync(App.Forward("/v1/audio/transcriptions"), form);

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("name=model", Assert.Single(Fake.Requests).Body);
        var report = await App.QueryAsync<(decimal, decimal, decimal)>(
            "SELECT input_seconds, cost, charge_amount FROM requests WHERE merchant_id = @m", new { m = m.MerchantId });
        // whisper-1 (the form's model field) costs 0.006 per minute; the meter charges 0.01 per minute.
        Assert.Equal((14.5m, 0.00145m, 0.0024166667m), report);
    }

    [Fact]
    public async Task AGetIsForwardedToo()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.GetAsync(App.Forward("/v1/models"));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("gpt-4o", await r.Content.ReadAsStringAsync());
        Assert.Equal("GET", Assert.Single(Fake.Requests).Method);
    }

    [Fact]
    public async Task TheSdksRawProviderUrlWithAnAppendedPathWorks()
    {
        var m = await App.NewMerchantAsync();
        // providers.openai is `${baseUrl}forward?u=https://api.openai.com/v1`; clients append the endpoint.
        var r = await m.Client.PostAsync($"/v1/forward?u={Fake.BaseUrl}/v1" + "/chat/completions", Http.Json("""{"model":"gpt-4o","messages":[]}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("/v1/chat/completions", Assert.Single(Fake.Requests).PathAndQuery);
    }

    private static async Task<string> ReadUntilAsync(Stream body, string marker, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var seen = new StringBuilder();
        var buffer = new byte[4096];
        while (!seen.ToString().Contains(marker))
        {
            var n = await body.ReadAsync(buffer, cts.Token);
            if (n == 0) break;
            seen.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return seen.ToString();
    }
}
