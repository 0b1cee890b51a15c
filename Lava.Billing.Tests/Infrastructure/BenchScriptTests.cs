using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Lava.Billing.Requests.Posting;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>bench/pgbench/reports.sh measures the statements the service runs, not a copy that drifted from them.</summary>
public partial class BenchScriptTests
{
    private static async Task<string> GenerateAsync(params string[] args)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(RepositoryStandsAloneTests.Root(), "bench", "pgbench", "reports.sh"));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, await stderr);
        return await stdout;
    }

    [GeneratedRegex(@"\\\$\d+::[a-z]+\\\[]")]
    private static partial Regex EscapedParameter();

    /// <summary>The statement as a pattern: its text exactly, each <c>$n::type[]</c> parameter any array expression.</summary>
    private static Regex Word(string sql) =>
        new(EscapedParameter().Replace(Regex.Escape(sql), ".+?"), RegexOptions.Singleline);

    [Theory]
    [InlineData("1")]
    [InlineData("10", "1000", "--disjoint")]
    [InlineData("1", "1000", "--lookups")]
    public async Task ThePgbenchScriptSendsTheServicesPlanSettingsAndLockedReadsWordForWord(params string[] args)
    {
        var script = await GenerateAsync(args);

        // The lock timeout and plan settings in one statement, as the service sends them (its parameter: 5 s).
        Assert.Contains(LockedReads.Settings.Replace("$1::int", "5000::int", StringComparison.Ordinal) + ";", script);
        var missing = LockedReads.All.Where(read => !Word(read.Sql).IsMatch(script)).Select(read => read.Name).ToList();
        Assert.True(missing.Count == 0, "The pgbench script does not send these reads as the service does: " + string.Join(", ", missing));
        // The usage period is the service's to decide, in SQL: the script passes no period of its own.
        Assert.DoesNotContain(":period", script);
    }

    // 64 pgbench clients are 64 concurrent posting transactions, each costing PostgreSQL 2-4 times what one of 4 costs;
    // the service at 64 connections runs only its writers' transactions at once, so that is the raw limit to divide by.
    [Fact]
    public async Task TheRawLimitRunsPgbenchWithAsManyClientsAsTheServiceHasPostingWriters()
    {
        var writers = (await GenerateAsync("--writers")).Trim();

        Assert.Equal(new GroupCommitOptions().Writers.ToString(CultureInfo.InvariantCulture), writers);
        var bench = await File.ReadAllTextAsync(Path.Combine(RepositoryStandsAloneTests.Root(), "scripts", "bench.sh"));
        Assert.Contains("WRITERS=\"$(bench/pgbench/reports.sh --writers)\"", bench);
        Assert.Contains("raw_clients=(\"$WRITERS\")", bench);
    }
}
