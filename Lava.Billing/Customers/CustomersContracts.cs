using System.Text.Json;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Customers;

public sealed record CreateCustomerParams(string? ReferenceId, string? Email, string? Phone, string? Name, JsonElement? Metadata);

/// <summary>Every member optional: an explicit null clears the field, an absent member leaves it as it is.</summary>
public sealed record UpdateCustomerParams(
    Optional<string> Name, Optional<string> Email, Optional<string> Phone, Optional<string> ReferenceId, Optional<JsonElement?> Metadata);

/// <summary>Contact details as the SDK reads them: strings, "" when unknown.</summary>
public sealed record RestCustomerContact(string Phone, string Email, string FirstName, string LastName)
{
    public static RestCustomerContact From(CustomerRow c)
    {
        var name = c.Name?.Trim() ?? "";
        var space = name.IndexOf(' ');
        var (first, last) = space < 0 ? (name, "") : (name[..space], name[(space + 1)..].TrimStart());
        return new RestCustomerContact(c.Phone ?? "", c.Email ?? "", first, last);
    }
}

/// <summary>The SDK's RestCustomer; <c>subscription</c> is its active subscription in short, or null.</summary>
public sealed record RestCustomer(
    string CustomerId, string? ReferenceId, RestCustomerContact Contact, RestCustomerSubscription? Subscription, JsonElement? Metadata,
    DateTime CreatedAt)
{
    public static RestCustomer From(CustomerRow c) => new(c.CustomerId, c.ReferenceId, RestCustomerContact.From(c),
        c.SubscriptionId is null ? null : new RestCustomerSubscription(c.SubscriptionId, c.PlanId!, c.PlanName!, c.SubscriptionStatus!),
        c.Metadata is null ? null : JsonDocument.Parse(c.Metadata).RootElement.Clone(), c.CreatedAt);
}

/// <summary>SDK <c>RestCustomerSubscription</c>: the customer's active subscription in short.</summary>
public sealed record RestCustomerSubscription(string SubscriptionId, string PlanId, string Name, string Status);


