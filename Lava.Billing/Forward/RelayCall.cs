using Lava.Billing.Translation;

namespace Lava.Billing.Forward;

/// <summary>
/// One provider call as the relay sees it. <see cref="CallId"/> and <see cref="MerchantId"/> name it in the logs;
/// <see cref="RequestId"/>, when set, is the <c>x-lava-request-id</c> its answer carries, whatever the provider sent;
/// <see cref="Price"/> is the model's (null when unknown: no cost); <see cref="Translation"/> rewrites the answer for a
/// client of the other shape; <see cref="BuildRequest"/> builds the provider's request afresh for every attempt;
/// <see cref="StartedAt"/> is when the gateway took the call (a Stopwatch timestamp).
/// </summary>
public sealed record RelayCall(
    string CallId,
    string MerchantId,
    string? RequestId,
    Uri Upstream,
    ApiFormat Format,
    ModelPrice? Price,
    InspectedRequest Inspected,
    ChatTranslation? Translation,
    Func<HttpRequestMessage> BuildRequest,
    long StartedAt);

/// <summary>
/// What becomes of a relayed call's usage: each caller's own billing, one instance per call. /v1/forward writes its
/// call record and posts it; a spend key captures its charge. The relay settles every call once, with
/// <see cref="ServeAsync"/> or <see cref="ReleaseAsync"/> (a serve that threw is tried once more, as an unforeseen failure).
/// </summary>
public interface IRelayBilling
{
    /// <summary>The usage a stream has shown so far: what a crash bills; it also tells the settle worker the call is alive.</summary>
    Task ProgressAsync(BilledUsage seen);

    /// <summary>The usage the call is billed, made durable before the client has the end of the answer. Never throws.</summary>
    Task ServeAsync(BilledUsage usage, string? anomaly);

    /// <summary>Nothing is billable (the provider failed, or answered an error): the call is closed at no charge.</summary>
    Task ReleaseAsync();

    /// <summary>
    /// After a serve, once the client has the end of the answer (or left): what need not keep the client waiting, such
    /// as posting the usage served.
    /// </summary>
    Task PostServedAsync();
}
