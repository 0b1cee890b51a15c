using System.Net;
using Lava.Billing.Tests.Finance;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>/swagger as a newcomer sees it: Swagger UI in a real browser renders openapi.yaml without its error panel.</summary>
public class SwaggerUiTests(KestrelLavaApp app) : IClassFixture<KestrelLavaApp>
{
    [BrowserFact]
    public async Task SwaggerUiRendersEveryDocumentedOperationWithoutAnError()
    {
        var client = app.ClientWithKey(null);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/openapi.yaml")).StatusCode);

        await using var browser = await Chromium.LaunchAsync();
        await browser.NavigateAsync(app.BaseUrl + "/swagger/index.html");
        // Swagger UI reports a definition it cannot read in .errors-wrapper (parser errors, e.g. a duplicated mapping
        // key) or .version-pragma ("Unable to render this definition"); otherwise it draws one .opblock per operation.
        await browser.WaitForAsync(
            "document.querySelector('.swagger-ui .errors-wrapper, .swagger-ui .version-pragma, .swagger-ui .loading-container .errors') " +
            "|| document.querySelectorAll('.swagger-ui .opblock').length > 0");

        var errors = (string?)await browser.EvaluateAsync(
            "[...document.querySelectorAll('.swagger-ui .errors-wrapper, .swagger-ui .version-pragma')].map(e => e.textContent).join(' | ')");
        Assert.True(string.IsNullOrEmpty(errors), "Swagger UI shows an error: " + errors);
        var operations = OpenApiContractTests.Parse(OpenApiContractTests.Yaml()).Document.Paths.Values.Sum(p => p.Operations!.Count);
        Assert.Equal(operations, (int)(await browser.EvaluateAsync("document.querySelectorAll('.swagger-ui .opblock').length"))!);
        Assert.Equal("Lava Billing", ((string?)await browser.EvaluateAsync("document.querySelector('.swagger-ui .info .title')?.firstChild?.textContent"))?.Trim());
    }
}
