using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// A fact that needs the Debian chromium. Skipped on a developer machine without it; under CI=true it runs, and so
/// fails loudly, because scripts/test.sh installs chromium there.
/// </summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        if (!File.Exists(Chromium.ExecutablePath) && Environment.GetEnvironmentVariable("CI") != "true")
            Skip = $"{Chromium.ExecutablePath} is not installed (scripts/test.sh installs it when run as root or under CI=true)";
    }
}

/// <summary>
/// Headless Chromium driven over the DevTools protocol with nothing but a WebSocket: launch with a fresh profile, talk
/// to its one page, evaluate script, set where downloads go. Every wait is bounded.
/// </summary>
public sealed partial class Chromium : IAsyncDisposable
{
    public const string ExecutablePath = "/usr/bin/chromium";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly string _profile;
    private readonly ClientWebSocket _page = new();
    private readonly ClientWebSocket _browser = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonNode?>> _pending = new();
    private readonly CancellationTokenSource _closing = new();
    private Task _receiving = Task.CompletedTask;
    private int _nextId;

    [GeneratedRegex(@"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")]
    private static partial Regex Listening();

    private Chromium(Process process, string profile)
    {
        _process = process;
        _profile = profile;
    }

    public string? BrowserWebSocketUrl { get; private set; }

    public static async Task<Chromium> LaunchAsync()
    {
        if (!File.Exists(ExecutablePath)) throw new InvalidOperationException($"{ExecutablePath} is missing: scripts/test.sh installs it (apt-get install chromium).");
        var profile = Directory.CreateTempSubdirectory("lava-chromium-").FullName;
        var start = new ProcessStartInfo(ExecutablePath) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var flag in new[]
                 {
                     "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile, "--remote-debugging-address=127.0.0.1",
                     "--remote-debugging-port=0", "about:blank",
                 })
            start.ArgumentList.Add(flag);
        var browser = new Chromium(Process.Start(start)!, profile);
        try
        {
            await browser.ConnectAsync();
            return browser;
        }
        catch
        {
            await browser.DisposeAsync();
            throw;
        }
    }

    private async Task ConnectAsync()
    {
        using var timeout = new CancellationTokenSource(Patience);
        string? port = null;
        while (port is null && await _process.StandardError.ReadLineAsync(timeout.Token) is { } line)
        {
            var match = Listening().Match(line);
            if (!match.Success) continue;
            BrowserWebSocketUrl = match.Groups[1].Value;
            port = match.Groups[2].Value;
        }
        if (port is null) throw new InvalidOperationException("chromium exited before it opened its DevTools port");
        // Keep draining the browser's output so it never blocks on a full pipe.
        _ = _process.StandardError.ReadToEndAsync(_closing.Token);
        _ = _process.StandardOutput.ReadToEndAsync(_closing.Token);

        using var http = new HttpClient();
        var targets = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list", timeout.Token))!.AsArray();
        var page = targets.First(t => (string?)t!["type"] == "page")!;
        await _page.ConnectAsync(new Uri((string)page["webSocketDebuggerUrl"]!), timeout.Token);
        _receiving = ReceiveAsync();
    }

    private async Task ReceiveAsync()
    {
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        try
        {
            while (_page.State == WebSocketState.Open)
            {
                var result = await _page.ReceiveAsync(buffer, _closing.Token);
                if (result.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, result.Count);
                if (!result.EndOfMessage) continue;
                var node = JsonNode.Parse(message.GetBuffer().AsSpan(0, (int)message.Length))!;
                message.SetLength(0);
                // Events (no id) are not needed: the tests poll the page's own state instead.
                if (node["id"] is { } id && _pending.TryRemove((int)id, out var waiter))
                {
                    if (node["error"] is { } error) waiter.TrySetException(new InvalidOperationException("CDP error: " + error.ToJsonString()));
                    else waiter.TrySetResult(node["result"]);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException)
        {
            // Closing, or the browser went away: whoever still waits is told below.
        }
        foreach (var waiter in _pending.Values) waiter.TrySetException(new InvalidOperationException("the DevTools connection closed"));
    }

    public async Task<JsonNode?> SendAsync(string method, object? parameters = null)
    {
        var id = Interlocked.Increment(ref _nextId);
        var waiter = new TaskCompletionSource<JsonNode?>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = waiter;
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new { id, method, @params = parameters ?? new { } });
        await _page.SendAsync(bytes, WebSocketMessageType.Text, true, _closing.Token);
        return await waiter.Task.WaitAsync(Patience);
    }

    /// <summary>Runs script in the page (awaiting a promise it returns) and gives back its JSON value.</summary>
    public async Task<JsonNode?> EvaluateAsync(string expression)
    {
        var result = await SendAsync("Runtime.evaluate", new { expression, awaitPromise = true, returnByValue = true });
        if (result?["exceptionDetails"] is { } failure) throw new InvalidOperationException("page script failed: " + failure.ToJsonString());
        return result?["result"]?["value"];
    }

    public async Task NavigateAsync(string url)
    {
        await SendAsync("Page.navigate", new { url });
        await WaitForAsync("document.readyState === 'complete' && location.href === " + JsonSerializer.Serialize(url));
    }

    /// <summary>Polls an expression until it is truthy; the page's own state, never a fixed sleep, decides.</summary>
    public async Task WaitForAsync(string expression)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            if (await EvaluateAsync($"Boolean({expression})") is { } value && (bool)value) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the page never satisfied: {expression}");
            await Task.Delay(50);
        }
    }

    /// <summary>Sends text as keystrokes would, into the focused element.</summary>
    public Task TypeAsync(string text) => SendAsync("Input.insertText", new { text });

    /// <summary>
    /// Downloads go to <paramref name="directory"/>. A browser-wide setting, so it is sent over the browser's own
    /// socket, which stays open: the setting lasts as long as the session that made it.
    /// </summary>
    public async Task AllowDownloadsAsync(string directory)
    {
        await _browser.ConnectAsync(new Uri(BrowserWebSocketUrl!), _closing.Token);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new
        {
            id = 1, method = "Browser.setDownloadBehavior", @params = new { behavior = "allow", downloadPath = directory },
        });
        await _browser.SendAsync(bytes, WebSocketMessageType.Text, true, _closing.Token);
        var buffer = new byte[16 * 1024];
        var reply = await _browser.ReceiveAsync(buffer, _closing.Token).WaitAsync(Patience);
        var node = JsonNode.Parse(Encoding.UTF8.GetString(buffer, 0, reply.Count))!;
        if (node["error"] is { } error) throw new InvalidOperationException("CDP error: " + error.ToJsonString());
    }

    public async ValueTask DisposeAsync()
    {
        await _closing.CancelAsync();
        try
        {
            await _receiving;
        }
        finally
        {
            _page.Dispose();
            _browser.Dispose();
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            _process.Dispose();
            _closing.Dispose();
            try
            {
                Directory.Delete(_profile, recursive: true);
            }
            catch (IOException)
            {
                // A profile file still held open by a dying child process; the temp directory is cleaned eventually.
            }
        }
    }
}
