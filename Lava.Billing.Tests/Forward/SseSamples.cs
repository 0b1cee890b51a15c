namespace Lava.Billing.Tests.Forward;

/// <summary>Event streams shaped like each provider's, shared by the parser tests and the fake provider.</summary>
public static class SseSamples
{
    public static string[] OpenAiChat(string model, long prompt, long cached, long completion, long reasoning) =>
    [
        Fill("""{"id":"c1","object":"chat.completion.chunk","model":"@0@","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}""", model),
        Fill("""{"id":"c1","object":"chat.completion.chunk","model":"@0@","choices":[{"index":0,"delta":{"content":"Hello"}}]}""", model),
        Fill("""{"id":"c1","object":"chat.completion.chunk","model":"@0@","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":"stop"}]}""", model),
        Fill("""{"id":"c1","object":"chat.completion.chunk","model":"@0@","choices":[],"usage":{"prompt_tokens":@1@,"completion_tokens":@2@,"total_tokens":@3@,"prompt_tokens_details":{"cached_tokens":@4@},"completion_tokens_details":{"reasoning_tokens":@5@}}}""", model, prompt, completion, prompt + completion, cached, reasoning),
        "[DONE]",
    ];

    public static (string Event, string Data)[] Responses(long input, long cached, long output, long reasoning) =>
    [
        ("response.created", """{"type":"response.created","response":{"id":"resp_1","status":"in_progress","usage":null}}"""),
        ("response.output_text.delta", """{"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"Hi there"}"""),
        ("response.completed", Fill("""{"type":"response.completed","response":{"id":"resp_1","status":"completed","usage":{"input_tokens":@0@,"input_tokens_details":{"cached_tokens":@1@},"output_tokens":@2@,"output_tokens_details":{"reasoning_tokens":@3@},"total_tokens":@4@}}}""", input, cached, output, reasoning, input + output)),
    ];

    public static (string Event, string Data)[] Anthropic(string model, long input, long cacheRead, long cacheWrite, long output) =>
    [
        ("message_start", Fill("""{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"@0@","content":[],"usage":{"input_tokens":@1@,"cache_creation_input_tokens":@2@,"cache_read_input_tokens":@3@,"output_tokens":1}}}""", model, input, cacheWrite, cacheRead)),
        ("content_block_start", """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"""),
        ("ping", """{"type":"ping"}"""),
        ("content_block_delta", """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"""),
        ("content_block_delta", """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" world"}}"""),
        ("content_block_stop", """{"type":"content_block_stop","index":0}"""),
        ("message_delta", Fill("""{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":@0@}}""", output)),
        ("message_stop", """{"type":"message_stop"}"""),
    ];

    public static string[] Gemini(long prompt, long cached, long candidates, long thoughts) =>
    [
        Fill("""{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":@0@,"cachedContentTokenCount":@1@,"candidatesTokenCount":1,"totalTokenCount":@2@},"modelVersion":"gemini-2.5-flash"}""", prompt, cached, prompt + 1),
        Fill("""{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":@0@,"cachedContentTokenCount":@1@,"candidatesTokenCount":@2@,"thoughtsTokenCount":@3@,"totalTokenCount":@4@},"modelVersion":"gemini-2.5-flash"}""", prompt, cached, candidates, thoughts, prompt + candidates + thoughts),
    ];

    /// <summary>Fills @0@, @1@, … in a JSON template (raw interpolation trips over JSON's closing braces).</summary>
    public static string Fill(string template, params object[] values)
    {
        for (var i = 0; i < values.Length; i++)
            template = template.Replace($"@{i}@", Convert.ToString(values[i], System.Globalization.CultureInfo.InvariantCulture));
        return template;
    }

    public static string Frame(string data, string? eventName = null, string newline = "\n") =>
        (eventName is null ? "" : $"event: {eventName}{newline}") + $"data: {data}{newline}{newline}";
}
