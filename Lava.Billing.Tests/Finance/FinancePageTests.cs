using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Finance;

/// <summary>The service on a real Kestrel port on 127.0.0.1, so a browser can reach it.</summary>
public sealed class KestrelLavaApp : LavaApp
{
    // UseKestrel(port) races the app's own Kestrel bind and sometimes throws "Addresses cannot be modified after the
    // server has started" (dotnet/aspnetcore#67714): the port comes from the URL instead.
    public KestrelLavaApp() => UseKestrel();

    protected override void ConfigureTestServices(IWebHostBuilder builder) => builder.UseUrls("http://127.0.0.1:0");

    public string BaseUrl
    {
        get
        {
            StartServer();
            var address = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("localhost", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/');
        }
    }
}

public class FinancePageTests(KestrelLavaApp app) : IClassFixture<KestrelLavaApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private static string Js(string value) => JsonSerializer.Serialize(value);

    [Fact]
    public async Task ThePageIsServedWithoutAKeyUnderAStrictPolicy()
    {
        var client = app.ClientWithKey(null);
        var page = await client.GetAsync("/finance");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType!.MediaType);
        Assert.Contains("script-src 'self'", page.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Contains("/finance/finance.js", await page.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/finance/finance.js")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/finance/secrets.txt")).StatusCode);
    }

    [BrowserFact]
    public async Task AFinanceUserSeesTheNumbersTheApiGivesAndDownloadsTheMonthsCsv()
    {
        var m = await app.NewMerchantAsync();
        var alice = await app.CustomerAsync(m.MerchantId);
        var bob = await app.CustomerAsync(m.MerchantId);
        await app.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (3_000, 1.2345678901m));
        await app.GrantAsync(m.MerchantId, alice, 0.01m);
        await app.GrantAsync(m.MerchantId, bob, 2m, "bundle");
        for (var i = 0; i < 9; i++)
            await m.ReportAsync($"r{i}", i % 3 == 2 ? null : i % 2 == 0 ? alice : bob, "gpt", inputTokens: 900 * i, cost: $"0.00{i}");
        var readOnlyKey = await m.ReadOnlyKeyAsync();
        var api = app.ClientWithKey(readOnlyKey);
        var downloads = Directory.CreateTempSubdirectory("lava-downloads-").FullName;

        await using var browser = await Chromium.LaunchAsync();
        await browser.AllowDownloadsAsync(downloads);
        await browser.NavigateAsync(app.BaseUrl + "/finance");
        await browser.EvaluateAsync("document.getElementById('key').focus()");
        await browser.TypeAsync(readOnlyKey);
        await browser.EvaluateAsync("document.getElementById('load').click()");
        await browser.WaitForAsync("document.body.dataset.state !== 'loading' && document.body.dataset.state !== 'idle'");
        Assert.True((string?)await browser.EvaluateAsync("document.body.dataset.state") == "loaded",
            (string?)await browser.EvaluateAsync("document.getElementById('status').textContent"));

        // The page's period: the month and offset it shows, as the API takes them.
        var month = (string)(await browser.EvaluateAsync("document.getElementById('month').value"))!;
        var offset = (string)(await browser.EvaluateAsync("document.getElementById('offset').value"))!;
        var first = DateTime.ParseExact(month + "-01", "yyyy-MM-dd", CultureInfo.InvariantCulture);
        var from = $"{month}-01T00:00:00{offset}";
        var to = $"{first.AddMonths(1):yyyy-MM}-01T00:00:00{offset}";

        var tb = (await api.GetJsonAsync("/v1/ledger/trial-balance?group_by=kind")).Body!;
        Assert.Equal((string)tb["totals"]![0]!["debits"]!, await TextAsync(browser, "tb-total-debits"));
        Assert.Equal((string)tb["totals"]![0]!["credits"]!, await TextAsync(browser, "tb-total-credits"));
        Assert.Equal("0.0000000000", await TextAsync(browser, "tb-total-balance"));
        var shownLines = (await browser.EvaluateAsync(
            "[...document.querySelectorAll('#trial-balance tbody tr')].map(r => [r.dataset.kind, r.cells[4].textContent])"))!.AsArray();
        Assert.Equal(tb["lines"]!.AsArray().Select(l => $"{l!["kind"]}={l["balance"]}"), shownLines.Select(l => $"{l![0]}={l[1]}"));

        var usage = (await api.GetJsonAsync($"/v1/usage?start={Uri.EscapeDataString(from)}&end={Uri.EscapeDataString(to)}")).Body!;
        Assert.Equal(9, (long)usage["totals"]!["total_requests"]!);
        Assert.Equal((string)usage["totals"]!["total_charge"]!, await TextAsync(browser, "usage-total-charge"));
        Assert.Equal((string)usage["totals"]!["total_cost"]!, await TextAsync(browser, "usage-total-cost"));
        Assert.Equal(((long)usage["totals"]!["total_requests"]!).ToString(CultureInfo.InvariantCulture), await TextAsync(browser, "usage-total-requests"));
        var bars = (await browser.EvaluateAsync(
            "[...document.querySelectorAll('#usage-chart svg rect')].map(r => r.dataset.date + '=' + r.dataset.charge)"))!.AsArray();
        Assert.Equal(usage["items"]!.AsArray().Select(i => $"{i!["date"]}={i["total_charge"]}"), bars.Select(b => (string)b!));

        var accounts = (await api.GetJsonAsync("/v1/ledger/accounts?limit=100")).Body!["data"]!.AsArray();
        foreach (var customer in new[] { alice, bob })
        {
            var theirs = accounts.Where(a => (string?)a!["customer_id"] == customer).ToDictionary(a => (string)a!["kind"]!, a => a!["balance"].Dec());
            var credits = -(theirs["credits_cycle"] + theirs["credits_bundle"]);
            Assert.Equal(credits.ToString("F10", CultureInfo.InvariantCulture), (string?)await browser.EvaluateAsync(
                $"document.querySelector('#customers tr[data-customer={Js(customer)}] [data-field=credits_remaining]').textContent"));
            Assert.Equal(theirs["receivable"].ToString("F10", CultureInfo.InvariantCulture), (string?)await browser.EvaluateAsync(
                $"document.querySelector('#customers tr[data-customer={Js(customer)}] [data-field=receivable]').textContent"));
        }

        await browser.EvaluateAsync("document.getElementById('download').click()");
        var file = Path.Combine(downloads, $"ledger-entries-{month}.csv");
        await browser.WaitForAsync("document.body.dataset.state === 'loaded' && document.getElementById('status').textContent === 'Export downloaded.'");
        for (var attempt = 0; attempt < 600 && !File.Exists(file); attempt++) await Task.Delay(50);
        Assert.True(File.Exists(file), "downloaded: " + string.Join(", ", Directory.GetFiles(downloads)));
        var expected = await api.GetStringAsync($"/v1/ledger/entries?format=csv&from={Uri.EscapeDataString(from)}&to={Uri.EscapeDataString(to)}");
        Assert.Equal(expected, await File.ReadAllTextAsync(file));
        Assert.True(expected.Split("\r\n", StringSplitOptions.RemoveEmptyEntries).Length > 20);
        Directory.Delete(downloads, recursive: true);
    }

    private static async Task<string?> TextAsync(Chromium browser, string id) =>
        (string?)await browser.EvaluateAsync($"document.getElementById({Js(id)}).textContent");
}
