using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Meters;
using Lava.Billing.Pricing;

namespace Lava.Billing.Requests;

/// <summary>What became of one report.</summary>
public abstract record ReportOutcome
{
    public sealed record Created(int StatusCode, string Response) : ReportOutcome;
    public sealed record Replayed(int StatusCode, string Response) : ReportOutcome;
    public sealed record Refused(ProblemResult Problem) : ReportOutcome;
}

/// <summary>
/// The one posting routine for usage (reports and, later, the gateway): price with the meter's current version against
/// the usage already in the period, post the balanced ledger transaction and store the request with its response, all
/// in one database transaction; replays answer the stored response.
/// </summary>
public sealed class UsageReporter(RequestStore store, MeterStore meters, TimeProvider clock)
{
    public const string ModeCustomer = "customer";
    public const string ModeMeterOnly = "meter_only";

    public async Task<ReportOutcome> ReportAsync(string merchantId, CreateRequestBody body, CancellationToken ct)
    {
        var requestId = body.RequestId!;
        var customerId = body.Customer;
        var fingerprint = RequestFingerprint.Compute(body);

        var meter = await meters.FindLivePriceAsync(merchantId, body.MeterSlug!, ct);
        if (meter is null) return await ReplayOr(merchantId, requestId, fingerprint, Problems.NotFound("meter", body.MeterSlug!), ct);
        if (meter.Price.RateType == RateType.Percentage && body.Cost is null)
        {
            return await ReplayOr(merchantId, requestId, fingerprint, Problems.Validation(new Dictionary<string, string[]>
            {
                ["cost"] = [$"is required: meter '{meter.MeterSlug}' charges a percentage of the provider cost"],
            }), ct);
        }

        var now = clock.GetUtcNow();
        var occurredAt = body.Timestamp?.ToUniversalTime() ?? now;
        var periodStart = UsagePeriods.CalendarMonth(occurredAt);
        var usage = new Usage(body.InputTokens ?? 0, body.OutputTokens ?? 0, body.InputCharacters ?? 0, body.OutputCharacters ?? 0,
            body.InputSeconds ?? 0, body.OutputSeconds ?? 0);
        var quantity = PriceCalculator.BaseQuantity(meter.Price.TierType, usage);

        var (connection, begin) = await store.BeginAsync(merchantId, requestId, customerId, meter.MeterId, periodStart, ct);
        await using var _ = connection;
        var committed = false;
        try
        {
            if (begin.Existing is { } existing) return Replay(existing, fingerprint, requestId);
            if (begin.CustomerMissing) return new ReportOutcome.Refused(Problems.NotFound("customer", customerId!));
            if (begin.Position is not { } position) return await ReplayWinnerAsync(merchantId, requestId, fingerprint, ct);

            var charge = PriceCalculator.Price(meter.Price, quantity, position.UsedBefore, body.Cost);
            var postings = UsagePosting.For(customerId, charge.Amount, body.Cost,
                cycleAvailable: -position.CycleBalance, bundleAvailable: -position.BundleBalance);
            var transactionId = Ids.New("txn", now);
            var balance = customerId is null ? null : BalanceAfter(position, postings, customerId);
            var response = new RestRequest(
                requestId, "completed", customerId, meter.MeterId, "custom", "unmanaged", null, "/v1/requests",
                ModelUsageOf(usage, body.Cost), Money.Format(body.Cost ?? 0),
                ChargeOf(meter.Price, charge),
                body.Metadata ?? new Dictionary<string, string>(), occurredAt, now,
                customerId is null ? ModeMeterOnly : ModeCustomer, meter.Version, transactionId, balance);
            var responseJson = JsonSerializer.Serialize(response, LavaJson.Options);

            var posted = await store.PostAsync(connection, new RequestStore.NewRequest(
                merchantId, requestId, fingerprint, response.Mode, customerId, meter.MeterId, meter.Version,
                usage.InputTokens, usage.OutputTokens, usage.InputCharacters, usage.OutputCharacters, usage.InputSeconds, usage.OutputSeconds,
                body.Cost, charge.Amount, JsonSerializer.Serialize(response.Metadata), occurredAt, now, transactionId, StatusCodes.Status201Created,
                responseJson, Lineage(response, meter, charge), periodStart, quantity,
                postings.Select(p => p.AccountId).ToArray(), postings.Select(p => p.Amount).ToArray()), ct);
            committed = true;
            if (posted) return new ReportOutcome.Created(StatusCodes.Status201Created, responseJson);

            return await ReplayWinnerAsync(merchantId, requestId, fingerprint, ct);
        }
        finally
        {
            if (!committed) await RequestStore.RollbackAsync(connection);
        }
    }

    /// <summary>A concurrent duplicate committed first: answer as a replay of what it stored.</summary>
    private async Task<ReportOutcome> ReplayWinnerAsync(string merchantId, string requestId, byte[] fingerprint, CancellationToken ct)
    {
        var winner = await store.FindAsync(merchantId, requestId, ct)
                     ?? throw new InvalidOperationException($"request {requestId} vanished after a conflict");
        return Replay(winner, fingerprint, requestId);
    }

    /// <summary>A report refused for a reason that did not exist when it was first accepted is still a replay.</summary>
    private async Task<ReportOutcome> ReplayOr(string merchantId, string requestId, byte[] fingerprint, ProblemResult problem, CancellationToken ct) =>
        await store.FindAsync(merchantId, requestId, ct) is { } existing
            ? Replay(existing, fingerprint, requestId)
            : new ReportOutcome.Refused(problem);

    private static ReportOutcome Replay(RequestStore.Stored existing, byte[] fingerprint, string requestId) =>
        existing.Fingerprint.AsSpan().SequenceEqual(fingerprint)
            ? new ReportOutcome.Replayed(existing.StatusCode, existing.Response)
            : new ReportOutcome.Refused(Problems.IdempotencyConflict(requestId));

    private static CustomerBalance BalanceAfter(RequestStore.Position p, List<Posting> postings, string customerId)
    {
        decimal Delta(string account) => postings.Where(x => x.AccountId == account).Sum(x => x.Amount);
        var cycle = p.CycleBalance + Delta(LedgerAccounts.CreditsCycle(customerId));
        var bundle = p.BundleBalance + Delta(LedgerAccounts.CreditsBundle(customerId));
        var receivable = p.ReceivableBalance + Delta(LedgerAccounts.Receivable(customerId));
        // Credit accounts are liabilities (credit-normal): what remains is the negated debit balance.
        return new CustomerBalance(Money.Format(-(cycle + bundle)), Money.Format(receivable));
    }

    private static ModelUsage ModelUsageOf(Usage u, decimal? cost) => new(
        u.InputTokens, u.OutputTokens, u.InputTokens + u.OutputTokens,
        u.InputCharacters, u.OutputCharacters, u.InputCharacters + u.OutputCharacters,
        u.InputSeconds, u.OutputSeconds, u.InputSeconds + u.OutputSeconds,
        // A report carries one provider cost; its split between input and output is not known.
        Money.Format(0m), Money.Format(0m), Money.Format(cost ?? 0));

    private static RequestCharge ChargeOf(Pricing.MeterPrice price, Charge charge)
    {
        var type = PriceCalculator.TierTypeName(price.TierType);
        var lines = charge.Lines.Select(l => new BreakdownLine(
            new BreakdownTier(l.TierStart, Money.Format(l.Rate), type),
            Tokens: price.TierType == TierType.Tokens1M ? l.Quantity : 0,
            Characters: price.TierType == TierType.Characters1M ? l.Quantity : 0,
            Seconds: price.TierType == TierType.Minutes ? l.Quantity : 0,
            Quantity: l.Quantity,
            Cost: Money.Format(l.Amount))).ToList();
        return new RequestCharge(Money.Format(charge.Amount), PriceCalculator.RateTypeName(price.RateType), lines);
    }

    private static string Lineage(RestRequest r, Meters.MeterPrice meter, Charge charge) => JsonSerializer.Serialize(new
    {
        request_id = r.RequestId,
        mode = r.Mode,
        meter_id = meter.MeterId,
        price_version = meter.Version,
        quantities = r.ModelUsage,
        provider_cost = r.Cost,
        charge = r.Charge,
        charge_exact = charge.Amount,
    }, LavaJson.Options);
}

public static class UsagePeriods
{
    /// <summary>Without a subscription, usage accumulates per UTC calendar month (DESIGN.md §3).</summary>
    public static DateTimeOffset CalendarMonth(DateTimeOffset at)
    {
        var utc = at.ToUniversalTime();
        return new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
    }
}
