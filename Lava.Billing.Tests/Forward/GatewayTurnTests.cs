using System.Net;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Forward;

/// <summary>
/// One turn per merchant and no place in line, so a call that kept its turn makes the next one 429; spend keys routed to
/// the fake provider.
/// </summary>
public sealed class OneTurnGatewayApp : GatewayApp
{
    protected override IEnumerable<(string Key, string Value)> Settings() =>
    [
        .. base.Settings(),
        ("Limits:PerMerchant:Requests", "1"),
        ("Limits:PerMerchant:RequestsWaiting", "0"),
        ("SpendKeys:Routes:0:Prefix", "gpt-"), ("SpendKeys:Routes:0:Provider", "openai"),
        ("SpendKeys:Routes:0:Shape", "openai"), ("SpendKeys:Routes:0:BaseUrl", Fake.BaseUrl + "/v1"),
    ];
}

/// <summary>A gateway call takes its merchant's turn while it is admitted, and gives it back before the provider answers.</summary>
public class GatewayTurnTests(OneTurnGatewayApp app) : GatewayTest<OneTurnGatewayApp>(app)
{
    private const string StreamedChat = """{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"stream":true}""";

    /// <summary>
    /// The merchant's only turn held (a slow call of its own): <paramref name="call"/> is refused with 429 before anything
    /// is held or sent. Then, with the turn free, the call is let through, and while the provider answers (held after its
    /// first event) the merchant's next call has the turn.
    /// </summary>
    private async Task TakesATurnUntilAdmittedAsync(LavaApp.Merchant m, Func<Task<HttpResponseMessage>> call)
    {
        var limits = App.Services.GetRequiredService<MerchantLimits>();
        using (await limits.EnterAsync(m.MerchantId, MerchantLimits.Kind.Requests, CancellationToken.None))
        {
            var refused = await call();
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Contains("\"too_many_requests\"", await refused.Content.ReadAsStringAsync());
            Assert.Equal(0, Fake.Calls);
        }

        Fake.HoldAfterEvents = 1;
        var running = call();
        await Waits.UntilAsync(() => Fake.Calls > 0, "the provider called");
        Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync("/v1/customers")).Status);

        Fake.Release.TrySetResult();
        Assert.Equal(HttpStatusCode.OK, (await running).StatusCode);
    }

    [Fact]
    public async Task AForwardedCallTakesItsMerchantsTurnUntilAdmittedAndNotWhileTheProviderAnswers()
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");
        await TakesATurnUntilAdmittedAsync(m, () => client.PostAsync(App.Forward("/v1/chat/completions"), Http.Json(StreamedChat)));
    }

    [Fact]
    public async Task ASpendKeyCallTakesItsMerchantsTurnUntilAdmittedAndNotWhileTheProviderAnswers()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", new { name = "tool" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        var client = App.ClientWithKey((string)created.Body!["key"]!);
        await TakesATurnUntilAdmittedAsync(m, () => client.PostAsync("/v1/chat/completions", Http.Json(StreamedChat)));
    }
}
