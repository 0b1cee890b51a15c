namespace Lava.Billing.Infrastructure.Http;

/// <summary>What the SDK expects from a delete of a meter, plan or secret key.</summary>
public sealed record DeletedResponse(string Id, bool Deleted);

/// <summary>What the SDK expects from customers.delete, subscriptions.update and subscriptions.cancel.</summary>
public sealed record SuccessResponse(bool Success);
