using System.Text;
using System.Text.Json.Nodes;
using Lava.Billing.Forward;

namespace Lava.Billing.Tests.Forward;

public class RequestInspectorTests
{
    private static InspectedRequest Inspect(string url, string body, string? contentType = "application/json")
    {
        var uri = new Uri(url);
        return RequestInspector.Inspect(ApiFormats.Detect(uri), uri, contentType, Encoding.UTF8.GetBytes(body));
    }

    [Fact]
    public void AStreamedChatCompletionIsAskedForItsUsage()
    {
        var r = Inspect("https://api.openai.com/v1/chat/completions",
            """{"model":"gpt-4o","stream":true,"temperature":0.70,"messages":[{"role":"user","content":"hi"}]}""");
        Assert.True(r.BodyRewritten);
        var json = JsonNode.Parse(r.Body)!;
        Assert.True((bool)json["stream_options"]!["include_usage"]!);
        // Everything else is untouched, numbers included.
        Assert.Contains("\"temperature\":0.70", Encoding.UTF8.GetString(r.Body));
        Assert.Equal("hi", (string)json["messages"]![0]!["content"]!);
    }

    [Fact]
    public void AnExplicitIncludeUsageFalseIsTurnedOnKeepingOtherOptions()
    {
        var r = Inspect("https://api.openai.com/v1/chat/completions",
            """{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false,"x":1}}""");
        var options = JsonNode.Parse(r.Body)!["stream_options"]!;
        Assert.True((bool)options["include_usage"]!);
        Assert.Equal(1, (int)options["x"]!);
    }

    [Theory]
    [InlineData("https://api.openai.com/v1/chat/completions", """{"model":"gpt-4o","messages":[]}""")]
    [InlineData("https://api.openai.com/v1/chat/completions", """{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("https://api.openai.com/v1/chat/completions", """{"model":"gpt-4o","stream":"true"}""")]
    [InlineData("https://api.anthropic.com/v1/messages", """{"model":"claude-sonnet-4-5","stream":true,"max_tokens":10}""")]
    [InlineData("https://api.openai.com/v1/responses", """{"model":"gpt-4o","stream":true}""")]
    public void EveryOtherBodyGoesThroughByteForByte(string url, string body)
    {
        var r = Inspect(url, body);
        Assert.False(r.BodyRewritten);
        Assert.Equal(body, Encoding.UTF8.GetString(r.Body));
    }

    [Fact]
    public void TheModelAndTheOutputCapAreRead()
    {
        var r = Inspect("https://api.anthropic.com/v1/messages", """{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[]}""");
        Assert.Equal(("claude-sonnet-4-5", 1024L), (r.Model, r.MaxOutputTokens));
        Assert.Equal(2048L, Inspect("https://api.openai.com/v1/responses", """{"model":"o4-mini","max_output_tokens":2048}""").MaxOutputTokens);
    }

    [Fact]
    public void GeminiTakesItsModelFromThePath()
    {
        var r = Inspect("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            """{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":100}}""");
        Assert.Equal(("gemini-2.5-flash", true, 100L), (r.Model, r.Stream, r.MaxOutputTokens));
        Assert.False(r.BodyRewritten);
    }

    [Fact]
    public void SpeechCountsTheCharactersOfItsInput()
    {
        var r = Inspect("https://api.openai.com/v1/audio/speech", """{"model":"tts-1","input":"Héllo 👋","voice":"alloy"}""");
        Assert.Equal(7, r.InputCharacters);
    }

    [Fact]
    public void ThePromptEstimateCountsTextNotInlineBinary()
    {
        var image = "data:image/png;base64," + new string('A', 100_000);
        var r = Inspect("https://api.openai.com/v1/chat/completions",
            SseSamples.Fill("""{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"@0@"},{"type":"image_url","image_url":{"url":"@1@"}}]}]}""", new string('x', 400), image));
        Assert.InRange(r.InputTokensEstimate, 100, 110);
    }

    [Theory]
    [InlineData("not json at all", "application/json")]
    [InlineData("--boundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF\r\n--boundary--", "multipart/form-data; boundary=boundary")]
    [InlineData("--boundary\r\nbroken", "multipart/form-data; boundary=boundary")]
    [InlineData("", null)]
    public void OpaqueBodiesPassUnread(string body, string? contentType)
    {
        var r = Inspect("https://api.openai.com/v1/audio/transcriptions", body, contentType);
        Assert.Null(r.Model);
        Assert.False(r.BodyRewritten);
        Assert.Equal(body, Encoding.UTF8.GetString(r.Body));
    }

    [Fact]
    public void AnAudioFormNamesItsModelInAField()
    {
        var body = "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"model\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n" +
                   "--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b0undary--\r\n";
        var r = Inspect("https://api.openai.com/v1/audio/transcriptions", body, "multipart/form-data; boundary=\"b0undary\"");
        Assert.Equal("whisper-1", r.Model);
        Assert.Equal(body, Encoding.UTF8.GetString(r.Body));
    }
}
