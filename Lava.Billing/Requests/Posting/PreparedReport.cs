using Lava.Billing.Pricing;
using MeterPrice = Lava.Billing.Meters.MeterPrice;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// A report as the posting transaction takes it: its mode, fingerprint, usage and base quantity worked out once, with the
/// meter price it will be priced with (null: no live meter has its slug). <see cref="OccurredAt"/> and <see cref="Now"/>
/// are kept to the microsecond, as PostgreSQL keeps them: the usage read's rows are found again by the time they were
/// asked for, and a stored response is built again from the times its columns hold (<see cref="StoredReport"/>).
/// </summary>
public sealed record PreparedReport(string MerchantId, string? SecretKeyId, CreateRequestBody Body, MeterPrice? Meter, string Mode,
    byte[] Fingerprint, Usage Usage, decimal Quantity, DateTimeOffset OccurredAt, DateTimeOffset Now)
{
    public const string ModeCustomer = "customer";
    public const string ModeMeterOnly = "meter_only";
    public const string ModeBillingDisabled = "billing_disabled";

    public string RequestId => Body.RequestId!;
    public string MeterSlug => Body.MeterSlug!;
    /// <summary>The customer whose usage this is, or "" for meter-only usage (the usage totals' key).</summary>
    public string CustomerKey => Body.Customer ?? "";

    private static DateTimeOffset Microseconds(DateTimeOffset t) => new(t.UtcTicks - t.UtcTicks % 10, TimeSpan.Zero);

    public static PreparedReport Of(ReportItem item, MeterPrice? meter, DateTimeOffset now)
    {
        var body = item.Body;
        var mode = body.Customer is null ? ModeMeterOnly : body.DisableBilling == true ? ModeBillingDisabled : ModeCustomer;
        var usage = new Usage(body.InputTokens ?? 0, body.OutputTokens ?? 0, body.InputCharacters ?? 0, body.OutputCharacters ?? 0,
            body.InputSeconds ?? 0, body.OutputSeconds ?? 0);
        var quantity = meter is null ? 0 : PriceCalculator.BaseQuantity(meter.Price.TierType, usage);
        var occurredAt = body.Timestamp?.ToUniversalTime() ?? now;
        return new PreparedReport(item.MerchantId, item.SecretKeyId, body, meter, mode, RequestFingerprint.Compute(body), usage, quantity,
            Microseconds(occurredAt), Microseconds(now));
    }
}
