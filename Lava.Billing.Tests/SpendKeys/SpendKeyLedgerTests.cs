using System.Net;
using System.Text.Json.Nodes;
using Dapper;
using Lava.Billing.SpendKeys;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.SpendKeys;

public class SpendKeyLedgerTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(10);

    private SpendKeyLimits Limits => App.Services.GetRequiredService<SpendKeyLimits>();

    private async Task<(LavaApp.Merchant M, string Id, string Key)> KeyAsync(object body)
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", body);
        Assert.Equal(HttpStatusCode.Created, created.Status);
        return (m, (string)created.Body!["spend_key_id"]!, (string)created.Body["key"]!);
    }

    private async Task<SpendKeyGrant> GrantAsync(string key, decimal worstCase, decimal estimate = 0m) =>
        (await Limits.ReserveAsync(key, new SpendKeyCall("gpt-4o", "openai", worstCase, estimate, Lease), CancellationToken.None)).Grant!;

    private static async Task<JsonNode> ReadAsync(LavaApp.Merchant m, string id) => (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!;

    private async Task<List<(string AccountId, decimal Amount)>> EntriesAsync(string merchantId, string chargeId)
    {
        await using var c = new NpgsqlConnection(App.ConnectionString);
        return (await c.QueryAsync<(string, decimal)>("""
            SELECT e.account_id, e.amount
              FROM ledger_transactions t JOIN entries e USING (merchant_id, transaction_id)
             WHERE t.merchant_id = @MerchantId AND t.kind = 'spend_key_usage' AND t.reference = @ChargeId
             ORDER BY e.amount DESC
            """, new { MerchantId = merchantId, ChargeId = chargeId })).AsList();
    }

    private static async Task AssertLedgerVerifiesAsync(LavaApp.Merchant m)
    {
        var verify = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;
        Assert.True((bool)verify["ok"]!, verify.ToJsonString());
    }

    [Fact]
    public async Task ACapturedCallIsABalancedLedgerTransactionOnTheKeysOwnAccount()
    {
        var (m, id, key) = await KeyAsync(new { name = "ledger", spend_limit = new { amount = "10", cycle = "daily" } });
        var grant = await GrantAsync(key, 5m);
        Assert.Empty(await EntriesAsync(m.MerchantId, grant.ChargeId));
        Assert.True(await Limits.CaptureAsync(grant, 1.25m, estimated: false, CancellationToken.None));

        Assert.Equal([($"{id}:spend_key", 1.25m), ("provider_payable", -1.25m)], await EntriesAsync(m.MerchantId, grant.ChargeId));
        var read = await ReadAsync(m, id);
        Assert.Equal("1.2500000000", (string)read["current_spend"]!);
        Assert.Equal("1.2500000000", (string)read["total_spend"]!);
        var accounts = (await m.Client.GetJsonAsync("/v1/ledger/accounts")).Body!["data"]!.AsArray();
        var account = Assert.Single(accounts, a => (string)a!["account_id"]! == $"{id}:spend_key")!;
        Assert.Equal("1.2500000000", (string)account["balance"]!);
        await AssertLedgerVerifiesAsync(m);
    }

    [Fact]
    public async Task SpendIsReadFromTheLedgerSoAChangedChargeRowMovesNothingAndVerificationFindsIt()
    {
        var (m, id, key) = await KeyAsync(new { name = "drift", spend_limit = new { amount = "2", cycle = "total" } });
        var grant = await GrantAsync(key, 1m);
        Assert.True(await Limits.CaptureAsync(grant, 1m, estimated: false, CancellationToken.None));
        await using (var c = new NpgsqlConnection(App.ConnectionString))
            await c.ExecuteAsync("UPDATE spend_key_charges SET amount = 0 WHERE merchant_id = @MerchantId AND charge_id = @ChargeId",
                new { m.MerchantId, grant.ChargeId });

        Assert.Equal("1.0000000000", (string)(await ReadAsync(m, id))["current_spend"]!);
        // 1 spent by the ledger's account: a second worst case of 1.5 would pass the limit of 2, whatever the charge row says.
        var refused = await Limits.ReserveAsync(key, new SpendKeyCall("gpt-4o", "openai", 1.5m, 0m, Lease), CancellationToken.None);
        Assert.Equal(SpendKeyRefusal.SpendLimitReached, refused.Refusal);
        var verify = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;
        Assert.False((bool)verify["ok"]!);
        var problem = Assert.Single(verify["problems"]!.AsArray(), p => (string)p!["check"]! == "spend_keys_posted")!;
        Assert.Equal("0.0000000000", (string)problem["expected"]!);
        Assert.Equal("1.0000000000", (string)problem["actual"]!);
    }

    [Fact]
    public async Task ACallsSpendCountsInTheCycleThatLetItThroughEvenWhenCapturedInTheNext()
    {
        App.Clock.Set(new DateTimeOffset(2026, 1, 15, 23, 59, 50, TimeSpan.Zero));
        var (m, id, key) = await KeyAsync(new { name = "cycle", spend_limit = new { amount = "5", cycle = "daily" } });
        var grant = await GrantAsync(key, 3m);
        App.Clock.Advance(TimeSpan.FromSeconds(20));
        Assert.True(await Limits.CaptureAsync(grant, 2m, estimated: false, CancellationToken.None));

        var read = await ReadAsync(m, id);
        Assert.Equal("0.0000000000", (string)read["current_spend"]!);
        Assert.Equal("2.0000000000", (string)read["total_spend"]!);
        Assert.NotNull(await GrantAsync(key, 5m));
    }

    [Fact]
    public async Task ACallCutByACrashIsBilledItsLastRecordedUsageFlaggedEstimatedAndItsHoldIsGone()
    {
        var (m, id, key) = await KeyAsync(new { name = "crash", spend_limit = new { amount = "5", cycle = "total" } });
        var grant = await GrantAsync(key, 5m, estimate: 0.2m);
        // The process dies after this note: nothing captures or releases the call.
        App.Clock.Advance(TimeSpan.FromMinutes(5));
        Assert.True(await Limits.ProgressAsync(grant, 0.7m, CancellationToken.None));
        Assert.Equal(SpendKeyRefusal.SpendLimitReached,
            (await Limits.ReserveAsync(key, new SpendKeyCall("gpt-4o", "openai", 1m, 0m, Lease), CancellationToken.None)).Refusal);

        // Its first deadline passed, but the note moved it on: the call is alive as far as anyone can tell.
        App.Clock.Advance(TimeSpan.FromMinutes(9));
        Assert.Equal(0, await Limits.SettleCrashedAsync(100, CancellationToken.None));

        // Past the noted deadline, the settle worker of a restarted instance bills it.
        App.Clock.Advance(TimeSpan.FromMinutes(2));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await HeldAsync(m.MerchantId) > 0 && DateTime.UtcNow < deadline) await Task.Delay(200);
        Assert.Equal(0, await HeldAsync(m.MerchantId));

        var charge = await App.QueryAsync<(string Status, decimal Amount, bool Estimated, string Anomaly)>(
            "SELECT status, amount, estimated, anomaly FROM spend_key_charges WHERE merchant_id = @MerchantId AND charge_id = @ChargeId",
            new { m.MerchantId, grant.ChargeId });
        Assert.Equal(("captured", 0.7m, true, SpendKeyLimits.Recovered), charge);
        Assert.Equal([($"{id}:spend_key", 0.7m), ("provider_payable", -0.7m)], await EntriesAsync(m.MerchantId, grant.ChargeId));
        var lineage = JsonNode.Parse(await App.QueryAsync<string>(
            "SELECT lineage::text FROM ledger_transactions WHERE merchant_id = @MerchantId AND reference = @ChargeId", new { m.MerchantId, grant.ChargeId }))!;
        Assert.True((bool)lineage["estimated"]!);
        Assert.Equal(SpendKeyLimits.Recovered, (string)lineage["anomaly"]!);

        // The call's own capture, had its process come back, posts nothing twice.
        Assert.False(await Limits.CaptureAsync(grant, 3m, estimated: false, CancellationToken.None));
        var read = await ReadAsync(m, id);
        Assert.Equal("0.7000000000", (string)read["current_spend"]!);
        Assert.NotNull(await GrantAsync(key, 4.3m));
        await AssertLedgerVerifiesAsync(m);
    }

    [Fact]
    public async Task ACrashBeforeAnyNoteBillsThePromptsEstimate()
    {
        var (m, _, key) = await KeyAsync(new { name = "early" });
        var grant = await GrantAsync(key, 5m, estimate: 0.2m);
        App.Clock.Advance(Lease + TimeSpan.FromSeconds(1));
        await Limits.SettleCrashedAsync(100, CancellationToken.None);

        Assert.Equal(0, await HeldAsync(m.MerchantId));
        Assert.Equal([(grant.SpendKeyId + ":spend_key", 0.2m), ("provider_payable", -0.2m)], await EntriesAsync(m.MerchantId, grant.ChargeId));
    }

    [Fact]
    public async Task ACallWhoseReleaseCouldNotBeWrittenIsReleasedByTheSettleWorkerNotBilled()
    {
        var (m, id, key) = await KeyAsync(new { name = "unwritten", request_limit = new { count = 1, cycle = "total" } });
        var grant = await GrantAsync(key, 5m, estimate: 0.2m);
        var fault = "refuse_" + grant.ChargeId.ToLowerInvariant();
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            // The database refuses this call's release, as it would while away.
            await admin.ExecuteAsync($"""
                CREATE FUNCTION {fault}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.charge_id = '{grant.ChargeId}' AND NEW.status = 'released' THEN RAISE EXCEPTION 'injected fault'; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER {fault} BEFORE UPDATE ON spend_key_charges FOR EACH ROW EXECUTE FUNCTION {fault}();
                """);
            try
            {
                await Limits.EndAsync(grant, null, estimated: false);
                Assert.Equal(1, await HeldAsync(m.MerchantId));
            }
            finally
            {
                await admin.ExecuteAsync($"DROP TRIGGER {fault} ON spend_key_charges; DROP FUNCTION {fault}();");
            }
        }

        // Its deadline passes before the worker's round: the release kept in memory is written first.
        App.Clock.Advance(Lease + TimeSpan.FromSeconds(1));
        var settler = App.Services.GetServices<IHostedService>().OfType<SpendKeySettler>().Single();
        await settler.RoundAsync(CancellationToken.None);

        Assert.Equal("released", await App.QueryAsync<string>(
            "SELECT status FROM spend_key_charges WHERE merchant_id = @MerchantId AND charge_id = @ChargeId", new { m.MerchantId, grant.ChargeId }));
        Assert.Empty(await EntriesAsync(m.MerchantId, grant.ChargeId));
        var read = await ReadAsync(m, id);
        Assert.Equal(0, (long)read["current_requests"]!);
        Assert.Equal("0.0000000000", (string)read["total_spend"]!);
    }

    /// <summary>The database refuses the release of these charges, as it would a merchant's broken posting.</summary>
    private Task<IAsyncDisposable> RefuseReleaseAsync(params string[] chargeIds) => RefuseAsync("released", chargeIds);

    private async Task<IAsyncDisposable> RefuseAsync(string status, params string[] chargeIds)
    {
        var name = "refuse_" + chargeIds[0].ToLowerInvariant();
        var list = string.Join(", ", chargeIds.Select(c => $"'{c}'"));
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
            await admin.ExecuteAsync($"""
                CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.charge_id IN ({list}) AND NEW.status = '{status}' THEN RAISE EXCEPTION 'injected fault'; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER {name} BEFORE UPDATE ON spend_key_charges FOR EACH ROW EXECUTE FUNCTION {name}();
                """);
        return new Dropped(App.AdminConnectionString, name);
    }

    private sealed class Dropped(string connectionString, string name) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await using var admin = new NpgsqlConnection(connectionString);
            await admin.ExecuteAsync($"DROP TRIGGER {name} ON spend_key_charges; DROP FUNCTION {name}();");
        }
    }

    [Fact]
    public async Task EndsPastAMerchantsShareAreKeptAndOnlyThatMerchantIsOutOfRoom()
    {
        var (a, _, keyA) = await KeyAsync(new { name = "share-a" });
        var (b, _, _) = await KeyAsync(new { name = "share-b" });
        var limits = new SpendKeyLimits(App.Services.GetRequiredService<NpgsqlDataSource>(), App.Services.GetRequiredService<TimeProvider>(),
            new ConfigurationBuilder().AddInMemoryCollection([new("SpendKeys:MaxUnwrittenPerMerchant", "1")]).Build(),
            NullLogger<SpendKeyLimits>.Instance);
        var first = await GrantAsync(keyA, 1m);
        var second = await GrantAsync(keyA, 1m);
        Assert.True(limits.HasRoomFor(a.MerchantId));

        await using (await RefuseReleaseAsync(first.ChargeId, second.ChargeId))
        {
            await limits.EndAsync(first, null, estimated: false);
            // Past the share: the call was already answered, so its end is kept all the same.
            await limits.EndAsync(second, null, estimated: false);
            Assert.Equal(2, limits.UnwrittenOf(a.MerchantId));
            Assert.False(limits.HasRoomFor(a.MerchantId));
            Assert.True(limits.HasRoomFor(b.MerchantId));
        }

        await limits.WriteUnwrittenAsync(CancellationToken.None);
        Assert.Equal(0, limits.UnwrittenOf(a.MerchantId));
        Assert.True(limits.HasRoomFor(a.MerchantId));
        Assert.Equal(2, await App.QueryAsync<long>(
            "SELECT count(*) FROM spend_key_charges WHERE merchant_id = @MerchantId AND status = 'released'", new { a.MerchantId }));
    }

    [Fact]
    public async Task AnEndOneMerchantsDatabaseRowsRefuseHoldsUpNeitherAnotherMerchantsEndsNorFallsToTheCrashRule()
    {
        var (a, _, keyA) = await KeyAsync(new { name = "stuck" });
        var (b, _, keyB) = await KeyAsync(new { name = "behind" });
        var stuck = await GrantAsync(keyA, 5m, estimate: 0.2m);
        var behind = await GrantAsync(keyB, 5m, estimate: 0.2m);
        var settler = App.Services.GetServices<IHostedService>().OfType<SpendKeySettler>().Single();
        await using (await RefuseReleaseAsync(stuck.ChargeId))
        {
            await using (await RefuseReleaseAsync(behind.ChargeId))
            {
                await Limits.EndAsync(stuck, null, estimated: false);
                await Limits.EndAsync(behind, null, estimated: false);
            }

            // Both deadlines pass; merchant A's release is still refused, merchant B's is taken now.
            App.Clock.Advance(Lease + TimeSpan.FromSeconds(1));
            await settler.RoundAsync(CancellationToken.None);
            Assert.Equal("released", await StatusAsync(b.MerchantId, behind.ChargeId));
            // Not billed by the crash rule: its release is still coming.
            Assert.Equal("held", await StatusAsync(a.MerchantId, stuck.ChargeId));
            Assert.Equal(1, Limits.UnwrittenOf(a.MerchantId));
        }

        await settler.RoundAsync(CancellationToken.None);
        Assert.Equal("released", await StatusAsync(a.MerchantId, stuck.ChargeId));
        Assert.Empty(await EntriesAsync(a.MerchantId, stuck.ChargeId));
    }

    [Fact]
    public async Task ACrashedCallWhoseCaptureItsRowsRefuseHoldsUpNoOtherMerchantsCrashedCalls()
    {
        var (a, _, keyA) = await KeyAsync(new { name = "refused" });
        var (b, _, keyB) = await KeyAsync(new { name = "next" });
        var refused = await GrantAsync(keyA, 5m, estimate: 0.2m);
        var next = await GrantAsync(keyB, 5m, estimate: 0.3m);
        App.Clock.Advance(Lease + TimeSpan.FromSeconds(1));
        await using (await RefuseAsync("captured", refused.ChargeId))
        {
            // Merchant A's charge is due first and its capture fails; merchant B's is settled in the same round.
            await Limits.SettleCrashedAsync(100, CancellationToken.None);
            Assert.Equal("held", await StatusAsync(a.MerchantId, refused.ChargeId));
            Assert.Equal("captured", await StatusAsync(b.MerchantId, next.ChargeId));
            Assert.Equal([(next.SpendKeyId + ":spend_key", 0.3m), ("provider_payable", -0.3m)], await EntriesAsync(b.MerchantId, next.ChargeId));
        }

        await Limits.SettleCrashedAsync(100, CancellationToken.None);
        Assert.Equal("captured", await StatusAsync(a.MerchantId, refused.ChargeId));
        Assert.Equal([(refused.SpendKeyId + ":spend_key", 0.2m), ("provider_payable", -0.2m)], await EntriesAsync(a.MerchantId, refused.ChargeId));
        await AssertLedgerVerifiesAsync(a);
    }

    private Task<string> StatusAsync(string merchantId, string chargeId) =>
        App.QueryAsync<string>("SELECT status FROM spend_key_charges WHERE merchant_id = @MerchantId AND charge_id = @ChargeId",
            new { MerchantId = merchantId, ChargeId = chargeId });

    private Task<long> HeldAsync(string merchantId) =>
        App.QueryAsync<long>("SELECT count(*) FROM spend_key_charges WHERE merchant_id = @MerchantId AND status = 'held'", new { MerchantId = merchantId });
}
