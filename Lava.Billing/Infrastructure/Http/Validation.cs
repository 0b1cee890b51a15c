using FluentValidation;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// One endpoint filter validates every body that has a registered <see cref="IValidator{T}"/>, answering 400 with
/// field errors before the handler runs, and advertises that 400 to OpenAPI.
/// </summary>
public static class Validation
{
    public static TBuilder WithValidation<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder
    {
        builder.Add(endpoint => endpoint.Metadata.Add(new Microsoft.AspNetCore.Http.ProducesResponseTypeMetadata(
            StatusCodes.Status400BadRequest, typeof(ProblemBody), ["application/problem+json"])));
        builder.AddEndpointFilterFactory((context, next) =>
        {
            var targets = context.MethodInfo.GetParameters()
                .Select((p, i) => (Index: i, Type: typeof(IValidator<>).MakeGenericType(p.ParameterType)))
                .Where(t => context.ApplicationServices.GetService(t.Type) is not null)
                .ToArray();
            if (targets.Length == 0) return next;
            return async invocation =>
            {
                foreach (var (index, type) in targets)
                {
                    var argument = invocation.Arguments[index];
                    if (argument is null)
                        return Problems.MalformedJson("A JSON request body is required.");
                    var validator = (IValidator)invocation.HttpContext.RequestServices.GetRequiredService(type);
                    var result = await validator.ValidateAsync(new ValidationContext<object>(argument), invocation.HttpContext.RequestAborted);
                    if (!result.IsValid) return Problems.Validation(result.ToDictionary());
                }
                return await next(invocation);
            };
        });
        return builder;
    }
}
