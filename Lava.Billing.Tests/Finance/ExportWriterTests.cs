using System.Globalization;
using System.Text;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Tests.Finance;

/// <summary>The export writer's own formatters write exactly what the .NET formats they replace would.</summary>
public class ExportWriterTests
{
    private static IEnumerable<DateTime> Instants()
    {
        yield return DateTime.MinValue;
        yield return DateTime.MaxValue;
        yield return new DateTime(999, 12, 31, 23, 59, 59, DateTimeKind.Utc).AddTicks(9_999_999);
        yield return new DateTime(2026, 3, 1, 8, 15, 0, DateTimeKind.Utc).AddTicks(1_234_560);
        var random = new Random(20260301);
        for (var i = 0; i < 20_000; i++) yield return new DateTime(random.NextInt64(DateTime.MinValue.Ticks, DateTime.MaxValue.Ticks + 1), DateTimeKind.Utc);
    }

    [Fact]
    public void TimestampsAreWrittenAsTheMicrosecondFormatWritesThemTruncatingTicks()
    {
        Span<byte> buffer = stackalloc byte[64];
        foreach (var instant in Instants())
        {
            Assert.True(ExportWriter.TryFormatTimestamp(instant, buffer, out var written));
            Assert.Equal(instant.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture), Encoding.UTF8.GetString(buffer[..written]));
        }
        Assert.False(ExportWriter.TryFormatTimestamp(DateTime.UnixEpoch, buffer[..26], out _));
    }

    private static IEnumerable<decimal> Amounts()
    {
        decimal[] edges = [0m, -0m, 0.00000000005m, -0.00000000005m, 0.000000000049m, 1.25m, -1.2500000000m, Money.MaxBalance, -Money.MaxBalance,
            123456789012345678.0123456789m, decimal.MaxValue, decimal.MinValue, 0.0000000000000000000000000001m];
        foreach (var edge in edges) yield return edge;
        var random = new Random(20260302);
        for (var i = 0; i < 20_000; i++)
            yield return new decimal(random.Next(), random.Next(), random.Next(0, 5), random.Next(2) == 0, (byte)random.Next(0, 29));
    }

    [Fact]
    public void MoneyIsWrittenAsMoneyFormatWritesIt()
    {
        Span<byte> buffer = stackalloc byte[64];
        foreach (var amount in Amounts())
        {
            Assert.True(Money.TryFormat(amount, buffer, out var written));
            Assert.Equal(Money.Format(amount), Encoding.UTF8.GetString(buffer[..written]));
        }
    }
}
