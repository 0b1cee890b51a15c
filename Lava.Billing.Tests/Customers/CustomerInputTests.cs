using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Customers;

/// <summary>Bad input, one test per class of mistake; none of them may leave a customer (or account) behind.</summary>
public class CustomerInputTests(LavaApp app) : ApiTest(app)
{
    private async Task<JsonNode> CreateRefusedAsync(LavaApp.Merchant m, string json, string code, string field)
    {
        var body = (await m.Client.PostJsonAsync("/v1/customers", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, code);
        Assert.True(body["errors"]?[field] is not null, $"expected errors.{field}: {body.ToJsonString()}");
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM customers WHERE merchant_id = @M", new { M = m.MerchantId }));
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM accounts WHERE merchant_id = @M AND customer_id IS NOT NULL", new { M = m.MerchantId }));
        return body;
    }

    [Theory]
    [InlineData("not-an-email")]
    [InlineData("a@b")]
    [InlineData("two@@example.com")]
    [InlineData("spaced out@example.com")]
    [InlineData("")]
    public async Task AMalformedEmailIsRefused(string email)
    {
        var m = await App.NewMerchantAsync();
        await CreateRefusedAsync(m, $$"""{"email":"{{email}}"}""", "validation_failed", "email");
    }

    [Fact]
    public async Task AMalformedEmailInAPatchIsRefusedAndChangesNothing()
    {
        var m = await App.NewMerchantAsync();
        var c = await m.Client.PostJsonAsync("/v1/customers", new { email = "ok@example.com" });
        var id = (string)c.Body!["customer_id"]!;
        var body = (await m.Client.PatchJsonAsync($"/v1/customers/{id}", new { email = "nope" })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]!["email"]);
        Assert.Equal("ok@example.com", await App.QueryAsync<string>("SELECT email FROM customers WHERE customer_id = @C", new { C = id }));
    }

    [Fact]
    public async Task AFieldOfTheWrongTypeIsRefusedNamingIt()
    {
        var m = await App.NewMerchantAsync();
        await CreateRefusedAsync(m, """{"name":42}""", "invalid_json", "name");
    }

    [Fact]
    public async Task AFieldOfTheWrongTypeInAPatchIsRefusedNamingIt()
    {
        var m = await App.NewMerchantAsync();
        var c = await m.Client.PostJsonAsync("/v1/customers", new { email = "ok@example.com" });
        var id = (string)c.Body!["customer_id"]!;
        foreach (var (json, field) in new[] { ("""{"email":5}""", "email"), ("""{"metadata":true}""", "metadata"), ("""{"name":["x"]}""", "name") })
        {
            var body = (await m.Client.PatchJsonAsync($"/v1/customers/{id}", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest,
                field == "metadata" ? "validation_failed" : "invalid_json");
            Assert.True(body["errors"]?[field] is not null, $"expected errors.{field}: {body.ToJsonString()}");
        }
        Assert.Equal("ok@example.com", await App.QueryAsync<string>("SELECT email FROM customers WHERE customer_id = @C", new { C = id }));
    }

    [Fact]
    public async Task AFieldOver200CharactersIsRefused()
    {
        var m = await App.NewMerchantAsync();
        await CreateRefusedAsync(m, $$"""{"reference_id":"{{new string('r', 201)}}"}""", "validation_failed", "reference_id");
        await CreateRefusedAsync(m, $$"""{"phone":"{{new string('1', 201)}}"}""", "validation_failed", "phone");
    }

    [Fact]
    public async Task ANulCharacterIsRefusedRatherThanFailingInTheDatabase()
    {
        var m = await App.NewMerchantAsync();
        await CreateRefusedAsync(m, """{"name":"a\u0000b"}""", "invalid_text", "name");
        await CreateRefusedAsync(m, """{"metadata":{"k":"a\u0000b"}}""", "invalid_text", "metadata.k");
    }

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    [InlineData("7")]
    public async Task MetadataThatIsNotAnObjectIsRefused(string metadata)
    {
        var m = await App.NewMerchantAsync();
        await CreateRefusedAsync(m, $$"""{"metadata":{{metadata}}}""", "validation_failed", "metadata");
    }

    [Fact]
    public async Task MetadataWithMoreThan50KeysIsRefusedAnd50AreAccepted()
    {
        var m = await App.NewMerchantAsync();
        string Keys(int n) => "{" + string.Join(",", Enumerable.Range(0, n).Select(i => $"\"k{i}\":{i}")) + "}";
        var body = await CreateRefusedAsync(m, $$"""{"metadata":{{Keys(51)}}}""", "validation_failed", "metadata");
        Assert.Contains("must have at most 50 keys, got 51", body["errors"]!["metadata"]!.ToJsonString());
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/customers", Http.Json($$"""{"metadata":{{Keys(50)}}}"""))).Status);
    }

    [Fact]
    public async Task MetadataOver16KiBIsRefused()
    {
        var m = await App.NewMerchantAsync();
        await CreateRefusedAsync(m, $$$"""{"metadata":{"blob":"{{{new string('x', 16 * 1024)}}}"}}""", "validation_failed", "metadata");
    }
}
