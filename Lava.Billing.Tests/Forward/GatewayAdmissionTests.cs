using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Forward;

/// <summary>
/// A gateway call is admitted with the key, the model price and the meter remembered from earlier calls; each change made
/// behind this instance's back (by SQL here, as another instance would) must still be seen by the very next call.
/// </summary>
public class GatewayAdmissionTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private static HttpContent Chat(string model = "gpt-4o") =>
        Http.Json(new { model, max_tokens = 1000, messages = new[] { new { role = "user", content = "Say hello" } } });

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("x-lava-request-id").Single();

    private Task<long> CountAsync(string table, string merchantId) =>
        App.QueryAsync<long>($"SELECT count(*) FROM {table} WHERE merchant_id = @m", new { m = merchantId });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AKeyRevokedElsewhereIsRefusedByTheNextCallAndNothingIsHeldOrSent(bool billedToACustomer)
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var client = billedToACustomer
            ? App.ClientWithToken(m.SecretKey, customer, "chat")
            : App.ClientWithToken(m.SecretKey, providerKey: "sk-callers-own-key");
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
        await App.PostedAsync();

        await App.QueryAsync<long>("WITH r AS (UPDATE secret_keys SET revoked_at = now() WHERE merchant_id = @m RETURNING 1) SELECT count(*) FROM r",
            new { m = m.MerchantId });
        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        Assert.Equal(1, Fake.Calls);
        Assert.Equal(1, await CountAsync("forward_calls", m.MerchantId));
        Assert.Equal(billedToACustomer ? 1 : 0, await CountAsync("holds", m.MerchantId));
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
    }

    [Fact]
    public async Task AModelPriceChangedElsewhereIsTheOneTheNextCallIsCostedWith()
    {
        var m = await App.NewMerchantAsync();
        await m.Client.PostJsonAsync("/v1/model_prices", new { model = "gpt-4o", input = "1", output = "2" });
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "chat");
        var first = RequestId(await client.PostAsync(App.Forward("/v1/chat/completions"), Chat()));

        await App.QueryAsync<long>("""
            WITH p AS (INSERT INTO model_prices (merchant_id, model, version, owned_by, input_per_1m, cached_input_per_1m, cache_write_per_1m,
                                                 output_per_1m, characters_per_1m, per_minute)
                       VALUES (@m, 'gpt-4o', 2, 'openai', 2, 2, 2, 4, 0, 0) RETURNING 1)
            SELECT count(*) FROM p
            """, new { m = m.MerchantId });
        var second = RequestId(await client.PostAsync(App.Forward("/v1/chat/completions"), Chat()));
        await App.PostedAsync();

        // (1,200 × 1 + 300 × 2) / 1M before, at twice the prices after; the record names the version it was costed with.
        const string Cost = "SELECT cost FROM requests WHERE merchant_id = @m AND request_id = @r";
        Assert.Equal(0.0018m, await App.QueryAsync<decimal>(Cost, new { m = m.MerchantId, r = first }));
        Assert.Equal(0.0036m, await App.QueryAsync<decimal>(Cost, new { m = m.MerchantId, r = second }));
        Assert.Equal("2", await App.QueryAsync<string>("SELECT call->>'model_price_version' FROM forward_calls WHERE merchant_id = @m AND request_id = @r",
            new { m = m.MerchantId, r = second }));
    }

    [Fact]
    public async Task AModelPricedElsewhereAfterACallFoundNoPriceIsNotRefusedAsUnpriced()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 20));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "pct");
        (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat("my-finetune-v1")))
            .AssertProblem(HttpStatusCode.UnprocessableEntity, "model_price_unknown");

        await App.QueryAsync<long>("""
            WITH p AS (INSERT INTO model_prices (merchant_id, model, version, owned_by, input_per_1m, cached_input_per_1m, cache_write_per_1m,
                                                 output_per_1m, characters_per_1m, per_minute)
                       VALUES (@m, 'my-finetune-v1', 1, 'me', 1, 1, 1, 2, 0, 0) RETURNING 1)
            SELECT count(*) FROM p
            """, new { m = m.MerchantId });
        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat("my-finetune-v1"));

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        await App.PostedAsync();
        Assert.Equal(0.0018m, await App.QueryAsync<decimal>("SELECT cost FROM requests WHERE merchant_id = @m AND request_id = @r",
            new { m = m.MerchantId, r = RequestId(r) }));
    }

    [Fact]
    public async Task AMeterPriceChangedElsewhereIsTheOneTheNextCallIsChargedAt()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5m));
        await App.GrantAsync(m.MerchantId, customer, 1m);
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");
        var first = RequestId(await client.PostAsync(App.Forward("/v1/chat/completions"), Chat()));

        await App.QueryAsync<long>("""
            WITH p AS (INSERT INTO meter_prices (merchant_id, meter_id, version, tier_starts, tier_rates) VALUES (@m, @id, 2, '{0}', '{10}') RETURNING 1),
                 m AS (UPDATE meters SET current_version = 2 WHERE merchant_id = @m AND meter_id = @id RETURNING 1)
            SELECT (SELECT count(*) FROM p) + (SELECT count(*) FROM m)
            """, new { m = m.MerchantId, id = meterId });
        var second = RequestId(await client.PostAsync(App.Forward("/v1/chat/completions"), Chat()));
        await App.PostedAsync();

        // The worst case held before the provider was called, and the charge after, both at the new rate.
        const string Held = """
            SELECT h.amount FROM forward_calls f JOIN holds h ON h.merchant_id = f.merchant_id AND h.hold_id = f.hold_id
             WHERE f.merchant_id = @m AND f.request_id = @r
            """;
        const string Charge = "SELECT charge_amount FROM requests WHERE merchant_id = @m AND request_id = @r";
        var heldBefore = await App.QueryAsync<decimal>(Held, new { m = m.MerchantId, r = first });
        var chargedBefore = await App.QueryAsync<decimal>(Charge, new { m = m.MerchantId, r = first });
        Assert.True(heldBefore > 0 && chargedBefore > 0);
        Assert.Equal(heldBefore * 2, await App.QueryAsync<decimal>(Held, new { m = m.MerchantId, r = second }));
        Assert.Equal(chargedBefore * 2, await App.QueryAsync<decimal>(Charge, new { m = m.MerchantId, r = second }));
    }

    [Fact]
    public async Task AMeterDeletedElsewhereIsRefusedByTheNextCallBeforeTheProviderIsCalled()
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
        await App.PostedAsync();

        await App.QueryAsync<long>("WITH d AS (UPDATE meters SET deleted_at = now() WHERE merchant_id = @m RETURNING 1) SELECT count(*) FROM d",
            new { m = m.MerchantId });
        var r = await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());

        r.AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(1, Fake.Calls);
        Assert.Equal(1, await CountAsync("holds", m.MerchantId));
    }
}
