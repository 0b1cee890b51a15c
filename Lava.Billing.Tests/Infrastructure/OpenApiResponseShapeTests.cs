using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.OpenApi;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// What the service really answers has the shape openapi.yaml documents: a tour of the API, every JSON body checked
/// against its operation's schema (types, required members, enums, patterns, and no undocumented members).
/// </summary>
public class OpenApiResponseShapeTests(LavaApp app) : ApiTest(app)
{
    private sealed record Seen(string Method, string Path, int Status, string? MediaType, string Body);

    private sealed class Recorder(List<Seen> seen) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            var response = await base.SendAsync(request, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            seen.Add(new Seen(request.Method.Method, request.RequestUri!.AbsolutePath, (int)response.StatusCode, response.Content.Headers.ContentType?.MediaType, body));
            return response;
        }
    }

    private static (string Template, IOpenApiPathItem Item)? Operation(OpenApiDocument document, string path)
    {
        foreach (var (template, item) in document.Paths.OrderBy(p => p.Key.Count(c => c == '{')))
        {
            var pattern = "^" + Regex.Replace(Regex.Escape(template), @"\\\{[^}]*}", "[^/]+") + "$";
            if (Regex.IsMatch(path, pattern)) return (template, item);
        }
        return null;
    }

    private static void Check(IOpenApiSchema schema, JsonNode? node, string at, List<string> problems, bool partOfAllOf = false)
    {
        if (schema.AllOf is { Count: > 0 } all)
        {
            if (node is null && schema.Type is { } nullable && nullable.HasFlag(JsonSchemaType.Null)) return;
            foreach (var part in all) Check(part, node, at, problems, partOfAllOf: true);
            // Each part documents some members; together they must document every one.
            if (node is JsonObject members)
            {
                var documented = all.SelectMany(p => p.Properties?.Keys ?? []).ToHashSet();
                if (documented.Count > 0)
                    problems.AddRange(members.Select(m => m.Key).Where(k => !documented.Contains(k)).Select(k => $"{at}.{k}: not documented"));
            }
            if (schema.Type is null) return;
        }
        if (schema.OneOf is { Count: > 0 } one || schema.AnyOf is { Count: > 0 })
        {
            var options = (schema.OneOf is { Count: > 0 } ? schema.OneOf : schema.AnyOf)!;
            if (!options.Any(o => { var p = new List<string>(); Check(o, node, at, p); return p.Count == 0; }))
                problems.Add($"{at}: matches none of oneOf/anyOf");
            return;
        }
        var type = schema.Type;
        if (node is null)
        {
            if (type is { } t && !t.HasFlag(JsonSchemaType.Null)) problems.Add($"{at}: null, but not nullable");
            return;
        }
        if (type is null) return;
        var kind = node.GetValueKind();
        var ok = kind switch
        {
            JsonValueKind.Object => type.Value.HasFlag(JsonSchemaType.Object),
            JsonValueKind.Array => type.Value.HasFlag(JsonSchemaType.Array),
            JsonValueKind.String => type.Value.HasFlag(JsonSchemaType.String),
            JsonValueKind.True or JsonValueKind.False => type.Value.HasFlag(JsonSchemaType.Boolean),
            JsonValueKind.Number => type.Value.HasFlag(JsonSchemaType.Number) ||
                                    (type.Value.HasFlag(JsonSchemaType.Integer) && node.GetValue<decimal>() % 1 == 0),
            _ => false,
        };
        if (!ok)
        {
            problems.Add($"{at}: is {kind}, documented as {type}");
            return;
        }
        switch (kind)
        {
            case JsonValueKind.Object:
                var members = node.AsObject();
                foreach (var required in schema.Required ?? new HashSet<string>())
                {
                    if (!members.ContainsKey(required)) problems.Add($"{at}.{required}: required, but absent");
                }
                foreach (var (name, value) in members)
                {
                    if (schema.Properties?.TryGetValue(name, out var property) == true) Check(property, value, $"{at}.{name}", problems);
                    else if (schema.AdditionalProperties is { } additional) Check(additional, value, $"{at}.{name}", problems);
                    else if (schema.Properties is { Count: > 0 } && !partOfAllOf) problems.Add($"{at}.{name}: not documented");
                }
                break;
            case JsonValueKind.Array when schema.Items is { } items:
                var i = 0;
                foreach (var element in node.AsArray()) Check(items, element, $"{at}[{i++}]", problems);
                break;
            case JsonValueKind.String:
                var text = node.GetValue<string>();
                if (schema.Enum is { Count: > 0 } values && !values.Any(v => v?.GetValueKind() == JsonValueKind.String && v.GetValue<string>() == text))
                    problems.Add($"{at}: '{text}' is not one of the documented values");
                if (schema.Pattern is { } pattern && !Regex.IsMatch(text, pattern)) problems.Add($"{at}: '{text}' does not match {pattern}");
                break;
        }
    }

    [Fact]
    public async Task EveryJsonAnswerOfATourOfTheApiHasItsDocumentedShape()
    {
        var m = await App.NewMerchantAsync();
        var seen = new List<Seen>();
        var client = App.CreateDefaultClient(new Recorder(seen));
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", m.SecretKey);

        var meter = (await client.PostJsonAsync("/v1/meters", new
        {
            name = "GPT", meter_slug = "gpt", rate_type = "fixed", tier_type = "tokens_1m",
            tiers = new[] { new { start = 0, rate = "5" }, new { start = 1_000_000, rate = "3" } },
        })).Body!;
        var meterId = (string)meter["meter_id"]!;
        var customer = (string)(await client.PostJsonAsync("/v1/customers", new { name = "Ada Lovelace", email = "ada@example.com" })).Body!["customer_id"]!;
        var plan = (await client.PostJsonAsync("/v1/plans", new
        {
            name = "Pro", period_amount = "50", billing_interval = "month", meter_ids = new[] { meterId },
            credit_bundles = new[] { new { name = "Top-up", cost = "10", credit_amount = "10" } },
        })).Body!;
        var subscription = (await client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = (string)plan["plan_id"]! })).Body!;
        await client.PostJsonAsync("/v1/requests", new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 2_000_000 });
        await client.PostJsonAsync("/v1/requests", new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 2_000_000 });
        await client.PostJsonAsync("/v1/requests/batch", new { requests = new object[] { new { request_id = "b1", meter_slug = "gpt" }, new { request_id = "b2", meter_slug = "nope" } } });
        var hold = (await client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "1" })).Body!;
        var bundleId = (string)plan["credit_bundles"]![0]!["credit_bundle_id"]!;
        using (var purchase = new HttpRequestMessage(HttpMethod.Post, $"/v1/credit_bundles/{bundleId}/purchases") { Content = Http.Json(new { customer_id = customer }) })
        {
            purchase.Headers.Add("Idempotency-Key", "p1");
            await client.SendAsync(purchase);
        }
        var keys = (await client.PostJsonAsync("/v1/secret_keys", new { name = "Finance", scope = "read_only" })).Body!;
        await client.PostJsonAsync("/v1/model_prices", new { model = "my-model", input = "1", output = "2" });
        foreach (var path in new[]
                 {
                     "/v1/meters", $"/v1/meters/{meterId}", "/v1/meters/gpt", "/v1/customers", $"/v1/customers/{customer}",
                     $"/v1/customers/{customer}/balance", $"/v1/customers/{customer}/subscription", $"/v1/customers/{customer}/statement",
                     "/v1/plans", $"/v1/plans/{plan["plan_id"]}", "/v1/credit_bundles", $"/v1/credit_bundles/{bundleId}",
                     "/v1/subscriptions", $"/v1/subscriptions/{subscription["subscription"]?["subscription_id"] ?? "sub_x"}",
                     "/v1/requests", "/v1/requests/r1", $"/v1/holds/{hold["hold_id"]}", "/v1/secret_keys", "/v1/model_prices", "/v1/models",
                     "/v1/usage?start=2020-01-01", "/v1/ledger/accounts", "/v1/ledger/entries", "/v1/ledger/trial-balance", "/v1/ledger/verify",
                     "/v1/meters/nope", "/v1/customers?limit=1000",
                 })
            await client.GetJsonAsync(path);
        var entries = (await client.GetJsonAsync("/v1/ledger/entries")).Body!["data"]!.AsArray();
        await client.GetJsonAsync($"/v1/ledger/transactions/{entries[0]!["transaction_id"]}");
        await client.PatchJsonAsync($"/v1/meters/{meterId}", new { name = "GPT 2" });
        await client.PatchJsonAsync($"/v1/customers/{customer}", new { name = "Ada King" });
        await client.DeleteJsonAsync($"/v1/holds/{hold["hold_id"]}");
        await client.DeleteJsonAsync($"/v1/secret_keys/{keys["secret_key_id"]}");
        await client.DeleteJsonAsync($"/v1/meters/{meterId}");

        var document = OpenApiContractTests.Parse(OpenApiContractTests.Yaml()).Document;
        var problems = new List<string>();
        var checkedOperations = new HashSet<string>();
        foreach (var s in seen.Where(s => s.MediaType is "application/json" or "application/problem+json"))
        {
            var where = $"{s.Method} {s.Path} -> {s.Status}";
            if (Operation(document, s.Path) is not var (template, item)) { problems.Add($"{where}: no documented path"); continue; }
            var operation = item.Operations!.FirstOrDefault(o => o.Key.Method == s.Method).Value;
            if (operation is null) { problems.Add($"{where}: method not documented"); continue; }
            if (!operation.Responses!.TryGetValue(s.Status.ToString(System.Globalization.CultureInfo.InvariantCulture), out var response))
            {
                problems.Add($"{where}: status not documented for {template}");
                continue;
            }
            if (response.Content?.TryGetValue(s.MediaType!, out var media) != true || media!.Schema is null)
            {
                problems.Add($"{where}: {s.MediaType} not documented for {template}");
                continue;
            }
            checkedOperations.Add($"{s.Method} {template}");
            var found = new List<string>();
            Check(media.Schema, JsonNode.Parse(s.Body), "$", found);
            problems.AddRange(found.Select(f => $"{where}: {f}"));
        }
        Assert.True(problems.Count == 0, $"answers that differ from openapi.yaml ({problems.Count}):\n" + string.Join("\n", problems.Distinct()));
        Assert.True(checkedOperations.Count >= 30, "only these operations were checked: " + string.Join(", ", checkedOperations));
    }
}
