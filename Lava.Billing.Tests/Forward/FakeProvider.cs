using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lava.Billing.Tests.Forward;

/// <summary>
/// A provider on a real loopback port speaking OpenAI chat and Responses, Anthropic Messages, Gemini, speech and
/// transcription, streamed (with a delay between events) or not. It counts connections and calls and records what
/// it received; a test can script the next answers (failures, delays, a stream that stops and waits).
/// </summary>
public sealed class FakeProvider : IAsyncDisposable
{
    // Usage every answer reports, chosen so cached and reasoning tokens would show if counted twice.
    public const long Prompt = 1200, Cached = 1000, Completion = 300, Reasoning = 100;
    public const long AnthropicInput = 100, AnthropicCacheRead = 1000, AnthropicCacheWrite = 200, AnthropicOutput = 300;
    public const double TranscriptionSeconds = 14.5;
    public static readonly byte[] Audio = Encoding.ASCII.GetBytes("ID3-fake-mp3-bytes");

    private readonly WebApplication _app;
    private int _connections;
    private int _calls;

    public sealed record Received(string Method, string PathAndQuery, Dictionary<string, string> Headers, string Body);

    public ConcurrentQueue<Received> Requests { get; } = new();
    /// <summary>Scripted answers, taken one per call before the normal behaviour.</summary>
    public ConcurrentQueue<Func<HttpContext, Task>> Next { get; } = new();
    public int Connections => Volatile.Read(ref _connections);
    public int Calls => Volatile.Read(ref _calls);
    public TimeSpan EventDelay { get; set; } = TimeSpan.FromMilliseconds(20);
    /// <summary>When set, a stream stops after this many events and waits for <see cref="Release"/> (or the caller leaving).</summary>
    public int? HoldAfterEvents { get; set; }
    public TaskCompletionSource Release { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    /// <summary>Completes when the gateway abandoned a call mid-answer.</summary>
    public TaskCompletionSource CallerLeft { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public string BaseUrl { get; }

    public FakeProvider()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Use(next => connection =>
        {
            Interlocked.Increment(ref _connections);
            return next(connection);
        })));
        _app = builder.Build();
        _app.Run(HandleAsync);
        _app.StartAsync().GetAwaiter().GetResult();
        BaseUrl = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    }

    public void Reset()
    {
        Requests.Clear();
        Next.Clear();
        Interlocked.Exchange(ref _connections, 0);
        Interlocked.Exchange(ref _calls, 0);
        EventDelay = TimeSpan.FromMilliseconds(20);
        HoldAfterEvents = null;
        Release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        CallerLeft = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private async Task HandleAsync(HttpContext http)
    {
        Interlocked.Increment(ref _calls);
        var body = await new StreamReader(http.Request.Body).ReadToEndAsync();
        Requests.Enqueue(new Received(http.Request.Method, http.Request.Path + http.Request.QueryString,
            http.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()), body));
        if (Next.TryDequeue(out var scripted))
        {
            await scripted(http);
            return;
        }
        var path = http.Request.Path.Value ?? "";
        var json = body.Length > 0 && body.TrimStart().StartsWith('{') ? JsonNode.Parse(body) : null;
        var stream = json?["stream"]?.GetValue<bool>() == true;
        http.Response.Headers["x-provider-request-id"] = "prov_123";
        if (path.EndsWith("/chat/completions"))
        {
            var model = (string?)json?["model"] ?? "gpt-4o";
            if (!stream)
            {
                await Json(http, SseSamples.Fill("""{"id":"c1","object":"chat.completion","model":"@0@","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":@1@,"completion_tokens":@2@,"total_tokens":@3@,"prompt_tokens_details":{"cached_tokens":@4@},"completion_tokens_details":{"reasoning_tokens":@5@}}}""",
                    model, Prompt, Completion, Prompt + Completion, Cached, Reasoning));
                return;
            }
            // Like OpenAI: the usage chunk only when asked for.
            var events = SseSamples.OpenAiChat(model, Prompt, Cached, Completion, Reasoning).ToList();
            if (json?["stream_options"]?["include_usage"]?.GetValue<bool>() != true) events.RemoveAt(3);
            await Sse(http, events.Select(d => (default(string), d)));
        }
        else if (path.EndsWith("/responses"))
        {
            if (stream) await Sse(http, SseSamples.Responses(Prompt, Cached, Completion, Reasoning).Select(e => ((string?)e.Event, e.Data)));
            else await Json(http, SseSamples.Fill("""{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":@0@,"input_tokens_details":{"cached_tokens":@1@},"output_tokens":@2@,"output_tokens_details":{"reasoning_tokens":@3@},"total_tokens":@4@}}""",
                Prompt, Cached, Completion, Reasoning, Prompt + Completion));
        }
        else if (path.EndsWith("/messages"))
        {
            var model = (string?)json?["model"] ?? "claude-sonnet-4-5";
            if (stream) await Sse(http, SseSamples.Anthropic(model, AnthropicInput, AnthropicCacheRead, AnthropicCacheWrite, AnthropicOutput).Select(e => ((string?)e.Event, e.Data)));
            else await Json(http, SseSamples.Fill("""{"id":"msg_1","type":"message","role":"assistant","model":"@0@","content":[{"type":"text","text":"Hello world"}],"stop_reason":"end_turn","usage":{"input_tokens":@1@,"cache_creation_input_tokens":@2@,"cache_read_input_tokens":@3@,"output_tokens":@4@}}""",
                model, AnthropicInput, AnthropicCacheWrite, AnthropicCacheRead, AnthropicOutput));
        }
        else if (path.Contains(":streamGenerateContent"))
        {
            await Sse(http, SseSamples.Gemini(Prompt, Cached, Completion - Reasoning, Reasoning).Select(d => (default(string), d)));
        }
        else if (path.Contains(":generateContent"))
        {
            await Json(http, SseSamples.Gemini(Prompt, Cached, Completion - Reasoning, Reasoning)[^1]);
        }
        else if (path.EndsWith("/audio/speech"))
        {
            http.Response.ContentType = "audio/mpeg";
            await http.Response.Body.WriteAsync(Audio);
        }
        else if (path.EndsWith("/audio/transcriptions"))
        {
            await Json(http, SseSamples.Fill("""{"text":"Hello world","usage":{"type":"duration","seconds":@0@}}""", TranscriptionSeconds));
        }
        else if (path.EndsWith("/models"))
        {
            await Json(http, """{"object":"list","data":[{"id":"gpt-4o","object":"model","created":1,"owned_by":"openai"}]}""");
        }
        else
        {
            http.Response.StatusCode = 404;
            await Json(http, """{"error":{"message":"no such endpoint"}}""");
        }
    }

    public static Task Json(HttpContext http, string json, int status = 200)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(json);
    }

    private async Task Sse(HttpContext http, IEnumerable<(string? Event, string Data)> events)
    {
        http.Response.ContentType = "text/event-stream";
        var sent = 0;
        try
        {
            foreach (var (name, data) in events)
            {
                if (sent == HoldAfterEvents) await Release.Task.WaitAsync(http.RequestAborted);
                await http.Response.WriteAsync(SseSamples.Frame(data, name), http.RequestAborted);
                await http.Response.Body.FlushAsync(http.RequestAborted);
                sent++;
                await Task.Delay(EventDelay, http.RequestAborted);
            }
        }
        catch (OperationCanceledException)
        {
            CallerLeft.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
