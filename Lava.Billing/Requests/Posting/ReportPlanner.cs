using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Pricing;
using LedgerPosting = Lava.Billing.Ledger.Posting;
using MeterPrice = Lava.Billing.Meters.MeterPrice;

namespace Lava.Billing.Requests.Posting;

/// <summary>What the planner made of a batch.</summary>
public abstract record ReportPlan
{
    private ReportPlan()
    {
    }

    /// <summary>Each report's outcome, in order, and what to write (no request: nothing to commit).</summary>
    public sealed record Planned(IReadOnlyList<ReportOutcome> Outcomes, ReportWriter.Writes Writes) : ReportPlan;

    /// <summary>
    /// What was read under lock does not fit together: a slug names another meter or price version than the reports were
    /// priced with, or a subscription began or ended between two reads. Nothing is written; start over.
    /// </summary>
    public sealed record StateMoved : ReportPlan;
}

/// <summary>
/// Plans a batch in arrival order against the locked state, without I/O: each report sees the tier position, balances,
/// top-ups and holds the reports before it left, exactly as if they had been posted one by one. A refused report is
/// left out with its refusal; the others are priced, posted as ledger transactions and answered.
/// </summary>
public sealed class ReportPlanner
{
    private readonly LockedState _state;
    private readonly BillingOptions _options;
    private readonly Dictionary<(string, string, string, DateTimeOffset), decimal> _usage = [];
    private readonly Dictionary<(string, string), decimal> _balances;
    private readonly Dictionary<(string, string), int> _topUps = [];
    private readonly HashSet<(string, string)> _capturedHolds = [];
    private readonly Dictionary<(string, string), (byte[] Fingerprint, string Response)> _planned = [];
    private readonly Dictionary<(string MerchantId, string MeterId, string CustomerKey, DateTimeOffset PeriodStart), decimal> _increments = [];
    private readonly ReportWriter.Writes _writes = new([], [], [], []);

    private ReportPlanner(LockedState state, BillingOptions options)
    {
        _state = state;
        _options = options;
        _balances = new(state.Balances);
    }

    public static ReportPlan Plan(IReadOnlyList<PreparedReport> reports, LockedState state, BillingOptions options)
    {
        if (reports.Any(p => MeterMoved(p, state))) return new ReportPlan.StateMoved();
        var planner = new ReportPlanner(state, options);
        var outcomes = new List<ReportOutcome>(reports.Count);
        foreach (var report in reports)
        {
            if (planner.Add(report) is not { } outcome) return new ReportPlan.StateMoved();
            outcomes.Add(outcome);
        }
        planner._writes.Usage.AddRange(planner._increments.Select(i =>
            new ReportWriter.UsageIncrement(i.Key.MerchantId, i.Key.MeterId, i.Key.CustomerKey, i.Key.PeriodStart, i.Value)));
        return new ReportPlan.Planned(outcomes, planner._writes);
    }

    /// <summary>Whether the report's slug now names another meter or price version than the one it was priced with.</summary>
    private static bool MeterMoved(PreparedReport p, LockedState state) =>
        state.LiveMeters.TryGetValue((p.MerchantId, p.MeterSlug), out var live)
            ? p.Meter is null || (p.Meter.MeterId, p.Meter.Version) != live
            : p.Meter is not null;

    private static ReportOutcome Refuse(ReportRefusal refusal) => new ReportOutcome.Refused(refusal);

    /// <summary>The report's outcome; null when the usage read and the customers read saw different subscriptions.</summary>
    private ReportOutcome? Add(PreparedReport p)
    {
        // Revoked since auth let the call in (possibly from its cache): nothing is posted, not even a replay answered.
        if (p.SecretKeyId is { } keyId && !_state.LiveKeys.Contains((p.MerchantId, keyId))) return Refuse(new ReportRefusal.KeyRevoked());
        var body = p.Body;
        var requestId = p.RequestId;
        var key = (p.MerchantId, requestId);
        if (_planned.TryGetValue(key, out var earlier))
        {
            return Same(earlier.Fingerprint, p.Fingerprint)
                ? new ReportOutcome.Replayed(StatusCodes.Status201Created, earlier.Response)
                : Refuse(new ReportRefusal.IdempotencyConflict(requestId));
        }
        if (_state.Existing.TryGetValue(key, out var existing))
        {
            return Same(existing.Fingerprint, p.Fingerprint)
                ? new ReportOutcome.Replayed(existing.StatusCode, existing.Response)
                : Refuse(new ReportRefusal.IdempotencyConflict(requestId));
        }

        if (p.Meter is not { } meter) return Refuse(new ReportRefusal.MeterNotFound(p.MeterSlug));
        if (meter.Price.RateType == RateType.Percentage && body.Cost is null && p.Mode != PreparedReport.ModeBillingDisabled)
            return Refuse(new ReportRefusal.CostRequired(meter.MeterSlug));
        var customerId = body.Customer;
        LockedState.BillingContext? billing = null;
        if (customerId is not null && !_state.Customers.TryGetValue((p.MerchantId, customerId), out billing))
            return Refuse(new ReportRefusal.CustomerNotFound(customerId));
        var meterOnPlan = billing?.PlanId is { } planId && _state.PlanMeters.Contains((p.MerchantId, planId, meter.MeterId));
        if (p.Mode == PreparedReport.ModeBillingDisabled && !meterOnPlan) return Refuse(new ReportRefusal.MeterNotOnPlan(meter.MeterSlug));
        if (body.HoldId is { } holdId)
        {
            if (!_state.Holds.TryGetValue((p.MerchantId, holdId), out var hold) || hold.CustomerId != customerId)
                return Refuse(new ReportRefusal.HoldNotFound(holdId));
            var status = _capturedHolds.Contains((p.MerchantId, holdId)) ? "captured"
                : hold.Status == "active" && hold.ExpiresAt <= p.Now ? "expired" : hold.Status;
            if (status != "active") return Refuse(new ReportRefusal.HoldNotActive(holdId, status));
        }

        // The period is the one the usage read decided; it must be the subscription the customers read saw.
        if (!_state.Usage.TryGetValue((p.MerchantId, meter.MeterId, p.CustomerKey, p.OccurredAt), out var position)
            || position.CycleStartAt != billing?.CycleStartAt) return null;
        var usageKey = (p.MerchantId, meter.MeterId, p.CustomerKey, position.PeriodStart);
        var usedBefore = _usage.TryGetValue(usageKey, out var used) ? used : position.Quantity;
        var disabled = p.Mode == PreparedReport.ModeBillingDisabled;
        var priced = PriceCalculator.Price(meter.Price, p.Quantity, usedBefore, disabled ? body.Cost ?? 0 : body.Cost);
        var charge = disabled ? new Charge(0, []) : priced;
        _usage[usageKey] = usedBefore + p.Quantity;
        _increments[usageKey] = _increments.GetValueOrDefault(usageKey) + p.Quantity;

        var transactionId = Ids.New("txn", p.Now);
        var (postings, balance) = Post(p, charge, billing, meterOnPlan);
        var response = ReportResponses.Of(p, meter, charge, transactionId, balance);
        var responseJson = RequestJson.Response(response);
        _writes.Transactions.Add(new(p.MerchantId, new LedgerWriter.Transaction(transactionId, LedgerKinds.Usage, requestId, customerId,
            p.OccurredAt, postings) { MeterId = meter.MeterId, PriceVersion = meter.Version, CreatedAt = p.Now, CompactLineage = StoredReport.Lineage(p, meter.Price, charge) }));
        _writes.Requests.Add(new(p.MerchantId, requestId, p.Fingerprint, p.Mode, customerId, meter.MeterId, meter.Version, p.Usage,
            body.Cost, charge.Amount, RequestJson.Metadata(response.Metadata), p.OccurredAt, p.Now,
            transactionId, StatusCodes.Status201Created, StoredReport.Response(response), body.HoldId));
        if (body.HoldId is { } captured)
        {
            _writes.Holds.Add(new(p.MerchantId, captured, charge.Amount, requestId, p.Now));
            _capturedHolds.Add((p.MerchantId, captured));
        }
        _planned[key] = (p.Fingerprint, responseJson);
        return new ReportOutcome.Created(StatusCodes.Status201Created, responseJson);
    }

    /// <summary>
    /// Auto top-ups (each its own ledger transaction, written before the usage) and the usage's own postings. With an
    /// active plan only linked meters draw plan credits; without one, any credits are drawn. Returns the usage postings
    /// and the customer's position after.
    /// </summary>
    private (List<LedgerPosting> Usage, CustomerBalance? After) Post(PreparedReport p, Charge charge, LockedState.BillingContext? billing, bool meterOnPlan)
    {
        var customerId = p.Body.Customer;
        var balances = customerId is null ? new CustomerBalances(0, 0, 0) : Balances(p.MerchantId, customerId);
        var creditsUsable = UsagePosting.PlanCreditsUsable(billing?.PlanId is not null, meterOnPlan);
        var cycle = creditsUsable ? balances.CycleRemaining : 0;
        var bundle = creditsUsable ? balances.BundleRemaining : 0;

        if (p.Mode == PreparedReport.ModeCustomer && creditsUsable && billing is { TopUpCost: { } packCost, TopUpCredit: { } packCredit })
        {
            var used = billing.TopUpsUsed + _topUps.GetValueOrDefault((p.MerchantId, customerId!));
            var packs = UsagePosting.TopUpsNeeded(charge.Amount, cycle + bundle, packCredit, _options.MaxAutoTopUpsPerCycle - used);
            for (var i = 1; i <= packs; i++)
            {
                var topUp = UsagePosting.BundlePurchase(customerId!, LedgerAccounts.Receivable(customerId!), packCost, packCredit);
                _writes.Transactions.Add(new(p.MerchantId, new LedgerWriter.Transaction(Ids.New("txn", p.Now), LedgerKinds.AutoTopUp,
                    LedgerKinds.AutoTopUpReference(p.RequestId, i), customerId, p.Now, topUp,
                    JsonSerializer.Serialize(new { request_id = p.RequestId, cost = packCost, credit_amount = packCredit })) { CreatedAt = p.Now }));
                Move(p.MerchantId, topUp);
                bundle += packCredit;
            }
            _topUps[(p.MerchantId, customerId!)] = _topUps.GetValueOrDefault((p.MerchantId, customerId!)) + packs;
        }
        var usage = UsagePosting.For(p.Mode == PreparedReport.ModeCustomer ? customerId : null, charge.Amount, p.Body.Cost, cycle, bundle);
        Move(p.MerchantId, usage);
        if (customerId is null) return (usage, null);
        var after = Balances(p.MerchantId, customerId);
        return (usage, new CustomerBalance(Money.Format(after.CreditsRemaining), Money.Format(after.Receivable)));
    }

    private CustomerBalances Balances(string merchantId, string customerId)
    {
        decimal Balance(string account) => _balances.GetValueOrDefault((merchantId, account));
        return new CustomerBalances(Balance(LedgerAccounts.CreditsCycle(customerId)), Balance(LedgerAccounts.CreditsBundle(customerId)),
            Balance(LedgerAccounts.Receivable(customerId)));
    }

    /// <summary>Moves the cached balances the batch holds, so the next report sees them after these postings.</summary>
    private void Move(string merchantId, IEnumerable<LedgerPosting> postings)
    {
        foreach (var posting in postings)
        {
            if (_balances.ContainsKey((merchantId, posting.AccountId))) _balances[(merchantId, posting.AccountId)] += posting.Amount;
        }
    }

    private static bool Same(byte[] a, byte[] b) => a.AsSpan().SequenceEqual(b);
}
