using System.Security.Cryptography;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// Prefixed, time-sortable ids: <c>cus_</c> + 26 Crockford base32 characters (48-bit millisecond time, 80 random bits),
/// so ids sort by creation time and keyset cursors over them stay stable.
/// </summary>
public static class Ids
{
    private const string Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

    public static string New(string prefix) => New(prefix, DateTimeOffset.UtcNow);

    public static string New(string prefix, DateTimeOffset at)
    {
        Span<byte> bytes = stackalloc byte[16];
        var ms = (ulong)at.ToUnixTimeMilliseconds();
        for (var i = 5; i >= 0; i--) { bytes[i] = (byte)(ms & 0xFF); ms >>= 8; }
        RandomNumberGenerator.Fill(bytes[6..]);

        Span<char> chars = stackalloc char[26];
        var hi = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes);
        var lo = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]);
        var value = new UInt128(hi, lo);
        for (var i = 25; i >= 0; i--) { chars[i] = Alphabet[(int)(value & 31)]; value >>= 5; }
        return string.Concat(prefix, "_", chars);
    }
}
