using System.Net;
using System.Text.Json;
using Dapper;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Pricing;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// What a report stores is the least that builds its response and lineage again (docs/ledger.md, "What a report
/// stores"); what the API answers from it is what it answered, and recorded, when the report was posted, for reports
/// stored whole before as well.
/// </summary>
public class ReportStorageTests(LavaApp app) : ApiTest(app)
{
    // The metadata is out of ordinal order, with characters the response escapes; the usage has a cost and two tiers.
    private const string Job = """
        {"request_id":"job-1","customer_id":"CUSTOMER","meter_slug":"gpt","input_tokens":1500,"output_tokens":7,"cost":"0.001",
         "metadata":{"zeta":"1","a":"é<>","mm":"x"}}
        """;

    // Recorded in full by the service before lineage was stored compactly, for Job (GET /v1/ledger/transactions/{id}).
    private const string RecordedLineage = """
        {"mode":"customer","charge":{"amount":"0.0065210000","breakdown":[{"cost":"0.0050000000","tier":{"rate":"5.0000000000","type":"tokens_1m","start":0},"tokens":1000.000000,"seconds":0,"characters":0},{"cost":"0.0015210000","tier":{"rate":"3.0000000000","type":"tokens_1m","start":1000},"tokens":507.000000,"seconds":0,"characters":0}],"rate_type":"fixed"},"meter_id":"METER","quantities":{"input_cost":"0.0000000000","total_cost":"0.0010000000","output_cost":"0.0000000000","input_tokens":1500,"total_tokens":1507,"input_seconds":0,"output_tokens":7,"total_seconds":0,"output_seconds":0,"input_characters":0,"total_characters":0,"output_characters":0},"request_id":"job-1","charge_exact":0.006521,"price_version":1,"provider_cost":"0.0010000000"}
        """;

    private sealed record Posted(string MerchantId, HttpClient Client, string Body, string TransactionId, string MeterId);

    private async Task<Posted> PostAsync(string json, string slug, string tierType, params (decimal Start, decimal Rate)[] tiers)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, slug, "fixed", tierType, tiers);
        var created = await m.Client.PostAsync("/v1/requests", Http.Json(json.Replace("CUSTOMER", customer)));
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await created.Content.ReadAsStringAsync();
        return new Posted(m.MerchantId, m.Client, body, JsonDocument.Parse(body).RootElement.GetProperty("transaction_id").GetString()!, meterId);
    }

    private static async Task<string> TextAsync(HttpResponseMessage response)
    {
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}");
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>Everything the API answers about the posted report, as the bytes it sends.</summary>
    private async Task<(string Replay, string Get, string ListItem, string Lineage)> ReadBackAsync(Posted p, string json)
    {
        var replayed = await p.Client.PostAsync("/v1/requests", Http.Json(json));
        Assert.Equal(HttpStatusCode.Created, replayed.StatusCode);
        Assert.Equal("true", replayed.Headers.GetValues("Idempotent-Replayed").Single());
        var replay = await replayed.Content.ReadAsStringAsync();
        var get = await TextAsync(await p.Client.GetAsync("/v1/requests/job-1"));
        using var list = JsonDocument.Parse(await TextAsync(await p.Client.GetAsync("/v1/requests")));
        using var transaction = JsonDocument.Parse(await TextAsync(await p.Client.GetAsync($"/v1/ledger/transactions/{p.TransactionId}")));
        return (replay, get, list.RootElement.GetProperty("data")[0].GetRawText(), transaction.RootElement.GetProperty("lineage").GetRawText());
    }

    [Fact]
    public async Task AReportIsAnsweredAgainByteForByteFromWhatItStored()
    {
        var p = await PostAsync(Job, "gpt", "tokens_1m", (0, 5), (1_000, 3));
        var json = Job.Replace("CUSTOMER", JsonDocument.Parse(p.Body).RootElement.GetProperty("customer_id").GetString());

        var (replay, get, listItem, lineage) = await ReadBackAsync(p, json);

        Assert.Equal(p.Body, replay);
        Assert.Equal(p.Body, get);
        Assert.Equal(p.Body, listItem);
        Assert.Equal(RecordedLineage.Trim().Replace("METER", p.MeterId), lineage);
        await using var db = new NpgsqlConnection(App.ConnectionString);
        var (response, compact, full) = await db.QuerySingleAsync<(string, string, string)>("""
            SELECT r.response, t.lineage_compact, t.lineage::text FROM requests r
              JOIN ledger_transactions t ON t.merchant_id = r.merchant_id AND t.transaction_id = r.transaction_id
             WHERE r.merchant_id = @m
            """, new { m = p.MerchantId });
        Assert.Equal("""[1,["0","0.006521"],null,[2,0,1]]""", response);
        Assert.Equal("""[1,"customer",[1500,7,0,0,0,0],0.001,0.006521,"fixed","tokens_1m",[[0,5,1000.000000,0.005],[1000,3,507.000000,0.001521]]]""", compact);
        Assert.Equal("{}", full);
    }

    [Fact]
    public async Task SecondsKeepTheScaleTheyWereReportedWith()
    {
        const string json = """{"request_id":"job-1","meter_slug":"sec","input_seconds":"1.50","output_seconds":2}""";
        var p = await PostAsync(json, "sec", "minutes", (0, 2));

        var (replay, get, listItem, _) = await ReadBackAsync(p, json);

        Assert.Contains("\"input_seconds\":1.50,\"output_seconds\":2,\"total_seconds\":3.50", p.Body);
        Assert.Equal(p.Body, replay);
        Assert.Equal(p.Body, get);
        Assert.Equal(p.Body, listItem);
    }

    [Fact]
    public async Task AReportStoredWholeBeforeIsAnsweredAsItWasStored()
    {
        var p = await PostAsync(Job, "gpt", "tokens_1m", (0, 5), (1_000, 3));
        var json = Job.Replace("CUSTOMER", JsonDocument.Parse(p.Body).RootElement.GetProperty("customer_id").GetString());
        var recorded = RecordedLineage.Trim().Replace("METER", p.MeterId);
        // As the service stored reports before: the whole response, the whole lineage. The ledger refuses updates to
        // everybody, so this goes round its triggers.
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            await admin.ExecuteAsync("""
                SET session_replication_role = replica;
                UPDATE requests SET response = @Body WHERE merchant_id = @MerchantId;
                UPDATE ledger_transactions SET lineage = @Lineage::jsonb, lineage_compact = NULL WHERE merchant_id = @MerchantId;
                SET session_replication_role = origin;
                """, new { p.Body, p.MerchantId, Lineage = recorded });
        }

        var (replay, get, listItem, lineage) = await ReadBackAsync(p, json);

        Assert.Equal(p.Body, replay);
        Assert.Equal(p.Body, get);
        Assert.Equal(p.Body, listItem);
        Assert.Equal(recorded, lineage);
    }

    [Fact]
    public void AGatewayReportsSourceAndAnyBalanceAreStoredAndBuiltAgain()
    {
        var response = ReportResponses.Build("r", "cus_1", "mtr_1", new ReportSource("openai", "byok", "gpt-4o \"mini\"", "/v1/chat/completions"),
            new Usage(1, 2, 0, 0, 0, 0), null, RateType.Percentage, TierType.Requests, new Charge(0.25m, [new TierLine(0, 25, 1, 0.25m)]),
            new Dictionary<string, string> { ["b"] = "1", ["a"] = "2" }, new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero).AddTicks(10),
            new DateTimeOffset(2026, 1, 2, 3, 4, 6, TimeSpan.Zero), "customer", 3, "txn_1", new CustomerBalance("-0.0000000000", "12.5000000000"), "hold_1");
        var lineage = """[1,"customer",[1,2,0,0,0,0],null,0.25,"percentage","requests",[[0,25,1,0.25]]]""";
        // As ResponseSql reads it: the metadata from jsonb (another order), times in UTC without an offset.
        var row = $$"""
            [{{StoredReport.Response(response)}}, {{lineage}}, "r", "cus_1", "mtr_1", 3, "customer", {"a": "2", "b": "1"},
             "2026-01-02T03:04:05.000001", "2026-01-02T03:04:06", "txn_1", "hold_1"]
            """;

        Assert.Equal("""[1,["-0","12.5"],["openai","byok","gpt-4o \u0022mini\u0022","/v1/chat/completions"],[1,0]]""", StoredReport.Response(response));
        Assert.Equal(JsonSerializer.Serialize(response, LavaJson.Options), StoredReport.Body(row));
    }

    [Theory]
    [InlineData(false, false, false, "[1]")]
    [InlineData(true, false, false, "[1,[\"2\",\"0\"]]")]
    [InlineData(false, true, false, "[1,null,[\"openai\",\"managed\",null,\"/v1/embeddings\"]]")]
    [InlineData(false, false, true, "[1,null,null,[2,0,1]]")]
    [InlineData(true, true, true, "[1,[\"2\",\"0\"],[\"openai\",\"managed\",null,\"/v1/embeddings\"],[2,0,1]]")]
    public void TheStoredResponseLeavesOffTheTrailingPartsThatSayNothing(bool withBalance, bool fromGateway, bool unsortedMetadata, string expected)
    {
        var metadata = unsortedMetadata
            ? new Dictionary<string, string> { ["z"] = "1", ["a"] = "2", ["m"] = "3" }
            : new Dictionary<string, string> { ["a"] = "2", ["m"] = "3", ["z"] = "1" };
        var response = ReportResponses.Build("r", "cus_1", "mtr_1",
            fromGateway ? new ReportSource("openai", "managed", null, "/v1/embeddings") : ReportSource.Reported,
            new Usage(1, 2, 0, 0, 0, 0), null, RateType.Fixed, TierType.Tokens1M, new Charge(0m, []), metadata,
            new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero), new DateTimeOffset(2026, 1, 2, 3, 4, 6, TimeSpan.Zero), "customer", 1,
            "txn_1", withBalance ? new CustomerBalance("2.0000000000", "0.0000000000") : null, null);

        Assert.Equal(expected, StoredReport.Response(response));
    }

    [Fact]
    public void TheResponseIsWrittenExactlyAsReportsWereAnsweredBefore()
    {
        var response = ReportResponses.Build("job-1", "cus_1", "mtr_1", ReportSource.Reported, new Usage(1500, 7, 0, 0, 0, 0), 0.001m,
            RateType.Fixed, TierType.Tokens1M, new Charge(0.006521m, [new TierLine(0, 5, 1000.000000m, 0.005m), new TierLine(1000, 3, 507.000000m, 0.001521m)]),
            new Dictionary<string, string> { ["zeta"] = "1", ["a"] = "é<>", ["mm"] = "x" },
            DateTimeOffset.Parse("2026-12-03T21:08:46.633761+00:00"), DateTimeOffset.Parse("2026-12-03T21:08:46.633762+00:00"),
            "customer", 1, "txn_1", new CustomerBalance("0.0000000000", "0.0065210000"), null);

        // A response the service stored before, with its ids and created_at replaced.
        Assert.Equal("""
            {"request_id":"job-1","status":"completed","customer_id":"cus_1","meter_id":"mtr_1","provider":"custom","provider_key_type":"unmanaged","model":null,"endpoint":"/v1/requests","model_usage":{"input_tokens":1500,"output_tokens":7,"total_tokens":1507,"input_characters":0,"output_characters":0,"total_characters":0,"input_seconds":0,"output_seconds":0,"total_seconds":0,"input_cost":"0.0000000000","output_cost":"0.0000000000","total_cost":"0.0010000000"},"cost":"0.0010000000","charge":{"amount":"0.0065210000","rate_type":"fixed","breakdown":[{"tier":{"start":0,"rate":"5.0000000000","type":"tokens_1m"},"tokens":1000.000000,"characters":0,"seconds":0,"cost":"0.0050000000"},{"tier":{"start":1000,"rate":"3.0000000000","type":"tokens_1m"},"tokens":507.000000,"characters":0,"seconds":0,"cost":"0.0015210000"}]},"metadata":{"zeta":"1","a":"\u00E9\u003C\u003E","mm":"x"},"timestamp":"2026-12-03T21:08:46.633761+00:00","created_at":"2026-12-03T21:08:46.633762+00:00","mode":"customer","price_version":1,"transaction_id":"txn_1","customer_balance":{"credits_remaining":"0.0000000000","receivable":"0.0065210000"},"hold_id":null}
            """, JsonSerializer.Serialize(response, LavaJson.Options));
    }
}
