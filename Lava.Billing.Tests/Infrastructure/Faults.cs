using Dapper;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Writes made to fail as a fault would (a trigger raising), for as long as a test holds the fault.</summary>
public static class Faults
{
    /// <summary>
    /// Makes writes to <paramref name="table"/> matching <paramref name="condition"/> (on NEW) fail: only the first
    /// (<paramref name="once"/>, as while the database is away) or every one (a fault of the row's own). A sequence counts
    /// the matches across rolled-back transactions. Dispose to remove it.
    /// </summary>
    public static async Task<InjectedFault> InjectFaultAsync(this LavaApp app, string name, string table, string operation, string condition,
        bool once)
    {
        await app.ExecuteAsAdminAsync($"""
            CREATE SEQUENCE {name};
            GRANT USAGE, SELECT ON SEQUENCE {name} TO PUBLIC;
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF {condition} AND nextval('{name}') {(once ? "= 1" : ">= 1")} THEN RAISE EXCEPTION 'injected fault'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();
            """);
        return new InjectedFault(app, name, table);
    }

    public static async Task ExecuteAsAdminAsync(this LavaApp app, string sql)
    {
        await using var admin = new NpgsqlConnection(app.AdminConnectionString);
        await admin.ExecuteAsync(sql);
    }

    public sealed class InjectedFault(LavaApp app, string name, string table) : IAsyncDisposable
    {
        /// <summary>Whether the fault fired (the sequence counted the failing write and at least one after it).</summary>
        public async Task<bool> FiredAsync() => await app.QueryAsync<long>($"SELECT last_value FROM {name}") >= 2;

        public async ValueTask DisposeAsync() =>
            await app.ExecuteAsAdminAsync($"DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}(); DROP SEQUENCE {name};");
    }
}
