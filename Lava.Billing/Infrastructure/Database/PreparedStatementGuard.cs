using System.Diagnostics;
using System.Reflection;
using Npgsql;

namespace Lava.Billing.Infrastructure.Database;

/// <summary>
/// Keeps a failed statement from leaving its pooled connection out of step with PostgreSQL (docs/input.md, "A failed
/// statement and its connection"). With auto-prepare, Npgsql sends a statement's Parse together with its Bind on the
/// fifth use; when PostgreSQL refuses that Bind (a value it cannot take, a cast that fails while the statement is
/// planned with its values), Npgsql 10.0.x has already marked the statement prepared but never read its row
/// description, and the next use of it on that connection fails on its first row. After any command of the service's
/// data sources fails, this marks such statements invalidated — the state Npgsql itself gives a prepared statement whose
/// description may be stale — so their next use prepares them again.
/// </summary>
public static class PreparedStatementGuard
{
    private const string CommandProperty = "lava.npgsql.command";

    // Npgsql offers no public hook for a failed command; its tracing does (a span per command, stopped with an error
    // status before the exception leaves the command), and its internals hold the statement's state. A version that
    // renames them fails here, at startup and in PooledConnectionTests, rather than leaving connections unguarded.
    private static readonly PropertyInfo CommandStatements = Internal(typeof(NpgsqlCommand), "InternalBatchCommands");
    private static readonly PropertyInfo PreparedStatement = Internal(typeof(NpgsqlBatchCommand), "PreparedStatement");
    private static readonly Type PreparedStatementType = PreparedStatement.PropertyType;
    private static readonly PropertyInfo State = Internal(PreparedStatementType, "State");
    private static readonly FieldInfo Description = PreparedStatementType.GetField("Description", BindingFlags.Instance | BindingFlags.NonPublic)
        ?? throw new MissingMemberException(PreparedStatementType.FullName, "Description");
    private static readonly object Prepared = Enum.Parse(State.PropertyType, "Prepared");
    private static readonly object Invalidated = Enum.Parse(State.PropertyType, "Invalidated");

    private static readonly ActivityListener Listener = new()
    {
        ShouldListenTo = source => source.Name == "Npgsql",
        // The span is needed only as a carrier: no tags, no export (an OpenTelemetry tracer, if one listens, asks for more).
        Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.PropagationData,
        ActivityStopped = OnStopped,
    };

    static PreparedStatementGuard() => ActivitySource.AddActivityListener(Listener);

    /// <summary>Guards every connection of the data source <paramref name="builder"/> builds.</summary>
    public static NpgsqlDataSourceBuilder UsePreparedStatementGuard(this NpgsqlDataSourceBuilder builder) =>
        builder.ConfigureTracing(t => t
            .ConfigureCommandEnrichmentCallback((activity, command) => activity.SetCustomProperty(CommandProperty, command))
            .ConfigureBatchEnrichmentCallback((activity, batch) => activity.SetCustomProperty(CommandProperty, batch)));

    private static void OnStopped(Activity activity)
    {
        if (activity.Status != ActivityStatusCode.Error) return;
        var statements = activity.GetCustomProperty(CommandProperty) switch
        {
            NpgsqlCommand command => (IEnumerable<NpgsqlBatchCommand>?)CommandStatements.GetValue(command),
            NpgsqlBatch batch => batch.BatchCommands,
            _ => null,
        };
        if (statements is null) return;
        foreach (var statement in statements) Repair(statement);
    }

    /// <summary>
    /// A prepared statement without a description either returns no rows or never received its description; a failed
    /// command cannot tell which, and preparing one again costs one round trip's worth of messages, once.
    /// </summary>
    private static void Repair(NpgsqlBatchCommand statement)
    {
        var prepared = PreparedStatement.GetValue(statement);
        if (prepared is null || !Prepared.Equals(State.GetValue(prepared)) || Description.GetValue(prepared) is not null) return;
        State.SetValue(prepared, Invalidated);
    }

    private static PropertyInfo Internal(Type type, string name) =>
        type.GetProperty(name, BindingFlags.Instance | BindingFlags.NonPublic) ?? throw new MissingMemberException(type.FullName, name);
}
