using System.Net;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Plans;

public class PlanLifecycleTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task APlanCreatedWithOnlyTheRequiredFieldsIncludesTheWholeFeeAsCreditAndRollsNothingOver()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/plans", new { name = "Starter", period_amount = "19.99", billing_interval = "month" });

        Assert.Equal(HttpStatusCode.Created, created.Status);
        var plan = created.Body!;
        var planId = (string)plan["plan_id"]!;
        Assert.StartsWith("pln_", planId);
        Assert.Equal($"/v1/plans/{planId}", created.Response.Headers.Location?.ToString());
        Assert.Equal(m.MerchantId, (string)plan["merchant_id"]!);
        Assert.Equal("Starter", (string)plan["name"]!);
        Assert.Equal("19.9900000000", (string)plan["period_amount"]!);
        Assert.Equal("19.9900000000", (string)plan["included_credit"]!);
        Assert.Equal("month", (string)plan["billing_interval"]!);
        Assert.Equal("none", (string)plan["rollover_type"]!);
        Assert.Equal("none", (string)plan["bundle_rollover_type"]!);
        Assert.Null(plan["default_auto_top_up_bundle_id"]);
        Assert.True(plan.AsObject().ContainsKey("default_auto_top_up_bundle_id"));
        Assert.Empty(plan["linked_meters"]!.AsArray());
        Assert.Empty(plan["credit_bundles"]!.AsArray());
        Assert.True(DateTimeOffset.UtcNow - DateTimeOffset.Parse((string)plan["created_at"]!) < TimeSpan.FromMinutes(1));
        Assert.Equal(19.99m, await App.QueryAsync<decimal>("SELECT included_credit FROM plans WHERE plan_id = @planId", new { planId }));
    }

    [Fact]
    public async Task APlanCreatedWithMetersAndBundlesNamesTheDefaultBundleById()
    {
        var m = await App.NewMerchantAsync();
        var chat = await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5));
        var voice = await App.MeterAsync(m.MerchantId, "voice", "fixed", "minutes", (0, 1));

        var plan = await m.CreatePlanAsync(new
        {
            name = "Team", period_amount = 100, billing_interval = "year", rollover_type = "full", bundle_rollover_type = "full",
            included_credit = "80.5", default_auto_top_up_bundle_index = 1, meter_ids = new[] { voice, chat, chat },
            credit_bundles = new object[]
            {
                new { name = "Small", cost = "5", credit_amount = "5" },
                new { name = "Large", cost = 45, credit_amount = "50.0000000001" },
            },
        });

        Assert.Equal("100.0000000000", (string)plan["period_amount"]!);
        Assert.Equal("80.5000000000", (string)plan["included_credit"]!);
        Assert.Equal("full", (string)plan["rollover_type"]!);
        Assert.Equal("full", (string)plan["bundle_rollover_type"]!);
        Assert.Equal(new[] { chat, voice }.Order(StringComparer.Ordinal), plan.MeterIds());
        Assert.Equal(["chat", "voice"], plan["linked_meters"]!.AsArray().Select(l => (string)l!["name"]!).Order());
        Assert.Equal(["Small", "Large"], plan.BundleNames());
        Assert.All(plan.BundleIds(), id => Assert.StartsWith("bnd_", id));
        var large = plan["credit_bundles"]![1]!;
        Assert.Equal("45.0000000000", (string)large["cost"]!);
        Assert.Equal("50.0000000001", (string)large["credit_amount"]!);
        Assert.Equal(plan.BundleIds()[1], (string)plan["default_auto_top_up_bundle_id"]!);
    }

    [Fact]
    public async Task ARetrievedPlanIsExactlyTheCreatedPlan()
    {
        var m = await App.NewMerchantAsync();
        var meter = await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var plan = await m.CreatePlanAsync(new
        {
            name = "Pro", period_amount = "10", billing_interval = "week", meter_ids = new[] { meter },
            credit_bundles = new[] { new { name = "B", cost = "1", credit_amount = "2" } }, default_auto_top_up_bundle_index = 0,
        });

        var got = await m.Client.GetJsonAsync($"/v1/plans/{plan["plan_id"]}");

        Assert.Equal(HttpStatusCode.OK, got.Status);
        Assert.Equal(plan.ToJsonString(), got.Body!.ToJsonString());
        (await m.Client.GetJsonAsync("/v1/plans/pln_missing")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task PagesWalkEveryLivePlanOnceInCreationOrder()
    {
        var m = await App.NewMerchantAsync();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++) ids.Add((string)(await m.CreatePlanAsync($"plan {i}", ("b", "1", "1")))["plan_id"]!);
        await m.Client.DeleteJsonAsync($"/v1/plans/{ids[2]}");
        var other = await App.NewMerchantAsync();
        await other.CreatePlanAsync("not mine");

        var seen = new List<string>();
        string? cursor = null;
        do
        {
            var page = await m.Client.GetJsonAsync("/v1/plans?limit=2" + (cursor is null ? "" : $"&cursor={cursor}"));
            Assert.Equal(HttpStatusCode.OK, page.Status);
            Assert.All(page.Body!["data"]!.AsArray(), p => Assert.Single(p!["credit_bundles"]!.AsArray()));
            seen.AddRange(page.Body["data"]!.AsArray().Select(p => (string)p!["plan_id"]!));
            cursor = (bool)page.Body["has_more"]! ? (string)page.Body["next_cursor"]! : null;
        } while (cursor is not null);

        Assert.Equal(ids.Where((_, i) => i != 2).Order(StringComparer.Ordinal), seen);
    }

    [Theory]
    [InlineData("limit=0")]
    [InlineData("limit=101")]
    [InlineData("cursor=%%%")]
    public async Task BadListParametersAreA400(string query)
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/plans?" + query)).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task ADeletedPlanAndItsBundlesAreGoneButKept()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Old", ("b", "1", "1"));
        var planId = (string)plan["plan_id"]!;

        var deleted = await m.Client.DeleteJsonAsync($"/v1/plans/{planId}");

        Assert.Equal(HttpStatusCode.OK, deleted.Status);
        Assert.Equal($$"""{"id":"{{planId}}","deleted":true}""", deleted.Body!.ToJsonString());
        (await m.Client.GetJsonAsync($"/v1/plans/{planId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.GetJsonAsync($"/v1/credit_bundles/{plan.BundleIds()[0]}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.PatchJsonAsync($"/v1/plans/{planId}", new { name = "x" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/plans/{planId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await m.Client.GetJsonAsync("/v1/plans")).Body!["data"]!.AsArray());
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM plans WHERE plan_id = @planId AND deleted_at IS NOT NULL", new { planId }));
    }

    [Fact]
    public async Task APlanWithAnActiveSubscriptionCannotBeDeletedButOneWithOnlyCancelledOnesCan()
    {
        var m = await App.NewMerchantAsync();
        var planId = (string)(await m.CreatePlanAsync())["plan_id"]!;
        var subscriptionId = await SubscribeAsync(m.MerchantId, planId);

        (await m.Client.DeleteJsonAsync($"/v1/plans/{planId}")).AssertProblem(HttpStatusCode.Conflict, "plan_in_use");
        Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync($"/v1/plans/{planId}")).Status);

        await using (var c = new NpgsqlConnection(App.ConnectionString))
            await c.ExecuteAsync("UPDATE subscriptions SET status = 'cancelled', cancelled_at = now() WHERE subscription_id = @subscriptionId", new { subscriptionId });
        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/plans/{planId}")).Status);
    }

    [Fact]
    public async Task AnotherMerchantsPlanIsNotFoundAndStaysAsItWas()
    {
        var owner = await App.NewMerchantAsync();
        var plan = await owner.CreatePlanAsync("Mine", ("b", "1", "1"));
        var planId = (string)plan["plan_id"]!;
        var intruder = await App.NewMerchantAsync();

        (await intruder.Client.GetJsonAsync($"/v1/plans/{planId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await intruder.Client.PatchJsonAsync($"/v1/plans/{planId}", new { name = "Theirs" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await intruder.Client.DeleteJsonAsync($"/v1/plans/{planId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await intruder.Client.GetJsonAsync("/v1/plans")).Body!["data"]!.AsArray());

        Assert.Equal(plan.ToJsonString(), (await owner.Client.GetJsonAsync($"/v1/plans/{planId}")).Body!.ToJsonString());
    }

    [Fact]
    public async Task AReadOnlyKeyCanReadPlansButNotChangeThem()
    {
        var m = await App.NewMerchantAsync();
        var planId = (string)(await m.CreatePlanAsync())["plan_id"]!;
        var key = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "reader", scope = "read_only" });
        var reader = App.ClientWithKey((string)key.Body!["secret_key"]!);

        Assert.Equal(HttpStatusCode.OK, (await reader.GetJsonAsync($"/v1/plans/{planId}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await reader.GetJsonAsync("/v1/plans")).Status);
        (await reader.PostJsonAsync("/v1/plans", new { name = "x", period_amount = "1", billing_interval = "day" }))
            .AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.PatchJsonAsync($"/v1/plans/{planId}", new { name = "x" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.DeleteJsonAsync($"/v1/plans/{planId}")).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        Assert.Equal(1, await App.PlanCountAsync());
    }

    private async Task<string> SubscribeAsync(string merchantId, string planId)
    {
        var customerId = await App.CustomerAsync(merchantId);
        var subscriptionId = Ids.New("sub");
        await using var c = new NpgsqlConnection(App.ConnectionString);
        await c.ExecuteAsync("""
            INSERT INTO subscriptions (merchant_id, subscription_id, customer_id, plan_id, status, started_at, cycle_number,
                                       cycle_start_at, cycle_end_at)
            VALUES (@merchantId, @subscriptionId, @customerId, @planId, 'active', now(), 1, now(), now() + interval '1 month')
            """, new { merchantId, subscriptionId, customerId, planId });
        return subscriptionId;
    }
}
