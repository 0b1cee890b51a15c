using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Merchants;

public class SecretKeysTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task ARequestWithoutAKeyIsRefusedWith401Problem()
    {
        var r = await App.ClientWithKey(null).GetJsonAsync("/v1/secret_keys");
        r.AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
    }

    [Theory]
    [InlineData("aks_test_doesnotexist")]
    [InlineData("not-a-key")]
    [InlineData("")]
    public async Task AnUnknownOrMalformedKeyIsRefusedWith401(string key)
    {
        var client = App.ClientWithKey(null);
        client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "Bearer " + key);
        var r = await client.GetJsonAsync("/v1/secret_keys");
        r.AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
    }

    [Fact]
    public async Task ACreatedKeyIsShownOnceAndWorks()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "ci" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        var secret = (string)created.Body!["secret_key"]!;
        Assert.StartsWith("aks_test_", secret);
        Assert.EndsWith(secret[^4..], (string)created.Body["secret_key_hint"]!);

        var list = await App.ClientWithKey(secret).GetJsonAsync("/v1/secret_keys");
        Assert.Equal(HttpStatusCode.OK, list.Status);
        Assert.Equal(2, list.Body!["data"]!.AsArray().Count);
        Assert.DoesNotContain(secret, list.Body.ToJsonString());
    }

    [Fact]
    public async Task OnlyTheHashOfAKeyIsStored()
    {
        var m = await App.NewMerchantAsync();
        var dump = await App.QueryAsync<string>("SELECT string_agg(t::text, ',') FROM secret_keys t WHERE merchant_id = @Id", new { Id = m.MerchantId });
        Assert.DoesNotContain(m.SecretKey["aks_test_".Length..], dump);
    }

    [Fact]
    public async Task ARevokedKeyStopsWorkingAtOnce()
    {
        var m = await App.NewMerchantAsync();
        var second = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "temp" });
        var secondClient = App.ClientWithKey((string)second.Body!["secret_key"]!);
        Assert.Equal(HttpStatusCode.OK, (await secondClient.GetJsonAsync("/v1/secret_keys")).Status);

        var revoked = await m.Client.DeleteJsonAsync($"/v1/secret_keys/{second.Body["secret_key_id"]}");
        Assert.Equal(HttpStatusCode.OK, revoked.Status);
        Assert.True((bool)revoked.Body!["deleted"]!);

        (await secondClient.GetJsonAsync("/v1/secret_keys")).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
    }

    [Fact]
    public async Task TheLastKeyCannotBeRevoked()
    {
        var m = await App.NewMerchantAsync();
        var keys = await m.Client.GetJsonAsync("/v1/secret_keys");
        var id = (string)keys.Body!["data"]![0]!["secret_key_id"]!;
        (await m.Client.DeleteJsonAsync($"/v1/secret_keys/{id}")).AssertProblem(HttpStatusCode.UnprocessableEntity, "last_secret_key");
        Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync("/v1/secret_keys")).Status);
    }

    [Fact]
    public async Task TwoConcurrentRevocationsLeaveOneKeyAlive()
    {
        var m = await App.NewMerchantAsync();
        var second = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "other" });
        var ids = new[] { (string)second.Body!["secret_key_id"]!, (string)(await m.Client.GetJsonAsync("/v1/secret_keys")).Body!["data"]![0]!["secret_key_id"]! };
        var results = await Task.WhenAll(ids.Select(id => App.ClientWithKey((string)second.Body["secret_key"]!).DeleteJsonAsync($"/v1/secret_keys/{id}")));
        Assert.Single(results, r => r.Status == HttpStatusCode.OK);
        var live = await App.QueryAsync<long>("SELECT count(*) FROM secret_keys WHERE merchant_id = @Id AND revoked_at IS NULL", new { Id = m.MerchantId });
        Assert.Equal(1, live);
    }

    [Fact]
    public async Task AReadOnlyKeyCannotMintOrRevokeKeys()
    {
        var m = await App.NewMerchantAsync();
        var readOnly = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "dashboard", scope = "read_only" });
        var reader = App.ClientWithKey((string)readOnly.Body!["secret_key"]!);

        Assert.Equal(HttpStatusCode.OK, (await reader.GetJsonAsync("/v1/secret_keys")).Status);
        (await reader.PostJsonAsync("/v1/secret_keys", new { name = "escalate" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.DeleteJsonAsync($"/v1/secret_keys/{readOnly.Body["secret_key_id"]}")).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        var live = await App.QueryAsync<long>("SELECT count(*) FROM secret_keys WHERE merchant_id = @Id AND revoked_at IS NULL", new { Id = m.MerchantId });
        Assert.Equal(2, live);
    }

    [Fact]
    public async Task AnotherMerchantsKeyIdIsNotFound()
    {
        var a = await App.NewMerchantAsync();
        var b = await App.NewMerchantAsync();
        var extra = await a.Client.PostJsonAsync("/v1/secret_keys", new { name = "a2" });
        (await b.Client.DeleteJsonAsync($"/v1/secret_keys/{extra.Body!["secret_key_id"]}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task CreatingAKeyWithoutANameIsAValidationProblem()
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/secret_keys", new { scope = "root" })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]!["Name"] ?? body["errors"]!["name"]);
        Assert.NotNull(body["errors"]!["Scope"] ?? body["errors"]!["scope"]);
    }
}
