using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Customers;

public static class CustomersApi
{
    public static RouteGroupBuilder MapCustomersApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/customers").WithTags("Customers");
        group.MapGet("/", List).WithName("ListCustomers").WithSummary("List live customers");
        group.MapPost("/", Create).WithValidation()
            .WithName("CreateCustomer").WithSummary("Create a customer and its ledger accounts");
        group.MapGet("/{customerId}", Retrieve).WithName("RetrieveCustomer").WithSummary("A live customer");
        group.MapPatch("/{customerId}", Update).WithValidation()
            .WithName("UpdateCustomer").WithSummary("Change a customer's fields (null clears one)");
        group.MapDelete("/{customerId}", Delete)
            .WithName("DeleteCustomer").WithSummary("Delete a customer (its ledger history stays)");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<RestCustomer>>, ProblemResult>> List(
        Caller caller, CustomerStore customers, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await customers.ListAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.CustomerId, RestCustomer.From));
    }

    public static async Task<Created<RestCustomer>> Create(
        Caller caller, CustomerStore customers, CreateCustomerParams body, CancellationToken ct)
    {
        var customer = new NewCustomer(body.ReferenceId, body.Name, body.Email, body.Phone, CustomerRules.Serialize(body.Metadata));
        var row = await customers.CreateAsync(caller.MerchantId, customer, ct);
        return TypedResults.Created($"/v1/customers/{row.CustomerId}", RestCustomer.From(row));
    }

    public static async Task<Results<Ok<RestCustomer>, ProblemResult>> Retrieve(
        Caller caller, CustomerStore customers, string customerId, CancellationToken ct) =>
        await customers.FindAsync(caller.MerchantId, customerId, ct) is { } row
            ? TypedResults.Ok(RestCustomer.From(row))
            : Problems.NotFound("customer", customerId);

    public static async Task<Results<Ok<RestCustomer>, ProblemResult>> Update(
        Caller caller, CustomerStore customers, string customerId, UpdateCustomerParams body, CancellationToken ct)
    {
        var metadata = body.Metadata.IsSet ? Optional<string>.Of(CustomerRules.Serialize(body.Metadata.Value)) : default;
        var changes = new CustomerChanges(body.ReferenceId, body.Name, body.Email, body.Phone, metadata);
        return await customers.UpdateAsync(caller.MerchantId, customerId, changes, ct) is { } row
            ? TypedResults.Ok(RestCustomer.From(row))
            : Problems.NotFound("customer", customerId);
    }

    public static async Task<Results<Ok<SuccessResponse>, ProblemResult>> Delete(
        Caller caller, CustomerStore customers, string customerId, CancellationToken ct) =>
        await customers.DeleteAsync(caller.MerchantId, customerId, ct) switch
        {
            CustomerStore.DeleteOutcome.Deleted => TypedResults.Ok(new SuccessResponse(true)),
            CustomerStore.DeleteOutcome.HasSubscription => Problems.Conflict("customer_has_subscription",
                "The customer has an active subscription; cancel it and let it end before deleting the customer."),
            _ => Problems.NotFound("customer", customerId),
        };
}
