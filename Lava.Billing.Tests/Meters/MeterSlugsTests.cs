using Lava.Billing.Meters;

namespace Lava.Billing.Tests.Meters;

public class MeterSlugsTests
{
    [Theory]
    [InlineData("GPT-4o Tokens (input)", "gpt-4o-tokens-input")]
    [InlineData("  --Hello__World--  ", "hello-world")]
    [InlineData("Crème brûlée", "cr-me-br-l-e")]
    [InlineData("日本語", "meter")]
    [InlineData("", "meter")]
    public void ASlugKeepsLowercaseLettersAndDigitsAndJoinsTheRestWithOneDash(string name, string slug)
    {
        Assert.Equal(slug, MeterSlugs.FromName(name));
        Assert.True(MeterSlugs.IsValid(slug));
    }

    [Fact]
    public void ALongNameIsCutTo64CharactersWithoutATrailingDash()
    {
        var slug = MeterSlugs.FromName(new string('a', 63) + " b");
        Assert.Equal(new string('a', 63), slug);
        Assert.True(MeterSlugs.IsValid(slug));
    }

    [Theory]
    [InlineData(1, "tokens")]
    [InlineData(2, "tokens-2")]
    [InlineData(137, "tokens-137")]
    public void CandidatesAreTheStemThenNumberedFromTwo(int n, string expected) =>
        Assert.Equal(expected, MeterSlugs.Candidate("tokens", n));

    [Fact]
    public void ANumberedCandidateOfALongStemIsCutToFitAndNeverDoublesTheDash()
    {
        // Cut to 61 characters the stem would end in '-', and "-10" would follow it.
        var stem = new string('a', 60) + "-bcd";
        var candidate = MeterSlugs.Candidate(stem, 10);
        Assert.Equal(new string('a', 60) + "-10", candidate);
        Assert.True(candidate.Length <= MeterSlugs.MaxLength && MeterSlugs.IsValid(candidate));
    }
}
