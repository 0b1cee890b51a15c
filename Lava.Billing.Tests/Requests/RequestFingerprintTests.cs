using Lava.Billing.Requests;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// Fingerprints are stored with every report and compared on every replay: a change to how one is computed would turn
/// each replay of an earlier report into a 409, so the bytes are pinned here.
/// </summary>
public class RequestFingerprintTests
{
    private static readonly CreateRequestBody Whole = new()
    {
        RequestId = "req-1", ConnectionId = "cus_1", MeterSlug = "tokens", InputTokens = 1500, OutputTokens = 250,
        InputSeconds = 1.500m, Cost = 0.0012000m, Timestamp = new DateTimeOffset(2026, 12, 4, 14, 0, 0, TimeSpan.FromHours(1)),
        DisableBilling = false, HoldId = "hold_1", Metadata = new() { ["zeta"] = "é", ["alpha"] = "<1>" },
    };

    [Fact]
    public void AReportsFingerprintIsTheOneStoredBefore()
    {
        Assert.Equal("b579454f0ecbc74b2cc33a1e9b37f54edba35651e6f2157b3093cfb7c999b042", Convert.ToHexStringLower(RequestFingerprint.Compute(Whole)));
        Assert.Equal("799b636b80110c94b665095a62a1ea6d86c24d6f88ec989c1b111512f86158ab", Convert.ToHexStringLower(RequestFingerprint.Compute(new CreateRequestBody { RequestId = "r", MeterSlug = "m" })));
    }

    [Fact]
    public void BodiesThatMeanTheSameReportHaveOneFingerprint()
    {
        var same = Whole with
        {
            ConnectionId = null, CustomerId = "cus_1", InputSeconds = 1.5m, Cost = 0.0012m, OutputCharacters = 0, DisableBilling = null,
            Timestamp = new DateTimeOffset(2026, 12, 4, 13, 0, 0, TimeSpan.Zero), Metadata = new() { ["alpha"] = "<1>", ["zeta"] = "é" },
        };

        Assert.Equal(RequestFingerprint.Compute(Whole), RequestFingerprint.Compute(same));
        Assert.NotEqual(RequestFingerprint.Compute(Whole), RequestFingerprint.Compute(Whole with { OutputTokens = 251 }));
    }
}
