#!/usr/bin/env python3
"""Times the disk's flushes on their own, without PostgreSQL: one 8 kB write and fdatasync (timed together, as a
commit's WAL write and flush), RATE times a second, for SECONDS, in a file under DIR (put it on the file system of the
cluster's WAL). Prints the flushes' latency percentiles and every flush slower than STALL_MS with its UTC time, so a
stall PostgreSQL logs (several COMMITs done in the same millisecond after 100 ms or more) can be set beside what the
disk did in that moment.

    python3 bench/flush-probe.py DIR [SECONDS=60] [RATE=250] [STALL_MS=50]
"""
import datetime
import math
import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else 250.0
    stall_ms = float(sys.argv[4]) if len(sys.argv) > 4 else 50.0
    if not (0 < seconds <= 3600 and 0 < rate <= 10000 and stall_ms > 0):
        print("SECONDS 0-3600, RATE 0-10000, STALL_MS > 0", file=sys.stderr)
        return 2

    path = os.path.join(directory, f"flush-probe-{os.getpid()}.tmp")
    block = os.urandom(8192)
    # A 16 MB file written in a ring, as WAL segments are: the flushes rewrite allocated blocks, never grow the file.
    blocks = 2048
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies = []
    stalls = []
    try:
        for i in range(blocks):
            os.pwrite(fd, block, i * 8192)
        os.fsync(fd)
        interval = 1.0 / rate
        start = time.monotonic()
        next_at = start
        i = 0
        while time.monotonic() - start < seconds:
            t0 = time.monotonic()
            os.pwrite(fd, block, (i % blocks) * 8192)
            os.fdatasync(fd)
            took = (time.monotonic() - t0) * 1000.0
            latencies.append(took)
            if took >= stall_ms:
                ended = datetime.datetime.now(datetime.timezone.utc)
                stalls.append((ended.strftime("%H:%M:%S.%f")[:-3], took))
            i += 1
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()
    finally:
        os.close(fd)
        os.unlink(path)

    latencies.sort()

    def pct(p: float) -> float:
        # Nearest rank: the smallest value with at least p% of the flushes at or below it.
        return latencies[max(0, math.ceil(p / 100.0 * len(latencies)) - 1)]

    elapsed = time.monotonic() - start
    print(f"flushes {len(latencies)} in {elapsed:.0f} s ({len(latencies) / elapsed:.0f}/s asked {rate:.0f}/s)")
    print(f"ms p50 {pct(50):.2f} p99 {pct(99):.2f} p99.9 {pct(99.9):.2f} max {latencies[-1]:.2f}")
    print(f"stalls >= {stall_ms:.0f} ms: {len(stalls)}")
    for ended, took in stalls:
        print(f"  ended {ended} UTC, {took:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
