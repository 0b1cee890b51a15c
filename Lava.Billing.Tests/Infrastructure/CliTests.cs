using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>The operator commands as a shell runs them: the service binary in its own process.</summary>
public class CliTests(LavaApp app) : ApiTest(app)
{
    private static async Task<(int Exit, string Out, string Err)> RunAsync(string? connectionString, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Lava.Billing.dll"));
        foreach (var arg in args) start.ArgumentList.Add(arg);
        start.Environment.Remove("ConnectionStrings__Billing");
        if (connectionString is not null) start.Environment["ConnectionStrings__Billing"] = connectionString;
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    private static void AssertOneLineWithoutStack(string stderr, string expected)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, "expected one line on stderr, got:\n" + stderr);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("Exception", stderr);
    }

    [Theory]
    [InlineData("merchants", "create", "--name", "Acme")]
    [InlineData("migrate")]
    [InlineData("ledger", "verify")]
    public async Task ACommandWithoutADatabaseSaysWhatToSetInOneLine(params string[] args)
    {
        var (exit, stdout, stderr) = await RunAsync(null, args);
        Assert.Equal(2, exit);
        Assert.Empty(stdout);
        AssertOneLineWithoutStack(stderr, "ConnectionStrings__Billing");
    }

    [Fact]
    public async Task ServingWithoutADatabaseSaysWhatToSetInOneLine()
    {
        var (exit, _, stderr) = await RunAsync(null, "--urls", "http://127.0.0.1:0");
        Assert.Equal(2, exit);
        AssertOneLineWithoutStack(stderr, "ConnectionStrings__Billing");
    }

    [Fact]
    public async Task AnUnreachableDatabaseIsOneLineNotAStackTrace()
    {
        var (exit, stdout, stderr) = await RunAsync("Host=127.0.0.1;Port=1;Database=x;Username=x;Password=x;Timeout=3", "merchants", "create", "--name", "Acme");
        Assert.Equal(1, exit);
        Assert.Empty(stdout);
        AssertOneLineWithoutStack(stderr, "lava: the database could not be used");
    }

    [Fact]
    public async Task AnOperatorMakesAMerchantAndAReadOnlyKeyByItsName()
    {
        var name = "Cli merchant " + Guid.NewGuid().ToString("N")[..8];
        var created = await RunAsync(App.ConnectionString, "merchants", "create", "--name", name);
        Assert.True(created.Exit == 0, created.Err);
        var merchant = JsonNode.Parse(created.Out)!;

        var key = await RunAsync(App.ConnectionString, "merchants", "key", "--merchant", name, "--read-only");
        Assert.True(key.Exit == 0, key.Err);
        var readOnly = JsonNode.Parse(key.Out)!;
        Assert.Equal((string)merchant["merchant_id"]!, (string)readOnly["merchant_id"]!);
        Assert.Equal("read_only", (string)readOnly["scope"]!);

        var client = App.ClientWithKey((string)readOnly["secret_key"]!);
        Assert.Equal(HttpStatusCode.OK, (await client.GetJsonAsync("/v1/secret_keys")).Status);
        (await client.PostJsonAsync("/v1/customers", new { name = "x" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");

        var full = await RunAsync(App.ConnectionString, "merchants", "key", "--merchant", (string)merchant["merchant_id"]!);
        Assert.True(full.Exit == 0, full.Err);
        Assert.Equal("full", (string)JsonNode.Parse(full.Out)!["scope"]!);
    }

    [Fact]
    public async Task AKeyForAnUnknownMerchantIsRefusedInOneLine()
    {
        var (exit, stdout, stderr) = await RunAsync(App.ConnectionString, "merchants", "key", "--merchant", "nobody-" + Guid.NewGuid().ToString("N"));
        Assert.Equal(1, exit);
        Assert.Empty(stdout);
        AssertOneLineWithoutStack(stderr, "no merchant with id or name");
    }
}
