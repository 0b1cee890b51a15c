using System.Text.Json.Nodes;
using Lava.Billing.Translation;

namespace Lava.Billing.Tests.Translation;

public class RequestTranslationTests
{
    private static readonly RequestSettings Settings = new(DefaultMaxTokens: 4096, MaxCompletionTokens: false);

    private static JsonObject Obj(string json) => JsonNode.Parse(json)!.AsObject();

    private static void AssertJson(string expected, JsonNode actual) =>
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected), actual), $"expected {JsonNode.Parse(expected)!.ToJsonString()}\nactual   {actual.ToJsonString()}");

    [Fact]
    public void AnOpenAiChatWithSystemToolsAndAToolRoundTripBecomesAnAnthropicMessagesRequest()
    {
        var openAi = Obj("""
            {"model":"claude-sonnet-4-5","max_completion_tokens":500,"temperature":1.5,"top_p":0.9,"stop":"END","stream":true,
             "stream_options":{"include_usage":true},"user":"u-1","parallel_tool_calls":false,"tool_choice":"required",
             "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
             "messages":[
               {"role":"system","content":"Be brief."},
               {"role":"developer","content":[{"type":"text","text":"Use tools."}]},
               {"role":"user","content":[{"type":"text","text":"Weather in Paris?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
               {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
               {"role":"tool","tool_call_id":"call_1","content":"18C"},
               {"role":"user","content":"Thanks"}]}
            """);

        var anthropic = AnthropicRequests.FromOpenAi(openAi, Settings);

        AssertJson("""
            {"model":"claude-sonnet-4-5",
             "system":[{"type":"text","text":"Be brief."},{"type":"text","text":"Use tools."}],
             "messages":[
               {"role":"user","content":[{"type":"text","text":"Weather in Paris?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
               {"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}}]},
               {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"18C"},{"type":"text","text":"Thanks"}]}],
             "max_tokens":500,"temperature":1.0,"top_p":0.9,"stop_sequences":["END"],"stream":true,
             "tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
             "tool_choice":{"type":"any","disable_parallel_tool_use":true},
             "metadata":{"user_id":"u-1"}}
            """, anthropic);
    }

    [Fact]
    public void AnOpenAiRequestWithoutAnOutputCapGetsTheDefaultAnthropicRequires()
    {
        var anthropic = AnthropicRequests.FromOpenAi(Obj("""{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}]}"""), Settings);

        Assert.Equal(4096, anthropic["max_tokens"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("""{"model":"m","n":2,"messages":[]}""", "n must be 1")]
    [InlineData("""{"model":"m","logprobs":true,"messages":[]}""", "'logprobs'")]
    [InlineData("""{"model":"m","response_format":{"type":"json_schema"},"messages":[]}""", "response_format 'json_schema'")]
    [InlineData("""{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}""", "'input_audio'")]
    [InlineData("""{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"not json"}}]}]}""", "arguments must be a JSON object")]
    [InlineData("""{"model":"m","tools":[{"type":"web_search"}],"messages":[]}""", "'web_search'")]
    public void WhatAnthropicCannotTakeIsRefusedNotDropped(string openAi, string because)
    {
        var e = Assert.Throws<UntranslatableException>(() => AnthropicRequests.FromOpenAi(Obj(openAi), Settings));

        Assert.Contains(because, e.Message);
    }

    [Fact]
    public void AnAnthropicRequestWithSystemToolsAndAToolRoundTripBecomesAnOpenAiChatRequest()
    {
        var anthropic = Obj("""
            {"model":"gpt-4o","max_tokens":700,"temperature":0.2,"top_p":0.5,"stop_sequences":["END"],"stream":true,
             "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
             "metadata":{"user_id":"u-1"},
             "tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
             "tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true},
             "messages":[
               {"role":"user","content":[{"type":"text","text":"Weather in Paris?"},{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]},
               {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
               {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18C"}]},{"type":"text","text":"Thanks"}]}]}
            """);

        var openAi = OpenAiRequests.FromAnthropic(anthropic, Settings with { MaxCompletionTokens = true });

        AssertJson("""
            {"model":"gpt-4o",
             "messages":[
               {"role":"system","content":"Be brief."},
               {"role":"user","content":[{"type":"text","text":"Weather in Paris?"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]},
               {"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
               {"role":"tool","tool_call_id":"toolu_1","content":"18C"},
               {"role":"user","content":"Thanks"}],
             "max_completion_tokens":700,"temperature":0.2,"top_p":0.5,"stop":["END"],
             "stream":true,"stream_options":{"include_usage":true},
             "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
             "tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false,
             "user":"u-1"}
            """, openAi);
    }

    [Fact]
    public void AnOpenAiCompatibleProviderOtherThanOpenAiGetsTheOlderMaxTokens()
    {
        var openAi = OpenAiRequests.FromAnthropic(Obj("""{"model":"mistral-large","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"""), Settings);

        Assert.Equal(10, openAi["max_tokens"]!.GetValue<long>());
        Assert.Null(openAi["max_completion_tokens"]);
        Assert.True(RequestSettings.For(new Uri("https://api.openai.com/v1/chat/completions"), 1).MaxCompletionTokens);
        Assert.False(RequestSettings.For(new Uri("https://api.mistral.ai/v1/chat/completions"), 1).MaxCompletionTokens);
    }

    [Fact]
    public void AFailedToolResultKeepsItsFailureInItsText()
    {
        var openAi = OpenAiRequests.FromAnthropic(Obj("""
            {"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"timeout"}]}]}
            """), Settings);

        AssertJson("""[{"role":"tool","tool_call_id":"t1","content":"Error: timeout"}]""", openAi["messages"]!);
    }

    [Theory]
    [InlineData("""{"model":"m","max_tokens":1,"top_k":5,"messages":[]}""", "'top_k'")]
    [InlineData("""{"model":"m","max_tokens":1,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[]}""", "thinking")]
    [InlineData("""{"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[]}""", "'web_search_20250305'")]
    [InlineData("""{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}""", "'document'")]
    public void WhatOpenAiCannotTakeIsRefusedNotDropped(string anthropic, string because)
    {
        var e = Assert.Throws<UntranslatableException>(() => OpenAiRequests.FromAnthropic(Obj(anthropic), Settings));

        Assert.Contains(because, e.Message);
    }
}
