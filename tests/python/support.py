"""Helpers shared by the SDK tests: free loopback ports, waiting for a server, and starting the
fake upstream binaries (which print `listening on http://ADDR` once bound)."""

import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> None:
    """Waits until `url` answers 200."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


def start_fake(args: list) -> tuple:
    """Starts a fake upstream binary; returns (process, its http://ADDR base URL)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on http://"):
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def stop_all(procs: list) -> None:
    """Terminates the processes (killing any that do not exit within 10 s)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def start_gateway(procs: list, binary: str, config_path) -> str:
    """Starts `switchyard serve` on a free port with `config_path`, appends the process to
    `procs` and returns its `http://127.0.0.1:PORT` once `/health` answers."""
    port = free_port()
    procs.append(subprocess.Popen([binary, "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}"],
                                  stdout=sys.stderr, stderr=sys.stderr))
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health")
    return base
