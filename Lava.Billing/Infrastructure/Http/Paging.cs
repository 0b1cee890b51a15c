using System.Buffers.Text;
using System.Text;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>List envelope shared by every list route (docs/design.md, "Wire conventions").</summary>
public sealed record ListResponse<T>(IReadOnlyList<T> Data, bool HasMore, string? NextCursor);

/// <summary>
/// Keyset paging: the cursor is the opaque (base64url) sort key of the last row returned, so a page never shifts
/// when rows are inserted concurrently.
/// </summary>
public static class Paging
{
    public const int DefaultLimit = 10;
    public const int MaxLimit = 100;

    public sealed record Page(string? After, int Limit);

    public static bool TryRead(string? cursor, string? limit, out Page page, out ProblemResult? problem)
    {
        page = new Page(null, DefaultLimit);
        problem = null;
        var errors = new Dictionary<string, string[]>();
        var take = DefaultLimit;
        if (!string.IsNullOrEmpty(limit) && (!int.TryParse(limit, out take) || take < 1 || take > MaxLimit))
            errors["limit"] = [$"must be an integer from 1 to {MaxLimit}"];
        string? after = null;
        if (!string.IsNullOrEmpty(cursor) && (after = Decode(cursor)) is null)
            errors["cursor"] = ["is not a cursor this API issued"];
        if (errors.Count > 0)
        {
            problem = Problems.Validation(errors);
            return false;
        }
        page = new Page(after, take);
        return true;
    }

    /// <summary>Builds the envelope from up to Limit+1 rows (the extra row only says whether more exist).</summary>
    public static ListResponse<TOut> Envelope<TRow, TOut>(IReadOnlyList<TRow> rows, int limit, Func<TRow, string> key, Func<TRow, TOut> map)
    {
        var hasMore = rows.Count > limit;
        var pageRows = hasMore ? rows.Take(limit).ToList() : rows;
        var data = pageRows.Select(map).ToList();
        return new ListResponse<TOut>(data, hasMore, hasMore ? Encode(key(pageRows[^1])) : null);
    }

    public static string Encode(string key) => Base64Url.EncodeToString(Encoding.UTF8.GetBytes(key));

    public static string? Decode(string cursor)
    {
        if (cursor.Length > 512) return null;
        try
        {
            // A cursor is a key this service encoded: its bytes are clean UTF-8 (no NUL, which PostgreSQL's text refuses).
            var key = Base64Url.DecodeFromChars(cursor);
            return InputText.IsClean(key) ? Encoding.UTF8.GetString(key) : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
