using System.Net;
using Lava.Billing.Plans;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Plans;

public class CreditBundleTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task ABundleIsRetrievedWithItsPlan()
    {
        var m = await App.NewMerchantAsync();
        var plan = await m.CreatePlanAsync("Pro", ("Large", "45", "50.5"));
        var bundleId = plan.BundleIds()[0];

        var got = await m.Client.GetJsonAsync($"/v1/credit_bundles/{bundleId}");

        Assert.Equal(HttpStatusCode.OK, got.Status);
        var b = got.Body!;
        Assert.Equal(["credit_bundle_id", "plan_id", "name", "cost", "credit_amount", "created_at"], b.AsObject().Select(p => p.Key));
        Assert.Equal(bundleId, (string)b["credit_bundle_id"]!);
        Assert.Equal((string)plan["plan_id"]!, (string)b["plan_id"]!);
        Assert.Equal("Large", (string)b["name"]!);
        Assert.Equal("45.0000000000", (string)b["cost"]!);
        Assert.Equal("50.5000000000", (string)b["credit_amount"]!);
        (await m.Client.GetJsonAsync("/v1/credit_bundles/bnd_nope")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task BundlesAreListedLiveOnlyAllOrByPlanAndPaged()
    {
        var m = await App.NewMerchantAsync();
        var pro = await m.CreatePlanAsync("Pro", ("a", "1", "1"), ("b", "2", "2"), ("c", "3", "3"));
        var team = await m.CreatePlanAsync("Team", ("d", "4", "4"));
        await m.Client.PatchJsonAsync($"/v1/plans/{pro["plan_id"]}", new
        {
            credit_bundles = new[] { new { credit_bundle_id = pro.BundleIds()[1], name = "b", cost = "2", credit_amount = "2", is_deleted = true } },
        });

        var seen = new List<string>();
        string? cursor = null;
        do
        {
            var page = await m.Client.GetJsonAsync($"/v1/credit_bundles?plan_id={pro["plan_id"]}&limit=1" + (cursor is null ? "" : $"&cursor={cursor}"));
            Assert.Equal(HttpStatusCode.OK, page.Status);
            Assert.Single(page.Body!["data"]!.AsArray());
            seen.AddRange(page.Body["data"]!.AsArray().Select(b => (string)b!["credit_bundle_id"]!));
            cursor = (bool)page.Body["has_more"]! ? (string)page.Body["next_cursor"]! : null;
        } while (cursor is not null);
        Assert.Equal(new[] { pro.BundleIds()[0], pro.BundleIds()[2] }.Order(StringComparer.Ordinal), seen);

        var all = await m.Client.GetJsonAsync("/v1/credit_bundles?limit=100");
        Assert.Equal(new[] { pro.BundleIds()[0], pro.BundleIds()[2], team.BundleIds()[0] }.Order(StringComparer.Ordinal),
            all.Body!["data"]!.AsArray().Select(b => (string)b!["credit_bundle_id"]!));
        Assert.False((bool)all.Body["has_more"]!);
    }

    [Fact]
    public async Task AnotherMerchantsBundlesAreNotFoundAndNotListed()
    {
        var owner = await App.NewMerchantAsync();
        var plan = await owner.CreatePlanAsync("Pro", ("a", "1", "1"));
        var intruder = await App.NewMerchantAsync();

        (await intruder.Client.GetJsonAsync($"/v1/credit_bundles/{plan.BundleIds()[0]}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await intruder.Client.GetJsonAsync($"/v1/credit_bundles?plan_id={plan["plan_id"]}")).Body!["data"]!.AsArray());
        Assert.Empty((await intruder.Client.GetJsonAsync("/v1/credit_bundles")).Body!["data"]!.AsArray());
    }

    [Fact]
    public async Task SubscriptionsReadALivePlansAndBundlesTermsAndNothingElse()
    {
        var m = await App.NewMerchantAsync();
        var chat = await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var plan = await m.CreatePlanAsync(new
        {
            name = "Pro", period_amount = "10", billing_interval = "month", included_credit = "8", rollover_type = "full",
            meter_ids = new[] { chat }, default_auto_top_up_bundle_index = 0,
            credit_bundles = new[] { new { name = "Top-up", cost = "4.5", credit_amount = "5" } },
        });
        var planId = (string)plan["plan_id"]!;
        var bundleId = plan.BundleIds()[0];
        var store = App.Services.GetRequiredService<PlanStore>();
        var other = await App.NewMerchantAsync();

        var terms = await store.FindLiveAsync(m.MerchantId, planId, CancellationToken.None);
        Assert.Equivalent(new PlanTerms(planId, "Pro", 10m, 8m, "month", "full", "none", bundleId, [chat]), terms, strict: true);
        Assert.Equal(new BundleTerms(bundleId, planId, "Top-up", 4.5m, 5m), await store.FindLiveBundleAsync(m.MerchantId, bundleId, CancellationToken.None));
        Assert.Null(await store.FindLiveAsync(other.MerchantId, planId, CancellationToken.None));
        Assert.Null(await store.FindLiveBundleAsync(other.MerchantId, bundleId, CancellationToken.None));

        await m.Client.DeleteJsonAsync($"/v1/plans/{planId}");
        Assert.Null(await store.FindLiveAsync(m.MerchantId, planId, CancellationToken.None));
        Assert.Null(await store.FindLiveBundleAsync(m.MerchantId, bundleId, CancellationToken.None));
    }
}
