using System.Net;
using System.Text;
using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Finance;

/// <summary>
/// A small ledger and a few reports with fixed ids, times and awkward values, exported as CSV and NDJSON: the bytes
/// must stay exactly these (quoting, escaping, decimal places, timestamps, nulls), whatever writes them.
/// </summary>
public class ExportGoldenTests(LavaApp app) : ApiTest(app)
{
    /// <summary>Written straight into the tables (as superuser, triggers off), already numbered, seq not in entry_id order.</summary>
    private async Task SeedLedgerAsync(string merchantId)
    {
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync("""
            SET session_replication_role = replica;
            INSERT INTO accounts (merchant_id, account_id, kind, type, customer_id, currency, cached) VALUES
                (@m, 'cus_golden:credits_cycle', 'credits_cycle', 'liability', 'cus_golden', 'USD', true),
                (@m, 'usage_revenue', 'usage_revenue', 'revenue', NULL, 'USD', false),
                (@m, 'provider_cost', 'provider_cost', 'expense', NULL, 'USD', false),
                (@m, 'provider_payable', 'provider_payable', 'liability', NULL, 'USD', false),
                (@m, 'payments_clearing', 'payments_clearing', 'asset', NULL, 'USD', false)
            ON CONFLICT DO NOTHING;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, meter_id, price_version,
                                             effective_at, created_at) VALUES
                (@m, 'txn_golden_1', 'usage', 'req_golden,"1"', 'cus_golden', 'mtr_golden "q"', 3,
                 '2026-03-01 08:15:00.123456+00', '2026-03-01 08:15:01.000001+00'),
                (@m, 'txn_golden_2', 'grant', E'  Zürich\r\n東京 🚀 ', 'cus_golden', NULL, NULL,
                 '2026-03-02 00:00:00+00', '2026-03-02 00:00:00+00'),
                (@m, 'txn_golden_3', 'adjustment', '=SUM(A1:A2)', NULL, NULL, NULL,
                 '2025-12-31 23:59:59.999999+00', '2026-03-03 12:00:00.5+00');
            INSERT INTO entries (merchant_id, entry_id, transaction_id, account_id, currency, amount, created_at)
            OVERRIDING SYSTEM VALUE VALUES
                (@m, 9001, 'txn_golden_1', 'cus_golden:credits_cycle', 'USD', 1.25, '2026-03-01 08:15:01.000001+00'),
                (@m, 9002, 'txn_golden_1', 'usage_revenue', 'USD', -1.25, '2026-03-01 08:15:01.000001+00'),
                (@m, 9003, 'txn_golden_1', 'provider_cost', 'USD', 0.0000000001, '2026-03-01 08:15:01.000001+00'),
                (@m, 9004, 'txn_golden_1', 'provider_payable', 'USD', -0.0000000001, '2026-03-01 08:15:01.000001+00'),
                (@m, 9005, 'txn_golden_2', 'payments_clearing', 'USD', 123456789012345678.0123456789, '2026-03-02 00:00:00+00'),
                (@m, 9006, 'txn_golden_2', 'cus_golden:credits_cycle', 'USD', -123456789012345678.0123456789, '2026-03-02 00:00:00+00'),
                (@m, 9007, 'txn_golden_3', 'provider_cost', 'USD', 5, '2026-03-03 12:00:00.5+00'),
                (@m, 9008, 'txn_golden_3', 'provider_payable', 'USD', -5, '2026-03-03 12:00:00.5+00');
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids) VALUES
                (@m, 1, 'txn_golden_1', '{9002, 9001, 9004, 9003}'), (@m, 5, 'txn_golden_2', '{9005, 9006}'),
                (@m, 7, 'txn_golden_3', '{9008, 9007}');
            SET session_replication_role = origin;
            """, new { m = merchantId });
    }

    private async Task SeedRequestsAsync(string merchantId)
    {
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync("""
            SET session_replication_role = replica;
            INSERT INTO requests (merchant_id, request_id, seq, fingerprint, mode, customer_id, meter_id, price_version,
                                  input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds,
                                  cost, charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response)
            OVERRIDING SYSTEM VALUE VALUES
                (@m, 'req_golden_1', 1, '\x00', 'customer', 'cus_golden', 'mtr_golden', 3, 1234, 0, 0, 0, 1.5, 0.000001,
                 NULL, 0.0061700000, '{}', '2026-03-01 08:15:00.123456+00', '2026-03-01 08:15:01+00', 'txn_golden_1', 201, '{}'),
                (@m, 'r,1 "quoted"', 2, '\x00', 'meter_only', NULL, 'mtr_golden', 3, 0, 9223372036854775807, 7, 0, 0, 12345678901234.000000,
                 0.3, 1000000000000000, '{"note": "a, b and \"c\"\r\nsecond", "city": "Zürich — 東京 🚀", "html": "<b>&</b> it''s", "n": 1.50, "deep": {"k": [1, true, null]}}',
                 '2026-03-02 00:00:00+00', '2026-03-02 00:00:00.000001+00', 'txn_golden_2', 201, '{}'),
                (@m, '  padded  ', 3, '\x00', 'billing_disabled', 'cus_golden', 'mtr_golden', 3, 0, 0, 0, 0, 0, 0,
                 0, 0, '{"formula": "=SUM(A1:A2)"}', '2026-03-03 12:00:00.5+00', '2026-03-03 12:00:00.5+00', 'txn_golden_3', 201, '{}');
            SET session_replication_role = origin;
            """, new { m = merchantId });
    }

    private static async Task<string> ExportAsync(HttpClient client, string path)
    {
        var response = await client.GetAsync(path);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, Encoding.UTF8.GetString(bytes));
        // Decoded strictly, so a stray byte fails here rather than comparing as U+FFFD.
        return new UTF8Encoding(false, true).GetString(bytes);
    }

    private static readonly string LedgerCsv = string.Concat(
        "seq,entry_id,created_at,effective_at,transaction_id,transaction_kind,reference,customer_id,meter_id,price_version,account_id,account_kind,account_type,currency,amount,debit,credit\r\n",
        "1,9002,2026-03-01T08:15:01.000001Z,2026-03-01T08:15:00.123456Z,txn_golden_1,usage,\"req_golden,\"\"1\"\"\",cus_golden,\"mtr_golden \"\"q\"\"\",3,usage_revenue,usage_revenue,revenue,USD,-1.2500000000,0.0000000000,1.2500000000\r\n",
        "2,9001,2026-03-01T08:15:01.000001Z,2026-03-01T08:15:00.123456Z,txn_golden_1,usage,\"req_golden,\"\"1\"\"\",cus_golden,\"mtr_golden \"\"q\"\"\",3,cus_golden:credits_cycle,credits_cycle,liability,USD,1.2500000000,1.2500000000,0.0000000000\r\n",
        "3,9004,2026-03-01T08:15:01.000001Z,2026-03-01T08:15:00.123456Z,txn_golden_1,usage,\"req_golden,\"\"1\"\"\",cus_golden,\"mtr_golden \"\"q\"\"\",3,provider_payable,provider_payable,liability,USD,-0.0000000001,0.0000000000,0.0000000001\r\n",
        "4,9003,2026-03-01T08:15:01.000001Z,2026-03-01T08:15:00.123456Z,txn_golden_1,usage,\"req_golden,\"\"1\"\"\",cus_golden,\"mtr_golden \"\"q\"\"\",3,provider_cost,provider_cost,expense,USD,0.0000000001,0.0000000001,0.0000000000\r\n",
        "5,9005,2026-03-02T00:00:00.000000Z,2026-03-02T00:00:00.000000Z,txn_golden_2,grant,\"  Zürich\r\n",
        "東京 🚀 \",cus_golden,,,payments_clearing,payments_clearing,asset,USD,123456789012345678.0123456789,123456789012345678.0123456789,0.0000000000\r\n",
        "6,9006,2026-03-02T00:00:00.000000Z,2026-03-02T00:00:00.000000Z,txn_golden_2,grant,\"  Zürich\r\n",
        "東京 🚀 \",cus_golden,,,cus_golden:credits_cycle,credits_cycle,liability,USD,-123456789012345678.0123456789,0.0000000000,123456789012345678.0123456789\r\n",
        "7,9008,2026-03-03T12:00:00.500000Z,2025-12-31T23:59:59.999999Z,txn_golden_3,adjustment,=SUM(A1:A2),,,,provider_payable,provider_payable,liability,USD,-5.0000000000,0.0000000000,5.0000000000\r\n",
        "8,9007,2026-03-03T12:00:00.500000Z,2025-12-31T23:59:59.999999Z,txn_golden_3,adjustment,=SUM(A1:A2),,,,provider_cost,provider_cost,expense,USD,5.0000000000,5.0000000000,0.0000000000\r\n");

    private static readonly string LedgerNdjson = string.Concat(
        "{\"seq\":1,\"entry_id\":9002,\"created_at\":\"2026-03-01T08:15:01.000001Z\",\"effective_at\":\"2026-03-01T08:15:00.123456Z\",\"transaction_id\":\"txn_golden_1\",\"transaction_kind\":\"usage\",\"reference\":\"req_golden,\\u00221\\u0022\",\"customer_id\":\"cus_golden\",\"meter_id\":\"mtr_golden \\u0022q\\u0022\",\"price_version\":3,\"account_id\":\"usage_revenue\",\"account_kind\":\"usage_revenue\",\"account_type\":\"revenue\",\"currency\":\"USD\",\"amount\":\"-1.2500000000\",\"debit\":\"0.0000000000\",\"credit\":\"1.2500000000\"}\n",
        "{\"seq\":2,\"entry_id\":9001,\"created_at\":\"2026-03-01T08:15:01.000001Z\",\"effective_at\":\"2026-03-01T08:15:00.123456Z\",\"transaction_id\":\"txn_golden_1\",\"transaction_kind\":\"usage\",\"reference\":\"req_golden,\\u00221\\u0022\",\"customer_id\":\"cus_golden\",\"meter_id\":\"mtr_golden \\u0022q\\u0022\",\"price_version\":3,\"account_id\":\"cus_golden:credits_cycle\",\"account_kind\":\"credits_cycle\",\"account_type\":\"liability\",\"currency\":\"USD\",\"amount\":\"1.2500000000\",\"debit\":\"1.2500000000\",\"credit\":\"0.0000000000\"}\n",
        "{\"seq\":3,\"entry_id\":9004,\"created_at\":\"2026-03-01T08:15:01.000001Z\",\"effective_at\":\"2026-03-01T08:15:00.123456Z\",\"transaction_id\":\"txn_golden_1\",\"transaction_kind\":\"usage\",\"reference\":\"req_golden,\\u00221\\u0022\",\"customer_id\":\"cus_golden\",\"meter_id\":\"mtr_golden \\u0022q\\u0022\",\"price_version\":3,\"account_id\":\"provider_payable\",\"account_kind\":\"provider_payable\",\"account_type\":\"liability\",\"currency\":\"USD\",\"amount\":\"-0.0000000001\",\"debit\":\"0.0000000000\",\"credit\":\"0.0000000001\"}\n",
        "{\"seq\":4,\"entry_id\":9003,\"created_at\":\"2026-03-01T08:15:01.000001Z\",\"effective_at\":\"2026-03-01T08:15:00.123456Z\",\"transaction_id\":\"txn_golden_1\",\"transaction_kind\":\"usage\",\"reference\":\"req_golden,\\u00221\\u0022\",\"customer_id\":\"cus_golden\",\"meter_id\":\"mtr_golden \\u0022q\\u0022\",\"price_version\":3,\"account_id\":\"provider_cost\",\"account_kind\":\"provider_cost\",\"account_type\":\"expense\",\"currency\":\"USD\",\"amount\":\"0.0000000001\",\"debit\":\"0.0000000001\",\"credit\":\"0.0000000000\"}\n",
        "{\"seq\":5,\"entry_id\":9005,\"created_at\":\"2026-03-02T00:00:00.000000Z\",\"effective_at\":\"2026-03-02T00:00:00.000000Z\",\"transaction_id\":\"txn_golden_2\",\"transaction_kind\":\"grant\",\"reference\":\"  Z\\u00FCrich\\r\\n\\u6771\\u4EAC \\uD83D\\uDE80 \",\"customer_id\":\"cus_golden\",\"meter_id\":null,\"price_version\":null,\"account_id\":\"payments_clearing\",\"account_kind\":\"payments_clearing\",\"account_type\":\"asset\",\"currency\":\"USD\",\"amount\":\"123456789012345678.0123456789\",\"debit\":\"123456789012345678.0123456789\",\"credit\":\"0.0000000000\"}\n",
        "{\"seq\":6,\"entry_id\":9006,\"created_at\":\"2026-03-02T00:00:00.000000Z\",\"effective_at\":\"2026-03-02T00:00:00.000000Z\",\"transaction_id\":\"txn_golden_2\",\"transaction_kind\":\"grant\",\"reference\":\"  Z\\u00FCrich\\r\\n\\u6771\\u4EAC \\uD83D\\uDE80 \",\"customer_id\":\"cus_golden\",\"meter_id\":null,\"price_version\":null,\"account_id\":\"cus_golden:credits_cycle\",\"account_kind\":\"credits_cycle\",\"account_type\":\"liability\",\"currency\":\"USD\",\"amount\":\"-123456789012345678.0123456789\",\"debit\":\"0.0000000000\",\"credit\":\"123456789012345678.0123456789\"}\n",
        "{\"seq\":7,\"entry_id\":9008,\"created_at\":\"2026-03-03T12:00:00.500000Z\",\"effective_at\":\"2025-12-31T23:59:59.999999Z\",\"transaction_id\":\"txn_golden_3\",\"transaction_kind\":\"adjustment\",\"reference\":\"=SUM(A1:A2)\",\"customer_id\":null,\"meter_id\":null,\"price_version\":null,\"account_id\":\"provider_payable\",\"account_kind\":\"provider_payable\",\"account_type\":\"liability\",\"currency\":\"USD\",\"amount\":\"-5.0000000000\",\"debit\":\"0.0000000000\",\"credit\":\"5.0000000000\"}\n",
        "{\"seq\":8,\"entry_id\":9007,\"created_at\":\"2026-03-03T12:00:00.500000Z\",\"effective_at\":\"2025-12-31T23:59:59.999999Z\",\"transaction_id\":\"txn_golden_3\",\"transaction_kind\":\"adjustment\",\"reference\":\"=SUM(A1:A2)\",\"customer_id\":null,\"meter_id\":null,\"price_version\":null,\"account_id\":\"provider_cost\",\"account_kind\":\"provider_cost\",\"account_type\":\"expense\",\"currency\":\"USD\",\"amount\":\"5.0000000000\",\"debit\":\"5.0000000000\",\"credit\":\"0.0000000000\"}\n");

    private static readonly string RequestsCsv = string.Concat(
        "request_id,created_at,timestamp,mode,customer_id,meter_id,price_version,input_tokens,output_tokens,input_characters,output_characters,input_seconds,output_seconds,cost,charge,transaction_id,metadata\r\n",
        "\"  padded  \",2026-03-03T12:00:00.500000Z,2026-03-03T12:00:00.500000Z,billing_disabled,cus_golden,mtr_golden,3,0,0,0,0,0,0,0.0000000000,0.0000000000,txn_golden_3,\"{\"\"formula\"\": \"\"=SUM(A1:A2)\"\"}\"\r\n",
        "\"r,1 \"\"quoted\"\"\",2026-03-02T00:00:00.000001Z,2026-03-02T00:00:00.000000Z,meter_only,,mtr_golden,3,0,9223372036854775807,7,0,0,12345678901234,0.3000000000,1000000000000000.0000000000,txn_golden_2,\"{\"\"n\"\": 1.50, \"\"city\"\": \"\"Zürich — 東京 🚀\"\", \"\"deep\"\": {\"\"k\"\": [1, true, null]}, \"\"html\"\": \"\"<b>&</b> it's\"\", \"\"note\"\": \"\"a, b and \\\"\"c\\\"\"\\r\\nsecond\"\"}\"\r\n",
        "req_golden_1,2026-03-01T08:15:01.000000Z,2026-03-01T08:15:00.123456Z,customer,cus_golden,mtr_golden,3,1234,0,0,0,1.5,0.000001,0.0000000000,0.0061700000,txn_golden_1,{}\r\n");

    private static readonly string RequestsNdjson = string.Concat(
        "{\"request_id\":\"  padded  \",\"created_at\":\"2026-03-03T12:00:00.500000Z\",\"timestamp\":\"2026-03-03T12:00:00.500000Z\",\"mode\":\"billing_disabled\",\"customer_id\":\"cus_golden\",\"meter_id\":\"mtr_golden\",\"price_version\":3,\"input_tokens\":0,\"output_tokens\":0,\"input_characters\":0,\"output_characters\":0,\"input_seconds\":0,\"output_seconds\":0,\"cost\":\"0.0000000000\",\"charge\":\"0.0000000000\",\"transaction_id\":\"txn_golden_3\",\"metadata\":{\"formula\": \"=SUM(A1:A2)\"}}\n",
        "{\"request_id\":\"r,1 \\u0022quoted\\u0022\",\"created_at\":\"2026-03-02T00:00:00.000001Z\",\"timestamp\":\"2026-03-02T00:00:00.000000Z\",\"mode\":\"meter_only\",\"customer_id\":null,\"meter_id\":\"mtr_golden\",\"price_version\":3,\"input_tokens\":0,\"output_tokens\":9223372036854775807,\"input_characters\":7,\"output_characters\":0,\"input_seconds\":0,\"output_seconds\":12345678901234,\"cost\":\"0.3000000000\",\"charge\":\"1000000000000000.0000000000\",\"transaction_id\":\"txn_golden_2\",\"metadata\":{\"n\": 1.50, \"city\": \"Zürich — 東京 🚀\", \"deep\": {\"k\": [1, true, null]}, \"html\": \"<b>&</b> it's\", \"note\": \"a, b and \\\"c\\\"\\r\\nsecond\"}}\n",
        "{\"request_id\":\"req_golden_1\",\"created_at\":\"2026-03-01T08:15:01.000000Z\",\"timestamp\":\"2026-03-01T08:15:00.123456Z\",\"mode\":\"customer\",\"customer_id\":\"cus_golden\",\"meter_id\":\"mtr_golden\",\"price_version\":3,\"input_tokens\":1234,\"output_tokens\":0,\"input_characters\":0,\"output_characters\":0,\"input_seconds\":1.5,\"output_seconds\":0.000001,\"cost\":\"0.0000000000\",\"charge\":\"0.0061700000\",\"transaction_id\":\"txn_golden_1\",\"metadata\":{}}\n");

    [Fact]
    public async Task ALedgerWithAwkwardValuesExportsExactlyTheseBytes()
    {
        var m = await App.NewMerchantAsync();
        await SeedLedgerAsync(m.MerchantId);

        var csv = await ExportAsync(m.Client, "/v1/ledger/entries?format=csv");
        var ndjson = await ExportAsync(m.Client, "/v1/ledger/entries?format=ndjson");

        Assert.Equal(LedgerCsv, csv);
        Assert.Equal(LedgerNdjson, ndjson);
    }

    [Fact]
    public async Task ReportsWithAwkwardValuesExportExactlyTheseBytes()
    {
        var m = await App.NewMerchantAsync();
        await SeedRequestsAsync(m.MerchantId);

        var csv = await ExportAsync(m.Client, "/v1/requests?format=csv");
        var ndjson = await ExportAsync(m.Client, "/v1/requests?format=ndjson");

        Assert.Equal(RequestsCsv, csv);
        Assert.Equal(RequestsNdjson, ndjson);
    }
}
