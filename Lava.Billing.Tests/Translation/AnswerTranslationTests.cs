using System.Text;
using System.Text.Json.Nodes;
using Lava.Billing.Translation;

namespace Lava.Billing.Tests.Translation;

public class AnswerTranslationTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeSeconds(1_700_000_123);

    private static JsonObject Obj(string json) => JsonNode.Parse(json)!.AsObject();

    private static void AssertJson(string expected, JsonNode actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), actual), $"expected {JsonNode.Parse(expected)!.ToJsonString()}\nactual   {actual.ToJsonString()}");

    [Fact]
    public void AnAnthropicMessageBecomesAChatCompletionWithItsToolCallAndEveryInputTokenCountedOnce()
    {
        var completion = OpenAiAnswers.FromAnthropic(Obj(ProviderFixtures.AnthropicMessage), Now);

        AssertJson("""
            {"id":"msg_01A","object":"chat.completion","created":1700000123,"model":"claude-sonnet-4-5",
             "choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","refusal":null,
                "reasoning_content":"The user wants weather.",
                "tool_calls":[{"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                "logprobs":null,"finish_reason":"tool_calls"}],
             "usage":{"prompt_tokens":1300,"completion_tokens":300,"total_tokens":1600,"prompt_tokens_details":{"cached_tokens":1000}}}
            """, completion);
    }

    [Fact]
    public void AChatCompletionBecomesAnAnthropicMessageWithCachedTokensMovedOutOfTheInputAndReasoningNotAddedAgain()
    {
        var message = AnthropicAnswers.FromOpenAi(Obj(ProviderFixtures.OpenAiCompletion));

        AssertJson("""
            {"id":"chatcmpl-1","type":"message","role":"assistant","model":"gpt-4o",
             "content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}}],
             "stop_reason":"tool_use","stop_sequence":null,
             "usage":{"input_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":1000,"output_tokens":300}}
            """, message);
    }

    [Theory]
    [InlineData("end_turn", "stop")]
    [InlineData("stop_sequence", "stop")]
    [InlineData("max_tokens", "length")]
    [InlineData("tool_use", "tool_calls")]
    [InlineData("refusal", "content_filter")]
    [InlineData("pause_turn", "stop")]
    public void AnthropicStopReasonsMapToOpenAiFinishReasons(string stopReason, string finishReason) =>
        Assert.Equal(finishReason, OpenAiAnswers.FinishReason(stopReason));

    [Theory]
    [InlineData("stop", "end_turn")]
    [InlineData("length", "max_tokens")]
    [InlineData("tool_calls", "tool_use")]
    [InlineData("function_call", "tool_use")]
    [InlineData("content_filter", "refusal")]
    public void OpenAiFinishReasonsMapToAnthropicStopReasons(string finishReason, string stopReason) =>
        Assert.Equal(stopReason, AnthropicAnswers.StopReason(finishReason));

    [Fact]
    public void ProviderErrorsReachTheClientInItsOwnErrorShape()
    {
        AssertJson("""{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}""",
            OpenAiAnswers.ErrorFromAnthropic(Obj(ProviderFixtures.AnthropicError)));
        AssertJson("""{"type":"error","error":{"type":"rate_limit_error","message":"Rate limit reached"}}""",
            AnthropicAnswers.ErrorFromOpenAi(Obj(ProviderFixtures.OpenAiError), 429));
    }

    [Fact]
    public void AnErrorBodyThatIsNotJsonKeepsItsTextAsTheMessage()
    {
        var translator = ChatTranslation.Between(ChatShape.AnthropicMessages, ChatShape.OpenAiChat)!.Answer(502, eventStream: false, Now);

        Assert.Empty(translator.Feed("<html>Bad gateway</html>"u8));
        var body = Encoding.UTF8.GetString(translator.Finish());

        AssertJson("""{"type":"error","error":{"type":"api_error","message":"<html>Bad gateway</html>"}}""", JsonNode.Parse(body)!);
    }

    [Fact]
    public void AWholeAnswerIsHeldUntilItsEndThenTranslated()
    {
        var translator = ChatTranslation.Between(ChatShape.OpenAiChat, ChatShape.AnthropicMessages)!.Answer(200, eventStream: false, Now);
        var bytes = Encoding.UTF8.GetBytes(ProviderFixtures.AnthropicMessage);

        Assert.Empty(translator.Feed(bytes.AsSpan(0, 10)));
        Assert.Empty(translator.Feed(bytes.AsSpan(10)));
        var completion = JsonNode.Parse(translator.Finish())!;

        Assert.Equal("chat.completion", (string?)completion["object"]);
        Assert.Equal(1300, (long?)completion["usage"]!["prompt_tokens"]);
    }
}
