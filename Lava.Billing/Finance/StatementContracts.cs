namespace Lava.Billing.Finance;

/// <summary>
/// The statement's top-level members, written ahead of its <c>movements</c> (docs/ledger.md, "Statements"). Balances
/// are signed like every ledger balance: debit positive, credit negative.
/// </summary>
public sealed record StatementAccount(string AccountId, string Kind, string Type, string Currency,
    string OpeningBalance, string Debits, string Credits, string ClosingBalance);

/// <summary>The customer's position in their own terms: credits they still have, and what they owe.</summary>
public sealed record StatementPosition(string CreditsRemaining, string Receivable);

public sealed record StatementMovement(long? Seq, long EntryId, DateTime CreatedAt, DateTime EffectiveAt, string TransactionId,
    string TransactionKind, string Reference, string? MeterId, string AccountId, string Amount, string BalanceAfter);
