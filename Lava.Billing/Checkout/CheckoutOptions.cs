namespace Lava.Billing.Checkout;

/// <summary>The <c>Checkout</c> configuration section.</summary>
public sealed class CheckoutOptions
{
    /// <summary>How long a session can be completed after it is made.</summary>
    public int SessionLifetimeMinutes { get; set; } = 1440;

    /// <summary>Serve the test page (<c>/checkout/{token}</c>) for sessions made with a test key.</summary>
    public bool TestPage { get; set; } = true;
}
