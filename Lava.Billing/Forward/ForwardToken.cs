using System.Text.Json;

namespace Lava.Billing.Forward;

/// <summary>
/// What a gateway call is authorised with: a bare secret key, or the SDK's forward token (standard base64 of UTF-8 JSON
/// <c>{secret_key, customer_id, meter_slug, provider_key, disable_billing}</c>, built by <c>generateForwardToken</c>,
/// with absent and null members meaning the same). The token is not signed: it carries the secret key itself, so
/// decoding it authenticates nothing until that key is looked up.
/// </summary>
public sealed record ForwardToken(string SecretKey, string? CustomerId, string? MeterSlug, string? ProviderKey, bool DisableBilling)
{
    public const string ItemKey = "lava.forward_token";

    // A token is a few hundred bytes; anything near the header limit is not one.
    private const int MaxTokenChars = 8192;

    public static ForwardToken? From(HttpContext context) => context.Items[ItemKey] as ForwardToken;

    /// <summary>The parsed token, or null when the bearer value is neither a secret key nor a well-formed token.</summary>
    public static ForwardToken? TryParse(string bearer)
    {
        if (bearer.StartsWith("aks_", StringComparison.Ordinal)) return new ForwardToken(bearer, null, null, null, false);
        if (bearer.Length > MaxTokenChars) return null;
        var bytes = new byte[bearer.Length];
        if (!Convert.TryFromBase64String(bearer, bytes, out var length)) return null;
        try
        {
            using var document = JsonDocument.Parse(bytes.AsMemory(0, length), new JsonDocumentOptions { MaxDepth = 4, AllowDuplicateProperties = false });
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return null;
            if (!TryString(root, "secret_key", out var secretKey) || secretKey is null) return null;
            if (!TryString(root, "customer_id", out var customerId) ||
                !TryString(root, "meter_slug", out var meterSlug) ||
                !TryString(root, "provider_key", out var providerKey)) return null;
            var disableBilling = false;
            if (root.TryGetProperty("disable_billing", out var flag))
            {
                if (flag.ValueKind is JsonValueKind.True) disableBilling = true;
                else if (flag.ValueKind is not (JsonValueKind.False or JsonValueKind.Null)) return null;
            }
            return new ForwardToken(secretKey, customerId, meterSlug, providerKey, disableBilling);
        }
        catch (JsonException)
        {
            return null;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            // Invalid UTF-8 or a lone surrogate inside the base64.
            return null;
        }
    }

    private static bool TryString(JsonElement root, string name, out string? value)
    {
        value = null;
        if (!root.TryGetProperty(name, out var member) || member.ValueKind == JsonValueKind.Null) return true;
        if (member.ValueKind != JsonValueKind.String) return false;
        value = member.GetString();
        // Every member ends up in SQL or a header; text the database cannot hold makes it no token at all.
        return Infrastructure.Http.InputText.IsClean(value);
    }

    // The provider key must never reach a log line, even through a record's generated ToString.
    public override string ToString() =>
        $"ForwardToken {{ CustomerId = {CustomerId}, MeterSlug = {MeterSlug}, ProviderKey = {(ProviderKey is null ? "none" : "set")}, DisableBilling = {DisableBilling} }}";
}

/// <summary>The four request modes (docs/design.md, "Request modes").</summary>
public enum ForwardMode { Gateway, MeterOnly, Customer, BillingDisabled }

public static class ForwardModes
{
    public static string Name(ForwardMode mode) => mode switch
    {
        ForwardMode.Gateway => "gateway",
        ForwardMode.MeterOnly => "meter_only",
        ForwardMode.Customer => "customer",
        ForwardMode.BillingDisabled => "billing_disabled",
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode"),
    };

    /// <summary>The mode a name from <see cref="Name"/> stands for (read back from a stored call).</summary>
    public static ForwardMode Parse(string name) => name switch
    {
        "gateway" => ForwardMode.Gateway,
        "meter_only" => ForwardMode.MeterOnly,
        "customer" => ForwardMode.Customer,
        "billing_disabled" => ForwardMode.BillingDisabled,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "unknown mode"),
    };

    /// <summary>
    /// The mode a token asks for, or an error: the SDK refuses a customer without a meter, and an empty string is a
    /// caller's bug that must not silently turn customer billing into a free call.
    /// </summary>
    public static ForwardMode? Of(ForwardToken token, out string? error)
    {
        error = null;
        if (token.CustomerId is "" || token.MeterSlug is "")
        {
            error = "customer_id and meter_slug must not be empty strings.";
            return null;
        }
        return (token.CustomerId, token.MeterSlug) switch
        {
            (null, null) => ForwardMode.Gateway,
            (null, not null) => ForwardMode.MeterOnly,
            (not null, null) => Error(out error, "customer_id requires meter_slug: give both for customer billing, or neither."),
            _ => token.DisableBilling ? ForwardMode.BillingDisabled : ForwardMode.Customer,
        };
    }

    private static ForwardMode? Error(out string? error, string message)
    {
        error = message;
        return null;
    }
}
