using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Lava.Billing.Translation;

/// <summary>The steps of a <c>/v1/rewrite</c> call that come before the gateway's own: the provider URL, the pair of shapes, the request.</summary>
public static class RewriteTranslation
{
    /// <summary>
    /// The provider URL as the client wrote it after <c>/v1/rewrite/{format}/</c>, query included. Read from the raw
    /// request target: the server's decoded path would already have resolved dot segments and decoded escapes, which
    /// the gateway's own checks refuse (<see cref="Forward.ForwardTarget"/>).
    /// </summary>
    public static string ProviderUrl(HttpContext http, string format)
    {
        var prefix = $"/v1/rewrite/{format}/";
        var raw = http.Features.Get<IHttpRequestFeature>()?.RawTarget;
        // A host that keeps no raw target (an in-process test server) has only the decoded path to offer.
        if (raw is null || !raw.StartsWith(prefix, StringComparison.Ordinal)) raw = http.Request.Path.Value + http.Request.QueryString.Value;
        return raw.StartsWith(prefix, StringComparison.Ordinal) ? raw[prefix.Length..] : "";
    }

    /// <summary>The translation between the client's format and the provider's shape (null: both speak the same), or a 400.</summary>
    public static bool TryChoose(string format, Uri upstream, out ChatTranslation? translation, out ProblemResult? problem)
    {
        translation = null;
        problem = null;
        if (ChatShapes.FromClientFormat(format) is not { } client)
        {
            problem = Problems.BadRequest("unsupported_format",
                $"Format '{format}' is not translated here: the formats are 'openai' (Chat Completions) and 'anthropic' (Messages).");
            return false;
        }
        if (ChatShapes.OfProvider(upstream) is not { } provider)
        {
            problem = Problems.BadRequest("untranslatable_upstream",
                $"'{upstream.AbsolutePath}' is neither a Chat Completions (…/chat/completions) nor a Messages (…/messages) endpoint.");
            return false;
        }
        translation = ChatTranslation.Between(client, provider);
        return true;
    }

    /// <summary>The request body in the provider's shape, or a 400 saying what could not be carried over.</summary>
    public static bool TryRequest(ChatTranslation translation, byte[] body, RequestSettings settings, out byte[] translated, out ProblemResult? problem)
    {
        translated = body;
        problem = null;
        JsonObject? request;
        try
        {
            request = body.Length == 0 ? null : JsonNode.Parse(body, documentOptions: new JsonDocumentOptions { MaxDepth = 128 }) as JsonObject;
        }
        catch (JsonException)
        {
            request = null;
        }
        if (request is null)
        {
            problem = Problems.MalformedJson("The request body must be a JSON object to be translated.");
            return false;
        }
        try
        {
            translated = JsonSerializer.SerializeToUtf8Bytes(translation.Request(request, settings));
            return true;
        }
        catch (UntranslatableException e)
        {
            problem = Problems.BadRequest("untranslatable_request", e.Message);
            return false;
        }
        catch (Exception e) when (e is InvalidOperationException or InvalidCastException or FormatException)
        {
            // A member of an unexpected kind (an object where a string belongs) surfaces as a cast or value error.
            problem = Problems.BadRequest("untranslatable_request", $"The request does not have the {Describe(translation.Client)} shape: {e.GetType().Name}.");
            return false;
        }
    }

    private static string Describe(ChatShape shape) => shape == ChatShape.OpenAiChat ? "Chat Completions" : "Messages";
}
