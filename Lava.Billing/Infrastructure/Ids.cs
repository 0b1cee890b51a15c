using System.Security.Cryptography;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// Prefixed, time-sortable ids: <c>cus_</c> + 26 Crockford base32 characters (48-bit millisecond time, 80 random bits).
/// Monotonic within the process: an id made in the same millisecond as the last one (or with the clock stepping back)
/// takes the last one's random part plus one, so ids sort in the order they were made.
/// </summary>
public static class Ids
{
    private const string Alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    private static readonly UInt128 RandomMask = (UInt128.One << 80) - 1;
    private static readonly Lock Gate = new();
    private static ulong _lastMs;
    private static UInt128 _lastRandom;

    public static string New(string prefix) => New(prefix, DateTimeOffset.UtcNow);

    public static string New(string prefix, DateTimeOffset at)
    {
        var ms = (ulong)Math.Max(at.ToUnixTimeMilliseconds(), 0);
        UInt128 random;
        lock (Gate)
        {
            if (ms <= _lastMs && _lastRandom < RandomMask)
            {
                ms = _lastMs;
                random = _lastRandom + 1;
            }
            else
            {
                Span<byte> bytes = stackalloc byte[10];
                RandomNumberGenerator.Fill(bytes);
                random = new UInt128(System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(bytes),
                    System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes[2..]));
                ms = Math.Max(ms, _lastMs + (ms <= _lastMs ? 1UL : 0UL));
            }
            _lastMs = ms;
            _lastRandom = random;
        }

        var value = ((UInt128)ms << 80) | random;
        Span<char> chars = stackalloc char[26];
        for (var i = 25; i >= 0; i--) { chars[i] = Alphabet[(int)(value & 31)]; value >>= 5; }
        return string.Concat(prefix, "_", chars);
    }
}
