using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Dapper;
using Lava.Billing.SpendKeys;
using Lava.Billing.Tests.Forward;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.SpendKeys;

/// <summary>The spend-key gateway with the provider's timeout at a second, and room for two unwritten ends per merchant.</summary>
public sealed class SpendKeyRelayApp : GatewayApp
{
    protected override IEnumerable<(string Key, string Value)> Settings() =>
    [
        .. base.Settings(),
        ("SpendKeys:MaxUnwrittenPerMerchant", "2"),
        ("SpendKeys:Routes:0:Prefix", "gpt-"), ("SpendKeys:Routes:0:Provider", "openai"),
        ("SpendKeys:Routes:0:Shape", "openai"), ("SpendKeys:Routes:0:BaseUrl", Fake.BaseUrl + "/v1"),
    ];
}

/// <summary>How a spend-key call's answer is relayed and billed when it ends early, stalls, or when the database lags.</summary>
public class SpendKeyRelayTests(SpendKeyRelayApp app) : GatewayTest<SpendKeyRelayApp>(app)
{
    private const string Stream = """{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":4000}""";
    private const string Whole = """{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}""";

    private async Task<(LavaApp.Merchant M, string Key)> KeyAsync()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", new { name = "relay" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        return (m, (string)created.Body!["key"]!);
    }

    private HttpClient Bearer(string key)
    {
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private Task<HttpResponseMessage> StartAsync(string key, string body, CancellationToken ct = default) =>
        Bearer(key).SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = Http.Json(body) },
            HttpCompletionOption.ResponseHeadersRead, ct);

    private Task<(string Status, decimal Held, decimal? Amount, bool? Estimated)> ChargeAsync(string merchantId) =>
        App.QueryAsync<(string, decimal, decimal?, bool?)>(
            "SELECT status, held_amount, amount, estimated FROM spend_key_charges WHERE merchant_id = @MerchantId", new { MerchantId = merchantId });

    private async Task<(string Status, decimal Held, decimal? Amount, bool? Estimated)> CapturedAsync(string merchantId)
    {
        await Waits.UntilAsync(async () => (await ChargeAsync(merchantId)).Status != "held", "the call's hold was settled");
        return await ChargeAsync(merchantId);
    }

    private static async Task<string> ReadUntilAsync(Stream body, string marker)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var seen = new StringBuilder();
        var buffer = new byte[4096];
        while (!seen.ToString().Contains(marker))
        {
            var n = await body.ReadAsync(buffer, cts.Token);
            Assert.True(n > 0, $"the answer ended before {marker}");
            seen.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
        return seen.ToString();
    }

    [Fact]
    public async Task AClientLeavingMidStreamIsBilledTheEstimateOfWhatWasRelayedNotTheHold()
    {
        var (m, key) = await KeyAsync();
        Fake.HoldAfterEvents = 3; // role, "Hello", " world": the usage chunk never comes
        using (var r = await StartAsync(key, Stream))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            await ReadUntilAsync(await r.Content.ReadAsStreamAsync(), "world");
        }

        await Fake.CallerLeft.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var charge = await CapturedAsync(m.MerchantId);
        // The hold is 4,000 output tokens at 10.00 per 1M (0.04 and a little); the 11 characters relayed are 3 tokens
        // (0.00003), with the prompt's few tokens at 2.50 per 1M.
        Assert.Equal("captured", charge.Status);
        Assert.True(charge.Held > 0.04m, $"held {charge.Held}");
        Assert.True(charge.Amount is > 0.00003m and < 0.0001m, $"billed {charge.Amount}");
        Assert.True(charge.Estimated);
    }

    [Fact]
    public async Task AStreamThatStallsIsCutAfterTheProvidersTimeoutBilledWhatWasRelayedAndItsHoldIsGone()
    {
        var (m, key) = await KeyAsync();
        Fake.HoldAfterEvents = 3;
        using var r = await StartAsync(key, Stream);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var body = await r.Content.ReadAsStreamAsync();

        // The provider's timeout here is a second (Forward:TimeoutsMs, as for /v1/forward): the client sees a cut
        // answer, never a whole one, and the provider's connection is dropped.
        await Assert.ThrowsAnyAsync<Exception>(() => new StreamReader(body).ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(10)));
        await Fake.CallerLeft.Task.WaitAsync(TimeSpan.FromSeconds(5));
        var charge = await CapturedAsync(m.MerchantId);
        Assert.Equal("captured", charge.Status);
        Assert.True(charge.Amount is > 0.00003m and < 0.0001m, $"billed {charge.Amount}");
        Assert.True(charge.Estimated);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task TheChargeIsCapturedBeforeTheClientHasTheEndOfTheAnswer(bool stream)
    {
        var (m, key) = await KeyAsync();
        // A capture takes a second for this merchant, so a client given the end first would read it while the charge is held.
        var name = "slow_" + m.MerchantId.ToLowerInvariant();
        await AdminAsync($"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.merchant_id = '{m.MerchantId}' AND NEW.status = 'captured' THEN PERFORM pg_sleep(1); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE UPDATE ON spend_key_charges FOR EACH ROW EXECUTE FUNCTION {name}();
            """);
        try
        {
            using var r = await StartAsync(key, stream ? Stream : Whole);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var body = await r.Content.ReadAsStreamAsync();
            await ReadUntilAsync(body, stream ? "[DONE]" : "\"total_tokens\"");

            // Killed now, the process would leave the call billed its provider's count, not the prompt's estimate.
            var charge = await ChargeAsync(m.MerchantId);
            Assert.Equal(("captured", false), (charge.Status, charge.Estimated));
            Assert.Equal(0.00475m, charge.Amount);
            await body.CopyToAsync(System.IO.Stream.Null);
        }
        finally
        {
            await AdminAsync($"DROP TRIGGER {name} ON spend_key_charges; DROP FUNCTION {name}();");
        }
    }

    [Fact]
    public async Task AMerchantWhoseUnwrittenShareIsFullIsRefusedBeforeTheProviderWhileOthersKeepWorkingAndNothingIsDropped()
    {
        var (a, keyA) = await KeyAsync();
        var (b, keyB) = await KeyAsync();
        var limits = App.Services.GetRequiredService<SpendKeyLimits>();
        // The database refuses merchant A's captures, as it would a broken posting of that merchant's.
        var name = "refuse_" + a.MerchantId.ToLowerInvariant();
        await AdminAsync($"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.merchant_id = '{a.MerchantId}' AND NEW.status = 'captured' THEN RAISE EXCEPTION 'injected fault'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE UPDATE ON spend_key_charges FOR EACH ROW EXECUTE FUNCTION {name}();
            """);
        try
        {
            // Both calls are answered; their ends wait in memory (a share of two here).
            for (var i = 0; i < 2; i++)
                Assert.Equal(HttpStatusCode.OK, (await Bearer(keyA).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Whole))).Status);
            Assert.Equal(2, limits.UnwrittenOf(a.MerchantId));

            var refused = await Bearer(keyA).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Whole));
            refused.AssertProblem(HttpStatusCode.ServiceUnavailable, "service_unavailable");
            Assert.True(int.Parse(refused.Response.Headers.RetryAfter!.ToString()) >= 1);
            Assert.Equal(2, Fake.Calls);
            Assert.Equal(2, await App.QueryAsync<long>(
                "SELECT count(*) FROM spend_key_charges WHERE merchant_id = @MerchantId AND status = 'held'", new { a.MerchantId }));

            Assert.Equal(HttpStatusCode.OK, (await Bearer(keyB).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Whole))).Status);
            Assert.Equal(("captured", 0.00475m), await App.QueryAsync<(string, decimal)>(
                "SELECT status, amount FROM spend_key_charges WHERE merchant_id = @MerchantId", new { b.MerchantId }));
        }
        finally
        {
            await AdminAsync($"DROP TRIGGER {name} ON spend_key_charges; DROP FUNCTION {name}();");
        }

        // The settle worker writes both kept ends, and the merchant's calls go through again.
        await Waits.UntilAsync(() => limits.UnwrittenOf(a.MerchantId) == 0, "the settle worker wrote the kept ends");
        Assert.Equal((2L, 0.0095m), await App.QueryAsync<(long, decimal)>(
            "SELECT count(*), sum(amount) FROM spend_key_charges WHERE merchant_id = @MerchantId AND status = 'captured'", new { a.MerchantId }));
        Assert.Equal(HttpStatusCode.OK, (await Bearer(keyA).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Whole))).Status);
    }

    private async Task AdminAsync(string sql)
    {
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync(sql);
    }
}
