using System.Security.Cryptography;
using System.Text;

namespace Lava.Billing.Merchants;

public static class KeyScopes
{
    public const string Full = "full";
    public const string ReadOnly = "read_only";
}

/// <summary>Secret keys: 192 random bits, shown once, stored only as their SHA-256.</summary>
public static class SecretKeys
{
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    public static string Generate()
    {
        // 32 base62 characters carry 190 bits; rejection sampling keeps every character uniform.
        var chars = new char[32];
        for (var i = 0; i < chars.Length; i++) chars[i] = Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)];
        return "aks_test_" + new string(chars);
    }

    public static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));

    public static string Hint(string secret) => string.Concat(secret.AsSpan(0, 9), "...", secret.AsSpan(secret.Length - 4));
}
