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
public sealed class UsageReporter(RequestStore store, MeterStore meters, TimeProvider clock, BillingOptions options)
{
    public const string ModeCustomer = "customer";
    public const string ModeMeterOnly = "meter_only";
    public const string ModeBillingDisabled = "billing_disabled";

    public async Task<ReportOutcome> ReportAsync(string merchantId, CreateRequestBody body, CancellationToken ct)
    {
        var requestId = body.RequestId!;
        var customerId = body.Customer;
        var mode = customerId is null ? ModeMeterOnly : body.DisableBilling == true ? ModeBillingDisabled : ModeCustomer;
        var fingerprint = RequestFingerprint.Compute(body);

        var meter = await meters.FindLivePriceAsync(merchantId, body.MeterSlug!, ct);
        if (meter is null) return await ReplayOr(merchantId, requestId, fingerprint, Problems.NotFound("meter", body.MeterSlug!), ct);
        if (meter.Price.RateType == RateType.Percentage && body.Cost is null && mode != ModeBillingDisabled)
        {
            return await ReplayOr(merchantId, requestId, fingerprint, Problems.Validation(new Dictionary<string, string[]>
            {
                ["cost"] = [$"is required: meter '{meter.MeterSlug}' charges a percentage of the provider cost"],
            }), ct);
        }

        var now = clock.GetUtcNow();
        var occurredAt = body.Timestamp?.ToUniversalTime() ?? now;
        var usage = new Usage(body.InputTokens ?? 0, body.OutputTokens ?? 0, body.InputCharacters ?? 0, body.OutputCharacters ?? 0,
            body.InputSeconds ?? 0, body.OutputSeconds ?? 0);
        var quantity = PriceCalculator.BaseQuantity(meter.Price.TierType, usage);

        var (connection, begin) = await store.BeginAsync(merchantId, requestId, customerId, meter.MeterId,
            UsagePeriods.CalendarMonth(occurredAt), body.HoldId, ct);
        await using var _ = connection;
        var committed = false;
        try
        {
            switch (begin.Status)
            {
                case RequestStore.BeginStatus.Existing: return Replay(begin.Existing!, fingerprint, requestId);
                case RequestStore.BeginStatus.CustomerMissing: return new ReportOutcome.Refused(Problems.NotFound("customer", customerId!));
                case RequestStore.BeginStatus.HoldMissing: return new ReportOutcome.Refused(Problems.NotFound("hold", body.HoldId!));
                case RequestStore.BeginStatus.LostRace: return await ReplayWinnerAsync(merchantId, requestId, fingerprint, ct);
            }
            var position = begin.Position!;
            var billing = position.Billing;
            if (mode == ModeBillingDisabled && billing is not { HasSubscription: true, MeterLinked: true })
            {
                return new ReportOutcome.Refused(Problems.Forbidden("meter_not_on_plan",
                    $"Meter '{meter.MeterSlug}' is not linked to the customer's active plan."));
            }
            if (position.Hold is { } hold && (hold.Status != "active" || hold.ExpiresAt <= now))
            {
                return new ReportOutcome.Refused(Problems.Conflict("hold_not_active",
                    $"Hold '{body.HoldId}' is {(hold.Status == "active" ? "expired" : hold.Status)}; report without hold_id to record the usage."));
            }

            var priced = PriceCalculator.Price(meter.Price, quantity, position.UsedBefore, mode == ModeBillingDisabled ? body.Cost ?? 0 : body.Cost);
            var charge = mode == ModeBillingDisabled ? new Charge(0, []) : priced;
            var transactionId = Ids.New("txn", now);
            var (transactions, entries) = Postings(requestId, customerId, mode, charge.Amount, body.Cost, position, transactionId, now, out var balanceAfter);
            var response = new RestRequest(
                requestId, "completed", customerId, meter.MeterId, "custom", "unmanaged", null, "/v1/requests",
                ModelUsageOf(usage, body.Cost), Money.Format(body.Cost ?? 0),
                ChargeOf(meter.Price, charge),
                body.Metadata ?? new Dictionary<string, string>(), occurredAt, now,
                mode, meter.Version, transactionId, balanceAfter, body.HoldId);
            var responseJson = JsonSerializer.Serialize(response, LavaJson.Options);
            var lineage = Lineage(response, meter, charge);

            var posted = await store.PostAsync(connection, new RequestStore.NewRequest(
                merchantId, requestId, fingerprint, mode, customerId, meter.MeterId, meter.Version,
                usage.InputTokens, usage.OutputTokens, usage.InputCharacters, usage.OutputCharacters, usage.InputSeconds, usage.OutputSeconds,
                body.Cost, charge.Amount, JsonSerializer.Serialize(response.Metadata), occurredAt, now, transactionId, StatusCodes.Status201Created,
                responseJson, position.PeriodStart, quantity, body.HoldId,
                transactions.Select(t => t with { LineageJson = t.Kind == "usage" ? lineage : t.LineageJson }).ToList(), entries), ct);
            committed = true;
            if (posted) return new ReportOutcome.Created(StatusCodes.Status201Created, responseJson);
            return await ReplayWinnerAsync(merchantId, requestId, fingerprint, ct);
        }
        finally
        {
            if (!committed) await RequestStore.RollbackAsync(connection);
        }
    }

    /// <summary>
    /// The report's ledger transactions: auto top-ups first (each its own transaction), then the usage transaction.
    /// With an active plan only linked meters draw plan credits; without one, any credits are drawn.
    /// </summary>
    private (List<RequestStore.LedgerTransaction>, List<RequestStore.Entry>) Postings(string requestId, string? customerId, string mode,
        decimal charge, decimal? providerCost, RequestStore.Position position, string usageTransactionId, DateTimeOffset now,
        out CustomerBalance? balanceAfter)
    {
        var transactions = new List<RequestStore.LedgerTransaction>(2);
        var entries = new List<RequestStore.Entry>(6);
        var balances = position.Balances;
        var billing = position.Billing;
        var creditsUsable = billing is null || !billing.HasSubscription || billing.MeterLinked;
        var cycle = creditsUsable ? balances.CycleRemaining : 0;
        var bundle = creditsUsable ? balances.BundleRemaining : 0;

        if (mode == ModeCustomer && creditsUsable && billing is { TopUpCost: { } packCost, TopUpCredit: { } packCredit })
        {
            var packs = UsagePosting.TopUpsNeeded(charge, cycle + bundle, packCredit, options.MaxAutoTopUpsPerCycle - billing.TopUpsUsed);
            for (var i = 1; i <= packs; i++)
            {
                var id = Ids.New("txn", now);
                transactions.Add(new(id, "auto_top_up", $"{requestId}#top_up_{i}", "{}"));
                entries.AddRange(UsagePosting.BundlePurchase(customerId!, LedgerAccounts.Receivable(customerId!), packCost, packCredit)
                    .Select(p => new RequestStore.Entry(id, p.AccountId, p.Amount)));
                bundle += packCredit;
            }
        }
        transactions.Add(new(usageTransactionId, "usage", requestId, "{}"));
        entries.AddRange(UsagePosting.For(mode == ModeCustomer ? customerId : null, charge, providerCost, cycle, bundle)
            .Select(p => new RequestStore.Entry(usageTransactionId, p.AccountId, p.Amount)));

        balanceAfter = null;
        if (customerId is not null)
        {
            decimal Delta(string account) => entries.Where(e => e.AccountId == account).Sum(e => e.Amount);
            var after = new CustomerBalances(
                balances.Cycle + Delta(LedgerAccounts.CreditsCycle(customerId)),
                balances.Bundle + Delta(LedgerAccounts.CreditsBundle(customerId)),
                balances.Receivable + Delta(LedgerAccounts.Receivable(customerId)));
            balanceAfter = new CustomerBalance(Money.Format(after.CreditsRemaining), Money.Format(after.Receivable));
        }
        return (transactions, entries);
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

/// <summary>Billing settings (configuration section <c>Billing</c>).</summary>
public sealed class BillingOptions
{
    public int MaxAutoTopUpsPerCycle { get; init; } = 3;
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
