using System.Text.Json;
using Lava.Billing.Forward;

namespace Lava.Billing.Tests.Forward;

public class UsageJsonTests
{
    private static NormalizedUsage? Read(ApiFormat format, string json)
    {
        using var document = JsonDocument.Parse(json);
        return UsageJson.FromResponse(format, document.RootElement);
    }

    [Fact]
    public void OpenAiChatCachedTokensAreInsidePromptTokensAndReasoningInsideCompletion()
    {
        var usage = Read(ApiFormat.OpenAiChat, """
            {"id":"chatcmpl-1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1486,"completion_tokens":651,
             "total_tokens":2137,"prompt_tokens_details":{"cached_tokens":1408,"audio_tokens":0},
             "completion_tokens_details":{"reasoning_tokens":512,"audio_tokens":0}}}
            """);
        Assert.Equal(new NormalizedUsage(78, 1408, 0, 651), usage);
        Assert.Equal(1486, usage!.Value.InputTokens);
    }

    [Fact]
    public void MistralStyleUsageWithoutDetailsIsAllUncached() =>
        Assert.Equal(new NormalizedUsage(12, 0, 0, 30),
            Read(ApiFormat.OpenAiChat, """{"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"""));

    [Fact]
    public void DeepSeekCacheHitsAreCacheReads() =>
        Assert.Equal(new NormalizedUsage(20, 80, 0, 5), Read(ApiFormat.OpenAiChat,
            """{"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":80,"prompt_cache_miss_tokens":20}}"""));

    [Fact]
    public void EmbeddingsHaveInputOnly() =>
        Assert.Equal(new NormalizedUsage(8, 0, 0, 0), Read(ApiFormat.OpenAiChat, """{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"""));

    [Fact]
    public void ResponsesApiCachedInsideInputAndReasoningInsideOutput() =>
        Assert.Equal(new NormalizedUsage(25, 100, 0, 48), Read(ApiFormat.OpenAiResponses, """
            {"id":"resp_1","object":"response","usage":{"input_tokens":125,"input_tokens_details":{"cached_tokens":100},
             "output_tokens":48,"output_tokens_details":{"reasoning_tokens":30},"total_tokens":173}}
            """));

    [Fact]
    public void AnthropicInputExcludesCacheReadsAndWrites()
    {
        var usage = Read(ApiFormat.AnthropicMessages, """
            {"id":"msg_1","type":"message","usage":{"input_tokens":100,"cache_creation_input_tokens":20,
             "cache_read_input_tokens":10,"output_tokens":5}}
            """);
        Assert.Equal(new NormalizedUsage(100, 10, 20, 5), usage);
        Assert.Equal(130, usage!.Value.InputTokens);
    }

    [Fact]
    public void GeminiPromptIncludesCachedAndThoughtsAreSeparateFromCandidates() =>
        Assert.Equal(new NormalizedUsage(300 - 200 + 7, 200, 0, 40 + 60), Read(ApiFormat.GeminiGenerateContent, """
            {"candidates":[],"usageMetadata":{"promptTokenCount":300,"cachedContentTokenCount":200,"candidatesTokenCount":40,
             "thoughtsTokenCount":60,"toolUsePromptTokenCount":7,"totalTokenCount":407},"modelVersion":"gemini-2.5-flash"}
            """));

    [Fact]
    public void GeminiStreamedAsAJsonArrayTakesTheLastUsage() =>
        Assert.Equal(new NormalizedUsage(10, 0, 0, 9), Read(ApiFormat.GeminiGenerateContent, """
            [{"candidates":[],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":2}},
             {"candidates":[]},
             {"candidates":[],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":9}}]
            """));

    [Theory]
    [InlineData("""{"text":"hi","usage":{"type":"duration","seconds":14.5}}""", 14.5)]
    [InlineData("""{"task":"transcribe","language":"english","duration":8.4700000286102295,"text":"hi"}""", 8.47)]
    [InlineData("""{"text":"hi","usage":{"type":"duration","seconds":3}}""", 3)]
    public void TranscriptionSecondsComeFromUsageOrDuration(string json, double seconds)
    {
        var usage = Read(ApiFormat.Transcription, json)!.Value;
        Assert.Equal(decimal.Round((decimal)seconds, 6), usage.InputSeconds);
        Assert.Equal(0, usage.InputTokens + usage.Output);
    }

    [Fact]
    public void TokenPricedTranscriptionCountsTokens() =>
        Assert.Equal(new NormalizedUsage(14, 0, 0, 45), Read(ApiFormat.Transcription,
            """{"text":"hi","usage":{"type":"tokens","input_tokens":14,"input_token_details":{"text_tokens":0,"audio_tokens":14},"output_tokens":45,"total_tokens":59}}"""));

    [Theory]
    [InlineData(ApiFormat.OpenAiChat, """{"choices":[]}""")]
    [InlineData(ApiFormat.OpenAiChat, """{"usage":null}""")]
    [InlineData(ApiFormat.AnthropicMessages, """{"type":"error"}""")]
    [InlineData(ApiFormat.GeminiGenerateContent, """[]""")]
    [InlineData(ApiFormat.Transcription, """{"text":"hi"}""")]
    [InlineData(ApiFormat.Other, """{"usage":{"prompt_tokens":1}}""")]
    public void ABodyWithoutUsageHasNone(ApiFormat format, string json) => Assert.Null(Read(format, json));

    [Fact]
    public void JunkCountsAreZeroAndCachedNeverExceedsTheInput() =>
        Assert.Equal(new NormalizedUsage(0, 5, 0, 0), Read(ApiFormat.OpenAiChat,
            """{"usage":{"prompt_tokens":5,"completion_tokens":-3,"prompt_tokens_details":{"cached_tokens":9}}}"""));

    [Theory]
    [InlineData("/v1/chat/completions", ApiFormat.OpenAiChat)]
    [InlineData("/v1beta/openai/chat/completions", ApiFormat.OpenAiChat)]
    [InlineData("/v1/embeddings", ApiFormat.OpenAiChat)]
    [InlineData("/v1/responses", ApiFormat.OpenAiResponses)]
    [InlineData("/v1/messages", ApiFormat.AnthropicMessages)]
    [InlineData("/v1/threads/t_1/messages", ApiFormat.Other)]
    [InlineData("/v1beta/models/gemini-2.5-flash:generateContent", ApiFormat.GeminiGenerateContent)]
    [InlineData("/v1beta/models/gemini-2.5-flash:streamGenerateContent", ApiFormat.GeminiGenerateContent)]
    [InlineData("/v1/audio/speech", ApiFormat.Speech)]
    [InlineData("/v1/audio/transcriptions", ApiFormat.Transcription)]
    [InlineData("/v1/models", ApiFormat.Other)]
    public void TheFormatFollowsTheEndpoint(string path, ApiFormat format) =>
        Assert.Equal(format, ApiFormats.Detect(new Uri("https://example.test" + path)));

    [Theory]
    [InlineData("https://api.openai.com/v1/chat/completions", ProviderKeyStyle.Bearer)]
    [InlineData("https://api.anthropic.com/v1/models", ProviderKeyStyle.AnthropicApiKey)]
    [InlineData("https://generativelanguage.googleapis.com/v1beta/models", ProviderKeyStyle.GoogleApiKey)]
    [InlineData("https://generativelanguage.googleapis.com/v1beta/openai/chat/completions", ProviderKeyStyle.Bearer)]
    [InlineData("http://127.0.0.1:9/v1/messages", ProviderKeyStyle.AnthropicApiKey)]
    [InlineData("http://127.0.0.1:9/v1beta/models/g:generateContent", ProviderKeyStyle.GoogleApiKey)]
    public void TheProviderKeyGoesWhereTheProviderReadsIt(string url, ProviderKeyStyle style)
    {
        var uri = new Uri(url);
        Assert.Equal(style, ProviderKeyStyles.For(uri, ApiFormats.Detect(uri)));
    }

    [Theory]
    [InlineData("9223372036854775807")]
    [InlineData("100000000000000000000000000000000")]
    [InlineData("1e40")]
    [InlineData("1000000000001")]
    public void ACountPastTheReportLimitSaturatesOnePastItSoSumsNeverWrap(string count)
    {
        var usage = Read(ApiFormat.AnthropicMessages,
            $$$"""{"usage":{"input_tokens":{{{count}}},"cache_read_input_tokens":{{{count}}},"cache_creation_input_tokens":{{{count}}},"output_tokens":{{{count}}}}}""")!.Value;

        Assert.Equal(3 * UsageBounds.Ceiling, usage.InputTokens);
        Assert.Equal(UsageBounds.Ceiling, usage.Output);
        Assert.False(UsageBounds.Within(usage, null));
    }

    [Theory]
    [InlineData("-5", 0)]
    [InlineData("-1e40", 0)]
    [InlineData("12.9", 12)]
    [InlineData("1000000000000", 1_000_000_000_000)]
    public void ACountInRangeIsKeptAndANegativeOneIsZero(string count, long expected)
    {
        var usage = Read(ApiFormat.AnthropicMessages, $$$"""{"usage":{"input_tokens":{{{count}}},"output_tokens":1}}""")!.Value;

        Assert.Equal(expected, usage.InputTokens);
        Assert.True(UsageBounds.Within(usage, null));
    }

    [Fact]
    public void AProviderCostPastTheReportLimitIsOutOfRange()
    {
        Assert.True(UsageBounds.Within(new NormalizedUsage(1, 0, 0, 1), 1_000_000_000m));
        Assert.False(UsageBounds.Within(new NormalizedUsage(1, 0, 0, 1), 1_000_000_000.0000000001m));
        Assert.False(UsageBounds.Within(NormalizedUsage.None with { InputSeconds = 1_000_000_001m }, null));
    }
}
