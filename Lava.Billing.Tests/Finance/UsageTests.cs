using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Finance;

// Reports may be back-dated only so far (CreateRequestValidator.MaxBackdate): the clock stands just after the fixed dates
// these tests report at, so they pass whatever the real date is.
public class UsageTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        App.Clock.Set(new DateTimeOffset(2026, 3, 10, 12, 0, 0, TimeSpan.Zero));
    }

    private static string Q(string value) => Uri.EscapeDataString(value);

    private static async Task ReportAsync(LavaApp.Merchant m, string id, string? customer, string meter, string timestamp,
        long tokens = 1_000, string? cost = null, Dictionary<string, string>? metadata = null)
    {
        var r = await m.Client.PostJsonAsync("/v1/requests", new Dictionary<string, object?>
        {
            ["request_id"] = id, ["customer_id"] = customer, ["meter_slug"] = meter, ["input_tokens"] = tokens, ["output_tokens"] = 10,
            ["cost"] = cost, ["timestamp"] = timestamp, ["metadata"] = metadata,
        });
        Assert.True(r.Status == HttpStatusCode.Created, r.Body?.ToJsonString());
    }

    private static IEnumerable<(string Date, long Requests, string Charge)> Days(JsonNode usage) =>
        usage["items"]!.AsArray().Select(i => ((string)i!["date"]!, (long)i["total_requests"]!, (string)i["total_charge"]!));

    [Fact]
    public async Task DaysAreBucketedInTheOffsetOfStartAndEmptyDaysAreZeroFilled()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        await ReportAsync(m, "before", null, "gpt", "2026-02-28T18:29:59Z");       // 2026-02-28 23:59:59 at +05:30
        await ReportAsync(m, "first", null, "gpt", "2026-02-28T18:30:00Z");        // 2026-03-01 00:00:00 at +05:30
        await ReportAsync(m, "late", null, "gpt", "2026-03-01T18:29:59.999Z");     // 2026-03-01 23:59:59.999
        await ReportAsync(m, "next", null, "gpt", "2026-03-01T18:30:00Z");         // 2026-03-02 00:00:00
        await ReportAsync(m, "fourth", null, "gpt", "2026-03-04T10:00:00Z");
        await ReportAsync(m, "after", null, "gpt", "2026-03-04T18:30:00Z");        // 2026-03-05 00:00: past the end

        var r = await m.Client.GetJsonAsync($"/v1/usage?start={Q("2026-03-01T00:00:00+05:30")}&end={Q("2026-03-05T00:00:00+05:30")}");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(
            [("2026-03-01", 2L, "4.0000000000"), ("2026-03-02", 1L, "2.0000000000"), ("2026-03-03", 0L, "0.0000000000"), ("2026-03-04", 1L, "2.0000000000")],
            Days(r.Body!));
        var first = r.Body!["items"]![0]!;
        Assert.Equal("2026-03-01T00:00:00+05:30", (string)first["start"]!);
        Assert.Equal("2026-03-02T00:00:00+05:30", (string)first["end"]!);
        Assert.Equal("0.0000000000", (string)r.Body["items"]![2]!["total_cost"]!);
        Assert.Equal(4, (long)r.Body["totals"]!["total_requests"]!);
        Assert.Equal(4 * 1_010, (long)r.Body["totals"]!["total_usage_tokens"]!);
        Assert.Equal("8.0000000000", (string)r.Body["totals"]!["total_charge"]!);

        // The same instants in UTC fall on other days: the offset, not the server, sets the boundaries.
        var utc = await m.Client.GetJsonAsync($"/v1/usage?start=2026-02-28T00:00:00Z&end=2026-03-05T00:00:00Z");
        Assert.Equal(
            [("2026-02-28", 2L, "4.0000000000"), ("2026-03-01", 2L, "4.0000000000"), ("2026-03-02", 0L, "0.0000000000"),
             ("2026-03-03", 0L, "0.0000000000"), ("2026-03-04", 2L, "4.0000000000")],
            Days(utc.Body!));
    }

    [Fact]
    public async Task ANegativeOffsetAnUnescapedPlusAndAMidDayStartAreHonoured()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await ReportAsync(m, "a", null, "gpt", "2026-03-01T07:59:59Z");   // 2026-02-28 23:59:59 at -08:00
        await ReportAsync(m, "b", null, "gpt", "2026-03-01T08:00:00Z");   // 2026-03-01 00:00 at -08:00
        await ReportAsync(m, "c", null, "gpt", "2026-03-02T20:00:00Z");   // 2026-03-02 12:00 at -08:00

        var pacific = await m.Client.GetJsonAsync($"/v1/usage?start={Q("2026-03-01T00:00:00-08:00")}&end=2026-03-03");
        Assert.Equal([("2026-03-01", 1L, "1.0000000000"), ("2026-03-02", 1L, "1.0000000000")], Days(pacific.Body!));
        Assert.Equal("2026-03-03T00:00:00-08:00", (string)pacific.Body!["items"]![1]!["end"]!);

        // A '+' typed straight into a URL arrives as a space; it still means +05:30.
        var typed = await m.Client.GetJsonAsync("/v1/usage?start=2026-03-02T12:00:00+05:30&end=2026-03-03T12:00:00+05:30");
        Assert.Equal(HttpStatusCode.OK, typed.Status);
        Assert.Equal("2026-03-02T12:00:00+05:30", (string)typed.Body!["items"]![0]!["start"]!);
        Assert.Equal([("2026-03-02", 0L, "0.0000000000"), ("2026-03-03", 1L, "1.0000000000")], Days(typed.Body!));
        Assert.Equal("2026-03-03T12:00:00+05:30", (string)typed.Body!["items"]![1]!["end"]!);
    }

    [Fact]
    public async Task FiltersNarrowUsageExactlyAsTheyNarrowTheRequestList()
    {
        var m = await App.NewMerchantAsync();
        var alice = await App.CustomerAsync(m.MerchantId);
        var bob = await App.CustomerAsync(m.MerchantId);
        var gpt = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 3.3333333333m), (2_000, 0.0000001m));
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 17.5m));
        var random = new Random(6);
        for (var i = 0; i < 40; i++)
        {
            await ReportAsync(m, $"r{i}", i % 5 == 0 ? null : i % 2 == 0 ? alice : bob, i % 3 == 0 ? "pct" : "gpt",
                new DateTimeOffset(2026, 3, 1 + i % 9, i % 24, 7, 0, TimeSpan.Zero).ToString("O", CultureInfo.InvariantCulture),
                tokens: random.Next(0, 5_000), cost: (random.Next(1, 1_000_000) / 1_000_000m).ToString(CultureInfo.InvariantCulture),
                metadata: new() { ["team"] = i % 4 == 0 ? "core" : "edge" });
        }
        var range = $"start={Q("2026-03-02T00:00:00Z")}&end={Q("2026-03-08T00:00:00Z")}";

        foreach (var filter in new[] { "", $"customer_id={alice}", $"meter_id={gpt}", $"metadata_filters={Q("[[\"team\",\"core\"]]")}",
                     $"customer_id={bob}&meter_id={gpt}&metadata_filters={Q("[[\"team\",\"edge\"]]")}" })
        {
            var usage = (await m.Client.GetJsonAsync($"/v1/usage?{range}&{filter}")).Body!;
            var listed = (await m.Client.GetJsonAsync($"/v1/requests?limit=100&{filter}")).Body!["data"]!.AsArray()
                .Where(r => DateTimeOffset.Parse((string)r!["timestamp"]!, CultureInfo.InvariantCulture) is var t &&
                            t >= new DateTimeOffset(2026, 3, 2, 0, 0, 0, TimeSpan.Zero) && t < new DateTimeOffset(2026, 3, 8, 0, 0, 0, TimeSpan.Zero))
                .ToList();
            var totals = usage["totals"]!;
            Assert.Equal(listed.Count, (long)totals["total_requests"]!);
            Assert.Equal(listed.Sum(r => (long)r!["model_usage"]!["total_tokens"]!), (long)totals["total_usage_tokens"]!);
            Assert.Equal(listed.Sum(r => decimal.Parse((string)r!["cost"]!, CultureInfo.InvariantCulture)),
                decimal.Parse((string)totals["total_cost"]!, CultureInfo.InvariantCulture));
            Assert.Equal(listed.Sum(r => decimal.Parse((string)r!["charge"]!["amount"]!, CultureInfo.InvariantCulture)),
                decimal.Parse((string)totals["total_charge"]!, CultureInfo.InvariantCulture));
            // The days add up to the totals.
            Assert.Equal(usage["items"]!.AsArray().Sum(i => decimal.Parse((string)i!["total_charge"]!, CultureInfo.InvariantCulture)),
                decimal.Parse((string)totals["total_charge"]!, CultureInfo.InvariantCulture));
            Assert.Equal(6, usage["items"]!.AsArray().Count);
        }
    }

    [Fact]
    public async Task AnotherMerchantsUsageIsNeverCounted()
    {
        var m = await App.NewMerchantAsync();
        var other = await App.NewMerchantAsync("Other");
        await App.MeterAsync(other.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await ReportAsync(other, "theirs", null, "gpt", "2026-03-01T12:00:00Z");
        var usage = (await m.Client.GetJsonAsync("/v1/usage?start=2026-03-01&end=2026-03-02")).Body!;
        Assert.Equal(0, (long)usage["totals"]!["total_requests"]!);
        Assert.Single(usage["items"]!.AsArray());
    }

    [Theory]
    [InlineData("", "start")]
    [InlineData("start=yesterday", "start")]
    [InlineData("start=2026-03-01T00:00:00%2B25:00", "start")]
    [InlineData("start=2026-13-01", "start")]
    [InlineData("start=2026-03-01&end=2026-02-01", "end")]
    [InlineData("start=2026-03-01&end=2026-03-01", "end")]
    [InlineData("start=2025-01-01T00:00:00Z&end=2026-01-02T00:00:01Z", "end")]
    [InlineData("start=2026-03-01&end=never", "end")]
    [InlineData("start=2026-03-01&metadata_filters=%7Bnot-json", "metadata_filters")]
    public async Task BadUsageQueriesAreA400NamingTheField(string query, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.GetJsonAsync("/v1/usage?" + query)).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]![field]);
    }

    [Fact]
    public async Task AYearWithALeapDayIsTheLongestRange()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.GetJsonAsync("/v1/usage?start=2028-01-01T00:00:00Z&end=2029-01-01T00:00:00Z");
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(366, r.Body!["items"]!.AsArray().Count);
        Assert.Equal("2028-12-31", (string)r.Body["items"]![365]!["date"]!);
    }
}
