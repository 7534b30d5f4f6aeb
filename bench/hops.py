#!/usr/bin/env python3
"""Per-hop timings of a proxy on loopback, from packet timestamps (tcpdump), for streams.

    python3 bench/hops.py --proxy-port P --upstream-port U [--model M] [--streams N]

With the proxy (nginx, switchyard, ...) already forwarding 127.0.0.1:P to a streaming fake
upstream on 127.0.0.1:U, sends N streamed chat requests one after another with loadgen while
tcpdump records the payload-carrying packets on both ports, then prints, from the kernel's
timestamps (no process is slowed by tracing):

    in-path              client request -> the proxy's request to the upstream
    first content relay  upstream's first content packet -> the proxy's next packet to the client
    later chunk relay    each later upstream chunk -> the proxy's next packet to the client
    upstream ttfc        the proxy's request -> the upstream's first content packet

The first upstream packet of a stream is taken as its head and role preamble (the fake sends
them before its first paced content chunk). Needs tcpdump (Debian package) and root. tcpdump
wakes for every packet, which on a 2-core machine perturbs what it measures: a diagnostic for
comparing proxies measured the same way one after the other, not a benchmark figure.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse(path: Path) -> list[tuple[float, str, str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        p = line.split()
        if "length" not in p or len(p) < 5:
            continue
        try:
            n = int(p[-1])
        except ValueError:
            continue
        if n == 0:
            continue
        rows.append((float(p[0]), p[2].rsplit(".", 1)[1], p[4].rstrip(":").rsplit(".", 1)[1], n))
    return rows


def analyse(rows, proxy: str, upstream: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"in-path": [], "first content relay": [], "later chunk relay": [],
                                   "upstream ttfc": []}
    i = 0
    while i < len(rows):
        t_in, _, dst, size = rows[i]
        if not (dst == proxy and size > 300):  # a client request
            i += 1
            continue
        j = i + 1
        while j < len(rows) and rows[j][2] != upstream:
            j += 1
        if j >= len(rows):
            break
        t_up = rows[j][0]
        out["in-path"].append(t_up - t_in)
        ups, outs, k = [], [], j + 1
        while k < len(rows) and not (rows[k][2] == proxy and rows[k][3] > 300):
            if rows[k][1] == upstream:
                ups.append(rows[k][0])
            elif rows[k][1] == proxy:
                outs.append(rows[k][0])
            k += 1

        def relay(t0: float) -> float | None:
            later = [o for o in outs if o >= t0]
            return later[0] - t0 if later else None

        if len(ups) > 2:
            out["upstream ttfc"].append(ups[1] - t_up)
            first = relay(ups[1])
            if first is not None:
                out["first content relay"].append(first)
            for t in ups[2:-1]:
                v = relay(t)
                if v is not None:
                    out["later chunk relay"].append(v)
        i = k
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxy-port", required=True)
    ap.add_argument("--upstream-port", required=True)
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--streams", type=int, default=100)
    opts = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "loadgen"
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "hops.txt"
        with cap.open("w") as f:
            dump = subprocess.Popen(["tcpdump", "-i", "lo", "-nn", "-tt", "-l",
                                     f"tcp port {opts.proxy_port} or tcp port {opts.upstream_port}"],
                                    stdout=f, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1)
                subprocess.run([str(target), "--url", f"http://127.0.0.1:{opts.proxy_port}/v1/chat/completions",
                                "--model", opts.model, "-c", "1", "--stream", "--requests", str(opts.streams),
                                "--warmup", "0s"], check=True, stdout=subprocess.DEVNULL, timeout=600)
                time.sleep(0.5)
            finally:
                dump.send_signal(signal.SIGINT)
                dump.wait(timeout=10)
        hops = analyse(parse(cap), opts.proxy_port, opts.upstream_port)
    for name, xs in hops.items():
        if xs:
            xs_us = sorted(x * 1e6 for x in xs)
            print(f"{name:20} n={len(xs_us):5}  p50 {statistics.median(xs_us):7.0f} µs  "
                  f"p90 {xs_us[int(len(xs_us) * 0.9)]:7.0f} µs  mean {statistics.mean(xs_us):7.0f} µs")
        else:
            print(f"{name:20} no samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
