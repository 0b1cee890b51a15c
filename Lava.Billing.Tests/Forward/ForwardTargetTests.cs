using Lava.Billing.Forward;
using Microsoft.Extensions.Configuration;

namespace Lava.Billing.Tests.Forward;

public class ForwardTargetTests
{
    private static Uri? Parse(string query) => ForwardTarget.TryParse(query, out var uri, out _) ? uri : null;

    [Theory]
    // gateway(): encodeURIComponent of the whole URL, query included.
    [InlineData("?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions%3Fx%3D1%26y%3D2", "https://api.openai.com/v1/chat/completions?x=1&y=2")]
    // providers.openai + "/chat/completions": raw.
    [InlineData("?u=https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/chat/completions")]
    // A raw URL keeps the & of its own query.
    [InlineData("?u=https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&x=1",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&x=1")]
    // An encoded base with a raw path appended.
    [InlineData("?u=https%3A%2F%2Fapi.anthropic.com%2Fv1/messages", "https://api.anthropic.com/v1/messages")]
    [InlineData("?other=1&u=https://api.x.ai/v1/models", "https://api.x.ai/v1/models")]
    [InlineData("u=HTTPS://API.OPENAI.COM/v1/models", "https://api.openai.com/v1/models")]
    public void TheUpstreamIsReadInEveryFormTheSdkSends(string query, string expected) =>
        Assert.Equal(new Uri(expected), Parse(query));

    [Theory]
    [InlineData("")]
    [InlineData("?x=1")]
    [InlineData("?u=")]
    [InlineData("?u=ftp://api.openai.com/v1")]
    [InlineData("?u=api.openai.com/v1")]
    [InlineData("?u=https://user:pw@api.openai.com/v1")]
    [InlineData("?u=https://api.openai.com/v1%2fadmin")]
    public void AnythingButAnAbsoluteHttpUrlIsRefused(string query) => Assert.Null(Parse(query));

    [Theory]
    [InlineData("?u=https://api.openai.com/v1/../admin")]
    [InlineData("?u=https://api.openai.com/v1/%2e%2e/admin")]
    [InlineData("?u=https%3A%2F%2Fapi.openai.com%2Fv1%2F..%2Fadmin")]
    public void DotSegmentsAreResolvedBeforeTheAllowListSeesThePath(string query)
    {
        var uri = Parse(query)!;
        Assert.Equal("/admin", uri.AbsolutePath);
        Assert.False(AllowedUpstream.Parse("https://api.openai.com/v1").Allows(uri));
    }

    [Theory]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com/v1", true)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions", true)]
    [InlineData("https://api.openai.com/v1/", "https://api.openai.com/v1/models", true)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com/v1evil", false)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com/v2/models", false)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com/", false)]
    [InlineData("https://api.openai.com/v1", "http://api.openai.com/v1/models", false)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com:8443/v1/models", false)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com.evil.example/v1/models", false)]
    [InlineData("https://api.openai.com/v1", "https://evil.example/v1/models", false)]
    [InlineData("https://api.openai.com/v1", "https://API.OpenAI.com/v1/models", true)]
    [InlineData("https://api.openai.com/v1", "https://api.openai.com:443/v1/models", true)]
    [InlineData("http://127.0.0.1:5000", "http://127.0.0.1:5000/anything", true)]
    [InlineData("http://127.0.0.1:5000", "http://127.0.0.1:5001/anything", false)]
    [InlineData("http://127.0.0.1:5000", "http://localhost:5000/anything", false)]
    public void AnEntryAllowsItsOwnOriginUnderItsPathOnly(string entry, string upstream, bool allowed) =>
        Assert.Equal(allowed, AllowedUpstream.Parse(entry).Allows(new Uri(upstream)));

    [Theory]
    [InlineData("api.openai.com")]
    [InlineData("ftp://files.example")]
    [InlineData("https://u:p@api.openai.com")]
    [InlineData("https://api.openai.com/v1?x=1")]
    public void AMalformedAllowListEntryStopsTheService(string entry) =>
        Assert.Throws<InvalidOperationException>(() => AllowedUpstream.Parse(entry));

    [Fact]
    public void TheDefaultsAreTheSdksTwentyEightProvidersHttpsOnly()
    {
        var options = ForwardOptions.From(new ConfigurationBuilder().Build());
        Assert.Equal(28, options.AllowedUpstreams.Count);
        Assert.All(options.AllowedUpstreams, u => Assert.Equal("https", u.Scheme));
        Assert.True(options.IsAllowed(new Uri("https://api.groq.com/openai/v1/chat/completions")));
        Assert.False(options.IsAllowed(new Uri("https://api.groq.com/v1/chat/completions")));
        Assert.False(options.IsAllowed(new Uri("http://api.openai.com/v1/chat/completions")));
    }

    [Fact]
    public void ConfiguredEntriesReplaceTheDefaults()
    {
        var options = ForwardOptions.From(new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Forward:AllowedUpstreams:0"] = "http://127.0.0.1:9" }).Build());
        Assert.True(options.IsAllowed(new Uri("http://127.0.0.1:9/v1/chat/completions")));
        Assert.False(options.IsAllowed(new Uri("https://api.openai.com/v1/chat/completions")));
    }
}
