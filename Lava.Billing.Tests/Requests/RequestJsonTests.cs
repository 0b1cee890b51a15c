using System.Text.Json;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests;

namespace Lava.Billing.Tests.Requests;

/// <summary>The generated writer answers byte for byte what the wire options write, whatever the response holds.</summary>
public class RequestJsonTests
{
    private static RestRequest Response(CustomerBalance? balance, string? customerId, string? model, string? holdId,
        IReadOnlyDictionary<string, string> metadata) => new(
        "req \"1\" <é>", "completed", customerId, "mtr_01", "openai", "managed", model, "/v1/chat/completions",
        new ModelUsage(1500, 250, 1750, 0, 0, 0, 1.500000m, 0m, 1.500000m, "0.0000000000", "0.0000000000", "0.0012000000"),
        "0.0012000000",
        new RequestCharge("0.0085000000", "fixed",
        [
            new BreakdownLine(new BreakdownTier(0m, "5.0000000000", "tokens_1m"), 1000m, 0m, 0m, "0.0050000000"),
            new BreakdownLine(new BreakdownTier(1_000m, "3.0000000000", "tokens_1m"), 750m, 0m, 0m, "0.0035000000"),
        ]),
        metadata,
        new DateTimeOffset(2026, 12, 4, 13, 0, 0, 123, TimeSpan.Zero).AddTicks(4567),
        new DateTimeOffset(2026, 12, 4, 13, 0, 1, TimeSpan.Zero),
        "customer", 3, "txn_01", balance, holdId);

    public static TheoryData<string> Cases => ["whole", "sparse"];

    private static RestRequest Case(string name) => name == "whole"
        ? Response(new CustomerBalance("99.9915000000", "0.0000000000"), "cus_1", "gpt-4o", "hold_1",
            new Dictionary<string, string> { ["zeta"] = "last", ["alpha"] = "first \u2028 line", ["emoji"] = "\U0001F600 & <b>" })
        : Response(null, null, null, null, new Dictionary<string, string>());

    [Theory]
    [MemberData(nameof(Cases))]
    public void AResponseIsWrittenAsTheWireOptionsWriteIt(string name)
    {
        var response = Case(name);

        Assert.Equal(JsonSerializer.Serialize(response, LavaJson.Options), RequestJson.Response(response));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MetadataIsWrittenAsTheDefaultOptionsWriteItInTheOrderSent(string name)
    {
        var metadata = Case(name).Metadata;

        Assert.Equal(JsonSerializer.Serialize(metadata), RequestJson.Metadata(metadata));
    }

    [Fact]
    public void AResponseKeepsItsMemberNamesAndNumbers()
    {
        var json = RequestJson.Response(Case("whole"));

        Assert.StartsWith("{\"request_id\":\"req \\u00221\\u0022 \\u003C\\u00E9\\u003E\",\"status\":\"completed\",\"customer_id\":\"cus_1\",", json);
        Assert.Contains("\"model_usage\":{\"input_tokens\":1500,\"output_tokens\":250,\"total_tokens\":1750,", json);
        Assert.Contains("\"input_seconds\":1.500000,", json);
        Assert.Contains("\"tier\":{\"start\":1000,\"rate\":\"3.0000000000\",\"type\":\"tokens_1m\"},\"tokens\":750,", json);
        Assert.EndsWith("\"customer_balance\":{\"credits_remaining\":\"99.9915000000\",\"receivable\":\"0.0000000000\"},\"hold_id\":\"hold_1\"}", json);
    }
}
