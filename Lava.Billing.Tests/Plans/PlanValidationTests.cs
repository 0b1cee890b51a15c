using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Plans;

/// <summary>Every class of bad plan input gets a problem naming the field, and nothing is stored.</summary>
public class PlanValidationTests(LavaApp app) : ApiTest(app)
{
    private const string Base = "\"name\":\"Pro\",\"period_amount\":\"10\",\"billing_interval\":\"month\"";
    private const string OneBundle = "\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"1\",\"credit_amount\":\"1\"}]";

    private async Task AssertNothingStoredAsync() =>
        Assert.Equal(0, await App.PlanCountAsync() + await App.QueryAsync<long>("SELECT count(*) FROM credit_bundles"));

    [Theory]
    [InlineData("{\"period_amount\":\"10\",\"billing_interval\":\"month\"}", "name")]
    [InlineData("{\"name\":\"\",\"period_amount\":\"10\",\"billing_interval\":\"month\"}", "name")]
    [InlineData("{\"name\":\"Pro\",\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"-1\",\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"1.00000000001\",\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"1000000000000000001\",\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"10\"}", "billing_interval")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"10\",\"billing_interval\":\"fortnight\"}", "billing_interval")]
    [InlineData("{" + Base + ",\"rollover_type\":\"partial\"}", "rollover_type")]
    [InlineData("{" + Base + ",\"bundle_rollover_type\":\"all\"}", "bundle_rollover_type")]
    [InlineData("{" + Base + ",\"included_credit\":\"10.0000000001\"}", "included_credit")]
    [InlineData("{" + Base + ",\"included_credit\":\"-0.5\"}", "included_credit")]
    [InlineData("{" + Base + ",\"default_auto_top_up_bundle_index\":0}", "default_auto_top_up_bundle_index")]
    [InlineData("{" + Base + "," + OneBundle + ",\"default_auto_top_up_bundle_index\":1}", "default_auto_top_up_bundle_index")]
    [InlineData("{" + Base + "," + OneBundle + ",\"default_auto_top_up_bundle_index\":-1}", "default_auto_top_up_bundle_index")]
    [InlineData("{" + Base + ",\"credit_bundles\":[{\"cost\":\"1\",\"credit_amount\":\"1\"}]}", "credit_bundles[0].name")]
    [InlineData("{" + Base + ",\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"-1\",\"credit_amount\":\"1\"}]}", "credit_bundles[0].cost")]
    [InlineData("{" + Base + ",\"credit_bundles\":[{\"name\":\"b\",\"credit_amount\":\"1\"}]}", "credit_bundles[0].cost")]
    [InlineData("{" + Base + ",\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"1\",\"credit_amount\":\"0\"}]}", "credit_bundles[0].credit_amount")]
    [InlineData("{" + Base + ",\"credit_bundles\":[null]}", "credit_bundles[0]")]
    [InlineData("{" + Base + ",\"meter_ids\":[\"\"]}", "meter_ids")]
    public async Task AnInvalidFieldIsA400NamingIt(string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/plans", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(body["errors"]!.AsObject().ContainsKey(field), $"{field} not in {body["errors"]!.ToJsonString()}");
        await AssertNothingStoredAsync();
    }

    [Theory]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"ten\",\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":\"1e3\",\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{\"name\":\"Pro\",\"period_amount\":true,\"billing_interval\":\"month\"}", "period_amount")]
    [InlineData("{" + Base + ",\"included_credit\":[]}", "included_credit")]
    [InlineData("{" + Base + ",\"default_auto_top_up_bundle_index\":\"0\"}", "default_auto_top_up_bundle_index")]
    [InlineData("{" + Base + ",\"meter_ids\":\"mtr_1\"}", "meter_ids")]
    [InlineData("{" + Base + ",\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"1,5\",\"credit_amount\":\"1\"}]}", "credit_bundles[0].cost")]
    public async Task AWrongTypeIsA400NamingTheField(string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/plans", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
        Assert.True(body["errors"]!.AsObject().ContainsKey(field), $"{field} not in {body["errors"]!.ToJsonString()}");
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task MoreThanTwentyBundlesAreRefused()
    {
        var m = await App.NewMerchantAsync();
        var bundles = Enumerable.Range(0, 21).Select(i => new { name = $"b{i}", cost = "1", credit_amount = "1" }).ToArray();
        var body = (await m.Client.PostJsonAsync("/v1/plans", new { name = "Pro", period_amount = "10", billing_interval = "month", credit_bundles = bundles }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(body["errors"]!.AsObject().ContainsKey("credit_bundles"));
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task UnknownDeletedOrAnotherMerchantsMetersAreA400NamingMeterIds()
    {
        var m = await App.NewMerchantAsync();
        var mine = await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var deleted = await App.MeterAsync(m.MerchantId, "old", "fixed", "requests", (0, 1));
        await App.QueryAsync<int>("UPDATE meters SET deleted_at = now() WHERE meter_id = @deleted RETURNING 1", new { deleted });
        var other = await App.NewMerchantAsync();
        var theirs = await App.MeterAsync(other.MerchantId, "chat", "fixed", "requests", (0, 1));

        foreach (var unknown in new[] { "mtr_nope", deleted, theirs })
        {
            var body = (await m.Client.PostJsonAsync("/v1/plans", new
            {
                name = "Pro", period_amount = "10", billing_interval = "month", meter_ids = new[] { mine, unknown },
                credit_bundles = new[] { new { name = "b", cost = "1", credit_amount = "1" } },
            })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
            var errors = body["errors"]!["meter_ids"]!.AsArray().Select(e => (string)e!).ToList();
            Assert.Single(errors);
            Assert.Contains(unknown, errors[0]);
        }
        await AssertNothingStoredAsync();
    }
}
