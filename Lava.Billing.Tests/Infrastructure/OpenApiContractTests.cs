using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.OpenApi;
using Microsoft.OpenApi.Reader;
using Microsoft.OpenApi.YamlReader;
using YamlDotNet.RepresentationModel;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// openapi.yaml is hand-written; this keeps it valid (strict YAML, OpenAPI 3 as a real parser reads it) and in step with
/// the routes the service really serves.
/// </summary>
public partial class OpenApiContractTests(LavaApp app) : IClassFixture<LavaApp>
{
    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Parameter();

    // "/v1/meters/{meterIdOrSlug}/" and "/v1/meters/{meter_id}" are the same route.
    private static string Normalize(string path) => Parameter().Replace(path, "{}").TrimEnd('/');

    /// <summary>The yaml the service embeds and serves at /openapi.yaml.</summary>
    public static string Yaml()
    {
        using var stream = typeof(Program).Assembly.GetManifestResourceStream("openapi.yaml")!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public static (OpenApiDocument Document, OpenApiDiagnostic Diagnostic) Parse(string yaml)
    {
        var settings = new OpenApiReaderSettings();
        settings.AddYamlReader();
        var result = OpenApiDocument.Parse(yaml, "yaml", settings);
        return (result.Document!, result.Diagnostic!);
    }

    /// <summary>"GET /v1/meters/{}" for every operation of the parsed document.</summary>
    private static SortedSet<string> Documented(OpenApiDocument document)
    {
        var operations = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (path, item) in document.Paths)
        {
            foreach (var method in item.Operations!.Keys)
                operations.Add($"{method.Method.ToUpperInvariant()} {Normalize(path)}");
        }
        return operations;
    }

    private SortedSet<string> Served()
    {
        var operations = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var endpoint in app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            var path = "/" + (endpoint.RoutePattern.RawText ?? "").TrimStart('/');
            if (!path.StartsWith("/v1/", StringComparison.Ordinal) && path is not ("/v1" or "/healthz" or "/readyz")) continue;
            var methods = endpoint.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? ["*"];
            foreach (var method in methods) operations.Add($"{method.ToUpperInvariant()} {Normalize(path)}");
        }
        return operations;
    }

    [Fact]
    public void TheYamlIsStrictYamlWithNoDuplicateKeys()
    {
        var stream = new YamlStream();
        var error = Record.Exception(() => stream.Load(new StringReader(Yaml())));
        Assert.True(error is null, "openapi.yaml is not strict YAML: " + error?.Message);
        Assert.Single(stream.Documents);
    }

    [Fact]
    public void AStrictYamlParseRefusesADuplicatedResponseCode()
    {
        const string twice = "responses:\n  '403': { description: a }\n  '403': { description: b }\n";
        Assert.ThrowsAny<YamlDotNet.Core.YamlException>(() => new YamlStream().Load(new StringReader(twice)));
    }

    [Fact]
    public void TheDocumentIsValidOpenApi3WithNoErrorsOrWarnings()
    {
        var (document, diagnostic) = Parse(Yaml());
        Assert.True(diagnostic.Errors.Count == 0, "reading openapi.yaml: " + string.Join("\n", diagnostic.Errors.Select(e => $"{e.Pointer}: {e.Message}")));
        Assert.True(diagnostic.Warnings.Count == 0, "reading openapi.yaml: " + string.Join("\n", diagnostic.Warnings.Select(e => $"{e.Pointer}: {e.Message}")));
        Assert.Equal(OpenApiSpecVersion.OpenApi3_0, diagnostic.SpecificationVersion);

        var validator = new OpenApiValidator(ValidationRuleSet.GetDefaultRuleSet());
        var walker = new OpenApiWalker(validator);
        walker.Walk(document);
        var findings = validator.Errors.Select(e => $"error {e.Pointer}: {e.Message}")
            .Concat(validator.Warnings.Select(w => $"warning {w.Pointer}: {w.Message}")).ToList();
        Assert.True(findings.Count == 0, "validating openapi.yaml:\n" + string.Join("\n", findings));
    }

    [Fact]
    public void EveryReferenceResolvesToAComponent()
    {
        var yaml = Yaml();
        var (document, _) = Parse(yaml);
        var missing = Regex.Matches(yaml, @"\$ref: '#/components/(\w+)/(\w+)'")
            .Select(m => (Kind: m.Groups[1].Value, Name: m.Groups[2].Value))
            .Distinct()
            .Where(r => r.Kind switch
            {
                "schemas" => document.Components?.Schemas?.ContainsKey(r.Name) != true,
                "responses" => document.Components?.Responses?.ContainsKey(r.Name) != true,
                "parameters" => document.Components?.Parameters?.ContainsKey(r.Name) != true,
                _ => true,
            })
            .Select(r => $"#/components/{r.Kind}/{r.Name}")
            .ToList();
        Assert.True(missing.Count == 0, "unresolved references: " + string.Join(", ", missing));
    }

    [Fact]
    public void TheParserFindsTheDocumentedOperations()
    {
        var documented = Documented(Parse(Yaml()).Document);
        Assert.Contains("DELETE /v1/secret_keys/{}", documented);
        Assert.Contains("GET /v1/secret_keys", documented);
        Assert.Contains("GET /healthz", documented);
    }

    [Fact]
    public void EveryServedRouteIsDocumentedAndEveryDocumentedRouteIsServed()
    {
        var documented = Documented(Parse(Yaml()).Document);
        var served = Served();
        Assert.NotEmpty(served);

        var notServed = documented.Except(served).Order(StringComparer.Ordinal).ToList();
        var undocumented = served.Except(documented).Order(StringComparer.Ordinal).ToList();
        Assert.True(notServed.Count == 0 && undocumented.Count == 0,
            "openapi.yaml and the routes disagree.\n" +
            $"In openapi.yaml but not served ({notServed.Count}):\n  " + string.Join("\n  ", notServed) + "\n" +
            $"Served but missing from openapi.yaml ({undocumented.Count}):\n  " + string.Join("\n  ", undocumented));
    }

    [Fact]
    public void EveryOperationDocumentsASuccessAndItsProblems()
    {
        var (document, _) = Parse(Yaml());
        var lacking = new List<string>();
        foreach (var (path, item) in document.Paths)
        {
            foreach (var (method, operation) in item.Operations!)
            {
                var codes = operation.Responses!.Keys.ToList();
                if (!codes.Any(c => c.StartsWith('2'))) lacking.Add($"{method} {path}: no 2xx response");
                var secured = operation.Security is not { Count: 0 };
                if (secured && !codes.Contains("401")) lacking.Add($"{method} {path}: no 401");
                if (secured && method != HttpMethod.Get && !codes.Contains("403")) lacking.Add($"{method} {path}: no 403 (read-only keys)");
                if (path.Contains('{') && !codes.Contains("404")) lacking.Add($"{method} {path}: no 404");
                // Every call of a merchant takes a turn of its (MerchantLimits) but a single usage report.
                if (secured && path.StartsWith("/v1") && !(path == "/v1/requests" && method == HttpMethod.Post) && !codes.Contains("429"))
                    lacking.Add($"{method} {path}: no 429 (a merchant's turns)");
            }
        }
        Assert.True(lacking.Count == 0, string.Join("\n", lacking));
    }
}
