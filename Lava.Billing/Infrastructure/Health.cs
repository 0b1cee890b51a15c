using Dapper;
using Lava.Billing.Infrastructure.Http;
using Npgsql;

namespace Lava.Billing.Infrastructure;

public static class Health
{
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/healthz", () => TypedResults.Ok(new { status = "ok" })).WithName("Healthz").WithSummary("The process is up");
        routes.MapGet("/readyz", Ready).WithName("Readyz").WithSummary("A primary database answers");
        return routes;
    }

    private static async Task<IResult> Ready(NpgsqlDataSource db, CancellationToken ct)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            await using var connection = await db.OpenConnectionAsync(timeout.Token);
            // A standby answers too (a single-host string naming a node that was demoted): it cannot take a report.
            var standby = await connection.ExecuteScalarAsync<bool>(new CommandDefinition("SELECT pg_is_in_recovery()", cancellationToken: timeout.Token));
            return standby ? Problems.Unavailable("The database reached is a standby; no primary is reachable.") : TypedResults.Ok(new { status = "ready" });
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            return Problems.Unavailable("No primary database is reachable.");
        }
    }
}
