using Dapper;
using Lava.Billing.Infrastructure.Http;
using Npgsql;

namespace Lava.Billing.Infrastructure;

public static class Health
{
    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/healthz", () => TypedResults.Ok(new { status = "ok" })).WithName("Healthz").WithSummary("The process is up");
        routes.MapGet("/readyz", Ready).WithName("Readyz").WithSummary("The database answers");
        return routes;
    }

    private static async Task<IResult> Ready(NpgsqlDataSource db, CancellationToken ct)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            await using var connection = await db.OpenConnectionAsync(timeout.Token);
            await connection.ExecuteScalarAsync<int>(new CommandDefinition("SELECT 1", cancellationToken: timeout.Token));
            return TypedResults.Ok(new { status = "ready" });
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException or TimeoutException)
        {
            return Problems.Unavailable("The database is not reachable.");
        }
    }
}
