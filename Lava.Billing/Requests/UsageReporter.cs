using System.Collections.Concurrent;
using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Infrastructure.Resilience;
using Lava.Billing.Ledger;
using Lava.Billing.Meters;
using MeterPrice = Lava.Billing.Meters.MeterPrice;
using Lava.Billing.Pricing;
using Npgsql;

namespace Lava.Billing.Requests;

/// <summary>What became of one report.</summary>
public abstract record ReportOutcome
{
    public sealed record Created(int StatusCode, string Response) : ReportOutcome;
    public sealed record Replayed(int StatusCode, string Response) : ReportOutcome;
    public sealed record Refused(ProblemResult Problem) : ReportOutcome;
}

/// <summary>
/// One validated report of one merchant. <paramref name="SecretKeyId"/>: the key it was reported with, checked again
/// inside the posting transaction (auth may have answered from its cache); null where no key is re-checked (the gateway).
/// </summary>
public sealed record ReportItem(string MerchantId, CreateRequestBody Body, string? SecretKeyId = null);

/// <summary>
/// The one posting routine for usage (single reports, batches, the gateway): each report is priced with its meter's
/// current version against the usage already in its period, posted as a balanced ledger transaction and stored with its
/// response, and a batch of reports does all of that in one database transaction. A report that is refused (unknown
/// meter or customer, replay, conflict, entitlement, hold) is left out without touching the others.
/// </summary>
public sealed class UsageReporter(ReportBatchStore store, MeterStore meters, TimeProvider clock,
    BillingOptions options, ILogger<UsageReporter> log)
{
    public const string ModeCustomer = "customer";
    public const string ModeMeterOnly = "meter_only";
    public const string ModeBillingDisabled = "billing_disabled";
    private const int MaxAttempts = 3;
    private const int MeterCacheLimit = 10_000;

    // The live prices of the meters reports name, kept between reports (a database round trip fewer per report). Never
    // trusted: every posting reads each slug's meter id and current version in its lock step and starts over from the
    // database when one moved, so no report is priced with a version that was replaced, or a meter that was deleted,
    // before its transaction began.
    private readonly ConcurrentDictionary<(string MerchantId, string MeterSlug), MeterPrice> _meters = new();

    public async Task<ReportOutcome> ReportAsync(string merchantId, CreateRequestBody body, CancellationToken ct) =>
        (await ReportManyAsync([new ReportItem(merchantId, body)], ct))[0];

    public async Task<IReadOnlyList<ReportOutcome>> ReportManyAsync(IReadOnlyList<ReportItem> items, CancellationToken ct)
    {
        Dictionary<(string MerchantId, string MeterSlug), MeterPrice>? resolved = null;
        var fresh = false;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                // Inside the try: a meter lookup the database refuses (a slug it cannot even compare) is one item's
                // failure like any other, so it falls back to one by one rather than failing the whole batch.
                resolved ??= await ResolveMetersAsync(items, fresh, ct);
                return await PostOnceAsync(items, resolved, ct);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation && attempt < MaxAttempts)
            {
                // A concurrent report took one of these request ids between the lock and the insert: the next attempt
                // sees it committed and answers it as a replay.
            }
            catch (PostgresException e) when (attempt < MaxAttempts && IsContention(e))
            {
                // Another transaction held rows this one must lock past the lock timeout, or PostgreSQL broke a deadlock:
                // nothing was posted, and the next attempt may find them free.
            }
            catch (Exception e) when (attempt < MaxAttempts &&
                                      e is BatchRaceException or PostgresException { SqlState: PostgresErrorCodes.ForeignKeyViolation })
            {
                // The billing state or a meter moved, or a meter never used (so deleted for good) went away between the
                // lock step and the insert: start over with the meters read from the database, not the cache.
                resolved = null;
                fresh = true;
            }
            catch (Exception e) when (!CallerCancelled(e, ct) && !DatabaseRetry.IsConnectionFailure(e))
            {
                // A lost database is nobody's item: that goes to the caller, which retries the whole call (DatabaseRetry)
                // or answers 503 (its outcome unknown; the same request id is safe to send again).
                if (items.Count == 1)
                {
                    var failed = Failed(items[0], e);
                    ReportMetrics.Count([failed]);
                    return [failed];
                }
                // Whatever went wrong (the database refused a row, a bound was crossed, a bug threw), it may be one item's
                // doing: post them one by one, so it fails only its own report and never its neighbours (other merchants'
                // among them, when group commit batched them together).
                log.LogWarning(e, "A batch of {Count} reports failed as a whole; posting them one by one", items.Count);
                var outcomes = new List<ReportOutcome>(items.Count);
                foreach (var item in items) outcomes.Add((await ReportManyAsync([item], ct))[0]);
                return outcomes;
            }
        }
    }

    private static bool IsContention(PostgresException e) =>
        e.SqlState is PostgresErrorCodes.LockNotAvailable or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure;

    private static bool CallerCancelled(Exception e, CancellationToken ct) => e is OperationCanceledException && ct.IsCancellationRequested;

    /// <summary>
    /// The answer to a report that failed on its own: a bound it would cross is the caller's 422, balances that stayed
    /// locked through every attempt a 503 to retry, anything else a bug. (A
    /// database out of reach never gets here: it is thrown to the caller, see the catch filter above.)
    /// </summary>
    private ReportOutcome Failed(ReportItem item, Exception e)
    {
        if (AmountBounds.IsCrossing(e))
        {
            return new ReportOutcome.Refused(Problems.AmountOutOfRange(
                $"Report '{item.Body.RequestId}' would take {AmountBounds.Describe(e)} past its bound; nothing was posted."));
        }
        if (e is PostgresException contended && IsContention(contended))
        {
            log.LogWarning("Report {RequestId} of merchant {MerchantId} found its balances locked through every attempt ({SqlState})",
                item.Body.RequestId, item.MerchantId, contended.SqlState);
            return new ReportOutcome.Refused(Problems.LedgerBusy(1));
        }
        var errorId = Ids.New("err");
        log.LogError(e, "Report {RequestId} of merchant {MerchantId} could not be posted ({ErrorId})", item.Body.RequestId, item.MerchantId, errorId);
        return new ReportOutcome.Refused(Problems.Internal(errorId));
    }

    private async Task<Dictionary<(string MerchantId, string MeterSlug), MeterPrice>> ResolveMetersAsync(
        IReadOnlyList<ReportItem> items, bool fresh, CancellationToken ct)
    {
        var resolved = new Dictionary<(string MerchantId, string MeterSlug), MeterPrice>();
        var missing = new List<(string MerchantId, string MeterSlug)>();
        foreach (var key in items.Select(i => (i.MerchantId, i.Body.MeterSlug!)).Distinct())
        {
            if (!fresh && _meters.TryGetValue(key, out var cached)) resolved[key] = cached;
            else missing.Add(key);
        }
        if (missing.Count == 0) return resolved;
        var found = await meters.FindLivePricesAsync(missing, ct);
        if (_meters.Count + found.Count > MeterCacheLimit) _meters.Clear();
        foreach (var key in missing)
        {
            if (found.TryGetValue(key, out var price)) _meters[key] = resolved[key] = price;
            else _meters.TryRemove(key, out _);
        }
        return resolved;
    }

    /// <summary>Whether a slug now names another meter or price version than the one these reports were priced with.</summary>
    private static bool MetersMoved(Dictionary<(string MerchantId, string MeterSlug), MeterPrice> resolved,
        IEnumerable<(string MerchantId, string MeterSlug)> slugs, ReportBatchStore.Locked state) =>
        slugs.Any(key => resolved.TryGetValue(key, out var priced) != state.LiveMeters.TryGetValue(key, out var live)
                         || (priced is not null && (priced.MeterId, priced.Version) != live));

    private sealed class BatchRaceException() : Exception("the billing state moved between the lock and the plan");

    private async Task<IReadOnlyList<ReportOutcome>> PostOnceAsync(IReadOnlyList<ReportItem> items,
        Dictionary<(string MerchantId, string MeterSlug), MeterPrice> resolvedMeters, CancellationToken ct)
    {
        using var timer = LavaMetrics.Posting();
        var now = clock.GetUtcNow();
        var prepared = items.Select(i => Prepare(i, resolvedMeters.GetValueOrDefault((i.MerchantId, i.Body.MeterSlug!)), now)).ToList();

        var usageKeys = prepared.Where(p => p.Meter is not null)
            .Select(p => new ReportBatchStore.UsageKey(p.MerchantId, p.Meter!.MeterId, p.Body.Customer ?? "", UsagePeriods.CalendarMonth(p.OccurredAt)))
            .Distinct().ToList();
        var customers = prepared.Where(p => p.Body.Customer is not null).Select(p => (p.MerchantId, p.Body.Customer!)).Distinct().ToList();
        var accounts = customers.SelectMany(c => new[]
        {
            (c.MerchantId, LedgerAccounts.CreditsBundle(c.Item2)), (c.MerchantId, LedgerAccounts.CreditsCycle(c.Item2)),
            (c.MerchantId, LedgerAccounts.Receivable(c.Item2)),
        }).ToList();
        var holds = prepared.Where(p => p.Body.HoldId is not null).Select(p => (p.MerchantId, p.Body.HoldId!)).Distinct().ToList();
        var requestIds = prepared.Select(p => (p.MerchantId, p.Body.RequestId!)).Distinct().ToList();
        var keys = items.Where(i => i.SecretKeyId is not null).Select(i => (i.MerchantId, i.SecretKeyId!)).Distinct().ToList();
        var slugs = items.Select(i => (i.MerchantId, i.Body.MeterSlug!)).Distinct().ToList();

        var (connection, state) = await store.LockAsync(new(usageKeys, accounts, holds, requestIds, customers, keys, slugs), ct);
        await using var held = connection;
        var committed = false;
        try
        {
            if (MetersMoved(resolvedMeters, slugs, state))
            {
                foreach (var slug in slugs) _meters.TryRemove(slug, out _);
                throw new BatchRaceException();
            }
            var plan = new BatchPlan(state, options);
            var outcomes = prepared.Select(p => plan.Add(p)).ToList();
            if (plan.Writes.Requests.Count > 0) await ReportBatchStore.CommitAsync(connection, plan.Finish(), ct);
            else await ReportBatchStore.RollbackAsync(connection);
            committed = true;
            ReportMetrics.Count(outcomes);
            return outcomes;
        }
        finally
        {
            if (!committed) await ReportBatchStore.RollbackAsync(connection);
        }
    }

    internal sealed record Prepared(string MerchantId, string? SecretKeyId, CreateRequestBody Body, MeterPrice? Meter, string Mode,
        byte[] Fingerprint, Usage Usage, decimal Quantity, DateTimeOffset OccurredAt, DateTimeOffset Now);

    private static Prepared Prepare(ReportItem item, MeterPrice? meter, DateTimeOffset now)
    {
        var body = item.Body;
        var mode = body.Customer is null ? ModeMeterOnly : body.DisableBilling == true ? ModeBillingDisabled : ModeCustomer;
        var usage = new Usage(body.InputTokens ?? 0, body.OutputTokens ?? 0, body.InputCharacters ?? 0, body.OutputCharacters ?? 0,
            body.InputSeconds ?? 0, body.OutputSeconds ?? 0);
        var quantity = meter is null ? 0 : PriceCalculator.BaseQuantity(meter.Price.TierType, usage);
        return new Prepared(item.MerchantId, item.SecretKeyId, body, meter, mode, RequestFingerprint.Compute(body), usage, quantity,
            body.Timestamp?.ToUniversalTime() ?? now, now);
    }

    /// <summary>
    /// Plans a batch in arrival order against the locked state: each report sees the tier position, balances, top-ups
    /// and holds the reports before it left, exactly as if they had been posted one by one.
    /// </summary>
    private sealed class BatchPlan(ReportBatchStore.Locked state, BillingOptions options)
    {
        private readonly Dictionary<(string, string, string, DateTimeOffset), decimal> _usage = new(state.Usage);
        private readonly Dictionary<(string, string), decimal> _balances = new(state.Balances);
        private readonly Dictionary<(string, string), int> _topUps = [];
        private readonly HashSet<(string, string)> _capturedHolds = [];
        private readonly Dictionary<(string, string), (byte[] Fingerprint, string Response)> _planned = [];
        private readonly Dictionary<(string, string, string, DateTimeOffset), decimal> _increments = [];

        public ReportBatchStore.Writes Writes { get; } = new([], [], [], [], []);

        public ReportBatchStore.Writes Finish()
        {
            Writes.Usage.AddRange(_increments.Select(i => new ReportBatchStore.UsageIncrement(i.Key.Item1, i.Key.Item2, i.Key.Item3, i.Key.Item4, i.Value)));
            return Writes;
        }

        public ReportOutcome Add(Prepared p)
        {
            // Revoked since auth let the call in (possibly from its cache): nothing is posted, not even a replay answered.
            if (p.SecretKeyId is { } keyId && !state.LiveKeys.Contains((p.MerchantId, keyId))) return Refuse(Problems.Unauthorized());
            var body = p.Body;
            var requestId = body.RequestId!;
            var key = (p.MerchantId, requestId);
            if (_planned.TryGetValue(key, out var earlier))
                return Same(earlier.Fingerprint, p.Fingerprint)
                    ? new ReportOutcome.Replayed(StatusCodes.Status201Created, earlier.Response)
                    : new ReportOutcome.Refused(Problems.IdempotencyConflict(requestId));
            if (state.Existing.TryGetValue(key, out var existing))
                return Same(existing.Fingerprint, p.Fingerprint)
                    ? new ReportOutcome.Replayed(existing.StatusCode, existing.Response)
                    : new ReportOutcome.Refused(Problems.IdempotencyConflict(requestId));

            if (p.Meter is not { } meter) return Refuse(Problems.NotFound("meter", body.MeterSlug!, "slug"));
            if (meter.Price.RateType == RateType.Percentage && body.Cost is null && p.Mode != ModeBillingDisabled)
            {
                return Refuse(Problems.Validation(new Dictionary<string, string[]>
                {
                    ["cost"] = [$"is required: meter '{meter.MeterSlug}' charges a percentage of the provider cost"],
                }));
            }
            var customerId = body.Customer;
            ReportBatchStore.BillingContext? billing = null;
            if (customerId is not null && !state.Customers.TryGetValue((p.MerchantId, customerId), out billing))
                return Refuse(Problems.NotFound("customer", customerId));
            var meterOnPlan = billing?.PlanId is { } planId && state.PlanMeters.Contains((p.MerchantId, planId, meter.MeterId));
            if (p.Mode == ModeBillingDisabled && !meterOnPlan)
            {
                return Refuse(Problems.Forbidden("meter_not_on_plan",
                    $"Meter '{meter.MeterSlug}' is not linked to the customer's active plan."));
            }
            if (body.HoldId is { } holdId)
            {
                if (!state.Holds.TryGetValue((p.MerchantId, holdId), out var hold) || hold.CustomerId != customerId)
                    return Refuse(Problems.NotFound("hold", holdId));
                var status = _capturedHolds.Contains((p.MerchantId, holdId)) ? "captured" : hold.Status == "active" && hold.ExpiresAt <= p.Now ? "expired" : hold.Status;
                if (status != "active")
                {
                    return Refuse(Problems.Conflict("hold_not_active",
                        $"Hold '{holdId}' is {status}; report without hold_id to record the usage."));
                }
            }

            var usageKey = (p.MerchantId, meter.MeterId, customerId ?? "", billing?.CycleStartAt ?? UsagePeriods.CalendarMonth(p.OccurredAt));
            if (!_usage.TryGetValue(usageKey, out var usedBefore)) throw new BatchRaceException();
            var priced = PriceCalculator.Price(meter.Price, p.Quantity, usedBefore, p.Mode == ModeBillingDisabled ? body.Cost ?? 0 : body.Cost);
            var charge = p.Mode == ModeBillingDisabled ? new Charge(0, []) : priced;
            _usage[usageKey] = usedBefore + p.Quantity;
            _increments[usageKey] = _increments.GetValueOrDefault(usageKey) + p.Quantity;

            var transactionId = Ids.New("txn", p.Now);
            var balance = Post(p, meter, charge, billing, meterOnPlan, transactionId, out var usageEntries);
            var source = body.Source ?? ReportSource.Reported;
            var response = new RestRequest(
                requestId, "completed", customerId, meter.MeterId, source.Provider, source.ProviderKeyType, source.Model, source.Endpoint,
                ModelUsageOf(p.Usage, body.Cost), Money.Format(body.Cost ?? 0), ChargeOf(meter.Price, charge),
                body.Metadata ?? new Dictionary<string, string>(), p.OccurredAt, p.Now,
                p.Mode, meter.Version, transactionId, balance, body.HoldId);
            var responseJson = JsonSerializer.Serialize(response, LavaJson.Options);
            Writes.Transactions.Add(new(p.MerchantId, transactionId, "usage", requestId, customerId, meter.MeterId, meter.Version,
                Lineage(response, meter, charge), p.OccurredAt, p.Now));
            Writes.Entries.AddRange(usageEntries);
            Writes.Requests.Add(new(p.MerchantId, requestId, p.Fingerprint, p.Mode, customerId, meter.MeterId, meter.Version,
                p.Usage.InputTokens, p.Usage.OutputTokens, p.Usage.InputCharacters, p.Usage.OutputCharacters, p.Usage.InputSeconds,
                p.Usage.OutputSeconds, body.Cost, charge.Amount, JsonSerializer.Serialize(response.Metadata), p.OccurredAt, p.Now,
                transactionId, StatusCodes.Status201Created, responseJson, body.HoldId));
            if (body.HoldId is { } captured)
            {
                Writes.Holds.Add(new(p.MerchantId, captured, charge.Amount, requestId, p.Now));
                _capturedHolds.Add((p.MerchantId, captured));
            }
            _planned[key] = (p.Fingerprint, responseJson);
            return new ReportOutcome.Created(StatusCodes.Status201Created, responseJson);
        }

        private static ReportOutcome Refuse(ProblemResult problem) => new ReportOutcome.Refused(problem);

        /// <summary>
        /// Auto top-ups (each its own ledger transaction, before the usage) and the usage entries. With an active plan only
        /// linked meters draw plan credits; without one, any credits are drawn. Returns the customer's position after.
        /// </summary>
        private CustomerBalance? Post(Prepared p, MeterPrice meter, Charge charge, ReportBatchStore.BillingContext? billing, bool meterOnPlan,
            string usageTransactionId, out List<ReportBatchStore.Entry> usageEntries)
        {
            var customerId = p.Body.Customer;
            var postings = new List<(string TransactionId, Posting Posting)>();
            decimal Balance(string account) => _balances.GetValueOrDefault((p.MerchantId, account));
            var balances = customerId is null
                ? new CustomerBalances(0, 0, 0)
                : new CustomerBalances(Balance(LedgerAccounts.CreditsCycle(customerId)), Balance(LedgerAccounts.CreditsBundle(customerId)),
                    Balance(LedgerAccounts.Receivable(customerId)));
            var creditsUsable = UsagePosting.PlanCreditsUsable(billing?.PlanId is not null, meterOnPlan);
            var cycle = creditsUsable ? balances.CycleRemaining : 0;
            var bundle = creditsUsable ? balances.BundleRemaining : 0;

            if (p.Mode == ModeCustomer && creditsUsable && billing is { TopUpCost: { } packCost, TopUpCredit: { } packCredit })
            {
                var used = billing.TopUpsUsed + _topUps.GetValueOrDefault((p.MerchantId, customerId!));
                var packs = UsagePosting.TopUpsNeeded(charge.Amount, cycle + bundle, packCredit, options.MaxAutoTopUpsPerCycle - used);
                for (var i = 1; i <= packs; i++)
                {
                    var id = Ids.New("txn", p.Now);
                    Writes.Transactions.Add(new(p.MerchantId, id, "auto_top_up", $"{p.Body.RequestId}#top_up_{i}", customerId, null, null,
                        JsonSerializer.Serialize(new { request_id = p.Body.RequestId, cost = packCost, credit_amount = packCredit }), p.Now, p.Now));
                    postings.AddRange(UsagePosting.BundlePurchase(customerId!, LedgerAccounts.Receivable(customerId!), packCost, packCredit).Select(x => (id, x)));
                    bundle += packCredit;
                }
                _topUps[(p.MerchantId, customerId!)] = _topUps.GetValueOrDefault((p.MerchantId, customerId!)) + packs;
            }
            postings.AddRange(UsagePosting.For(p.Mode == ModeCustomer ? customerId : null, charge.Amount, p.Body.Cost, cycle, bundle)
                .Select(x => (usageTransactionId, x)));

            var topUpEntries = postings.Where(x => x.TransactionId != usageTransactionId)
                .Select(x => new ReportBatchStore.Entry(p.MerchantId, x.TransactionId, x.Posting.AccountId, x.Posting.Amount));
            Writes.Entries.AddRange(topUpEntries);
            usageEntries = postings.Where(x => x.TransactionId == usageTransactionId)
                .Select(x => new ReportBatchStore.Entry(p.MerchantId, x.TransactionId, x.Posting.AccountId, x.Posting.Amount)).ToList();
            foreach (var (_, posting) in postings)
            {
                if (_balances.ContainsKey((p.MerchantId, posting.AccountId)))
                    _balances[(p.MerchantId, posting.AccountId)] += posting.Amount;
            }
            if (customerId is null) return null;
            var after = new CustomerBalances(Balance(LedgerAccounts.CreditsCycle(customerId)), Balance(LedgerAccounts.CreditsBundle(customerId)),
                Balance(LedgerAccounts.Receivable(customerId)));
            return new CustomerBalance(Money.Format(after.CreditsRemaining), Money.Format(after.Receivable));
        }

        private static bool Same(byte[] a, byte[] b) => a.AsSpan().SequenceEqual(b);
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
            Cost: Money.Format(l.Amount))).ToList();
        return new RequestCharge(Money.Format(charge.Amount), PriceCalculator.RateTypeName(price.RateType), lines);
    }

    private static string Lineage(RestRequest r, MeterPrice meter, Charge charge) => JsonSerializer.Serialize(new
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
    /// <summary>Without a subscription, usage accumulates per UTC calendar month (docs/design.md, "Usage periods").</summary>
    public static DateTimeOffset CalendarMonth(DateTimeOffset at)
    {
        var utc = at.ToUniversalTime();
        return new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
    }
}
