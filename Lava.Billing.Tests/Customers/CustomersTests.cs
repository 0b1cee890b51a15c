using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Customers;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Customers;

public class CustomersTests(LavaApp app) : ApiTest(app)
{
    private static string Id(JsonNode customer) => (string)customer["customer_id"]!;

    private static async Task<JsonNode> CreateCustomerAsync(HttpClient client, object? body = null)
    {
        var r = await client.PostJsonAsync("/v1/customers", body ?? new { });
        Assert.True(r.Status == HttpStatusCode.Created, $"creating a customer: {(int)r.Status} {r.Body?.ToJsonString()}");
        return r.Body!;
    }

    [Fact]
    public async Task CreatingACustomerReturnsItInTheSdkShape()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/customers", Http.Json(
            """{"reference_id":"user-42","email":"ada@example.com","phone":"+44 20 7946 0000","name":"Ada King Lovelace","metadata":{"plan":"pro","seats":3,"tags":["a"]}}"""));

        Assert.Equal(HttpStatusCode.Created, r.Status);
        var c = r.Body!;
        Assert.StartsWith("cus_", Id(c));
        Assert.Equal($"/v1/customers/{Id(c)}", r.Response.Headers.Location?.OriginalString);
        Assert.Equal("user-42", (string)c["reference_id"]!);
        var contact = c["contact"]!;
        Assert.Equal(["+44 20 7946 0000", "ada@example.com", "Ada", "King Lovelace"],
            new[] { "phone", "email", "first_name", "last_name" }.Select(f => (string)contact[f]!));
        Assert.Equal(4, contact.AsObject().Count);
        Assert.Null(c["subscription"]);
        Assert.True(c.AsObject().ContainsKey("subscription"));
        Assert.Equal("""{"plan":"pro","tags":["a"],"seats":3}""", c["metadata"]!.ToJsonString());
        Assert.NotNull(c["created_at"]);
        Assert.Equal(Id(c), await App.QueryAsync<string>("SELECT customer_id FROM customers WHERE merchant_id = @M AND reference_id = 'user-42'", new { M = m.MerchantId }));
    }

    [Fact]
    public async Task ACustomerWithNothingKnownHasEmptyContactStringsAndNullReferenceAndMetadata()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client);
        Assert.Equal("""{"phone":"","email":"","first_name":"","last_name":""}""", c["contact"]!.ToJsonString());
        Assert.True(c.AsObject().ContainsKey("reference_id") && c["reference_id"] is null);
        Assert.True(c.AsObject().ContainsKey("metadata") && c["metadata"] is null);

        var single = await CreateCustomerAsync(m.Client, new { name = "Cher" });
        Assert.Equal(("Cher", ""), ((string)single["contact"]!["first_name"]!, (string)single["contact"]!["last_name"]!));
    }

    [Fact]
    public async Task CreatingACustomerOpensItsLedgerAccountsWithZeroBalances()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new { name = "Ada" });

        var accounts = await App.QueryAsync<string>("""
            SELECT string_agg(kind || ':' || type, ',' ORDER BY kind) FROM accounts WHERE merchant_id = @M AND customer_id = @C
            """, new { M = m.MerchantId, C = Id(c) });
        Assert.Equal("credits_bundle:liability,credits_cycle:liability,receivable:asset", accounts);
        var balances = await App.QueryAsync<string>("""
            SELECT count(*) || ' rows, total ' || sum(b.balance)::text FROM account_balances b
              JOIN accounts a ON a.merchant_id = b.merchant_id AND a.account_id = b.account_id
             WHERE a.merchant_id = @M AND a.customer_id = @C
            """, new { M = m.MerchantId, C = Id(c) });
        Assert.Equal("3 rows, total 0.0000000000", balances);
    }

    [Fact]
    public async Task ACustomerIsRetrievedAsItWasCreated()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new { name = "Ada Lovelace", metadata = new { a = 1 } });
        var r = await m.Client.GetJsonAsync($"/v1/customers/{Id(c)}");
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(c.ToJsonString(), r.Body!.ToJsonString());
    }

    [Fact]
    public async Task ListingWithLimitTwoPagesThroughEveryLiveCustomerExactlyOnce()
    {
        var m = await App.NewMerchantAsync();
        var created = new List<string>();
        for (var i = 0; i < 5; i++) created.Add(Id(await CreateCustomerAsync(m.Client, new { name = $"C{i}" })));
        var deleted = Id(await CreateCustomerAsync(m.Client));
        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/customers/{deleted}")).Status);
        await CreateCustomerAsync((await App.NewMerchantAsync("Other")).Client);

        var seen = new List<string>();
        var pages = new List<(int Count, bool HasMore)>();
        string? cursor = null;
        do
        {
            var page = await m.Client.GetJsonAsync("/v1/customers?limit=2" + (cursor is null ? "" : $"&cursor={cursor}"));
            Assert.Equal(HttpStatusCode.OK, page.Status);
            var data = page.Body!["data"]!.AsArray();
            seen.AddRange(data.Select(d => Id(d!)));
            pages.Add((data.Count, (bool)page.Body["has_more"]!));
            cursor = (string?)page.Body["next_cursor"];
        } while (cursor is not null);

        Assert.Equal(new[] { (2, true), (2, true), (1, false) }, pages);
        Assert.Equal(created.Order(StringComparer.Ordinal), seen);
    }

    [Fact]
    public async Task PatchingWithNullClearsAFieldAndLeavesAbsentFieldsAlone()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new
        {
            reference_id = "ref-1", email = "ada@example.com", phone = "123", name = "Ada Lovelace", metadata = new { tier = "gold" },
        });

        var r = await m.Client.PatchJsonAsync($"/v1/customers/{Id(c)}", Http.Json("""{"email":null,"name":"Grace Hopper","metadata":null}"""));

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("ref-1", (string)r.Body!["reference_id"]!);
        Assert.Equal("""{"phone":"123","email":"","first_name":"Grace","last_name":"Hopper"}""", r.Body["contact"]!.ToJsonString());
        Assert.Null(r.Body["metadata"]);
        var stored = await App.QueryAsync<string>(
            "SELECT concat_ws('|', reference_id, coalesce(email, '<null>'), phone, name, coalesce(metadata::text, '<null>')) FROM customers WHERE customer_id = @C",
            new { C = Id(c) });
        Assert.Equal("ref-1|<null>|123|Grace Hopper|<null>", stored);
    }

    [Fact]
    public async Task PatchingMetadataReplacesItWhole()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new { metadata = new { a = 1, b = 2 } });
        var r = await m.Client.PatchJsonAsync($"/v1/customers/{Id(c)}", new { metadata = new { c = 3 } });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("""{"c":3}""", r.Body!["metadata"]!.ToJsonString());
    }

    [Fact]
    public async Task AnEmptyPatchChangesNothing()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new { name = "Ada", email = "ada@example.com" });
        var r = await m.Client.PatchJsonAsync($"/v1/customers/{Id(c)}", new { });
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(c.ToJsonString(), r.Body!.ToJsonString());
    }

    [Fact]
    public async Task ADeletedCustomerIsGoneFromTheApiButItsLedgerAccountsStay()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new { name = "Leaving" });

        var r = await m.Client.DeleteJsonAsync($"/v1/customers/{Id(c)}");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("""{"success":true}""", r.Body!.ToJsonString());
        Assert.True(await App.QueryAsync<bool>("SELECT deleted_at IS NOT NULL FROM customers WHERE customer_id = @C", new { C = Id(c) }));
        Assert.Equal(3, await App.QueryAsync<long>("SELECT count(*) FROM accounts WHERE customer_id = @C", new { C = Id(c) }));
        (await m.Client.GetJsonAsync($"/v1/customers/{Id(c)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.PatchJsonAsync($"/v1/customers/{Id(c)}", new { name = "Back" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/customers/{Id(c)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.GetJsonAsync($"/v1/customers/{Id(c)}/subscription")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.False(await App.Services.GetRequiredService<CustomerStore>().ExistsAsync(m.MerchantId, Id(c), CancellationToken.None));
    }

    [Fact]
    public async Task ALiveCustomerHasNoSubscription()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client);
        var r = await m.Client.GetJsonAsync($"/v1/customers/{Id(c)}/subscription");
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal("""{"subscription":null}""", r.Body!.ToJsonString());
        Assert.True(await App.Services.GetRequiredService<CustomerStore>().ExistsAsync(m.MerchantId, Id(c), CancellationToken.None));
    }

    [Fact]
    public async Task AnUnknownCustomerIsA404()
    {
        var m = await App.NewMerchantAsync();
        const string id = "cus_00000000000000000000000000";
        (await m.Client.GetJsonAsync($"/v1/customers/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.PatchJsonAsync($"/v1/customers/{id}", new { name = "x" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/customers/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.GetJsonAsync($"/v1/customers/{id}/subscription")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task AnotherMerchantsCustomerIsA404EverywhereAndUntouched()
    {
        var a = await App.NewMerchantAsync("A");
        var b = await App.NewMerchantAsync("B");
        var c = await CreateCustomerAsync(a.Client, new { name = "A's customer" });

        (await b.Client.GetJsonAsync($"/v1/customers/{Id(c)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await b.Client.PatchJsonAsync($"/v1/customers/{Id(c)}", new { name = "stolen" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await b.Client.DeleteJsonAsync($"/v1/customers/{Id(c)}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await b.Client.GetJsonAsync($"/v1/customers/{Id(c)}/subscription")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await b.Client.GetJsonAsync("/v1/customers")).Body!["data"]!.AsArray());
        Assert.False(await App.Services.GetRequiredService<CustomerStore>().ExistsAsync(b.MerchantId, Id(c), CancellationToken.None));

        Assert.Equal(c.ToJsonString(), (await a.Client.GetJsonAsync($"/v1/customers/{Id(c)}")).Body!.ToJsonString());
    }

    [Fact]
    public async Task AReadOnlyKeyCanReadCustomersButNotChangeThem()
    {
        var m = await App.NewMerchantAsync();
        var c = await CreateCustomerAsync(m.Client, new { name = "Ada" });
        var key = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "dashboard", scope = "read_only" });
        var reader = App.ClientWithKey((string)key.Body!["secret_key"]!);

        Assert.Equal(HttpStatusCode.OK, (await reader.GetJsonAsync($"/v1/customers/{Id(c)}")).Status);
        (await reader.PostJsonAsync("/v1/customers", new { name = "x" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.PatchJsonAsync($"/v1/customers/{Id(c)}", new { name = "x" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        (await reader.DeleteJsonAsync($"/v1/customers/{Id(c)}")).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM customers WHERE merchant_id = @M AND deleted_at IS NULL AND name = 'Ada'", new { M = m.MerchantId }));
    }
}
