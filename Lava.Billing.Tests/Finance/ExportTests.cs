using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;
using CsvHelper;
using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Finance;

public class ExportTests(LavaApp app) : ApiTest(app)
{
    private static List<Dictionary<string, string>> ParseCsv(string text)
    {
        using var csv = new CsvReader(new StringReader(text), CultureInfo.InvariantCulture);
        var rows = new List<Dictionary<string, string>>();
        csv.Read();
        csv.ReadHeader();
        var header = csv.HeaderRecord!;
        while (csv.Read()) rows.Add(header.ToDictionary(h => h, h => csv.GetField(h)!));
        return rows;
    }

    private static async Task<(HttpResponseMessage Response, string Body)> GetTextAsync(HttpClient client, string path, string? accept = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (accept is not null) request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(accept));
        var response = await client.SendAsync(request);
        return (response, await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("/v1/requests?format=csv&limit=1000", 4)]
    [InlineData("/v1/requests?format=ndjson&limit=500", 3)]
    [InlineData("/v1/ledger/entries?format=csv&limit=0", 7)]
    public async Task AnExportIgnoresLimitAndRunsToTheEnd(string path, int atLeastLines)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.GrantAsync(m.MerchantId, customer, 100m);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5));
        for (var i = 0; i < 3; i++) await m.ReportAsync($"r{i}", customer, "gpt", inputTokens: 1_000);

        var (response, body) = await GetTextAsync(m.Client, path);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var lines = body.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        Assert.True(lines >= atLeastLines, $"{path} gave only {lines} line(s):\n{body}");
        // The same limit on a JSON page is still refused: it is out of range there.
        (await m.Client.GetJsonAsync(path.Replace("format=", "x=", StringComparison.Ordinal))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task RequestsExportAsCsvThatParsesBackToExactlyWhatTheListShows()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 3.3333333333m));
        var tricky = new Dictionary<string, string>
        {
            ["note"] = "a, b and \"c\"\r\nsecond line\nthird",
            ["city"] = "Zürich — 東京 🚀",
            ["formula"] = "=SUM(A1:A2)",
            ["spaces"] = "  padded  ",
        };
        await m.ReportAsync("plain", customer, "gpt", inputTokens: 1_234);
        await m.ReportAsync("r,1 \"quoted\"", customer, "gpt", inputTokens: 77, cost: "0.0000000001", metadata: tricky);
        await m.ReportAsync("meter-only", null, "gpt");

        var (response, body) = await GetTextAsync(m.Client, "/v1/requests?format=csv");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/csv", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("utf-8", response.Content.Headers.ContentType.CharSet);
        Assert.Contains("requests.csv", response.Content.Headers.ContentDisposition!.ToString());
        var rows = ParseCsv(body);
        var listed = (await m.Client.GetJsonAsync("/v1/requests?limit=100")).Body!["data"]!.AsArray();
        Assert.Equal(listed.Select(r => (string)r!["request_id"]!), rows.Select(r => r["request_id"]));
        foreach (var (row, json) in rows.Zip(listed))
        {
            Assert.Equal((string)json!["charge"]!["amount"]!, row["charge"]);
            Assert.Equal((string)json["cost"]!, row["cost"]);
            Assert.Equal((string?)json["customer_id"] ?? "", row["customer_id"]);
            Assert.Equal((string)json["transaction_id"]!, row["transaction_id"]);
            Assert.Equal((long)json["model_usage"]!["input_tokens"]!, long.Parse(row["input_tokens"], CultureInfo.InvariantCulture));
            // The database keeps microseconds; the report's answer showed the clock's 100 ns ticks.
            var answered = DateTimeOffset.Parse((string)json["timestamp"]!, CultureInfo.InvariantCulture);
            Assert.Equal(answered.AddTicks(-(answered.Ticks % 10)), DateTimeOffset.Parse(row["timestamp"], CultureInfo.InvariantCulture));
            var metadata = JsonNode.Parse(row["metadata"])!.AsObject().ToDictionary(p => p.Key, p => (string)p.Value!);
            Assert.Equal(json["metadata"]!.AsObject().ToDictionary(p => p.Key, p => (string)p.Value!), metadata);
        }
        Assert.Equal(tricky, JsonNode.Parse(rows[1]["metadata"])!.AsObject().ToDictionary(p => p.Key, p => (string)p.Value!));

        // The Accept header asks for the same thing; filters apply as they do to the list.
        var (accepted, acceptedBody) = await GetTextAsync(m.Client, $"/v1/requests?customer_id={customer}", "text/csv");
        Assert.Equal("text/csv", accepted.Content.Headers.ContentType!.MediaType);
        Assert.Equal(["r,1 \"quoted\"", "plain"], ParseCsv(acceptedBody).Select(r => r["request_id"]));
        // A client that prefers JSON, or takes anything, still gets the JSON page.
        foreach (var accept in new[] { "application/json, text/csv", "*/*", "text/csv;q=0.5, application/json" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/requests");
            request.Headers.TryAddWithoutValidation("Accept", accept);
            Assert.Equal("application/json", (await m.Client.SendAsync(request)).Content.Headers.ContentType!.MediaType);
        }
    }

    [Fact]
    public async Task LedgerEntriesExportTheSameColumnsAsCsvNdjsonAndJson()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        await App.GrantAsync(m.MerchantId, customer, 1m);
        await m.ReportAsync("a", customer, "gpt", cost: "0.3");
        await m.ReportAsync("b", null, "gpt", cost: "0.1");

        var json = (await m.Client.GetJsonAsync("/v1/ledger/entries?limit=100")).Body!["data"]!.AsArray();
        var (csvResponse, csvBody) = await GetTextAsync(m.Client, "/v1/ledger/entries?format=csv");
        var (ndResponse, ndBody) = await GetTextAsync(m.Client, "/v1/ledger/entries", "application/x-ndjson");

        Assert.Equal("application/x-ndjson", ndResponse.Content.Headers.ContentType!.MediaType);
        Assert.Equal(LedgerReadStore.EntryColumns.Select(c => c.Name), csvBody.Split("\r\n")[0].Split(','));
        var csv = ParseCsv(csvBody);
        var nd = ndBody.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(json.Count, csv.Count);
        Assert.Equal(json.Count, nd.Count);
        for (var i = 0; i < json.Count; i++)
        {
            var expected = json[i]!.AsObject();
            Assert.Equal(expected.Select(p => p.Key), nd[i].Select(p => p.Key));
            Assert.Equal(expected.Select(p => p.Key), csv[i].Keys);
            foreach (var (name, value) in expected)
            {
                var text = value is null ? "" : value.GetValueKind() == System.Text.Json.JsonValueKind.String ? (string)value! : value.ToJsonString();
                if (name is "created_at" or "effective_at")
                {
                    Assert.Equal(DateTimeOffset.Parse(text, CultureInfo.InvariantCulture), DateTimeOffset.Parse(csv[i][name], CultureInfo.InvariantCulture));
                    Assert.Equal(csv[i][name], (string)nd[i][name]!);
                    continue;
                }
                Assert.Equal(text, csv[i][name]);
                Assert.Equal(value?.ToJsonString() ?? "null", nd[i][name]?.ToJsonString() ?? "null");
            }
        }
        Assert.Equal(0m, csv.Sum(r => decimal.Parse(r["amount"], CultureInfo.InvariantCulture)));
        Assert.Equal(csv.Sum(r => decimal.Parse(r["debit"], CultureInfo.InvariantCulture)), csv.Sum(r => decimal.Parse(r["credit"], CultureInfo.InvariantCulture)));
    }

    [Fact]
    public async Task AMonthsCsvTiesExactlyToTheTrialBalanceAndToUsage()
    {
        var m = await App.NewMerchantAsync();
        var readOnly = App.ClientWithKey(await m.ReadOnlyKeyAsync());
        var alice = await App.CustomerAsync(m.MerchantId);
        var bob = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (2_000, 1.2345678901m));
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 20));
        await App.GrantAsync(m.MerchantId, alice, 0.02m);
        await m.ReportAsync("earlier", alice, "gpt", cost: "0.7");
        var from = await App.DatabaseNowAsync();
        var usageStart = DateTimeOffset.UtcNow;
        await App.GrantAsync(m.MerchantId, bob, 1m, "bundle");
        for (var i = 0; i < 12; i++)
            await m.ReportAsync($"r{i}", i % 4 == 3 ? null : i % 2 == 0 ? alice : bob, i % 3 == 0 ? "pct" : "gpt", inputTokens: 700 * i, cost: $"0.0{i}3");
        var to = await App.DatabaseNowAsync();
        var usageEnd = DateTimeOffset.UtcNow;
        await m.ReportAsync("later", bob, "gpt", cost: "0.9");

        var (_, body) = await GetTextAsync(readOnly, $"/v1/ledger/entries?format=csv&from={from}&to={to}");
        var movement = ParseCsv(body).GroupBy(r => r["account_id"])
            .ToDictionary(g => g.Key, g => g.Sum(r => decimal.Parse(r["amount"], CultureInfo.InvariantCulture)));

        async Task<Dictionary<string, decimal>> Balances(string asOf) =>
            (await readOnly.GetJsonAsync($"/v1/ledger/trial-balance?as_of={asOf}")).Body!["lines"]!.AsArray()
            .ToDictionary(l => (string)l!["account_id"]!, l => l!["balance"].Dec());
        var opening = await Balances(from);
        var closing = await Balances(to);
        foreach (var account in closing.Keys.Union(opening.Keys))
            Assert.Equal(closing.GetValueOrDefault(account) - opening.GetValueOrDefault(account), movement.GetValueOrDefault(account));
        Assert.Equal(0m, movement.Values.Sum());

        var usage = (await readOnly.GetJsonAsync(
            $"/v1/usage?start={Uri.EscapeDataString(usageStart.ToString("O"))}&end={Uri.EscapeDataString(usageEnd.ToString("O"))}")).Body!["totals"]!;
        Assert.Equal(12, (long)usage["total_requests"]!);
        Assert.Equal(usage["total_cost"].Dec(), movement[LedgerAccounts.ProviderCost]);
        var charged = 0m;
        foreach (var customer in new[] { alice, bob })
        {
            var theirs = (await readOnly.GetJsonAsync(
                $"/v1/usage?customer_id={customer}&start={Uri.EscapeDataString(usageStart.ToString("O"))}&end={Uri.EscapeDataString(usageEnd.ToString("O"))}")).Body!;
            charged += theirs["totals"]!["total_charge"].Dec();
        }
        Assert.Equal(charged, -movement[LedgerAccounts.UsageRevenue]);
    }

    /// <summary>Seeds entries straight into the tables (as superuser, triggers off), already numbered.</summary>
    private async Task SeedEntriesAsync(string merchantId, int transactions)
    {
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync("""
            SET session_replication_role = replica;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at)
            SELECT @m, 'txn_seed_' || g, 'seed', 'seed_' || g, now() FROM generate_series(1, @n) g;
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            SELECT @m, 'txn_seed_' || g, a.account_id, 'USD', a.sign * (g % 997 + 1) / 100.0
              FROM generate_series(1, @n) g, (VALUES ('provider_cost', 1), ('provider_payable', -1)) a(account_id, sign);
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            SELECT @m, sum(count(*)) OVER (ORDER BY min(entry_id)) - count(*) + 1, transaction_id, array_agg(entry_id ORDER BY entry_id)
              FROM entries WHERE merchant_id = @m GROUP BY transaction_id;
            SET session_replication_role = origin;
            """, new { m = merchantId, n = transactions }, commandTimeout: 300);
    }

    [Fact]
    public async Task TheWholeLedgerExportLooksEachTransactionUpOncePerTransactionNotOncePerEntry()
    {
        var m = await App.NewMerchantAsync();
        await SeedEntriesAsync(m.MerchantId, 2_000);
        var sql = (string)typeof(LedgerReadStore).GetField("ExportAllEntries", BindingFlags.NonPublic | BindingFlags.Static)!.GetValue(null)!;
        await using var c = new NpgsqlConnection(App.ConnectionString);
        await c.ExecuteAsync("ANALYZE ledger_transactions, entries, ledger_sequence");

        var plan = JsonNode.Parse(await c.QuerySingleAsync<string>("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, new { MerchantId = m.MerchantId, AfterSeq = 0L }))!;

        var lookups = Nodes(plan[0]!["Plan"]!).Where(n => (string?)n["Relation Name"] == "ledger_transactions").ToList();
        Assert.Equal(2_000L, lookups.Sum(n => (long)n["Actual Loops"]!));
        Assert.Equal(4_000L, (long)plan[0]!["Plan"]!["Actual Rows"]!);

        static IEnumerable<JsonNode> Nodes(JsonNode node) =>
            new[] { node }.Concat((node["Plans"]?.AsArray() ?? []).SelectMany(child => Nodes(child!)));
    }

    [Fact]
    public async Task ALargeExportIsStreamedWhileTheQueryIsStillRunning()
    {
        var m = await App.NewMerchantAsync();
        await SeedEntriesAsync(m.MerchantId, 100_000);

        using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/ledger/entries?format=csv");
        using var response = await m.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Null(response.Content.Headers.ContentLength);
        await using var stream = await response.Content.ReadAsStreamAsync();
        using var reader = new StreamReader(stream, Encoding.UTF8);
        Assert.Equal(string.Join(',', LedgerReadStore.EntryColumns.Select(c => c.Name)), await reader.ReadLineAsync());
        var first = (await reader.ReadLineAsync())!.Split(',');
        Assert.Equal("1", first[0]);

        // The first rows are here, and the export's snapshot is still open in the database: the body is being
        // written as it is read, not built in memory first (200,000 rows cannot fit in the response pipe's buffer).
        var database = new NpgsqlConnectionStringBuilder(App.ConnectionString).Database;
        Assert.Equal(1, await App.QueryAsync<long>("""
            SELECT count(*) FROM pg_stat_activity
             WHERE datname = @database AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND query LIKE '%FROM ledger_sequence r%'
            """, new { database }));

        long rows = 1, lastSeq = 1;
        var total = decimal.Parse(first[14], CultureInfo.InvariantCulture);
        while (await reader.ReadLineAsync() is { } line)
        {
            var fields = line.Split(',');
            var seq = long.Parse(fields[0], CultureInfo.InvariantCulture);
            Assert.Equal(lastSeq + 1, seq);
            lastSeq = seq;
            total += decimal.Parse(fields[14], CultureInfo.InvariantCulture);
            rows++;
        }
        Assert.Equal(200_000, rows);
        Assert.Equal(200_000, lastSeq);
        Assert.Equal(0m, total);
    }
}
