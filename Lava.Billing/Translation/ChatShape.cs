using System.Text.Json.Nodes;
using Lava.Billing.Forward;

namespace Lava.Billing.Translation;

/// <summary>The two chat shapes the gateway translates between.</summary>
public enum ChatShape { OpenAiChat, AnthropicMessages }

public static class ChatShapes
{
    /// <summary>The shape a client names in <c>/v1/rewrite/{format}/…</c> (the SDK's <c>gateway(url, {format})</c>), or null.</summary>
    public static ChatShape? FromClientFormat(string format) => format switch
    {
        "openai" => ChatShape.OpenAiChat,
        "anthropic" => ChatShape.AnthropicMessages,
        _ => null,
    };

    /// <summary>The chat shape a provider endpoint speaks, or null when it speaks something else (embeddings, Responses, …).</summary>
    public static ChatShape? OfProvider(Uri upstream) => ApiFormats.Detect(upstream) switch
    {
        ApiFormat.OpenAiChat when upstream.AbsolutePath.EndsWith("/chat/completions", StringComparison.Ordinal) => ChatShape.OpenAiChat,
        ApiFormat.AnthropicMessages => ChatShape.AnthropicMessages,
        _ => null,
    };
}

/// <summary>A request or answer that has no faithful translation; the client gets a 400 naming what.</summary>
public sealed class UntranslatableException(string message) : Exception(message);

/// <summary>
/// What a call between a client of one chat shape and a provider of the other needs: its request rewritten into the
/// provider's shape, the provider's answer (whole, streamed or an error) rewritten into the client's.
/// </summary>
public sealed class ChatTranslation
{
    private ChatTranslation(ChatShape client, ChatShape provider)
    {
        Client = client;
        Provider = provider;
    }

    public ChatShape Client { get; }
    public ChatShape Provider { get; }

    /// <summary>The translation between two shapes, or null when they are the same (nothing to translate).</summary>
    public static ChatTranslation? Between(ChatShape client, ChatShape provider) => client == provider ? null : new(client, provider);

    /// <summary>The provider-shaped request. Throws <see cref="UntranslatableException"/> for what cannot be carried over.</summary>
    public JsonObject Request(JsonObject body, RequestSettings settings) => Provider == ChatShape.AnthropicMessages
        ? AnthropicRequests.FromOpenAi(body, settings)
        : OpenAiRequests.FromAnthropic(body, settings);

    /// <summary>Headers the provider's shape needs that a client of the other shape does not send, and none it would misread.</summary>
    public void AdjustHeaders(HttpRequestMessage request)
    {
        if (Provider == ChatShape.AnthropicMessages)
        {
            if (!request.Headers.Contains("anthropic-version")) request.Headers.TryAddWithoutValidation("anthropic-version", AnthropicRequests.Version);
            return;
        }
        foreach (var name in request.Headers.Select(h => h.Key).Where(n => n.StartsWith("anthropic-", StringComparison.OrdinalIgnoreCase)).ToList())
            request.Headers.Remove(name);
    }

    /// <summary>The translator of the provider's answer: an event stream, a successful body or an error body.</summary>
    public IAnswerTranslator Answer(int status, bool eventStream, DateTimeOffset now)
    {
        var succeeded = status is >= 200 and < 300;
        if (succeeded && eventStream)
            return new SseAnswerTranslator(Client == ChatShape.OpenAiChat ? new OpenAiStream(now) : new AnthropicStream());
        if (succeeded)
        {
            return Client == ChatShape.OpenAiChat
                ? new JsonAnswerTranslator(body => OpenAiAnswers.FromAnthropic(body, now), isError: false)
                : new JsonAnswerTranslator(AnthropicAnswers.FromOpenAi, isError: false);
        }
        return Client == ChatShape.OpenAiChat
            ? new JsonAnswerTranslator(OpenAiAnswers.ErrorFromAnthropic, isError: true)
            : new JsonAnswerTranslator(body => AnthropicAnswers.ErrorFromOpenAi(body, status), isError: true);
    }
}

/// <summary>
/// Choices a request translation needs from its caller: the output cap sent when the client named none (Anthropic
/// requires one), and whether the OpenAI-compatible provider takes <c>max_completion_tokens</c> (OpenAI itself) or
/// only the older <c>max_tokens</c>.
/// </summary>
public sealed record RequestSettings(long DefaultMaxTokens, bool MaxCompletionTokens)
{
    public static RequestSettings For(Uri upstream, long defaultMaxTokens) =>
        new(defaultMaxTokens, upstream.IdnHost.Equals("api.openai.com", StringComparison.OrdinalIgnoreCase));
}
