using System.Text;
using Lava.Billing.Forward;

namespace Lava.Billing.Tests.Forward;

public class ForwardTokenTests
{
    private static string Base64(string json) => Convert.ToBase64String(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void ABareSecretKeyIsGatewayModeWithNothingElse()
    {
        var token = ForwardToken.TryParse("aks_test_abc")!;
        Assert.Equal(new ForwardToken("aks_test_abc", null, null, null, false), token);
        Assert.Equal(ForwardMode.Gateway, ForwardModes.Of(token, out _));
    }

    [Theory]
    // The SDK's own outputs (docs/sdk-11.2.0.md §4).
    [InlineData("eyJzZWNyZXRfa2V5IjoiYWtzX3Rlc3RfYWJjIiwiY3VzdG9tZXJfaWQiOiJjdXNfMSIsIm1ldGVyX3NsdWciOiJtIn0=", "aks_test_abc", "cus_1", "m")]
    [InlineData("eyJzZWNyZXRfa2V5IjoiYWtzX3Rlc3RfYWJjIn0=", "aks_test_abc", null, null)]
    [InlineData("eyJzZWNyZXRfa2V5IjoiYWtzX3Rlc3RfPz8+Pn5+w6kifQ==", "aks_test_??>>~~é", null, null)]
    public void TokensBuiltByTheSdkDecode(string token, string secret, string? customer, string? meter)
    {
        var parsed = ForwardToken.TryParse(token)!;
        Assert.Equal((secret, customer, meter), (parsed.SecretKey, parsed.CustomerId, parsed.MeterSlug));
    }

    [Fact]
    public void NullsAndMissingMembersMeanTheSame()
    {
        var withNulls = ForwardToken.TryParse(Base64("""{"secret_key":"aks_x","customer_id":null,"meter_slug":null,"provider_key":"sk-1"}"""));
        var missing = ForwardToken.TryParse(Base64("""{"secret_key":"aks_x","provider_key":"sk-1"}"""));
        Assert.NotNull(withNulls);
        Assert.Equal(withNulls, missing);
        Assert.Equal("sk-1", withNulls.ProviderKey);
        Assert.Equal(ForwardMode.Gateway, ForwardModes.Of(withNulls, out _));
    }

    [Theory]
    [InlineData("""{"secret_key":"aks_x","customer_id":null,"meter_slug":"m"}""", ForwardMode.MeterOnly)]
    [InlineData("""{"secret_key":"aks_x","meter_slug":"m"}""", ForwardMode.MeterOnly)]
    [InlineData("""{"secret_key":"aks_x","customer_id":"cus_1","meter_slug":"m"}""", ForwardMode.Customer)]
    [InlineData("""{"secret_key":"aks_x","customer_id":"cus_1","meter_slug":"m","disable_billing":false}""", ForwardMode.Customer)]
    [InlineData("""{"secret_key":"aks_x","customer_id":"cus_1","meter_slug":"m","provider_key":"pk","disable_billing":true}""", ForwardMode.BillingDisabled)]
    public void EachModeFollowsFromTheToken(string json, ForwardMode mode)
    {
        var token = ForwardToken.TryParse(Base64(json))!;
        Assert.Equal(mode, ForwardModes.Of(token, out var error));
        Assert.Null(error);
    }

    [Theory]
    [InlineData("""{"secret_key":"aks_x","customer_id":"cus_1"}""")]
    [InlineData("""{"secret_key":"aks_x","customer_id":"","meter_slug":"m"}""")]
    [InlineData("""{"secret_key":"aks_x","customer_id":"cus_1","meter_slug":""}""")]
    public void ACustomerWithoutAMeterOrAnEmptyIdHasNoMode(string json)
    {
        var token = ForwardToken.TryParse(Base64(json))!;
        Assert.Null(ForwardModes.Of(token, out var error));
        Assert.NotNull(error);
    }

    [Theory]
    [InlineData("not base64 at all!")]
    [InlineData("eyJzZWNyZXRfa2V5Ijoi")] // truncated base64
    [InlineData("bm90IGpzb24=")] // "not json"
    [InlineData("WzEsMiwzXQ==")] // [1,2,3]
    [InlineData("e30=")] // {} without secret_key
    public void MalformedTokensAreRefused(string token) => Assert.Null(ForwardToken.TryParse(token));

    [Theory]
    [InlineData("""{"secret_key":42}""")]
    [InlineData("""{"secret_key":null}""")]
    [InlineData("""{"secret_key":"aks_x","customer_id":7}""")]
    [InlineData("""{"secret_key":"aks_x","provider_key":["a"]}""")]
    [InlineData("""{"secret_key":"aks_x","disable_billing":"yes"}""")]
    public void MembersOfTheWrongTypeAreRefused(string json) => Assert.Null(ForwardToken.TryParse(Base64(json)));

    [Fact]
    public void InvalidUtf8IsRefused() => Assert.Null(ForwardToken.TryParse(Convert.ToBase64String([0x7B, 0xFF, 0xFE, 0x7D])));

    [Fact]
    public void TheProviderKeyNeverAppearsInTheTokensText()
    {
        var token = ForwardToken.TryParse(Base64("""{"secret_key":"aks_x","provider_key":"sk-very-secret"}"""))!;
        Assert.DoesNotContain("sk-very-secret", token.ToString());
        Assert.DoesNotContain("aks_x", token.ToString());
    }
}
