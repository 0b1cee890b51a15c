using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace Lava.Billing.Requests;

/// <summary>
/// The SHA-256 of a report's canonical payload: aliases resolved, absent numbers as zero, decimals without trailing
/// zeros, metadata sorted. Two bodies that mean the same report have the same fingerprint; anything else differs.
/// </summary>
public static class RequestFingerprint
{
    public static byte[] Compute(CreateRequestBody r)
    {
        using var buffer = new MemoryStream(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("request_id", r.RequestId);
            w.WriteString("customer_id", r.Customer);
            w.WriteString("meter_slug", r.MeterSlug);
            w.WriteNumber("input_tokens", r.InputTokens ?? 0);
            w.WriteNumber("output_tokens", r.OutputTokens ?? 0);
            w.WriteNumber("input_characters", r.InputCharacters ?? 0);
            w.WriteNumber("output_characters", r.OutputCharacters ?? 0);
            w.WriteString("input_seconds", Canonical(r.InputSeconds ?? 0));
            w.WriteString("output_seconds", Canonical(r.OutputSeconds ?? 0));
            w.WriteString("cost", r.Cost is { } c ? Canonical(c) : null);
            w.WriteString("timestamp", r.Timestamp?.UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
            w.WriteBoolean("disable_billing", r.DisableBilling ?? false);
            w.WriteString("hold_id", r.HoldId);
            w.WriteStartObject("metadata");
            foreach (var (k, v) in (r.Metadata ?? []).OrderBy(p => p.Key, StringComparer.Ordinal)) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return SHA256.HashData(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    private static string Canonical(decimal d) => d.ToString("0.############################", CultureInfo.InvariantCulture);
}
