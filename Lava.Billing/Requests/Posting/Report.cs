namespace Lava.Billing.Requests.Posting;

/// <summary>
/// One validated report of one merchant. <paramref name="SecretKeyId"/>: the key it was reported with, checked again
/// inside the posting transaction (auth may have answered from its cache); null where no key is re-checked (the gateway).
/// </summary>
public sealed record ReportItem(string MerchantId, CreateRequestBody Body, string? SecretKeyId = null);

/// <summary>What became of one report. Refusals are domain facts; the HTTP edge turns them into problems.</summary>
public abstract record ReportOutcome
{
    private ReportOutcome()
    {
    }

    public sealed record Created(int StatusCode, string Response) : ReportOutcome;
    public sealed record Replayed(int StatusCode, string Response) : ReportOutcome;
    public sealed record Refused(ReportRefusal Refusal) : ReportOutcome;
}
