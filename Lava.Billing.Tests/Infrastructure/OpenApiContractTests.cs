using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>openapi.yaml is hand-written; this keeps it and the routes the service really serves under /v1 in step.</summary>
public partial class OpenApiContractTests(LavaApp app) : IClassFixture<LavaApp>
{
    private static readonly string[] Methods = ["get", "put", "post", "patch", "delete", "head", "options"];

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex Parameter();

    [GeneratedRegex(@"^  (/\S*):\s*$")]
    private static partial Regex PathLine();

    [GeneratedRegex(@"^    ([a-z]+):")]
    private static partial Regex MethodLine();

    // "/v1/meters/{meterIdOrSlug}/" and "/v1/meters/{meter_id}" are the same route.
    private static string Normalize(string path) => Parameter().Replace(path, "{}").TrimEnd('/');

    /// <summary>"GET /v1/meters/{}" for every operation under paths: in the yaml the service embeds and serves.</summary>
    private static SortedSet<string> Documented()
    {
        using var stream = typeof(Program).Assembly.GetManifestResourceStream("openapi.yaml")!;
        using var reader = new StreamReader(stream);
        var operations = new SortedSet<string>(StringComparer.Ordinal);
        var inPaths = false;
        string? path = null;
        while (reader.ReadLine() is { } line)
        {
            if (!inPaths)
            {
                inPaths = line.TrimEnd() == "paths:";
                continue;
            }
            if (line.Length > 0 && !char.IsWhiteSpace(line[0])) break;
            if (PathLine().Match(line) is { Success: true } p) path = p.Groups[1].Value;
            else if (MethodLine().Match(line) is { Success: true } m && Methods.Contains(m.Groups[1].Value) && path is not null)
                operations.Add($"{m.Groups[1].Value.ToUpperInvariant()} {Normalize(path)}");
        }
        return operations;
    }

    private SortedSet<string> Served()
    {
        var operations = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var endpoint in app.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            var path = "/" + (endpoint.RoutePattern.RawText ?? "").TrimStart('/');
            if (!path.StartsWith("/v1/", StringComparison.Ordinal) && path != "/v1") continue;
            var methods = endpoint.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? ["*"];
            foreach (var method in methods) operations.Add($"{method.ToUpperInvariant()} {Normalize(path)}");
        }
        return operations;
    }

    [Fact]
    public void TheYamlParserFindsTheDocumentedOperations()
    {
        var documented = Documented();
        Assert.Contains("DELETE /v1/secret_keys/{}", documented);
        Assert.Contains("GET /v1/secret_keys", documented);
        Assert.DoesNotContain(documented, o => o.Contains("healthz", StringComparison.Ordinal) && !o.StartsWith("GET", StringComparison.Ordinal));
    }

    [Fact]
    public void NoOperationIsDocumentedTwice()
    {
        var twice = Documented().GroupBy(o => o).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(twice.Count == 0, "openapi.yaml documents these operations more than once: " + string.Join(", ", twice));
    }

    [Fact]
    public void EveryServedV1RouteIsDocumentedAndEveryDocumentedV1RouteIsServed()
    {
        var documented = Documented().Where(o => o.Split(' ')[1].StartsWith("/v1", StringComparison.Ordinal)).ToHashSet();
        var served = Served();
        Assert.NotEmpty(served);

        var notServed = documented.Except(served).Order(StringComparer.Ordinal).ToList();
        var undocumented = served.Except(documented).Order(StringComparer.Ordinal).ToList();
        Assert.True(notServed.Count == 0 && undocumented.Count == 0,
            "openapi.yaml and the routes disagree.\n" +
            $"In openapi.yaml but not served ({notServed.Count}):\n  " + string.Join("\n  ", notServed) + "\n" +
            $"Served but missing from openapi.yaml ({undocumented.Count}):\n  " + string.Join("\n  ", undocumented));
    }
}
