using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lava.Billing.Ledger;

/// <summary>An account and its balance (signed: debit positive, credit negative) as of <c>as_of</c> or now.</summary>
public sealed record LedgerAccountResponse(
    string AccountId, string Kind, string Type, string? CustomerId, string Currency, string Balance, DateTime CreatedAt);

/// <summary>
/// One ledger entry with its transaction's context. The same fields, in this order, are the columns of the CSV and
/// NDJSON exports (docs/exports.md).
/// </summary>
public sealed record LedgerEntryResponse(
    long Seq, long EntryId, DateTime CreatedAt, DateTime EffectiveAt, string TransactionId, string TransactionKind,
    string Reference, string? CustomerId, string? MeterId, long? PriceVersion, string AccountId, string AccountKind,
    string AccountType, string Currency, string Amount, string Debit, string Credit);

/// <summary>A ledger transaction with its entries and, for priced usage, its lineage (request, meter, price version,
/// quantities, tier lines) exactly as it was recorded when posted.</summary>
public sealed record LedgerTransactionResponse(
    string TransactionId, string Kind, string Reference, string? CustomerId, string? MeterId, int? PriceVersion,
    DateTime EffectiveAt, DateTime CreatedAt, JsonElement Lineage, IReadOnlyList<LedgerTransactionEntry> Entries);

public sealed record LedgerTransactionEntry(long? Seq, long EntryId, string AccountId, string AccountType, string Currency, string Amount);

/// <summary>One trial-balance line: an account, or with <c>group_by=kind</c> every account of a kind.</summary>
public sealed record TrialBalanceLine(
    string? AccountId, string Kind, string Type, string? CustomerId, string Currency, string Debits, string Credits, string Balance);

public sealed record TrialBalanceTotal(string Currency, string Debits, string Credits, string Balance);

public sealed record TrialBalanceResponse(
    DateTime? AsOf, string GroupBy, IReadOnlyList<TrialBalanceLine> Lines, IReadOnlyList<TrialBalanceTotal> Totals);

/// <summary>One broken invariant. The optional members say where.</summary>
public sealed record VerifyProblem(
    string Check, string Detail,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? TransactionId = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? AccountId = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? RequestId = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? Seq = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Expected = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Actual = null);

public sealed record VerifyResponse(bool Ok, DateTime CheckedAt, IReadOnlyList<string> Checks, IReadOnlyList<VerifyProblem> Problems);
