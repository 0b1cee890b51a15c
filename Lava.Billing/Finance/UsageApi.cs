using System.Globalization;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Lava.Billing.Finance;

public static class UsageApi
{
    /// <summary>The longest range one query may cover: a year, leap day included.</summary>
    public static readonly TimeSpan MaxRange = TimeSpan.FromDays(366);

    public static RouteGroupBuilder MapUsageApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/usage").WithTags("Usage");
        group.MapGet("/", Retrieve).WithName("RetrieveUsage")
            .WithSummary("Usage per day (days in the offset of start), zero-filled, with totals");
        return group;
    }

    public static async Task<Results<Ok<RestUsage>, ProblemResult>> Retrieve(
        Caller caller, UsageStore store, TimeProvider clock, string? start, string? end,
        [FromQuery(Name = "customer_id")] string? customerId, [FromQuery(Name = "meter_id")] string? meterId,
        [FromQuery(Name = "metadata_filters")] string? metadataFilters, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        var from = default(DateTimeOffset);
        if (string.IsNullOrEmpty(start)) errors["start"] = ["is required"];
        else if (!Instants.TryParse(start, TimeSpan.Zero, out from)) errors["start"] = [Instants.Expected];
        // A bare end ("2026-04-01") is midnight in start's offset, so the last day is whole.
        Instants.TryParseOptional(end, "end", from.Offset, errors, out var endAt);
        if (!MetadataFilters.TryParse(metadataFilters, out var metadataJson))
            errors["metadata_filters"] = ["must be a JSON array of [key, value] string pairs, e.g. [[\"team\",\"a\"]]"];
        if (errors.Count > 0) return Problems.Validation(errors);

        var to = (endAt ?? clock.GetUtcNow()).ToOffset(from.Offset);
        if (to <= from) return Problems.Validation(new Dictionary<string, string[]> { ["end"] = ["must be after start"] });
        if (to - from > MaxRange) return Problems.Validation(new Dictionary<string, string[]> { ["end"] = ["must be at most 366 days after start"] });

        var days = (await store.DaysAsync(caller.MerchantId, from, to,
            new UsageStore.Filter(NullIfEmpty(customerId), NullIfEmpty(meterId), metadataJson), ct))
            .ToDictionary(d => d.Date);
        return TypedResults.Ok(Zerofilled(from, to, days));
    }

    /// <summary>One item per calendar day the range touches; the first and last are clipped to the range.</summary>
    private static RestUsage Zerofilled(DateTimeOffset from, DateTimeOffset to, Dictionary<DateOnly, UsageStore.Day> days)
    {
        var items = new List<UsageItem>();
        long requests = 0, tokens = 0;
        var zero = Money.Format(0m);
        for (var day = DateOnly.FromDateTime(from.DateTime); ; day = day.AddDays(1))
        {
            var midnight = new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), from.Offset);
            if (midnight >= to) break;
            var next = midnight.AddDays(1);
            var d = days.GetValueOrDefault(day);
            items.Add(new UsageItem(day.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                midnight < from ? from : midnight, next > to ? to : next,
                d?.TotalRequests ?? 0, d?.TotalUsageTokens ?? 0, d?.TotalCost ?? zero, d?.TotalCharge ?? zero));
            requests += d?.TotalRequests ?? 0;
            tokens += d?.TotalUsageTokens ?? 0;
        }
        var any = days.Values.FirstOrDefault();
        return new RestUsage(items, new UsageTotals(requests, tokens, any?.RangeCost ?? zero, any?.RangeCharge ?? zero));
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
