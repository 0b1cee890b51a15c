using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>A clock tests move by hand; timers still run on real time.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private long _ticks = start.UtcTicks;

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);

    public void Set(DateTimeOffset at) => Interlocked.Exchange(ref _ticks, at.UtcTicks);
}

/// <summary>The app with a <see cref="ManualClock"/> in place of the system clock.</summary>
public sealed class ClockedLavaApp : LavaApp
{
    public ManualClock Clock { get; } = new(new DateTimeOffset(2026, 1, 15, 12, 0, 0, TimeSpan.Zero));

    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.ConfigureTestServices(services => services.AddSingleton<TimeProvider>(Clock));
}

public abstract class ClockedApiTest(ClockedLavaApp app) : IClassFixture<ClockedLavaApp>, IAsyncLifetime
{
    protected ClockedLavaApp App { get; } = app;

    public virtual Task InitializeAsync()
    {
        App.Clock.Set(new DateTimeOffset(2026, 1, 15, 12, 0, 0, TimeSpan.Zero));
        return App.ResetAsync();
    }

    public virtual Task DisposeAsync() => Task.CompletedTask;
}
