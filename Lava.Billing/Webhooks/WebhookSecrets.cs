using System.Security.Cryptography;
using System.Text;

namespace Lava.Billing.Webhooks;

/// <summary>
/// Webhook signing secrets: <c>whsec_</c> + base64 of 32 random bytes (Standard Webhooks' format). The service must be
/// able to sign with them, so they are stored recoverably: sealed with AES-256-GCM under the operator's
/// <c>Webhooks:SecretEncryptionKey</c> (a database dump alone then reveals none), or, without that key, as they are.
/// </summary>
public sealed class WebhookSecrets
{
    private const string SealedPrefix = "aesgcm:";
    private const string PlainPrefix = "plain:";
    private readonly byte[]? _key;

    public WebhookSecrets(WebhookOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.SecretEncryptionKey)) return;
        var key = Convert.FromBase64String(options.SecretEncryptionKey);
        if (key.Length != 32) throw new InvalidOperationException("Webhooks:SecretEncryptionKey must be base64 of exactly 32 bytes.");
        _key = key;
    }

    public bool Sealing => _key is not null;

    public static string Generate() => "whsec_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));

    public string Seal(string secret)
    {
        if (_key is null) return PlainPrefix + secret;
        var plain = Encoding.UTF8.GetBytes(secret);
        var nonce = RandomNumberGenerator.GetBytes(AesGcm.NonceByteSizes.MaxSize);
        var tag = new byte[AesGcm.TagByteSizes.MaxSize];
        var cipher = new byte[plain.Length];
        using var aes = new AesGcm(_key, tag.Length);
        aes.Encrypt(nonce, plain, cipher, tag);
        return SealedPrefix + Convert.ToBase64String([.. nonce, .. tag, .. cipher]);
    }

    public string Unseal(string stored)
    {
        if (stored.StartsWith(PlainPrefix, StringComparison.Ordinal)) return stored[PlainPrefix.Length..];
        if (_key is null || !stored.StartsWith(SealedPrefix, StringComparison.Ordinal))
            throw new InvalidOperationException("A webhook secret is sealed, but Webhooks:SecretEncryptionKey is not set.");
        var bytes = Convert.FromBase64String(stored[SealedPrefix.Length..]);
        var nonceSize = AesGcm.NonceByteSizes.MaxSize;
        var tagSize = AesGcm.TagByteSizes.MaxSize;
        var plain = new byte[bytes.Length - nonceSize - tagSize];
        using var aes = new AesGcm(_key, tagSize);
        aes.Decrypt(bytes.AsSpan(0, nonceSize), bytes.AsSpan(nonceSize + tagSize), bytes.AsSpan(nonceSize, tagSize), plain);
        return Encoding.UTF8.GetString(plain);
    }
}
