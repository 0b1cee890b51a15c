using System.Text.Json;
using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Plans;

/// <summary>SDK <c>CreatePlanParams</c>. Amounts are decimal strings (numbers are accepted too).</summary>
public sealed record CreatePlanParams
{
    public string? Name { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? PeriodAmount { get; init; }
    public string? BillingInterval { get; init; }
    public string? RolloverType { get; init; }
    public string? BundleRolloverType { get; init; }
    /// <summary>Defaults to period_amount: the whole fee becomes credit.</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? IncludedCredit { get; init; }
    /// <summary>Index into credit_bundles; the response names the bundle by id.</summary>
    public int? DefaultAutoTopUpBundleIndex { get; init; }
    public List<string>? MeterIds { get; init; }
    public List<CreditBundleParams>? CreditBundles { get; init; }
}

public sealed record CreditBundleParams
{
    public string? Name { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Cost { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? CreditAmount { get; init; }
}

/// <summary>
/// SDK <c>UpdatePlanParams</c>: an absent member leaves the field alone. <c>period_amount</c> and
/// <c>billing_interval</c> are read only to refuse them: subscriptions were sold on those terms.
/// </summary>
public sealed record UpdatePlanParams
{
    public string? Name { get; init; }
    public string? RolloverType { get; init; }
    public string? BundleRolloverType { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? IncludedCredit { get; init; }
    /// <summary>An explicit null clears the default.</summary>
    public Optional<string> DefaultAutoTopUpBundleId { get; init; }
    /// <summary>Replaces the linked set.</summary>
    public List<string>? MeterIds { get; init; }
    public List<CreditBundleChange>? CreditBundles { get; init; }
    public JsonElement? PeriodAmount { get; init; }
    public JsonElement? BillingInterval { get; init; }
}

/// <summary>With an id: change (or, with is_deleted, delete) that bundle of the plan; without: add one.</summary>
public sealed record CreditBundleChange
{
    public string? CreditBundleId { get; init; }
    public string? Name { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Cost { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? CreditAmount { get; init; }
    public bool? IsDeleted { get; init; }
}

public sealed record RestPlanLinkedMeter(string MeterId, string Name);

public sealed record RestPlanCreditBundle(string CreditBundleId, string Name, string Cost, string CreditAmount);

/// <summary>SDK <c>RestPlan</c>.</summary>
public sealed record RestPlan(
    string PlanId,
    string MerchantId,
    string Name,
    string PeriodAmount,
    string IncludedCredit,
    string BillingInterval,
    string RolloverType,
    string BundleRolloverType,
    string? DefaultAutoTopUpBundleId,
    IReadOnlyList<RestPlanLinkedMeter> LinkedMeters,
    IReadOnlyList<RestPlanCreditBundle> CreditBundles,
    DateTime CreatedAt);

/// <summary>SDK <c>RestCreditBundle</c>.</summary>
public sealed record RestCreditBundle(string CreditBundleId, string PlanId, string Name, string Cost, string CreditAmount, DateTime CreatedAt);

/// <summary>What subscriptions need to know about a live plan.</summary>
public sealed record PlanTerms(string PlanId, string Name, decimal PeriodAmount, decimal IncludedCredit, string BillingInterval,
    string RolloverType, string BundleRolloverType, string? DefaultAutoTopUpBundleId, IReadOnlyList<string> MeterIds);

/// <summary>What a bundle purchase or auto top-up needs to know about a live bundle.</summary>
public sealed record BundleTerms(string CreditBundleId, string PlanId, string Name, decimal Cost, decimal CreditAmount);

public static class PlanVocabulary
{
    public static readonly string[] BillingIntervals = ["day", "week", "month", "year"];
    public static readonly string[] RolloverTypes = ["full", "none"];
    public const string NoRollover = "none";
}
