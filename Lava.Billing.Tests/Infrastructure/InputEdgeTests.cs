using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Lava.Billing.Tests.Forward;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Text the database cannot hold, and JSON that says two things at once, are refused at the edge with a 400.</summary>
public class InputEdgeTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private static ByteArrayContent JsonBytes(byte[] utf8)
    {
        var content = new ByteArrayContent(utf8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    private static ByteArrayContent JsonBytes(string text) => JsonBytes(Encoding.UTF8.GetBytes(text));

    [Theory]
    [InlineData("/v1/requests", """{"request_id":"r1","meter_slug":"gpt","customer_id":"cus_\u0000x"}""", "customer_id")]
    [InlineData("/v1/requests", """{"request_id":"r1","meter_slug":"gpt\ud800"}""", "meter_slug")]
    [InlineData("/v1/requests", """{"request_id":"r1","meter_slug":"gpt","metadata":{"team\u0000":"a"}}""", "metadata")]
    [InlineData("/v1/requests/batch", """{"requests":[{"request_id":"r1","meter_slug":"gpt"},{"request_id":"r2","meter_slug":"\udc00"}]}""", "requests[1].meter_slug")]
    [InlineData("/v1/meters", """{"name":"N\u0000","meter_slug":"m","rate_type":"fixed","tier_type":"requests","tiers":[{"start":"0","rate":"1"}]}""", "name")]
    [InlineData("/v1/plans", """{"name":"\u0000","period_amount":"1"}""", "name")]
    public async Task NulOrALoneSurrogateEscapedInAJsonBodyIs400NamingTheField(string path, string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.SendAsync(HttpMethod.Post, path, JsonBytes(json))).AssertProblem(HttpStatusCode.BadRequest, "invalid_text");
        Assert.NotNull(body["errors"]![field]);
    }

    // .NET's '$' also matches before a final line break; the database's checks do not. Each of these passed the service's
    // shape check and then failed the column's CHECK (a 500), or was stored with a key no real one can match.
    [Theory]
    [InlineData("/v1/requests", """{"request_id":"r1\n","meter_slug":"gpt"}""", "request_id")]
    [InlineData("/v1/requests", """{"request_id":"r1","meter_slug":"gpt","metadata":{"team\n":"a"}}""", "metadata")]
    [InlineData("/v1/meters", """{"name":"N","meter_slug":"m1\n","rate_type":"fixed","tier_type":"requests","tiers":[{"start":"0","rate":"1"}]}""", "meter_slug")]
    [InlineData("/v1/model_prices", """{"model":"gpt-x\n","input":"1","output":"1"}""", "model")]
    [InlineData("/v1/spend_keys", """{"name":"k","allowed_models":["gpt-4o\n"]}""", "allowed_models")]
    [InlineData("/v1/customers", """{"name":"a","email":"a@example.com\n"}""", "email")]
    public async Task AFinalLineBreakIsNotPartOfAnyShapeAndIs400(string path, string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.SendAsync(HttpMethod.Post, path, JsonBytes(json))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains(body["errors"]!.AsObject(), e => e.Key == field || e.Key.StartsWith(field + "[", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ABatchItemWhoseIdEndsInALineBreakIsInvalidNotRefused()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.SendAsync(HttpMethod.Post, "/v1/requests/batch", JsonBytes("""{"requests":[{"request_id":"b2\n","meter_slug":"gpt"}]}"""));
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("invalid", (string)r.Body!["data"]![0]!["status"]!);
    }

    // PostgreSQL stores JSON numbers as numeric: 131,072 digits before the point, 16,383 after. Past that the cast failed (a 500).
    [Theory]
    [InlineData("1e1000000")]
    [InlineData("1e-1000000")]
    [InlineData("1e131072")]
    [InlineData("1e-16384")]
    [InlineData("0e-20000")]
    [InlineData("1e99999999999999999999")]
    [InlineData("0e1073741823")]
    [InlineData("1e9223372036854775807")]
    [InlineData("0.1e-9223372036854775808")]
    public async Task ACustomerMetadataNumberPostgreSqlCannotStoreIs400(string number)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.SendAsync(HttpMethod.Post, "/v1/customers", JsonBytes($$$"""{"name":"a","metadata":{"x":[1,{"y":{{{number}}}}]}}""")))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]!["metadata"]);
        var created = await m.Client.SendAsync(HttpMethod.Post, "/v1/customers", JsonBytes("""{"name":"a"}"""));
        var id = (string)created.Body!["customer_id"]!;
        (await m.Client.SendAsync(HttpMethod.Patch, $"/v1/customers/{id}", JsonBytes($$$"""{"metadata":{"x":{{{number}}}}}""")))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }

    [Theory]
    [InlineData("1e131071")]
    [InlineData("1e-16383")]
    [InlineData("0.001e131074")]
    [InlineData("12.5e-16382")]
    [InlineData("0e200000")]
    [InlineData("0e1073741822")]
    [InlineData("-123.456")]
    public async Task ACustomerMetadataNumberAtPostgreSqlsBoundsIsStored(string number)
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.SendAsync(HttpMethod.Post, "/v1/customers", JsonBytes($$$"""{"name":"a","metadata":{"x":{{{number}}}}}"""));
        Assert.Equal(HttpStatusCode.Created, created.Status);
    }

    [Fact]
    public async Task ACursorThatDecodesToNulIs400NamingTheCursor()
    {
        var m = await App.NewMerchantAsync();
        foreach (var list in new[] { "/v1/customers", "/v1/meters", "/v1/plans", "/v1/webhooks", "/v1/secret_keys" })
        {
            var body = (await m.Client.GetJsonAsync(list + "?cursor=AA")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.NotNull(body["errors"]!["cursor"]);
        }
    }

    [Fact]
    public async Task InvalidUtf8BytesInAJsonBodyAre400()
    {
        var m = await App.NewMerchantAsync();
        // "meter_slug":"g\xC3(" and an encoded lone surrogate (ED A0 80): neither is UTF-8.
        foreach (var bad in new[] { new byte[] { 0x67, 0xC3, 0x28 }, new byte[] { 0xED, 0xA0, 0x80 } })
        {
            var json = Encoding.UTF8.GetBytes("""{"request_id":"r1","meter_slug":" """.TrimEnd()).Concat(bad).Concat("\"}"u8.ToArray()).ToArray();
            (await m.Client.SendAsync(HttpMethod.Post, "/v1/requests", JsonBytes(json))).AssertProblem(HttpStatusCode.BadRequest, "invalid_text");
        }
    }

    [Theory]
    [InlineData("/v1/requests", """{"request_id":"r1","meter_slug":"gpt","request_id":"r2"}""", "request_id")]
    [InlineData("/v1/requests", """{"request_id":"r1","meter_slug":"gpt","metadata":{"team":"a","team":"b"}}""", "metadata.team")]
    [InlineData("/v1/customers", """{"name":"a","metadata":{"x":{"y":1,"y":2}}}""", "metadata.x.y")]
    public async Task ADuplicateJsonKeyAtAnyDepthIs400(string path, string json, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.SendAsync(HttpMethod.Post, path, JsonBytes(json))).AssertProblem(HttpStatusCode.BadRequest, "duplicate_json_key");
        Assert.NotNull(body["errors"]![field]);
    }

    [Fact]
    public async Task ADuplicateKeyInAForwardedBodyIs400BeforeTheProviderIsCalled()
    {
        var m = await App.NewMerchantAsync();
        var client = App.ClientWithToken(m.SecretKey);
        (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), JsonBytes("""{"model":"gpt-4o","model":"gpt-4o-mini","messages":[]}""")))
            .AssertProblem(HttpStatusCode.BadRequest, "duplicate_json_key");
        Assert.Equal(0, Fake.Calls);
    }

    [Theory]
    [InlineData("/v1/ledger/accounts?customer_id=cus%00x", "customer_id")]
    [InlineData("/v1/ledger/accounts?kind=%ED%A0%80", "query")]
    [InlineData("/v1/requests?meter_id=%C3%28", "query")]
    public async Task NulOrInvalidUtf8InTheUrlIs400(string url, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.GetJsonAsync(url)).AssertProblem(HttpStatusCode.BadRequest, "invalid_text");
        Assert.NotNull(body["errors"]![field]);
    }

    [Theory]
    [InlineData("/v1/customers/cus%00x", false)]
    [InlineData("/v1/meters/m%ED%B0%80", false)]
    [InlineData("/v1/meters/m%C3%A9%F0%9F%98%80?q=%E2%82%AC+x", true)]
    [InlineData("/v1/meters/%25ED%25A0%2580", true)]
    public void ARawUrlIsCleanWhenItsDecodedBytesAreUtf8WithoutNul(string raw, bool clean) =>
        // Kestrel refuses %00 in a path itself; the raw target is checked for what it lets through.
        Assert.Equal(clean, Lava.Billing.Infrastructure.Http.InputText.IsCleanPercentEncoded(raw));

    [Theory]
    [InlineData("""{"a":"x","a":"y"}""")]
    [InlineData("""[["team","a\u0000"]]""")]
    [InlineData("""[["team","\ud800"]]""")]
    [InlineData("""[["team","a"],["team","b"]]""")]
    public async Task BadMetadataFiltersAre400(string filters)
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/requests?metadata_filters=" + Uri.EscapeDataString(filters)))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task AnEscapedNulInTheGatewaysMetadataHeaderIs400()
    {
        var m = await App.NewMerchantAsync();
        using var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = JsonBytes("""{"model":"gpt-4o"}""") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", GatewayApp.Token(m.SecretKey));
        request.Headers.TryAddWithoutValidation("x-lava-metadata", """{"team":"a\u0000"}""");
        var response = await App.CreateClient().SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(0, Fake.Calls);
    }

    [Theory]
    [InlineData("customer_id", "\"cus_\\u0000\"")]
    [InlineData("customer_id", "\"\\ud800\"")]
    [InlineData("meter_slug", "\"\\udc00x\"")]
    [InlineData("provider_key", "\"sk\\u0000\"")]
    public async Task AForwardTokenWithTextTheDatabaseCannotHoldIs401(string member, string value)
    {
        var m = await App.NewMerchantAsync();
        var json = $$"""{"secret_key":"{{m.SecretKey}}","{{member}}":{{value}}}""";
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Convert.ToBase64String(Encoding.UTF8.GetBytes(json)));
        (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), JsonBytes("{}"))).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task AForwardTokenWithInvalidUtf8OrADuplicateMemberIs401()
    {
        var m = await App.NewMerchantAsync();
        var invalid = Encoding.UTF8.GetBytes($$"""{"secret_key":"{{m.SecretKey}}","customer_id":"x""").Concat(new byte[] { 0xC3, 0x28 }).Concat("\"}"u8.ToArray()).ToArray();
        var duplicate = Encoding.UTF8.GetBytes($$"""{"secret_key":"aks_test_other","secret_key":"{{m.SecretKey}}"}""");
        foreach (var token in new[] { invalid, duplicate })
        {
            var client = App.CreateClient();
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Convert.ToBase64String(token));
            (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), JsonBytes("{}"))).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        }
    }

    [Theory]
    [InlineData("0001-01-01T00:00:00Z")]
    [InlineData("1999-01-01T00:00:00Z")]
    public async Task AReportDatedBeforeTheBackdatingWindowIs400(string timestamp)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/requests", new Dictionary<string, object>
        {
            ["request_id"] = "old", ["meter_slug"] = "gpt", ["timestamp"] = timestamp,
        })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]!["timestamp"]);
    }

    [Theory]
    [InlineData("start=9999-12-30T00:00:00Z")]
    [InlineData("start=9999-12-01T00:00:00Z&end=9999-12-31T23:59:59Z")]
    [InlineData("start=1900-01-01T00:00:00Z&end=1900-02-01T00:00:00Z")]
    public async Task UsageOutsideTheSupportedYearsIs400(string query)
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/usage?" + query)).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }
}

/// <summary>What a log line may carry: never a secret, and a client's mistake without a stack, below Error.</summary>
public class LogRedactionTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private const string QueryKey = "AIzaSy-provider-key-in-the-query-0042";
    private const string TokenKey = "sk-provider-key-in-the-token-0042";

    [Fact]
    public async Task SecretsInTheBearerTheTokenAndTheUpstreamsQueryStringAreNeverLogged()
    {
        var m = await App.NewMerchantAsync();
        var client = App.ClientWithToken(m.SecretKey, providerKey: TokenKey);
        var url = "/v1/forward?u=" + Uri.EscapeDataString(Fake.BaseUrl + "/v1beta/models/gemini-2.5-flash:generateContent?key=" + QueryKey);
        await client.SendAsync(HttpMethod.Post, url, Http.Json("""{"contents":[]}"""));
        await client.SendAsync(HttpMethod.Post, url, Http.Json("""{"contents":[}"""));
        await m.Client.SendAsync(HttpMethod.Get, "/v1/requests?meter_id=%00");
        Assert.NotEmpty(App.Logs.Lines);
        Assert.DoesNotContain(App.Logs.Lines, l => l.Contains(QueryKey) || l.Contains(TokenKey) || l.Contains(m.SecretKey));
    }

    [Fact]
    public async Task UnreadableJsonIsLoggedBelowErrorWithoutAStack()
    {
        var m = await App.NewMerchantAsync();
        App.Logs.Entries.Clear();
        (await m.Client.SendAsync(HttpMethod.Post, "/v1/customers", Http.Json("""{"name":"""))).AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
        (await m.Client.SendAsync(HttpMethod.Post, "/v1/meters", Http.Json("""{"name":7}"""))).AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
        Assert.DoesNotContain(App.Logs.Lines, l => l.StartsWith("Error", StringComparison.Ordinal) || l.StartsWith("Critical", StringComparison.Ordinal));
        Assert.DoesNotContain(App.Logs.Lines, l => l.Contains("   at ", StringComparison.Ordinal));
        Assert.Contains(App.Logs.Lines, l => l.StartsWith("Information", StringComparison.Ordinal) && l.Contains("invalid_json"));
    }
}
