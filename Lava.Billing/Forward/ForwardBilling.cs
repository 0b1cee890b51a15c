using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Resilience;
using Lava.Billing.Ledger;
using Lava.Billing.Meters;
using Lava.Billing.Merchants;
using Lava.Billing.Pricing;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Credits;
using Lava.Billing.Subscriptions;
using System.Collections.Concurrent;

namespace Lava.Billing.Forward;

/// <summary>One gateway call, as billing sees it (with the hold taken for it, if any).</summary>
public sealed record ForwardCall(
    Caller Caller,
    ForwardToken Token,
    ForwardMode Mode,
    string RequestId,
    Uri Upstream,
    ApiFormat Format,
    string? Model,
    ModelPrice? Price,
    IReadOnlyDictionary<string, string> Metadata,
    string? HoldId = null);

/// <summary>
/// The answer before the call: a refusal, or go ahead (holding the worst case for a customer), or
/// <see cref="Retry"/>: a price the call was admitted with from memory had moved, nothing was written, and the call is
/// admitted again with what the database holds now.
/// </summary>
public sealed record ForwardAdmission(ProblemResult? Refusal, string? HoldId, bool Retry = false)
{
    public static readonly ForwardAdmission Go = new(null, null);

    public static readonly ForwardAdmission Again = new(null, null, Retry: true);

    public static ForwardAdmission Refuse(ProblemResult problem) => new(problem, null);
}

/// <summary>The worst case before the call: the prompt's estimated size and the most output it asked for.</summary>
public sealed record UsageEstimate(NormalizedUsage Input, long? MaxOutputTokens);

/// <summary>What is billed after the call. <see cref="Estimated"/>: the provider's own count never arrived.</summary>
public sealed record BilledUsage(NormalizedUsage Usage, decimal? ProviderCost, bool Estimated);

/// <summary>What became of one attempt to post a served call.</summary>
internal enum PostResult { Posted, Refused, Failed }

/// <summary>
/// The billing seam of the gateway. Before the provider is called, the call is admitted (or refused) and its durable
/// record written with its hold; while it streams, the usage seen so far is recorded; once its usage is known it is
/// recorded as served and then posted; a call with nothing billable is released. docs/gateway.md has the guarantees.
/// </summary>
public interface IForwardBilling
{
    /// <summary>
    /// Go ahead (the call's record written, with funds held for a customer), or the problem to answer without the
    /// provider being called. <paramref name="initial"/> is what the call is billed if it is cut by a crash before
    /// anything better is known.
    /// </summary>
    Task<ForwardAdmission> BeforeAsync(ForwardCall call, UsageEstimate estimate, BilledUsage initial, CancellationToken ct);

    /// <summary>The usage seen so far in a streaming answer; also tells the settle worker this call is still alive.</summary>
    Task ProgressAsync(ForwardCall call, BilledUsage seen, CancellationToken ct);

    /// <summary>
    /// Makes the usage to bill durable and returns the record to post; null when it is not this caller's to post: it
    /// could not be written now (it is kept, and written and posted by the settle worker), or the worker already
    /// settled the call. Never throws.
    /// </summary>
    Task<ForwardCallRecord?> ServeAsync(ForwardCall call, BilledUsage usage, string? anomaly, CancellationToken ct);

    /// <summary>Nothing is billable (the provider failed or was never reached): the record and its hold are closed.</summary>
    Task ReleaseAsync(ForwardCall call, CancellationToken ct);
}

/// <summary>
/// Gateway billing. A customer call first holds the worst case it could cost (402 insufficient_credits, and the
/// provider is never called, when the customer cannot cover it), in the same transaction as the call's record;
/// afterwards the usage is written to that record and reported through <see cref="GroupCommit"/> (a lone call through its
/// queue, calls gathered by <see cref="ForwardPostingQueue"/> together in one transaction), the one posting routine
/// behind <c>POST /v1/requests</c>, capturing that hold. A billing-disabled call must be entitled (the meter on
/// the customer's active plan) and is reported at zero charge. Gateway calls charge nobody and are recorded as
/// provider cost only. A posting that fails is retried by <see cref="ForwardSettler"/>; the hold is never voided for it.
/// </summary>
public sealed class ForwardBilling(ForwardLookups lookups, SecretKeyStore keys, ForwardStore store, ForwardCallStore calls, Customers.CustomerStore customers,
    GroupCommit reporter, SubscriptionStore subscriptions, ForwardOptions options, TimeProvider clock,
    ILogger<ForwardBilling> log) : IForwardBilling
{
    /// <summary>A hold outlives any call the gateway lets run (timeouts cut stalls, not streams that keep flowing).</summary>
    private static readonly TimeSpan HoldLifetime = TimeSpan.FromHours(1);

    /// <summary>
    /// How long a served call is left to the posting that follows it before the settle worker may post it too. A
    /// posting takes milliseconds (seconds under load); a crash in between delays its posting by this much.
    /// </summary>
    private static readonly TimeSpan PostingLease = TimeSpan.FromSeconds(30);

    /// <summary>The anomaly of a call that was still pending when its process died, billed by the crash rule.</summary>
    public const string Recovered = "recovered_after_crash";

    // Served usage that could not be written (the database was away), waiting for the settle worker. Bounded: past it,
    // a call falls back to the crash rule, which bills its last recorded usage.
    private const int MaxDeferred = 100_000;
    private readonly ConcurrentQueue<ForwardCallRecord> _deferred = new();
    // Calls the provider failed or never answered, whose release could not be written: released before the settle worker
    // looks for crashed calls, so a brief outage never turns them into estimates billed by the crash rule.
    private readonly ConcurrentQueue<ForwardCallRecord> _deferredReleases = new();

    public async Task<ForwardAdmission> BeforeAsync(ForwardCall call, UsageEstimate estimate, BilledUsage initial, CancellationToken ct)
    {
        var merchantId = call.Caller.MerchantId;
        var now = clock.GetUtcNow();
        var record = RecordOf(call, initial, null, null);
        var due = now + options.PendingLease(call.Upstream.IdnHost);
        if (call.Mode == ForwardMode.Gateway)
            return Admitted(call, null, await calls.BeginAsync(record, due, now, Assumed(call, null), null, ct));
        var meter = await lookups.MeterAsync(merchantId, call.Token.MeterSlug!, ct);
        if (meter is null) return ForwardAdmission.Refuse(Problems.NotFound("meter", call.Token.MeterSlug!, "slug"));
        // A percentage of an unknown cost would bill 0: refuse before the provider is paid.
        var priceUnknown = meter.Price.RateType == RateType.Percentage && call.Price is null && call.Mode != ForwardMode.BillingDisabled;
        // A hold is one amount, bounded like every other (Money.Max): a worst case past it (an absurd max_tokens) holds
        // the bound, which no customer's credits reach, instead of failing the hold's CHECK.
        var worst = call.Mode == ForwardMode.Customer && !priceUnknown
            ? Math.Min(ForwardWorstCase.Charge(meter.Price, estimate, call.Price, options.DefaultMaxOutputTokens, options.DefaultHoldSeconds), Money.Max)
            : 0;
        // Taking the hold reads the customer (a missing one is refused there, in the same round trips): a look of its own
        // is needed only for a call that holds nothing.
        if (call.Token.CustomerId is { } customerId && call.Mode != ForwardMode.MeterOnly && worst <= 0 &&
            !await customers.ExistsAsync(merchantId, customerId, ct))
            return ForwardAdmission.Refuse(Problems.NotFound("customer", customerId));
        if (priceUnknown)
        {
            return await ConfirmedAsync(call, meter, Problems.Unprocessable("model_price_unknown", call.Model is null
                ? $"Meter '{meter.MeterSlug}' charges a percentage of the provider cost, and this request names no model."
                : $"Meter '{meter.MeterSlug}' charges a percentage of the provider cost, and model '{call.Model}' has no price (POST /v1/model_prices)."), ct);
        }
        if (call.Mode == ForwardMode.BillingDisabled &&
            !await subscriptions.IsMeterOnActivePlanAsync(merchantId, call.Token.CustomerId!, meter.MeterId, ct))
        {
            return await ConfirmedAsync(call, meter, Problems.Forbidden("meter_not_on_plan",
                $"Meter '{meter.MeterSlug}' is not linked to the customer's active plan."), ct);
        }
        if (worst <= 0) return Admitted(call, meter, await calls.BeginAsync(record, due, now, Assumed(call, meter), null, ct));
        var begun = await calls.BeginAsync(record, due, now, Assumed(call, meter),
            new CreditStore.HoldRequest(merchantId, call.Token.CustomerId!, meter.MeterId, worst, HoldLifetime, now), ct);
        if (begun.Check != ForwardCallStore.Checked.Current) return Admitted(call, meter, begun);
        return begun.Hold switch
        {
            CreditStore.HoldOutcome.Created created => new ForwardAdmission(null, created.Hold.HoldId),
            CreditStore.HoldOutcome.Insufficient insufficient => ForwardAdmission.Refuse(Problems.InsufficientCredits(
                $"This call could cost up to {Money.Format(worst)}; the customer can spend {insufficient.Available}. The provider was not called.")),
            _ => ForwardAdmission.Refuse(Problems.NotFound("customer", call.Token.CustomerId!)),
        };
    }

    private static ForwardCallStore.Assumed Assumed(ForwardCall call, Meters.MeterPrice? meter) => new(call.Caller.SecretKeyId,
        meter is null ? null : call.Token.MeterSlug, meter is null ? null : ForwardLookups.KeyOf(meter),
        call.Model is null ? null : ModelPriceStore.Candidates(call.Model), ForwardLookups.KeyOf(call.Caller.MerchantId, call.Price));

    /// <summary>
    /// A record written (or a hold refused, which the caller answers), else what the check found: a key revoked since it
    /// was authenticated from memory is refused; a meter or price that moved is forgotten and the call admitted again.
    /// </summary>
    private ForwardAdmission Admitted(ForwardCall call, Meters.MeterPrice? meter, ForwardCallStore.Begun begun)
    {
        switch (begun.Check)
        {
            case ForwardCallStore.Checked.KeyRevoked:
                keys.Forget(call.Caller.MerchantId, call.Caller.SecretKeyId);
                return ForwardAdmission.Refuse(Problems.Unauthorized());
            case ForwardCallStore.Checked.Moved:
                lookups.Forget(call.Caller.MerchantId, call.Model, meter is null ? null : call.Token.MeterSlug);
                return ForwardAdmission.Again;
            default:
                return ForwardAdmission.Go;
        }
    }

    /// <summary>
    /// A refusal that rests on the meter and price taken from memory stands only if the database still says so: otherwise
    /// the call is admitted again with what it says now.
    /// </summary>
    private async Task<ForwardAdmission> ConfirmedAsync(ForwardCall call, Meters.MeterPrice meter, ProblemResult refusal, CancellationToken ct)
    {
        var merchantId = call.Caller.MerchantId;
        lookups.Forget(merchantId, call.Model, call.Token.MeterSlug);
        var nowMeter = await lookups.MeterAsync(merchantId, call.Token.MeterSlug!, ct);
        var nowPrice = call.Model is null ? null : await lookups.PriceAsync(merchantId, call.Model, ct);
        var same = nowMeter is not null && ForwardLookups.KeyOf(nowMeter) == ForwardLookups.KeyOf(meter) &&
                   ForwardLookups.KeyOf(merchantId, nowPrice) == ForwardLookups.KeyOf(merchantId, call.Price);
        return same ? ForwardAdmission.Refuse(refusal) : ForwardAdmission.Again;
    }

    public async Task ProgressAsync(ForwardCall call, BilledUsage seen, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        await calls.ProgressAsync(RecordOf(call, seen, null, null), now + options.PendingLease(call.Upstream.IdnHost), now, ct);
    }

    public async Task<ForwardCallRecord?> ServeAsync(ForwardCall call, BilledUsage usage, string? anomaly, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var record = RecordOf(call, usage, anomaly, Microseconds(now));
        try
        {
            // Posting follows at once; the settle worker takes over only if that posting never closes the call.
            if (await calls.ServeAsync(record, now + PostingLease, now, ct)) return record;
            log.LogWarning("Gateway request {RequestId} of merchant {MerchantId} was settled by the crash rule before its usage arrived",
                call.RequestId, call.Caller.MerchantId);
            return null;
        }
        catch (Exception e)
        {
            if (_deferred.Count < MaxDeferred) _deferred.Enqueue(record);
            log.LogError("Gateway request {RequestId} of merchant {MerchantId}: its usage could not be recorded ({Failure}); the settle worker retries",
                call.RequestId, call.Caller.MerchantId, e.GetType().Name);
            return null;
        }
    }

    /// <summary>
    /// Writes the releases and the served usage that could not be written when their calls ended, oldest first, and posts
    /// that usage. Each on its own: the database still away stops the round (nothing else would get through) and leaves
    /// the rest for the next one; any other failure is that record's, which goes to the back of its line while the
    /// others, other merchants' among them, go on.
    /// </summary>
    internal async Task FlushDeferredAsync(CancellationToken ct)
    {
        // Only this worker takes from the lines (calls only add to them), so what it peeks is what it then takes.
        for (var left = _deferredReleases.Count; left > 0 && _deferredReleases.TryPeek(out var release); left--)
        {
            try
            {
                // Releases only a call still pending: one the crash rule took meanwhile is left as it was settled.
                await calls.ReleaseAsync(release, clock.GetUtcNow(), ct);
            }
            catch (Exception e) when (OutageLog.IsItemFailure(e, ct))
            {
                ToTheBack(_deferredReleases, release, e);
                continue;
            }
            _deferredReleases.TryDequeue(out _);
        }
        for (var left = _deferred.Count; left > 0 && _deferred.TryPeek(out var record); left--)
        {
            bool mine;
            try
            {
                var now = clock.GetUtcNow();
                mine = await calls.ServeAsync(record, now + PostingLease, now, ct);
            }
            catch (Exception e) when (OutageLog.IsItemFailure(e, ct))
            {
                ToTheBack(_deferred, record, e);
                continue;
            }
            _deferred.TryDequeue(out _);
            if (mine) await SettleAsync(record, ct);
            else log.LogWarning("Gateway request {RequestId} of merchant {MerchantId} was settled by the crash rule before its usage was written",
                record.RequestId, record.MerchantId);
        }
    }

    /// <summary>Moves the record at the head of <paramref name="line"/>, whose kept write failed for a reason of its own, to the back.</summary>
    private void ToTheBack(ConcurrentQueue<ForwardCallRecord> line, ForwardCallRecord record, Exception failure)
    {
        line.TryDequeue(out _);
        line.Enqueue(record);
        log.LogError("Gateway request {RequestId} of merchant {MerchantId}: its kept usage or release still cannot be written ({Failure}); retried next round",
            record.RequestId, record.MerchantId, failure.GetType().Name);
    }

    /// <summary>Releases a call nobody was served (its hold voided); when that cannot be written, the settle worker does it.</summary>
    public async Task ReleaseAsync(ForwardCall call, CancellationToken ct)
    {
        var record = RecordOf(call, new BilledUsage(NormalizedUsage.None, null, true), null, null);
        try
        {
            await calls.ReleaseAsync(record, clock.GetUtcNow(), ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            if (_deferredReleases.Count >= MaxDeferred) throw;
            _deferredReleases.Enqueue(record);
            log.LogWarning("Gateway request {RequestId} of merchant {MerchantId}: its release could not be written ({Failure}); the settle worker retries",
                call.RequestId, call.Caller.MerchantId, e.GetType().Name);
        }
    }

    /// <summary>Posts a served call; a failure leaves it to the settle worker (the hold stays). Never throws.</summary>
    public Task SettleAsync(ForwardCallRecord call, CancellationToken ct) => SettleManyAsync([call], ct);

    /// <summary>
    /// Posts served calls (a lone call through group commit, several in one posting transaction), then closes those posted plainly
    /// in one statement. Each call's failure is its own: it stays served, its hold active, and is retried. Never throws.
    /// </summary>
    internal async Task SettleManyAsync(IReadOnlyList<ForwardCallRecord> batch, CancellationToken ct)
    {
        var outcomes = batch.Count == 1 ? [await PostAsync(batch[0], ct)] : await PostTogetherAsync(batch, ct);
        var now = clock.GetUtcNow();
        var plain = outcomes.Where(o => o.Result == PostResult.Posted && !o.VoidHold).Select(o => o.Call).ToList();
        if (plain.Count > 0)
        {
            try
            {
                await calls.ClosePostedAsync(plain, now, ct);
            }
            catch (Exception e)
            {
                // Posted but not closed: a retry is answered as a replay and closes it.
                foreach (var call in plain) await RetryLaterAsync(call, e.GetType().Name, ct);
            }
        }
        foreach (var (call, result, voidHold, error) in outcomes)
        {
            try
            {
                switch (result)
                {
                    case PostResult.Posted when voidHold:
                        await calls.CloseAsync(call, posted: true, null, voidHold: true, now, ct);
                        break;
                    case PostResult.Posted:
                        break;
                    case PostResult.Refused:
                        // The provider already ran: the meter or customer vanished after the check. Loud, so finance can follow up.
                        log.LogError("Gateway request {RequestId} of merchant {MerchantId} was served but its usage report was refused: {Code}",
                            call.RequestId, call.MerchantId, error);
                        await calls.CloseAsync(call, posted: false, error, voidHold: true, now, ct);
                        break;
                    default:
                        await RetryLaterAsync(call, error ?? "posting failed", ct);
                        break;
                }
            }
            catch (Exception e)
            {
                await RetryLaterAsync(call, e.GetType().Name, ct);
            }
        }
    }

    private async Task<(ForwardCallRecord Call, PostResult Result, bool VoidHold, string? Error)> PostAsync(ForwardCallRecord call, CancellationToken ct)
    {
        try
        {
            var (result, voidHold, error) = call.Mode == ForwardMode.Gateway
                ? await RecordAsync(call, ct)
                : await OutcomeAsync(call, await reporter.ReportAsync(ReportOf(call), ct), ct);
            return (call, result, voidHold, error);
        }
        catch (Exception e)
        {
            // The database (or the posting routine) failed: the call stays served and its hold active until a retry posts it.
            return (call, PostResult.Failed, false, e.GetType().Name);
        }
    }

    /// <summary>
    /// A batch's reports in one posting transaction: planned once for all of them instead of once per call, which is most
    /// of what a lone report costs PostgreSQL (docs/gateway.md). The poster isolates each report's refusal or failure
    /// (one by one after a failed whole); gateway calls that charge nobody are recorded on their own, as ever.
    /// </summary>
    private async Task<(ForwardCallRecord Call, PostResult Result, bool VoidHold, string? Error)[]> PostTogetherAsync(
        IReadOnlyList<ForwardCallRecord> batch, CancellationToken ct)
    {
        var reported = Enumerable.Range(0, batch.Count).Where(i => batch[i].Mode != ForwardMode.Gateway).ToList();
        IReadOnlyList<ReportOutcome>? posted = null;
        string? failure = null;
        if (reported.Count > 0)
        {
            try
            {
                var items = reported.Select(i => ReportOf(batch[i])).ToList();
                posted = await reporter.PostWithRetryAsync(items, ct);
            }
            catch (Exception e)
            {
                // The database failed for the whole transaction: every call in it stays served, its hold active, and is retried.
                failure = e.GetType().Name;
            }
        }
        var outcomes = new (ForwardCallRecord, PostResult, bool, string?)[batch.Count];
        // Calls that charge nobody are recorded side by side, each on its own: one slow record does not hold the others.
        var recorded = Enumerable.Range(0, batch.Count).Where(i => batch[i].Mode == ForwardMode.Gateway)
            .Select(async i => outcomes[i] = await PostAsync(batch[i], ct));
        await Task.WhenAll(recorded);
        foreach (var i in reported)
        {
            var call = batch[i];
            if (posted is null)
            {
                outcomes[i] = (call, PostResult.Failed, false, failure);
                continue;
            }
            try
            {
                var (result, voidHold, error) = await OutcomeAsync(call, posted[reported.IndexOf(i)], ct);
                outcomes[i] = (call, result, voidHold, error);
            }
            catch (Exception e)
            {
                outcomes[i] = (call, PostResult.Failed, false, e.GetType().Name);
            }
        }
        return outcomes;
    }

    private async Task RetryLaterAsync(ForwardCallRecord call, string error, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var delay = options.RetryDelay(call.Attempts + 1);
        log.LogWarning("Gateway request {RequestId} of merchant {MerchantId}: posting its usage failed ({Failure}); retrying in {DelayMs} ms",
            call.RequestId, call.MerchantId, error, (long)delay.TotalMilliseconds);
        try
        {
            await calls.RetryLaterAsync(call, error, now + delay, now, ct);
        }
        catch (Exception)
        {
            // Not even that could be written: the lease already set on the record brings the call back to the worker.
        }
    }

    private static ReportItem ReportOf(ForwardCallRecord call)
    {
        var metadata = new Dictionary<string, string>(call.Details.Metadata);
        if (call.Usage.Estimated) metadata["estimated"] = "true";
        if (call.Anomaly is { } anomaly) metadata["gateway_anomaly"] = anomaly;
        var usage = call.Usage.Usage;
        var body = new CreateRequestBody
        {
            RequestId = call.RequestId,
            CustomerId = call.Mode == ForwardMode.MeterOnly ? null : call.CustomerId,
            MeterSlug = call.MeterSlug,
            Metadata = metadata,
            InputTokens = usage.InputTokens,
            OutputTokens = usage.Output,
            InputCharacters = usage.InputCharacters,
            InputSeconds = usage.InputSeconds,
            Cost = call.Usage.ProviderCost,
            // When the call was served, not when its report was posted: a retry an hour later stays in the same period.
            Timestamp = call.ServedAt,
            DisableBilling = call.Mode == ForwardMode.BillingDisabled ? true : null,
            HoldId = call.HoldId,
            Source = new ReportSource(call.Details.Provider, call.Details.ProviderKeyType, call.Details.Model, call.Details.Endpoint),
        };
        return new ReportItem(call.MerchantId, body);
    }

    /// <summary>What the posting of <paramref name="call"/>'s report came to; a lapsed hold is posted again without it.</summary>
    private async Task<(PostResult Result, bool VoidHold, string? Error)> OutcomeAsync(ForwardCallRecord call, ReportOutcome outcome,
        CancellationToken ct)
    {
        var voidHold = false;
        // hold_not_active: the hold lapsed while the call ran (or its posting was retried past its hour). idempotency_conflict
        // with a hold: an earlier attempt already posted the call without its lapsed hold (hold_id is part of the
        // fingerprint), and this attempt, begun before that one finished, sent the version with it.
        if (outcome is ReportOutcome.Refused { Refusal: ReportRefusal.HoldNotActive or ReportRefusal.IdempotencyConflict } && call.HoldId is not null)
        {
            // The usage is still owed: it is reported without the hold (a replay when that was done before), and the
            // lapsed hold is closed.
            var item = ReportOf(call);
            outcome = await reporter.ReportAsync(item with { Body = item.Body with { HoldId = null } }, ct);
            voidHold = true;
        }
        return outcome switch
        {
            ReportOutcome.Created or ReportOutcome.Replayed => (PostResult.Posted, voidHold, null),
            // Busy or failed is the posting routine failing (the database), not a refusal of this report: try again.
            ReportOutcome.Refused { Refusal: ReportRefusal.LedgerBusy or ReportRefusal.Failed } refused =>
                (PostResult.Failed, false, ReportProblems.Of(refused.Refusal).Code),
            ReportOutcome.Refused refused => (PostResult.Refused, true, ReportProblems.Of(refused.Refusal).Code),
            _ => (PostResult.Failed, false, outcome.GetType().Name),
        };
    }

    private async Task<(PostResult Result, bool VoidHold, string? Error)> RecordAsync(ForwardCallRecord call, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var served = call.ServedAt ?? now;
        var postings = UsagePosting.For(null, 0, call.Usage.ProviderCost, 0, 0);
        var usage = call.Usage.Usage;
        var lineage = JsonSerializer.Serialize(new
        {
            request_id = call.RequestId,
            mode = ForwardModes.Name(call.Mode),
            customer_id = call.CustomerId,
            meter_slug = call.MeterSlug,
            upstream = call.Details.Upstream,
            model = call.Details.Model,
            model_price_version = call.Details.ModelPriceVersion,
            usage = new
            {
                input_uncached = usage.InputUncached,
                cache_read = usage.CacheRead,
                cache_write = usage.CacheWrite,
                output = usage.Output,
                input_characters = usage.InputCharacters,
                input_seconds = usage.InputSeconds,
            },
            provider_cost = Money.Format(call.Usage.ProviderCost),
            estimated = call.Usage.Estimated,
            anomaly = call.Anomaly,
            metadata = call.Details.Metadata,
        }, LavaJson.Options);
        await store.RecordGatewayCallAsync(new ForwardStore.GatewayCall(
            call.MerchantId, call.RequestId, Ids.New("txn", now), call.CustomerId, lineage, served, postings), ct);
        return (PostResult.Posted, false, null);
    }

    private static ForwardCallRecord RecordOf(ForwardCall call, BilledUsage usage, string? anomaly, DateTimeOffset? servedAt) => new(
        call.Caller.MerchantId, call.RequestId, call.Mode, call.Token.CustomerId, call.Token.MeterSlug, call.HoldId,
        new ForwardCallDetails(call.Upstream.Host, call.Token.ProviderKey is null ? "managed" : "unmanaged", call.Model,
            call.Upstream.AbsolutePath, call.Upstream.GetLeftPart(UriPartial.Path), call.Price?.Version,
            new Dictionary<string, string>(call.Metadata)),
        usage, anomaly, servedAt, 0);

    // PostgreSQL keeps microseconds: the time written to the record must be the one a retry reads back, or the retry's
    // report would differ from the first (another fingerprint, a 409 instead of a replay).
    private static DateTimeOffset Microseconds(DateTimeOffset at) => new(at.UtcTicks - at.UtcTicks % 10, TimeSpan.Zero);
}
