using System.Globalization;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Lava.Billing.Ledger;

/// <summary>The ledger for finance: accounts, transactions with lineage, entries (and their export), trial balance, verification.</summary>
public static class LedgerApi
{
    public static RouteGroupBuilder MapLedgerApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/ledger").WithTags("Ledger");
        group.MapGet("/accounts", ListAccounts).WithName("ListLedgerAccounts")
            .WithSummary("List accounts with their balances, now or as of an instant");
        group.MapGet("/transactions/{transactionId}", RetrieveTransaction).WithName("RetrieveLedgerTransaction")
            .WithSummary("A ledger transaction with its entries and pricing lineage");
        group.MapGet("/entries", ListEntries).WithName("ListLedgerEntries")
            .WithSummary("List entries in ledger sequence order; also a streamed CSV or NDJSON export");
        group.MapGet("/trial-balance", TrialBalance).WithName("RetrieveTrialBalance")
            .WithSummary("Debits and credits per account (or per kind), now or as of an instant");
        group.MapGet("/verify", Verify).WithName("VerifyLedger")
            .WithSummary("Check every ledger invariant and report what is wrong");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<LedgerAccountResponse>>, ProblemResult>> ListAccounts(
        Caller caller, LedgerReadStore store, string? cursor, string? limit,
        [FromQuery(Name = "customer_id")] string? customerId, string? kind, [FromQuery(Name = "as_of")] string? asOf, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var errors = new Dictionary<string, string[]>();
        if (!Instants.TryParseOptional(asOf, "as_of", TimeSpan.Zero, errors, out var asOfAt)) return Problems.Validation(errors);
        var rows = await store.AccountsAsync(caller.MerchantId,
            new LedgerReadStore.AccountFilter(NullIfEmpty(customerId), NullIfEmpty(kind), asOfAt), page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.AccountId, r => r));
    }

    public static async Task<Results<Ok<LedgerTransactionResponse>, ProblemResult>> RetrieveTransaction(
        Caller caller, string transactionId, LedgerReadStore store, LedgerSequencer sequencer, CancellationToken ct)
    {
        await sequencer.RunOnceAsync(caller.MerchantId, ct);
        return await store.TransactionAsync(caller.MerchantId, transactionId, ct) is { } transaction
            ? TypedResults.Ok(transaction)
            : Problems.NotFound("ledger transaction", transactionId);
    }

    public static async Task<IResult> ListEntries(
        Caller caller, HttpRequest request, LedgerReadStore store, LedgerSequencer sequencer, string? cursor, string? limit,
        [FromQuery(Name = "after_seq")] string? afterSeq, string? from, string? to, string? account,
        [FromQuery(Name = "customer_id")] string? customerId, [FromQuery(Name = "meter_id")] string? meterId, string? kind,
        string? format, CancellationToken ct)
    {
        if (!Exports.TryNegotiate(request, format, out var exportFormat, out var problem)) return problem!;
        // An export runs to the end whatever limit says (docs/exports.md), so a limit meant for pages is not refused.
        if (!Paging.TryRead(cursor, exportFormat == ExportFormat.Json ? limit : null, out var page, out problem)) return problem!;
        var errors = new Dictionary<string, string[]>();
        long after = 0;
        if (page.After is not null && !TryParseSeq(page.After, out after)) errors["cursor"] = ["is not a cursor this API issued"];
        if (!string.IsNullOrEmpty(afterSeq))
        {
            if (page.After is not null) errors["after_seq"] = ["give either cursor or after_seq, not both"];
            else if (!TryParseSeq(afterSeq, out after)) errors["after_seq"] = ["must be a whole number >= 0 (the last seq you have)"];
        }
        Instants.TryParseOptional(from, "from", TimeSpan.Zero, errors, out var fromAt);
        Instants.TryParseOptional(to, "to", TimeSpan.Zero, errors, out var toAt);
        if (errors.Count > 0) return Problems.Validation(errors);

        await sequencer.RunOnceAsync(caller.MerchantId, ct);
        var filter = new LedgerReadStore.EntryFilter(fromAt, toAt, NullIfEmpty(account), NullIfEmpty(customerId), NullIfEmpty(meterId), NullIfEmpty(kind));
        if (exportFormat != ExportFormat.Json) return store.ExportEntries(caller.MerchantId, filter, after, exportFormat);
        var rows = await store.EntriesAsync(caller.MerchantId, filter, after, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.Seq.ToString(CultureInfo.InvariantCulture), r => r));
    }

    public static async Task<Results<Ok<TrialBalanceResponse>, ProblemResult>> TrialBalance(
        Caller caller, LedgerReadStore store, [FromQuery(Name = "as_of")] string? asOf,
        [FromQuery(Name = "group_by")] string? groupBy, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        Instants.TryParseOptional(asOf, "as_of", TimeSpan.Zero, errors, out var asOfAt);
        if (groupBy is not (null or "" or "account" or "kind")) errors["group_by"] = ["must be account or kind"];
        if (errors.Count > 0) return Problems.Validation(errors);
        return TypedResults.Ok(await store.TrialBalanceAsync(caller.MerchantId, asOfAt, groupBy == "kind", ct));
    }

    public static async Task<Ok<VerifyResponse>> Verify(Caller caller, LedgerVerifier verifier, CancellationToken ct) =>
        TypedResults.Ok(await verifier.VerifyAsync(caller.MerchantId, ct));

    private static bool TryParseSeq(string text, out long seq) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out seq);

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
