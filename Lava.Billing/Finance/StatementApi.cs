using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;

namespace Lava.Billing.Finance;

public static class StatementApi
{
    public static RouteGroupBuilder MapStatementApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/customers").WithTags("Statements");
        group.MapGet("/{customerId}/statement", Retrieve).WithName("RetrieveCustomerStatement")
            .WithSummary("Opening balance, every movement and closing balance of a customer's accounts over (from, to]");
        return group;
    }

    public static async Task<IResult> Retrieve(Caller caller, string customerId, string? from, string? to,
        StatementStore store, LedgerSequencer sequencer, TimeProvider clock, CancellationToken ct)
    {
        var errors = new Dictionary<string, string[]>();
        Instants.TryParseOptional(from, "from", TimeSpan.Zero, errors, out var fromAt);
        Instants.TryParseOptional(to, "to", TimeSpan.Zero, errors, out var toAt);
        if (fromAt is { } f && toAt is { } t && t < f) errors["to"] = ["must not be before from"];
        if (errors.Count > 0) return Problems.Validation(errors);
        if (!await store.CustomerExistsAsync(caller.MerchantId, customerId, ct)) return Problems.NotFound("customer", customerId);

        await sequencer.RunOnceAsync(caller.MerchantId, ct);
        return new StatementResult(store, caller.MerchantId, customerId, fromAt, toAt, clock.GetUtcNow().UtcDateTime);
    }

    /// <summary>Written as it is read: a customer with a million movements costs the same memory as one with ten.</summary>
    private sealed class StatementResult(StatementStore store, string merchantId, string customerId,
        DateTimeOffset? from, DateTimeOffset? to, DateTime generatedAt) : IResult
    {
        public Task ExecuteAsync(HttpContext http) =>
            http.RequestServices.GetRequiredService<ExportLimits>().RunAsync(http, ct => WriteAsync(http, ct));

        private async Task WriteAsync(HttpContext http, CancellationToken ct)
        {
            http.Response.ContentType = "application/json; charset=utf-8";
            await store.ReadAsync(merchantId, customerId, from, to, async (accounts, movements) =>
            {
                // On the body's pipe, a flush of the writer only hands bytes over; the pipe's flush sends them.
                var pipe = http.Response.BodyWriter;
                await using var json = new Utf8JsonWriter(pipe);
                json.WriteStartObject();
                json.WriteString("customer_id", customerId);
                WriteInstant(json, "from", from);
                WriteInstant(json, "to", to);
                json.WriteString("generated_at", generatedAt);
                var closing = new Dictionary<string, decimal>();
                json.WritePropertyName("accounts");
                json.WriteStartArray();
                foreach (var a in accounts)
                {
                    closing[a.AccountId] = a.OpeningBalance + a.Debits - a.Credits;
                    JsonSerializer.Serialize(json, new StatementAccount(a.AccountId, a.Kind, a.Type, a.Currency, Money.Format(a.OpeningBalance),
                        Money.Format(a.Debits), Money.Format(a.Credits), Money.Format(closing[a.AccountId])), LavaJson.Options);
                }
                json.WriteEndArray();
                json.WritePropertyName("opening");
                JsonSerializer.Serialize(json, Position(accounts.ToDictionary(a => a.AccountId, a => a.OpeningBalance)), LavaJson.Options);
                json.WritePropertyName("closing");
                JsonSerializer.Serialize(json, Position(closing), LavaJson.Options);

                var running = accounts.ToDictionary(a => a.AccountId, a => a.OpeningBalance);
                json.WritePropertyName("movements");
                json.WriteStartArray();
                var rows = 0;
                await foreach (var m in movements.WithCancellation(ct))
                {
                    running[m.AccountId] += m.Amount;
                    JsonSerializer.Serialize(json, new StatementMovement(m.Seq, m.EntryId, m.CreatedAt, m.EffectiveAt, m.TransactionId,
                        m.TransactionKind, m.Reference, m.MeterId, m.AccountId, Money.Format(m.Amount), Money.Format(running[m.AccountId])), LavaJson.Options);
                    if (++rows % Exports.FlushEveryRows == 0)
                    {
                        json.Flush();
                        await pipe.FlushAsync(ct);
                    }
                }
                json.WriteEndArray();
                json.WriteEndObject();
                json.Flush();
                await pipe.FlushAsync(ct);
            }, ct);
        }

        private StatementPosition Position(Dictionary<string, decimal> balances)
        {
            decimal Balance(string accountId) => balances.GetValueOrDefault(accountId);
            // Credit accounts are credit-normal: what the customer still has is the negated balance (docs/ledger.md).
            return new StatementPosition(
                Money.Format(-(Balance(LedgerAccounts.CreditsCycle(customerId)) + Balance(LedgerAccounts.CreditsBundle(customerId)))),
                Money.Format(Balance(LedgerAccounts.Receivable(customerId))));
        }

        private static void WriteInstant(Utf8JsonWriter json, string name, DateTimeOffset? value)
        {
            if (value is { } v) json.WriteString(name, v.UtcDateTime);
            else json.WriteNull(name);
        }
    }
}
