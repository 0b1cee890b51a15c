using System.Net;
using Dapper;
using Lava.Billing.Tests.Forward;
using Microsoft.AspNetCore.Hosting;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>The service on a database port where nothing listens.</summary>
public sealed class UnreachableDatabaseApp : GatewayApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        base.ConfigureTestServices(builder);
        var csb = new NpgsqlConnectionStringBuilder(ConnectionString) { Port = new Uri(ClosedUpstream).Port, Timeout = 2 };
        builder.UseSetting("ConnectionStrings:Billing", csb.ConnectionString);
    }
}

public class UnreachableDatabaseTests(UnreachableDatabaseApp app) : IClassFixture<UnreachableDatabaseApp>
{
    [Fact]
    public async Task AReportWhileTheDatabaseIsDownIs503WithRetryAfterAndLogsNoStack()
    {
        var client = app.ClientWithKey("aks_test_" + new string('a', 40));
        var r = await client.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "gpt" });
        var body = r.AssertProblem(HttpStatusCode.ServiceUnavailable, "database_unavailable");
        Assert.Contains("same request_id", (string)body["detail"]!);
        Assert.Equal(TimeSpan.FromSeconds(5), r.Response.Headers.RetryAfter?.Delta);
        // Background workers may complain on their own; the request's failure is one Warning line without a stack.
        var requestLines = app.Logs.Lines.Where(l => l.Contains("Microsoft.AspNetCore.Diagnostics") || l.Contains("Infrastructure.Http")).ToList();
        Assert.DoesNotContain(requestLines, l => l.StartsWith("Error", StringComparison.Ordinal) || l.Contains("   at ", StringComparison.Ordinal));
        Assert.Contains(requestLines, l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains("database_unavailable"));
    }
}

/// <summary>
/// The service on a failover host list (Target Session Attributes=primary) where no host answers: the first failure
/// marks every host offline, and until the recheck the host list itself refuses ("No suitable host was found").
/// </summary>
public sealed class NoPrimaryReachableApp : GatewayApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        base.ConfigureTestServices(builder);
        var port = new Uri(ClosedUpstream).Port;
        var csb = new NpgsqlConnectionStringBuilder(ConnectionString)
        {
            Host = $"127.0.0.1:{port},localhost:{port}", TargetSessionAttributes = "primary", HostRecheckSeconds = 60, Timeout = 2,
        };
        builder.UseSetting("ConnectionStrings:Billing", csb.ConnectionString);
    }
}

public class NoPrimaryReachableTests(NoPrimaryReachableApp app) : IClassFixture<NoPrimaryReachableApp>
{
    [Fact]
    public async Task EveryCallWhileNoHostOfTheListIsPrimaryIs503NotA500()
    {
        var client = app.ClientWithKey("aks_test_" + new string('b', 40));
        for (var i = 0; i < 3; i++)
        {
            var r = await client.PostJsonAsync("/v1/requests/batch", new { requests = new[] { new { request_id = $"r{i}", meter_slug = "gpt" } } });
            r.AssertProblem(HttpStatusCode.ServiceUnavailable, "database_unavailable");
        }
    }
}

/// <summary>Sessions the server ends (an administrator, a restart, a failover) answer 503, and the next call is served.</summary>
public class TerminatedSessionTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task ACallWhoseSessionsWereTerminatedIs503AndTheNextOneSucceeds()
    {
        var m = await App.NewMerchantAsync();
        Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync("/v1/customers")).Status);
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            await admin.ExecuteAsync("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
        }
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++) statuses.Add((await m.Client.GetJsonAsync("/v1/customers")).Status);
        Assert.All(statuses, s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"got {(int)s}"));
        Assert.Equal(HttpStatusCode.OK, statuses[^1]);
    }
}
