using System.Text.RegularExpressions;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>A clone is all a user has: nothing may point at documents outside it, and every link inside it resolves.</summary>
public partial class RepositoryStandsAloneTests
{
    private static readonly string[] Skipped = ["bin", "obj", "node_modules", ".git", ".lava", "TestResults", "results"];

    private static readonly string[] Extensions = [".cs", ".md", ".sql", ".sh", ".mjs", ".js", ".json", ".yaml", ".props", ".csproj", ".lua", ".html", ".css", ""];

    // Spelled in pieces so this file does not match itself.
    private static readonly Regex Outside = new(
        string.Join('|', [@"\.\./shared", @"\bshared/", "(?-i:DESIGN" + @"\.md)", "(?-i:STYLE" + @"\.md)", @"\bissues?\s+#?\d+\b"]),
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    [GeneratedRegex(@"\]\((?!https?://|mailto:|#)([^)\s#]+)(#[^)]*)?\)")]
    private static partial Regex MarkdownLink();

    public static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Lava.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("Lava.sln not found above " + AppContext.BaseDirectory);
    }

    private static IEnumerable<string> Files(string root) =>
        Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => !Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar).Any(Skipped.Contains))
            .Where(f => Extensions.Contains(Path.GetExtension(f)))
            .Where(f => new FileInfo(f).Length < 2_000_000);

    [Fact]
    public void NoFileCitesADocumentOrIssueOutsideTheRepository()
    {
        var root = Root();
        var found = new List<string>();
        foreach (var file in Files(root))
        {
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                if (Outside.Match(lines[i]) is { Success: true } m)
                    found.Add($"{Path.GetRelativePath(root, file)}:{i + 1}: {m.Value}");
            }
        }
        Assert.True(found.Count == 0, "references outside the repository:\n" + string.Join("\n", found));
    }

    [Fact]
    public void TheSearchCatchesAReferenceOutsideTheRepository()
    {
        Assert.Matches(Outside, "see ../" + "shar" + "ed/" + "DESIGN" + ".md §3");
        Assert.Matches(Outside, "(issue" + " 4)");
        Assert.DoesNotMatch(Outside, "docs/design.md, \"Usage periods\"");
    }

    [Fact]
    public void EveryRelativeLinkInTheDocsResolvesToAFileInTheRepository()
    {
        var root = Root();
        var broken = new List<string>();
        foreach (var file in Files(root).Where(f => f.EndsWith(".md", StringComparison.Ordinal)))
        {
            foreach (Match link in MarkdownLink().Matches(File.ReadAllText(file)))
            {
                var target = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, link.Groups[1].Value));
                if (!target.StartsWith(root, StringComparison.Ordinal) || !(File.Exists(target) || Directory.Exists(target)))
                    broken.Add($"{Path.GetRelativePath(root, file)}: {link.Groups[1].Value}");
            }
        }
        Assert.True(broken.Count == 0, "links that do not resolve inside the repository:\n" + string.Join("\n", broken));
    }
}
