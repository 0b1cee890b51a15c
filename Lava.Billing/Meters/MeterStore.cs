using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Pricing;
using Npgsql;

namespace Lava.Billing.Meters;

/// <summary>
/// A live meter with its current price. Properties rather than a positional record: Npgsql types numeric[] columns as
/// System.Array, which Dapper cannot match to a constructor parameter.
/// </summary>
public sealed record MeterRow
{
    public required string MeterId { get; init; }
    public required string MeterSlug { get; init; }
    public required string Name { get; init; }
    public required string RateType { get; init; }
    public required string TierType { get; init; }
    public required int PriceVersion { get; init; }
    public required DateTime CreatedAt { get; init; }
    public required DateTime UpdatedAt { get; init; }
    public required decimal[] TierStarts { get; init; }
    public required decimal[] TierRates { get; init; }

    public IReadOnlyList<Tier> Tiers => TierStarts.Zip(TierRates, (start, rate) => new Tier(start, rate)).ToList();
}

public sealed record NewMeter(string Name, string? MeterSlug, RateType RateType, TierType TierType, IReadOnlyList<Tier> Tiers);

/// <summary>
/// What a PATCH asks for. <see cref="Immutables"/> holds the immutable fields the caller sent, by wire name, with the
/// value sent (null when it was not a string): sending the current value is harmless, anything else is refused.
/// </summary>
public sealed record MeterChanges(string? Name, IReadOnlyList<Tier>? Tiers, IReadOnlyList<(string Field, string? Value)> Immutables);

public abstract record MeterUpdate
{
    public sealed record Updated(MeterRow Meter) : MeterUpdate;
    public sealed record NotFound : MeterUpdate;
    public sealed record ImmutableField(string Field) : MeterUpdate;
}

public sealed partial class MeterStore(NpgsqlDataSource db)
{
    private const int SlugCandidatesPerQuery = 50;
    private const int MaxSlugRaces = 5;

    // One statement: the meter and its version-1 price exist together or not at all.
    private const string InsertMeter = """
        WITH meter AS (
            INSERT INTO meters (merchant_id, meter_id, meter_slug, name, rate_type, tier_type)
            VALUES (@MerchantId, @MeterId, @MeterSlug, @Name, @RateType, @TierType)
            RETURNING *
        ), price AS (
            INSERT INTO meter_prices (merchant_id, meter_id, version, tier_starts, tier_rates)
            SELECT merchant_id, meter_id, current_version, @TierStarts, @TierRates FROM meter
            RETURNING tier_starts, tier_rates
        )
        SELECT m.meter_id, m.meter_slug, m.name, m.rate_type, m.tier_type, m.current_version AS price_version,
               m.created_at, m.updated_at, p.tier_starts, p.tier_rates
          FROM meter m, price p
        """;

    /// <summary>
    /// Creates a meter with its first price. Null when the caller's own slug is taken by a live meter; a slug generated
    /// from the name instead moves on to the next free "-2", "-3"… even when a concurrent create takes it first.
    /// </summary>
    public async Task<MeterRow?> CreateAsync(string merchantId, NewMeter meter, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        for (var race = 0; ; race++)
        {
            var slug = meter.MeterSlug ?? await FreeSlugAsync(connection, merchantId, MeterSlugs.FromName(meter.Name), ct);
            try
            {
                return await connection.QuerySingleAsync<MeterRow>(new CommandDefinition(InsertMeter, new
                {
                    MerchantId = merchantId, MeterId = Ids.New("mtr"), MeterSlug = slug, meter.Name,
                    RateType = PriceCalculator.RateTypeName(meter.RateType), TierType = PriceCalculator.TierTypeName(meter.TierType),
                    TierStarts = meter.Tiers.Select(t => t.Start).ToArray(), TierRates = meter.Tiers.Select(t => t.Rate).ToArray(),
                }, cancellationToken: ct));
            }
            catch (PostgresException e) when (e is { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "meters_slug" })
            {
                if (meter.MeterSlug is not null) return null;
                if (race == MaxSlugRaces) throw;
            }
        }
    }

    private const string SelectTakenSlugs = """
        SELECT meter_slug
          FROM meters
         WHERE merchant_id = @MerchantId
           AND deleted_at IS NULL
           AND meter_slug = ANY(@Candidates)
        """;

    private static async Task<string> FreeSlugAsync(NpgsqlConnection connection, string merchantId, string stem, CancellationToken ct)
    {
        for (var first = 1; ; first += SlugCandidatesPerQuery)
        {
            var candidates = Enumerable.Range(first, SlugCandidatesPerQuery).Select(n => MeterSlugs.Candidate(stem, n)).ToArray();
            var taken = (await connection.QueryAsync<string>(new CommandDefinition(SelectTakenSlugs,
                new { MerchantId = merchantId, Candidates = candidates }, cancellationToken: ct))).ToHashSet();
            var free = candidates.FirstOrDefault(c => !taken.Contains(c));
            if (free is not null) return free;
        }
    }

    private const string SelectPage = """
        SELECT m.meter_id, m.meter_slug, m.name, m.rate_type, m.tier_type, m.current_version AS price_version,
               m.created_at, m.updated_at, p.tier_starts, p.tier_rates
          FROM meters m
          JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id AND p.version = m.current_version
         WHERE m.merchant_id = @MerchantId
           AND m.deleted_at IS NULL
           AND m.meter_id > @After
         ORDER BY m.meter_id
         LIMIT @Take
        """;

    public async Task<List<MeterRow>> ListAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<MeterRow>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.AsList();
    }

    // Ids are upper case and slugs lower case, so a key matches at most one live meter; the ORDER BY only makes that explicit.
    private const string SelectLive = """
        SELECT m.meter_id, m.meter_slug, m.name, m.rate_type, m.tier_type, m.current_version AS price_version,
               m.created_at, m.updated_at, p.tier_starts, p.tier_rates
          FROM meters m
          JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id AND p.version = m.current_version
         WHERE m.merchant_id = @MerchantId
           AND m.deleted_at IS NULL
           AND (m.meter_id = @Key OR m.meter_slug = @Key)
         ORDER BY m.meter_id = @Key DESC
         LIMIT 1
        """;

    /// <summary>A live meter by its id or its slug.</summary>
    public async Task<MeterRow?> FindAsync(string merchantId, string idOrSlug, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<MeterRow>(new CommandDefinition(SelectLive,
            new { MerchantId = merchantId, Key = idOrSlug }, cancellationToken: ct));
    }

    private const string LockLive = """
        SELECT meter_id
          FROM meters
         WHERE merchant_id = @MerchantId
           AND deleted_at IS NULL
           AND (meter_id = @Key OR meter_slug = @Key)
         ORDER BY meter_id = @Key DESC
         LIMIT 1
           FOR UPDATE
        """;

    /// <summary>Locks a live meter's row until the transaction ends; its id, or null when there is no such meter.</summary>
    private static Task<string?> LockLiveAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string idOrSlug, CancellationToken ct) =>
        connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(LockLive,
            new { MerchantId = merchantId, Key = idOrSlug }, tx, cancellationToken: ct));

    private const string InsertPrice = """
        INSERT INTO meter_prices (merchant_id, meter_id, version, tier_starts, tier_rates)
        VALUES (@MerchantId, @MeterId, @Version, @TierStarts, @TierRates)
        """;

    private const string UpdateMeter = """
        UPDATE meters
           SET name            = @Name,
               current_version = @Version,
               updated_at      = now()
         WHERE merchant_id = @MerchantId
           AND meter_id = @MeterId
        RETURNING updated_at
        """;

    /// <summary>
    /// Renames and/or reprices a live meter. New tiers become the next price version; the meter row is locked first,
    /// so concurrent updates queue and take versions n+1, n+2… Tiers equal to the current ones make no new version.
    /// </summary>
    public async Task<MeterUpdate> UpdateAsync(string merchantId, string idOrSlug, MeterChanges changes, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        // Lock first, read after, in two statements: a locking read that joins meter_prices would re-check the join
        // against its old snapshot once the lock is granted, and miss the version a concurrent update just added.
        var meterId = await LockLiveAsync(connection, tx, merchantId, idOrSlug, ct);
        if (meterId is null) return new MeterUpdate.NotFound();
        var current = await connection.QuerySingleAsync<MeterRow>(new CommandDefinition(SelectLive,
            new { MerchantId = merchantId, Key = meterId }, tx, cancellationToken: ct));

        foreach (var (field, value) in changes.Immutables)
        {
            var now = field switch { "meter_slug" => current.MeterSlug, "rate_type" => current.RateType, _ => current.TierType };
            if (value != now) return new MeterUpdate.ImmutableField(field);
        }

        var name = changes.Name ?? current.Name;
        var repriced = changes.Tiers is { } tiers && !tiers.SequenceEqual(current.Tiers);
        if (!repriced && name == current.Name)
        {
            await tx.CommitAsync(ct);
            return new MeterUpdate.Updated(current);
        }

        var version = repriced ? current.PriceVersion + 1 : current.PriceVersion;
        var updated = current with { Name = name, PriceVersion = version };
        if (repriced)
        {
            updated = updated with
            {
                TierStarts = changes.Tiers!.Select(t => t.Start).ToArray(),
                TierRates = changes.Tiers!.Select(t => t.Rate).ToArray(),
            };
            await connection.ExecuteAsync(new CommandDefinition(InsertPrice, new
            {
                MerchantId = merchantId, current.MeterId, Version = version, updated.TierStarts, updated.TierRates,
            }, tx, cancellationToken: ct));
        }
        var updatedAt = await connection.QuerySingleAsync<DateTime>(new CommandDefinition(UpdateMeter,
            new { MerchantId = merchantId, current.MeterId, Name = name, Version = version }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return new MeterUpdate.Updated(updated with { UpdatedAt = updatedAt });
    }

    public enum DeleteOutcome { NotFound, HardDeleted, SoftDeleted, LinkedToPlans }

    private const string SoftDelete = """
        UPDATE meters SET deleted_at = now(), updated_at = now() WHERE merchant_id = @MerchantId AND meter_id = @MeterId
        """;

    // meter_prices rows go with it (ON DELETE CASCADE).
    private const string HardDelete = """
        DELETE FROM meters WHERE merchant_id = @MerchantId AND meter_id = @MeterId
        """;

    private const string SelectLinkingPlans = """
        SELECT pm.plan_id
          FROM plan_meters pm
          JOIN plans p ON p.merchant_id = pm.merchant_id AND p.plan_id = pm.plan_id
         WHERE pm.merchant_id = @MerchantId
           AND pm.meter_id = @MeterId
           AND p.deleted_at IS NULL
         ORDER BY pm.plan_id
         LIMIT 10
        """;

    /// <summary>
    /// A meter with usage is kept, soft-deleted (its prices stay for the ledger's lineage; its slug is freed); a meter
    /// never used is removed with its prices. A meter a live plan links is refused (with those plans' ids) unless
    /// <paramref name="force"/>: deleting it would take it off the plan without the plan ever being edited.
    /// </summary>
    public async Task<(DeleteOutcome Outcome, string? MeterId, IReadOnlyList<string> PlanIds)> DeleteAsync(
        string merchantId, string idOrSlug, bool force, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var meterId = await LockLiveAsync(connection, tx, merchantId, idOrSlug, ct);
        if (meterId is null) return (DeleteOutcome.NotFound, null, []);

        var args = new { MerchantId = merchantId, MeterId = meterId };
        if (!force)
        {
            var plans = (await connection.QueryAsync<string>(new CommandDefinition(SelectLinkingPlans, args, tx, cancellationToken: ct))).ToList();
            if (plans.Count > 0) return (DeleteOutcome.LinkedToPlans, meterId, plans);
        }
        var used = await HasUsageAsync(connection, tx, merchantId, meterId, ct);
        await connection.ExecuteAsync(new CommandDefinition(used ? SoftDelete : HardDelete, args, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return (used ? DeleteOutcome.SoftDeleted : DeleteOutcome.HardDeleted, meterId, []);
    }

    // Every priced report posts a ledger transaction carrying its meter, so the ledger is where usage shows.
    // Usage, or a plan that links the meter: either keeps the row (plan_meters has a foreign key to it).
    private const string SelectHasUsage = """
        SELECT EXISTS (SELECT 1 FROM ledger_transactions WHERE merchant_id = @MerchantId AND meter_id = @MeterId)
            OR EXISTS (SELECT 1 FROM plan_meters WHERE merchant_id = @MerchantId AND meter_id = @MeterId)
        """;

    public static Task<bool> HasUsageAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string merchantId, string meterId, CancellationToken ct) =>
        connection.ExecuteScalarAsync<bool>(new CommandDefinition(SelectHasUsage,
            new { MerchantId = merchantId, MeterId = meterId }, tx, cancellationToken: ct));
}
