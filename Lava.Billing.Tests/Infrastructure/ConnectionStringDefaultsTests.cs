using Lava.Billing.Infrastructure.Database;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>The service's defaults for its pools yield to what the connection string sets, under any of a setting's names.</summary>
public class ConnectionStringDefaultsTests
{
    private static NpgsqlConnectionStringBuilder Defaulted(string connectionString) =>
        new(Database.WithDefaults(connectionString, "lava-billing"));

    [Theory]
    [InlineData("Host=h", 64)]
    [InlineData("Host=h;Maximum Pool Size=7", 7)]
    [InlineData("Host=h;maximum pool size=7", 7)]
    [InlineData("Host=h;MaxPoolSize=7", 7)]
    public void APoolSizeTheStringSetsIsKept(string connectionString, int size) =>
        Assert.Equal(size, Defaulted(connectionString).MaxPoolSize);

    [Fact]
    public void AMinimumAboveTheDefaultSizeRaisesTheMaximumToIt()
    {
        var defaulted = Database.WithDefaults("Host=h;Minimum Pool Size=100", "lava-billing");
        var read = new NpgsqlConnectionStringBuilder(defaulted);
        Assert.Equal((100, 100), (read.MaxPoolSize, read.MinPoolSize));
        using var pool = NpgsqlDataSource.Create(defaulted); // Npgsql refuses a minimum above the maximum here
    }

    [Fact]
    public void TheOtherDefaultsYieldToTheStringToo()
    {
        var plain = Defaulted("Host=h");
        Assert.Equal((30, 32, true), (plain.CommandTimeout, plain.MaxAutoPrepare, plain.NoResetOnClose));
        var set = Defaulted("Host=h;CommandTimeout=5;Max Auto Prepare=0;No Reset On Close=false");
        Assert.Equal((5, 0, false), (set.CommandTimeout, set.MaxAutoPrepare, set.NoResetOnClose));
    }

    [Theory]
    [InlineData("Host=h", 5, 0)]
    [InlineData("Host=h;MaxPoolSize=2", 2, 0)]
    [InlineData("Host=h;Minimum Pool Size=20", 5, 5)]
    public void ThePostingPoolIsSizedForItsWritersWithinWhatTheStringAllows(string connectionString, int max, int min)
    {
        using var shared = NpgsqlDataSource.Create(connectionString);
        var reserved = new NpgsqlConnectionStringBuilder(Database.PostingConnectionsBeside(shared, connectionString, 4,
            Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance)[PostingPool.Reserved].ConnectionString);
        Assert.Equal((max, min, "lava-billing-posting"), (reserved.MaxPoolSize, reserved.MinPoolSize, reserved.ApplicationName));
    }
}
