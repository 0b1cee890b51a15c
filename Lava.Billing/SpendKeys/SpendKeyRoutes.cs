namespace Lava.Billing.SpendKeys;

/// <summary>One row of the model table: models whose name starts with <see cref="Prefix"/> go to this provider.</summary>
public sealed record SpendKeyRoute(string Prefix, string Provider, string Shape, string BaseUrl);

/// <summary>
/// Which provider serves a model, for calls made with a spend key (section <c>SpendKeys:Routes</c>, a list of
/// <c>Prefix</c>/<c>Provider</c>/<c>Shape</c>/<c>BaseUrl</c>). Configured rows replace the defaults; the longest matching
/// prefix wins. The base URL must still be on the gateway's allow-list, and the merchant's managed key for its host is used.
/// </summary>
public sealed class SpendKeyRoutes(IReadOnlyList<SpendKeyRoute> routes, long defaultMaxOutputTokens)
{
    public static readonly SpendKeyRoute[] Defaults =
    [
        new("gpt-", "openai", RequestShapes.OpenAi, "https://api.openai.com/v1"),
        new("chatgpt-", "openai", RequestShapes.OpenAi, "https://api.openai.com/v1"),
        new("o1", "openai", RequestShapes.OpenAi, "https://api.openai.com/v1"),
        new("o3", "openai", RequestShapes.OpenAi, "https://api.openai.com/v1"),
        new("o4", "openai", RequestShapes.OpenAi, "https://api.openai.com/v1"),
        new("claude-", "anthropic", RequestShapes.Anthropic, "https://api.anthropic.com/v1"),
    ];

    public IReadOnlyList<SpendKeyRoute> All => routes;

    /// <summary>Output tokens assumed for the worst case, and sent as the cap, when a request names none.</summary>
    public long DefaultMaxOutputTokens => defaultMaxOutputTokens;

    public SpendKeyRoute? For(string model) =>
        routes.Where(r => model.StartsWith(r.Prefix, StringComparison.Ordinal)).MaxBy(r => r.Prefix.Length);

    public static SpendKeyRoutes From(IConfiguration configuration)
    {
        var section = configuration.GetSection("SpendKeys");
        var configured = section.GetSection("Routes").GetChildren()
            .Select(c => new SpendKeyRoute(c["Prefix"] ?? "", c["Provider"] ?? "", c["Shape"] ?? RequestShapes.OpenAi, (c["BaseUrl"] ?? "").TrimEnd('/')))
            .Where(r => r.Prefix.Length > 0 && r.Provider.Length > 0 && r.BaseUrl.Length > 0)
            .ToList();
        return new SpendKeyRoutes(configured.Count > 0 ? configured : Defaults, section.GetValue("DefaultMaxOutputTokens", 4096L));
    }
}
