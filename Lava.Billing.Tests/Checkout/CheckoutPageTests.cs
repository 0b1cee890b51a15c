using System.Net;
using Lava.Billing.Merchants;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Checkout;

/// <summary>The test page completes a test-mode session by hand, and only through its own form.</summary>
public class CheckoutPageTests(LavaApp app) : ApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string Id, string Token)> SessionAsync()
    {
        var m = await App.NewMerchantAsync();
        var plan = await App.PlanAsync(m.MerchantId, 3m, 3m);
        var r = await m.Client.PostJsonAsync("/v1/checkout_sessions",
            new { checkout_mode = "subscription", origin_url = "https://shop.example/?a=1&b=<x>", plan_id = plan.PlanId });
        return (m, (string)r.Body!["checkout_session_id"]!, (string)r.Body["checkout_session_token"]!);
    }

    private static FormUrlEncodedContent Form(string token) => new([new("checkout_session_token", token)]);

    [Fact]
    public async Task ThePageShowsTheSessionAndItsFormCompletesItOnceEvenWhenSubmittedTwice()
    {
        var (m, id, token) = await SessionAsync();
        var browser = App.CreateClient();

        var page = await browser.GetAsync($"/checkout/{token}");
        var html = await page.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.StartsWith("text/html", page.Content.Headers.ContentType!.ToString());
        Assert.Contains("frame-ancestors 'none'", page.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Contains(id, html);
        Assert.Contains("&lt;x&gt;", html);
        Assert.DoesNotContain("<x>", html);

        var paid = await browser.PostAsync($"/checkout/{token}", Form(token));
        var twice = await browser.PostAsync($"/checkout/{token}", Form(token));

        Assert.Equal(HttpStatusCode.OK, paid.StatusCode);
        Assert.Equal(HttpStatusCode.OK, twice.StatusCode);
        var session = (await m.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!;
        Assert.Equal("completed", (string)session["status"]!);
        Assert.Equal($"test_page:{id}", (string)session["payment_reference"]!);
        Assert.Equal(1, await App.QueryAsync<int>("SELECT count(*)::int FROM subscriptions WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task APostFromAnotherSiteOrWithoutTheTokenCompletesNothing()
    {
        var (m, id, token) = await SessionAsync();
        var browser = App.CreateClient();

        var crossSite = new HttpRequestMessage(HttpMethod.Post, $"/checkout/{token}") { Content = Form(token) };
        crossSite.Headers.Add("Origin", "https://evil.example");
        Assert.Equal(HttpStatusCode.Forbidden, (await browser.SendAsync(crossSite)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await browser.PostAsync($"/checkout/{token}", Form("cst_wrong"))).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await browser.PostAsync($"/checkout/{token}", new StringContent(""))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await browser.PostAsync("/checkout/cst_unknown", Form("cst_unknown"))).StatusCode);
        // Forms the reader refuses (past its field count, or a broken multipart body) are bad requests, not 500s.
        var tooManyFields = string.Join("&", Enumerable.Range(0, 1100).Select(i => $"k{i}=v"));
        Assert.Equal(HttpStatusCode.BadRequest, (await browser.PostAsync($"/checkout/{token}",
            new StringContent(tooManyFields, System.Text.Encoding.ASCII, "application/x-www-form-urlencoded"))).StatusCode);
        var broken = new ByteArrayContent("garbage"u8.ToArray());
        broken.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse("multipart/form-data; boundary=xyz");
        Assert.Equal(HttpStatusCode.BadRequest, (await browser.PostAsync($"/checkout/{token}", broken)).StatusCode);
        var unknown = await browser.GetAsync("/checkout/cst_unknown");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.DoesNotContain("Exception", await unknown.Content.ReadAsStringAsync());

        Assert.Equal("open", (string)(await m.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!["status"]!);
    }

    [Fact]
    public async Task ASessionMadeWithALiveKeyHasNoTestPage()
    {
        var (m, id, token) = await SessionAsync();
        await App.QueryAsync<int>("UPDATE checkout_sessions SET test_mode = false WHERE merchant_id = @m RETURNING 1", new { m = m.MerchantId });

        Assert.Equal(HttpStatusCode.NotFound, (await App.CreateClient().GetAsync($"/checkout/{token}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await App.CreateClient().PostAsync($"/checkout/{token}", Form(token))).StatusCode);
        Assert.Null((await m.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!["checkout_url"]);
    }

    [Fact]
    public async Task TheTokenIsAnsweredOnceAndTheDatabaseHoldsOnlyItsHash()
    {
        var (m, id, token) = await SessionAsync();

        var row = await App.QueryAsync<string>("SELECT to_jsonb(s)::text FROM checkout_sessions s WHERE merchant_id = @m", new { m = m.MerchantId });
        Assert.DoesNotContain(token["cst_".Length..], row);
        var stored = await App.QueryAsync<byte[]>("SELECT token_hash FROM checkout_sessions WHERE merchant_id = @m", new { m = m.MerchantId });
        Assert.Equal(SecretKeys.Hash(token), stored);

        var retrieved = (await m.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!;
        Assert.Equal(id, (string)retrieved["checkout_session_id"]!);
        Assert.Null(retrieved["checkout_session_token"]);
        Assert.Null(retrieved["checkout_url"]);
        Assert.Equal(HttpStatusCode.OK, (await App.CreateClient().GetAsync($"/checkout/{token}")).StatusCode);
        var completed = await m.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_token_once" });
        Assert.Equal("completed", (string)completed.Body!["status"]!);
        Assert.Null(completed.Body["checkout_session_token"]);
        Assert.Null(completed.Body["checkout_url"]);
    }
}
