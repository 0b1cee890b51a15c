using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Meters;
using Lava.Billing.Pricing;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Meters;

public class MetersTests(LavaApp app) : ApiTest(app)
{
    private static string Id(JsonNode meter) => (string)meter["meter_id"]!;

    [Fact]
    public async Task CreatingAMeterReturnsItAtPriceVersionOneAndStoresThatPrice()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/meters", MeterApi.Body("GPT tokens", "gpt-tokens",
            MeterApi.Tiers(("0", "5"), ("1000000", "3.25"), ("10000000", "0.0000000001"))));

        Assert.Equal(HttpStatusCode.Created, r.Status);
        var meter = r.Body!;
        Assert.StartsWith("mtr_", Id(meter));
        Assert.Equal($"/v1/meters/{Id(meter)}", r.Response.Headers.Location?.OriginalString);
        Assert.Equal("gpt-tokens", (string)meter["meter_slug"]!);
        Assert.Equal("GPT tokens", (string)meter["name"]!);
        Assert.Equal("fixed", (string)meter["rate_type"]!);
        Assert.Equal("tokens_1m", (string)meter["tier_type"]!);
        Assert.Equal(1, (int)meter["price_version"]!);
        Assert.NotNull(meter["created_at"]);
        Assert.NotNull(meter["updated_at"]);
        Assert.Equal(
            """[{"start":0,"rate":"5.0000000000","type":"tokens_1m"},{"start":1000000,"rate":"3.2500000000","type":"tokens_1m"},{"start":10000000,"rate":"0.0000000001","type":"tokens_1m"}]""",
            meter["tiers"]!.ToJsonString());

        var stored = await App.QueryAsync<string>(
            "SELECT tier_starts::text || ' ' || tier_rates::text FROM meter_prices WHERE meter_id = @Id AND version = 1", new { Id = Id(meter) });
        Assert.Equal("{0,1000000,10000000} {5,3.25,0.0000000001}", stored);
    }

    [Fact]
    public async Task TierStartsAndRatesMayBeJsonNumbers()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/meters", Http.Json(
            """{"name":"Minutes","rate_type":"percentage","tier_type":"minutes","tiers":[{"start":0,"rate":20},{"start":"60.5","rate":12.5}]}"""));
        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal("""[{"start":0,"rate":"20.0000000000","type":"minutes"},{"start":60.5,"rate":"12.5000000000","type":"minutes"}]""",
            r.Body!["tiers"]!.ToJsonString());
    }

    [Fact]
    public async Task ListingWithLimitTwoPagesThroughEveryLiveMeterExactlyOnce()
    {
        var m = await App.NewMerchantAsync();
        var created = new List<string>();
        for (var i = 0; i < 5; i++) created.Add(Id(await m.Client.CreateMeterAsync($"Meter {i}")));
        var deleted = Id(await m.Client.CreateMeterAsync("Gone"));
        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/meters/{deleted}")).Status);
        await (await App.NewMerchantAsync("Other")).Client.CreateMeterAsync("Not mine");

        var seen = new List<string>();
        var pages = new List<(int Count, bool HasMore)>();
        string? cursor = null;
        do
        {
            var page = await m.Client.GetJsonAsync("/v1/meters?limit=2" + (cursor is null ? "" : $"&cursor={cursor}"));
            Assert.Equal(HttpStatusCode.OK, page.Status);
            var data = page.Body!["data"]!.AsArray();
            seen.AddRange(data.Select(d => Id(d!)));
            pages.Add((data.Count, (bool)page.Body["has_more"]!));
            cursor = (string?)page.Body["next_cursor"];
        } while (cursor is not null);

        Assert.Equal(new[] { (2, true), (2, true), (1, false) }, pages);
        Assert.Equal(created.Order(StringComparer.Ordinal), seen);
    }

    [Fact]
    public async Task AMeterIsFoundByItsIdAndByItsSlug()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Chars", "chars-v1");

        var byId = await m.Client.GetJsonAsync($"/v1/meters/{Id(meter)}");
        var bySlug = await m.Client.GetJsonAsync("/v1/meters/chars-v1");
        Assert.Equal(HttpStatusCode.OK, byId.Status);
        Assert.Equal(HttpStatusCode.OK, bySlug.Status);
        Assert.Equal(meter.ToJsonString(), byId.Body!.ToJsonString());
        Assert.Equal(meter.ToJsonString(), bySlug.Body!.ToJsonString());
    }

    [Fact]
    public async Task RenamingAMeterKeepsItsPriceVersion()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Old name");

        var r = await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}", new { name = "New name" });

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("New name", (string)r.Body!["name"]!);
        Assert.Equal(1, (int)r.Body["price_version"]!);
        Assert.Equal(meter["tiers"]!.ToJsonString(), r.Body["tiers"]!.ToJsonString());
        Assert.Equal("New name", await App.QueryAsync<string>("SELECT name FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM meter_prices WHERE meter_id = @Id", new { Id = Id(meter) }));
    }

    [Fact]
    public async Task NewTiersBecomePriceVersionTwoAndVersionOneIsKept()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Tokens", "tokens");

        var r = await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}", new { tiers = MeterApi.Tiers(("0", "4"), ("2000000", "2")) });

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(2, (int)r.Body!["price_version"]!);
        Assert.Equal("4.0000000000", (string)r.Body["tiers"]![0]!["rate"]!);
        Assert.Equal(2, await App.QueryAsync<long>("SELECT count(*) FROM meter_prices WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Equal(2, await App.QueryAsync<int>("SELECT current_version FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));

        var store = App.Services.GetRequiredService<MeterStore>();
        var live = await store.FindLivePriceAsync(m.MerchantId, "tokens", CancellationToken.None);
        Assert.Equal(2, live!.Version);
        Assert.Equal(new[] { new Tier(0m, 4m), new Tier(2_000_000m, 2m) }, live.Price.Tiers);
        var first = await store.FindPriceAsync(m.MerchantId, Id(meter), 1, CancellationToken.None);
        Assert.Equal(new[] { new Tier(0m, 5m), new Tier(1_000_000m, 3m) }, first!.Price.Tiers);
        Assert.Equal((RateType.Fixed, TierType.Tokens1M), (first.Price.RateType, first.Price.TierType));
    }

    [Fact]
    public async Task SendingTheSameTiersAgainMakesNoNewVersion()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Tokens");
        var r = await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}", new { tiers = MeterApi.Tiers(("0.0", "5.00"), ("1000000", "3")) });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(1, (int)r.Body!["price_version"]!);
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM meter_prices WHERE meter_id = @Id", new { Id = Id(meter) }));
    }

    [Fact]
    public async Task ConcurrentTierUpdatesEachTakeTheirOwnVersion()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Busy");

        var results = await Task.WhenAll(Enumerable.Range(1, 8).Select(i =>
            App.ClientWithKey(m.SecretKey).PatchJsonAsync($"/v1/meters/{Id(meter)}", new { tiers = MeterApi.Tiers(("0", $"{i}.5")) })));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.Status));
        Assert.Equal(Enumerable.Range(2, 8), results.Select(r => (int)r.Body!["price_version"]!).Order());
        Assert.Equal(9, await App.QueryAsync<long>("SELECT count(DISTINCT version) FROM meter_prices WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Equal(9, await App.QueryAsync<int>("SELECT current_version FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
    }

    [Fact]
    public async Task DeletingAMeterWithoutUsageRemovesItAndItsPrices()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Unused", "unused");
        await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}", new { tiers = MeterApi.Tiers(("0", "1")) });

        var r = await m.Client.DeleteJsonAsync("/v1/meters/unused");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal($$"""{"id":"{{Id(meter)}}","deleted":true}""", r.Body!.ToJsonString());
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM meter_prices WHERE meter_id = @Id", new { Id = Id(meter) }));
        (await m.Client.GetJsonAsync($"/v1/meters/{Id(meter)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/meters/{Id(meter)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task DeletingAMeterAPlanLinksIsA409NamingThePlanAndChangesNothing()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Linked", "linked");
        var plan = await m.Client.PostJsonAsync("/v1/plans", new { name = "P", period_amount = "1", billing_interval = "month", meter_ids = new[] { Id(meter) } });
        Assert.Equal(HttpStatusCode.Created, plan.Status);
        var planId = (string)plan.Body!["plan_id"]!;

        var body = (await m.Client.DeleteJsonAsync("/v1/meters/linked")).AssertProblem(HttpStatusCode.Conflict, "meter_in_use");

        Assert.Contains(planId, (string)body["error"]!["message"]!);
        Assert.Contains("force=true", (string)body["error"]!["message"]!);
        Assert.True(await App.QueryAsync<bool>("SELECT deleted_at IS NULL FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Equal([Id(meter)], (await m.Client.GetJsonAsync($"/v1/plans/{planId}")).Body!["linked_meters"]!.AsArray().Select(l => (string)l!["meter_id"]!));
    }

    [Fact]
    public async Task DeletingALinkedMeterWithForceSoftDeletesItAndTakesItOffThePlan()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Linked", "linked");
        var plan = await m.Client.PostJsonAsync("/v1/plans", new { name = "P", period_amount = "1", billing_interval = "month", meter_ids = new[] { Id(meter) } });
        Assert.Equal(HttpStatusCode.Created, plan.Status);

        var r = await m.Client.DeleteJsonAsync($"/v1/meters/{Id(meter)}?force=true");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.True(await App.QueryAsync<bool>("SELECT deleted_at IS NOT NULL FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Empty((await m.Client.GetJsonAsync($"/v1/plans/{plan.Body!["plan_id"]}")).Body!["linked_meters"]!.AsArray());
    }

    [Fact]
    public async Task AMeterOnlyADeletedPlanLinkedCanBeDeletedWithoutForce()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Linked", "linked");
        var plan = await m.Client.PostJsonAsync("/v1/plans", new { name = "P", period_amount = "1", billing_interval = "month", meter_ids = new[] { Id(meter) } });
        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/plans/{plan.Body!["plan_id"]}")).Status);

        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/meters/{Id(meter)}")).Status);
    }

    [Fact]
    public async Task DeletingAMeterWithUsageSoftDeletesItKeepsItsPricesAndFreesItsSlug()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Used", "used");
        await using (var connection = new NpgsqlConnection(App.ConnectionString))
        {
            await connection.OpenAsync();
            await using var insert = new NpgsqlCommand("""
                INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, meter_id, price_version, effective_at)
                VALUES (@m, 'txn_test', 'usage', 'req_1', @id, 1, now())
                """, connection);
            insert.Parameters.AddWithValue("m", m.MerchantId);
            insert.Parameters.AddWithValue("id", Id(meter));
            await insert.ExecuteNonQueryAsync();
        }

        var r = await m.Client.DeleteJsonAsync($"/v1/meters/{Id(meter)}");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.True((bool)r.Body!["deleted"]!);
        Assert.True(await App.QueryAsync<bool>("SELECT deleted_at IS NOT NULL FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM meter_prices WHERE meter_id = @Id", new { Id = Id(meter) }));
        (await m.Client.GetJsonAsync($"/v1/meters/{Id(meter)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.GetJsonAsync("/v1/meters/used")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}", new { name = "x" })).AssertProblem(HttpStatusCode.NotFound, "not_found");

        var store = App.Services.GetRequiredService<MeterStore>();
        Assert.Null(await store.FindLivePriceAsync(m.MerchantId, "used", CancellationToken.None));
        Assert.Equal(Id(meter), (await store.FindPriceAsync(m.MerchantId, Id(meter), 1, CancellationToken.None))!.MeterId);

        var again = await m.Client.CreateMeterAsync("Used again", "used");
        Assert.NotEqual(Id(meter), Id(again));
    }

    [Fact]
    public async Task ASlugIsGeneratedFromTheNameAndNumberedWhenTaken()
    {
        var m = await App.NewMerchantAsync();
        var slugs = new List<string>();
        for (var i = 0; i < 3; i++) slugs.Add((string)(await m.Client.CreateMeterAsync("  GPT-4o Tokens (input)! "))["meter_slug"]!);
        slugs.Add((string)(await m.Client.CreateMeterAsync("日本語"))["meter_slug"]!);
        slugs.Add((string)(await m.Client.CreateMeterAsync(new string('a', 70)))["meter_slug"]!);
        slugs.Add((string)(await m.Client.CreateMeterAsync(new string('a', 70)))["meter_slug"]!);

        Assert.Equal(new[] { "gpt-4o-tokens-input", "gpt-4o-tokens-input-2", "gpt-4o-tokens-input-3", "meter", new string('a', 64), new string('a', 62) + "-2" }, slugs);
    }

    [Fact]
    public async Task GeneratedSlugsNeverCollideUnderConcurrentCreates()
    {
        var m = await App.NewMerchantAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ =>
            App.ClientWithKey(m.SecretKey).PostJsonAsync("/v1/meters", MeterApi.Body("Same name"))));
        Assert.All(results, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.Equal(6, results.Select(r => (string)r.Body!["meter_slug"]!).Distinct().Count());
    }

    [Fact]
    public async Task ASlugAlreadyUsedByALiveMeterIsA409()
    {
        var m = await App.NewMerchantAsync();
        await m.Client.CreateMeterAsync("First", "taken");
        (await m.Client.PostJsonAsync("/v1/meters", MeterApi.Body("Second", "taken"))).AssertProblem(HttpStatusCode.Conflict, "meter_slug_taken");
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM meters WHERE merchant_id = @Id", new { Id = m.MerchantId }));

        var other = await App.NewMerchantAsync("Other");
        Assert.Equal("taken", (string)(await other.Client.CreateMeterAsync("Theirs", "taken"))["meter_slug"]!);
    }

    [Theory]
    [InlineData("meter_slug", "\"other-slug\"")]
    [InlineData("rate_type", "\"percentage\"")]
    [InlineData("tier_type", "\"requests\"")]
    [InlineData("tier_type", "7")]
    public async Task ChangingAnImmutableFieldIsA400NamingIt(string field, string json)
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Fixed", "fixed-slug");

        var body = (await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}", Http.Json($$"""{"name":"Renamed","{{field}}":{{json}}}""")))
            .AssertProblem(HttpStatusCode.BadRequest, "immutable_field");

        Assert.NotNull(body["errors"]![field]);
        Assert.Contains(field, (string)body["detail"]!);
        Assert.Equal("Fixed", await App.QueryAsync<string>("SELECT name FROM meters WHERE meter_id = @Id", new { Id = Id(meter) }));
    }

    [Fact]
    public async Task SendingBackTheImmutableFieldsUnchangedIsAccepted()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Fixed", "fixed-slug");
        var r = await m.Client.PatchJsonAsync($"/v1/meters/{Id(meter)}",
            new { name = "Renamed", meter_slug = "fixed-slug", rate_type = "fixed", tier_type = "tokens_1m", tiers = (object?)null });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("Renamed", (string)r.Body!["name"]!);
    }

    [Fact]
    public async Task AReadOnlyKeyCanReadMetersButNotChangeThem()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Tokens");
        var key = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "dashboard", scope = "read_only" });
        var reader = App.ClientWithKey((string)key.Body!["secret_key"]!);

        Assert.Equal(HttpStatusCode.OK, (await reader.GetJsonAsync($"/v1/meters/{Id(meter)}")).Status);
        (await reader.PostJsonAsync("/v1/meters", MeterApi.Body("New"))).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.PatchJsonAsync($"/v1/meters/{Id(meter)}", new { name = "x" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.DeleteJsonAsync($"/v1/meters/{Id(meter)}")).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM meters WHERE merchant_id = @Id AND name = 'Tokens'", new { Id = m.MerchantId }));
    }
}
