using Lava.Billing.Infrastructure;

namespace Lava.Billing.Tests.Infrastructure;

public class IdsTests
{
    [Fact]
    public void IdsMadeInTheSameMillisecondSortInTheOrderTheyWereMade()
    {
        var at = DateTimeOffset.UtcNow;
        var ids = Enumerable.Range(0, 1000).Select(_ => Ids.New("cus", at)).ToList();
        Assert.Equal(ids, ids.Order(StringComparer.Ordinal));
        Assert.Equal(1000, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Matches("^cus_[0-9A-HJKMNP-TV-Z]{26}$", id));
    }

    [Fact]
    public void AClockSteppingBackDoesNotBreakTheOrder()
    {
        var now = DateTimeOffset.UtcNow;
        var later = Ids.New("txn", now.AddMilliseconds(20));
        var earlier = Ids.New("txn", now);
        Assert.True(string.CompareOrdinal(later, earlier) < 0);
    }
}
