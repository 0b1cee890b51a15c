using Lava.Billing.Forward;

namespace Lava.Billing.Tests.Forward;

public class ProviderCostTests
{
    private static ModelPrice Price(decimal input, decimal cached, decimal write, decimal output, decimal characters = 0, decimal minutes = 0) =>
        new("m", 1, "test", input, cached, write, output, characters, minutes, false, DateTimeOffset.UnixEpoch);

    [Fact]
    public void EachTokenClassIsPricedOnceAtItsOwnRate()
    {
        // gpt-4o: 1,486 prompt tokens of which 1,408 cached, 651 completion tokens of which 512 reasoning.
        var usage = new NormalizedUsage(78, 1408, 0, 651);
        var cost = ProviderCost.Compute(usage, Price(2.50m, 1.25m, 2.50m, 10.00m));
        Assert.Equal(0.008465m, cost); // (78×2.50 + 1408×1.25 + 651×10.00) / 10^6, reasoning not added again
    }

    [Fact]
    public void AnthropicCacheWritesArePricedAtTheWriteRate()
    {
        var cost = ProviderCost.Compute(new NormalizedUsage(100, 10, 20, 5), Price(3m, 0.30m, 3.75m, 15m));
        Assert.Equal(0.000453m, cost); // (300 + 3 + 75 + 75) / 10^6
    }

    [Fact]
    public void TheSmallestCostsAreExactAtTenPlaces()
    {
        Assert.Equal(0.0000000001m, ProviderCost.Compute(new NormalizedUsage(1, 0, 0, 0), Price(0.0001m, 0, 0, 0)));
        Assert.Equal(0.000000075m, ProviderCost.Compute(new NormalizedUsage(0, 1, 0, 0), Price(0, 0.075m, 0, 0)));
    }

    [Fact]
    public void SpeechIsPricedByCharactersAndTranscriptionByMinutes()
    {
        Assert.Equal(0.015m, ProviderCost.Compute(NormalizedUsage.None with { InputCharacters = 1000 }, Price(0, 0, 0, 0, characters: 15m)));
        Assert.Equal(0.00145m, ProviderCost.Compute(NormalizedUsage.None with { InputSeconds = 14.5m }, Price(0, 0, 0, 0, minutes: 0.006m)));
        // A per-minute rate over odd seconds does not terminate: rounded half away from zero at 10 places.
        Assert.Equal(0.000035m, ProviderCost.Compute(NormalizedUsage.None with { InputSeconds = 0.7m }, Price(0, 0, 0, 0, minutes: 0.003m)));
        Assert.Equal(0.0001666667m, ProviderCost.Compute(NormalizedUsage.None with { InputSeconds = 0.001m }, Price(0, 0, 0, 0, minutes: 10m)));
    }

    [Fact]
    public void LargeVolumesDoNotOverflow()
    {
        var usage = new NormalizedUsage(1_000_000_000_000, 1_000_000_000_000, 1_000_000_000_000, 1_000_000_000_000);
        Assert.Equal(4_000_000_000_000m, ProviderCost.Compute(usage, Price(1_000_000m, 1_000_000m, 1_000_000m, 1_000_000m)));
    }

    [Fact]
    public void TheEstimateUsesReportedInputAndTheLargerOutput()
    {
        var request = new InspectedRequest("m", true, null, InputTokensEstimate: 50, InputCharacters: 0, [], false);
        Assert.Equal(new NormalizedUsage(50, 0, 0, 3), ForwardRelay.Estimate(null, request, outputCharacters: 10));
        Assert.Equal(new NormalizedUsage(100, 10, 20, 3), ForwardRelay.Estimate(new NormalizedUsage(100, 10, 20, 1), request, 9));
        Assert.Equal(new NormalizedUsage(100, 0, 0, 40), ForwardRelay.Estimate(new NormalizedUsage(100, 0, 0, 40), request, 9));
    }
}
