using System.Security.Cryptography;
using Lava.Billing.Merchants;

namespace Lava.Billing.SpendKeys;

/// <summary>Spend keys: <c>lava_sk_</c> + 40 base62 characters (238 bits), shown once, stored as their SHA-256.</summary>
public static class SpendKeySecrets
{
    public const string Prefix = "lava_sk_";
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    public static string Generate() => Prefix + RandomNumberGenerator.GetString(Alphabet, 40);

    /// <summary>Same hash as secret keys, so both are looked up the same way.</summary>
    public static byte[] Hash(string key) => SecretKeys.Hash(key);

    public static string Preview(string key) => string.Concat(Prefix, "...", key.AsSpan(key.Length - 4));

    public static bool LooksLikeOne(string? key) => key is { Length: > 8 and <= 200 } && key.StartsWith(Prefix, StringComparison.Ordinal);
}
