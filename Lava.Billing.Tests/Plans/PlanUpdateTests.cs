using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Plans;

public class PlanUpdateTests(LavaApp app) : ApiTest(app)
{
    private static object Bundle(string name, string cost, string credit) => new { name, cost, credit_amount = credit };

    private static async Task<JsonNode> PatchOkAsync(LavaApp.Merchant m, JsonNode plan, object body)
    {
        var updated = await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", body);
        Assert.True(updated.Status == HttpStatusCode.OK, updated.Body?.ToJsonString());
        return updated.Body!;
    }

    [Fact]
    public async Task UpdatingNameRolloversAndIncludedCreditChangesOnlyThose()
    {
        var m = await App.NewMerchantAsync();
        var meter = await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var plan = await m.CreatePlanAsync(new
        {
            name = "Pro", period_amount = "10", billing_interval = "month", meter_ids = new[] { meter },
            credit_bundles = new[] { Bundle("b", "1", "1") }, default_auto_top_up_bundle_index = 0,
        });

        var updated = await PatchOkAsync(m, plan, new { name = "Pro+", rollover_type = "full", bundle_rollover_type = "full", included_credit = "4.25" });

        var expected = plan.DeepClone();
        expected["name"] = "Pro+";
        expected["rollover_type"] = "full";
        expected["bundle_rollover_type"] = "full";
        expected["included_credit"] = "4.2500000000";
        Assert.Equal(expected.ToJsonString(), updated.ToJsonString());
        Assert.Equal(updated.ToJsonString(), (await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}")).Body!.ToJsonString());

        Assert.Equal(updated.ToJsonString(), (await PatchOkAsync(m, plan, new { })).ToJsonString());
    }

    [Fact]
    public async Task MeterIdsReplaceTheLinkedSet()
    {
        var m = await App.NewMerchantAsync();
        var a = await App.MeterAsync(m.MerchantId, "a", "fixed", "requests", (0, 1));
        var b = await App.MeterAsync(m.MerchantId, "b", "fixed", "requests", (0, 1));
        var c = await App.MeterAsync(m.MerchantId, "c", "fixed", "requests", (0, 1));
        var plan = await m.CreatePlanAsync(new { name = "Pro", period_amount = "10", billing_interval = "month", meter_ids = new[] { a, b } });

        Assert.Equal([b, c], (await PatchOkAsync(m, plan, new { meter_ids = new[] { c, b } })).MeterIds());
        Assert.Equal([b, c], (await PatchOkAsync(m, plan, new { name = "kept" })).MeterIds());
        Assert.Empty((await PatchOkAsync(m, plan, new { meter_ids = Array.Empty<string>() })).MeterIds());

        var other = await App.NewMerchantAsync();
        var theirs = await App.MeterAsync(other.MerchantId, "x", "fixed", "requests", (0, 1));
        var refused = (await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", new { name = "never", meter_ids = new[] { a, theirs } }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains(theirs, (string)refused["errors"]!["meter_ids"]![0]!);
        Assert.Equal("kept", (string)(await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}")).Body!["name"]!);
    }

    [Fact]
    public async Task OneUpdateCanAddChangeAndDeleteBundles()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", ("Small", "5", "5"), ("Medium", "9", "10"), ("Large", "40", "50"));
        var (small, medium, large) = (plan.BundleIds()[0], plan.BundleIds()[1], plan.BundleIds()[2]);

        var updated = await PatchOkAsync(m, plan, new
        {
            credit_bundles = new object[]
            {
                new { name = "Huge", cost = "90", credit_amount = "120" },
                new { credit_bundle_id = medium, name = "Medium", cost = "9", credit_amount = "10", is_deleted = true },
                new { credit_bundle_id = small, name = "Starter", cost = "4.5", credit_amount = "5.5" },
            },
        });

        Assert.Equal(["Starter", "Large", "Huge"], updated.BundleNames());
        Assert.Equal([small, large], updated.BundleIds().Take(2));
        var starter = updated["credit_bundles"]![0]!;
        Assert.Equal("4.5000000000", (string)starter["cost"]!);
        Assert.Equal("5.5000000000", (string)starter["credit_amount"]!);
        (await m.Client.GetJsonAsync($"/v1/credit_bundles/{medium}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        var huge = await m.Client.GetJsonAsync($"/v1/credit_bundles/{updated.BundleIds()[2]}");
        Assert.Equal((string)plan["plan_id"]!, (string)huge.Body!["plan_id"]!);

        // Bundles left out of the list are left alone.
        Assert.Equal(["Starter", "Large", "Huge"], (await PatchOkAsync(m, plan, new { credit_bundles = Array.Empty<object>() })).BundleNames());
    }

    [Fact]
    public async Task TheDefaultBundleCanBeSetAndClearedAndGoesWithItsBundle()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", ("Small", "5", "5"), ("Large", "40", "50"));
        var (small, large) = (plan.BundleIds()[0], plan.BundleIds()[1]);

        Assert.Equal(large, (string)(await PatchOkAsync(m, plan, new { default_auto_top_up_bundle_id = large }))["default_auto_top_up_bundle_id"]!);
        Assert.Equal(large, (string)(await PatchOkAsync(m, plan, new { name = "kept" }))["default_auto_top_up_bundle_id"]!);
        Assert.Null((await PatchOkAsync(m, plan, Http.Json("{\"default_auto_top_up_bundle_id\":null}")))["default_auto_top_up_bundle_id"]);

        await PatchOkAsync(m, plan, new { default_auto_top_up_bundle_id = small });
        var afterDelete = await PatchOkAsync(m, plan, new
        {
            credit_bundles = new[] { new { credit_bundle_id = small, name = "Small", cost = "5", credit_amount = "5", is_deleted = true } },
        });
        Assert.Null(afterDelete["default_auto_top_up_bundle_id"]);
    }

    [Fact]
    public async Task TheDefaultBundleMustBeALiveBundleOfThePlan()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", ("Small", "5", "5"), ("Large", "40", "50"));
        var otherPlan = await m.CreatePlanAsync("Other", ("Else", "1", "1"));
        var small = plan.BundleIds()[0];

        foreach (var body in new object[]
                 {
                     new { default_auto_top_up_bundle_id = otherPlan.BundleIds()[0] },
                     new { default_auto_top_up_bundle_id = "bnd_nope" },
                     new
                     {
                         default_auto_top_up_bundle_id = small,
                         credit_bundles = new[] { new { credit_bundle_id = small, name = "S", cost = "5", credit_amount = "5", is_deleted = true } },
                     },
                 })
        {
            var problem = (await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", body)).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem["errors"]!.AsObject().ContainsKey("default_auto_top_up_bundle_id"), problem.ToJsonString());
        }
        Assert.Equal(plan.ToJsonString(), (await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}")).Body!.ToJsonString());
    }

    [Fact]
    public async Task ABundleOfAnotherPlanOrMerchantCannotBeChangedThroughThisPlan()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", ("Small", "5", "5"));
        var otherPlan = await m.CreatePlanAsync("Other", ("Else", "1", "1"));
        var stranger = await App.NewMerchantAsync();
        var strangersPlan = await stranger.CreatePlanAsync("Theirs", ("Theirs", "1", "1"));

        foreach (var id in new[] { otherPlan.BundleIds()[0], strangersPlan.BundleIds()[0], "bnd_nope" })
        {
            var problem = (await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", new
            {
                credit_bundles = new object[] { Bundle("added", "1", "1"), new { credit_bundle_id = id, name = "hijack", cost = "0", credit_amount = "999" } },
            })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem["errors"]!.AsObject().ContainsKey("credit_bundles[1].credit_bundle_id"), problem.ToJsonString());
        }
        Assert.Equal(plan.ToJsonString(), (await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}")).Body!.ToJsonString());
        Assert.Equal(otherPlan.ToJsonString(), (await m.Client.GetJsonAsync($"/v1/plans/{otherPlan["plan_id"]}")).Body!.ToJsonString());
        Assert.Equal(strangersPlan.ToJsonString(), (await stranger.Client.GetJsonAsync($"/v1/plans/{strangersPlan["plan_id"]}")).Body!.ToJsonString());
    }

    [Theory]
    [InlineData("{\"period_amount\":\"20\"}", "period_amount")]
    [InlineData("{\"name\":\"x\",\"period_amount\":10}", "period_amount")]
    [InlineData("{\"billing_interval\":\"year\"}", "billing_interval")]
    [InlineData("{\"billing_interval\":\"month\"}", "billing_interval")]
    public async Task PeriodAmountAndBillingIntervalCannotBeChanged(string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync();
        var problem = (await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "immutable_field");
        Assert.True(problem["errors"]!.AsObject().ContainsKey(field), problem.ToJsonString());
        Assert.Equal(plan.ToJsonString(), (await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}")).Body!.ToJsonString());
    }

    [Theory]
    [InlineData("{\"included_credit\":\"10.0000000001\"}", "included_credit")]
    [InlineData("{\"included_credit\":\"-1\"}", "included_credit")]
    [InlineData("{\"name\":\"\"}", "name")]
    [InlineData("{\"rollover_type\":\"half\"}", "rollover_type")]
    [InlineData("{\"bundle_rollover_type\":\"half\"}", "bundle_rollover_type")]
    [InlineData("{\"default_auto_top_up_bundle_id\":\"\"}", "default_auto_top_up_bundle_id")]
    [InlineData("{\"credit_bundles\":[{\"cost\":\"1\",\"credit_amount\":\"1\"}]}", "credit_bundles[0].name")]
    [InlineData("{\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"-1\",\"credit_amount\":\"1\"}]}", "credit_bundles[0].cost")]
    [InlineData("{\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"1\",\"credit_amount\":\"-1\"}]}", "credit_bundles[0].credit_amount")]
    [InlineData("{\"credit_bundles\":[{\"name\":\"b\",\"cost\":\"1\",\"credit_amount\":\"1\",\"is_deleted\":true}]}", "credit_bundles[0].credit_bundle_id")]
    [InlineData("{\"credit_bundles\":[{\"credit_bundle_id\":\"bnd_1\",\"is_deleted\":true},{\"credit_bundle_id\":\"bnd_1\",\"is_deleted\":true}]}", "credit_bundles")]
    public async Task AnInvalidUpdateIsA400NamingTheFieldAndChangesNothing(string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", ("b", "1", "1"));
        var problem = (await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(problem["errors"]!.AsObject().ContainsKey(field), $"{field} not in {problem["errors"]!.ToJsonString()}");
        Assert.Equal(plan.ToJsonString(), (await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}")).Body!.ToJsonString());
    }

    [Fact]
    public async Task AnUpdateCannotTakeAPlanPastTwentyLiveBundles()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", Enumerable.Range(0, 18).Select(i => ($"b{i}", "1", "1")).ToArray());
        var first = plan.BundleIds()[0];

        var threeMore = Enumerable.Range(0, 3).Select(i => Bundle($"n{i}", "1", "1")).ToArray();
        (await m.Client.PatchJsonAsync($"/v1/plans/{plan["plan_id"]}", new { credit_bundles = threeMore }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");

        // Deleting one in the same update makes room.
        var swap = threeMore.Append(new { credit_bundle_id = first, name = "b0", cost = "1", credit_amount = "1", is_deleted = true }).ToArray();
        Assert.Equal(20, (await PatchOkAsync(m, plan, new { credit_bundles = swap }))["credit_bundles"]!.AsArray().Count);
    }

    [Fact]
    public async Task ConcurrentUpdatesTogetherCannotPassTheBundleLimit()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync();
        var path = $"/v1/plans/{plan["plan_id"]}";

        // Each adds 5: four fit under the limit of 20, whatever the interleaving; the fifth must be refused.
        var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(w => Task.Run(() => m.Client.PatchJsonAsync(path, new
        {
            credit_bundles = Enumerable.Range(0, 5).Select(i => Bundle($"w{w}-{i}", "1", "1")).ToArray(),
        }))));

        Assert.Equal(4, results.Count(r => r.Status == HttpStatusCode.OK));
        Assert.Single(results, r => r.Status == HttpStatusCode.BadRequest);
        Assert.Equal(20, await App.QueryAsync<long>("SELECT count(*) FROM credit_bundles WHERE plan_id = @p AND deleted_at IS NULL",
            new { p = (string)plan["plan_id"]! }));
    }

    [Fact]
    public async Task UpdatingAnUnknownPlanIsA404()
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.PatchJsonAsync("/v1/plans/pln_nope", new { name = "x" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }
}
