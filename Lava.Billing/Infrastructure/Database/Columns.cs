using Npgsql;
using NpgsqlTypes;

namespace Lava.Billing.Infrastructure.Database;

/// <summary>
/// One column of a set-based insert: its name, the PostgreSQL type of its array parameter, and how a row gives its value.
/// </summary>
public sealed class Column<T>
{
    private readonly Func<IReadOnlyList<T>, object> _values;
    private readonly NpgsqlDbType _element;

    private Column(string name, string sqlType, NpgsqlDbType element, Func<IReadOnlyList<T>, object> values, string? orElse = null)
    {
        Name = name;
        SqlType = sqlType;
        _element = element;
        _values = values;
        OrElse = orElse;
    }

    public string Name { get; }
    public string SqlType { get; }
    /// <summary>An SQL expression used where a row gives null (the column's default, e.g. <c>now()</c>).</summary>
    public string? OrElse { get; }

    // Every parameter's type is stated, never inferred from its value: Npgsql types an empty DateTime[] as timestamp[]
    // and a non-empty one as timestamptz[], and runs a prepared statement unprepared whenever a call's parameter types
    // differ from those it was prepared with.
    public NpgsqlParameter Parameter(IReadOnlyList<T> rows) =>
        new() { Value = _values(rows), NpgsqlDbType = NpgsqlDbType.Array | _element };

    public static Column<T> Text(string name, Func<T, string?> value) =>
        new(name, "text", NpgsqlDbType.Text, rows => rows.Select(value).ToArray());

    /// <summary>Sent as text and cast by the statement, so a row's JSON is stored as it was serialised.</summary>
    public static Column<T> Jsonb(string name, Func<T, string> value) =>
        new(name, "jsonb", NpgsqlDbType.Text, rows => rows.Select(value).ToArray());

    public static Column<T> Numeric(string name, Func<T, decimal?> value) =>
        new(name, "numeric", NpgsqlDbType.Numeric, rows => rows.Select(value).ToArray());

    public static Column<T> Integer(string name, Func<T, int?> value) =>
        new(name, "int", NpgsqlDbType.Integer, rows => rows.Select(value).ToArray());

    public static Column<T> Smallint(string name, Func<T, short> value) =>
        new(name, "smallint", NpgsqlDbType.Smallint, rows => rows.Select(value).ToArray());

    public static Column<T> Bigint(string name, Func<T, long> value) =>
        new(name, "bigint", NpgsqlDbType.Bigint, rows => rows.Select(value).ToArray());

    public static Column<T> Bytea(string name, Func<T, byte[]> value) =>
        new(name, "bytea", NpgsqlDbType.Bytea, rows => rows.Select(value).ToArray());

    public static Column<T> TimestampTz(string name, Func<T, DateTimeOffset?> value, string? orElse = null) =>
        new(name, "timestamptz", NpgsqlDbType.TimestampTz, rows => rows.Select(r => value(r)?.UtcDateTime).ToArray(), orElse);
}

/// <summary>
/// A table's columns, declared once: they give the INSERT's column list, the <c>unnest</c> of typed array parameters that
/// feeds it (one array per column, positional parameters from <c>first</c>), and the parameters themselves, so a column
/// is added in one place and the three cannot drift apart.
/// </summary>
public sealed class Columns<T>(params Column<T>[] columns)
{
    public int Count => columns.Length;

    /// <summary><c>merchant_id, request_id, …</c></summary>
    public string Names => string.Join(", ", columns.Select(c => c.Name));

    /// <summary><c>unnest($first::text[], …) AS k(a, b, …)</c>: the rows, one array parameter a column.</summary>
    public string Unnest(int first, string alias) =>
        "unnest(" + string.Join(", ", columns.Select((c, i) => $"${first + i}::{c.SqlType}[]")) + $") AS {alias}({Names})";

    /// <summary><c>SELECT k.a, coalesce(k.b, now()) … FROM unnest(…) AS k(a, b, …)</c>.</summary>
    public string SelectUnnest(int first, string alias) =>
        "SELECT " + string.Join(", ", columns.Select(c => c.OrElse is null ? $"{alias}.{c.Name}" : $"coalesce({alias}.{c.Name}, {c.OrElse})")) +
        " FROM " + Unnest(first, alias);

    public IEnumerable<NpgsqlParameter> Parameters(IReadOnlyList<T> rows) => columns.Select(c => c.Parameter(rows));
}
