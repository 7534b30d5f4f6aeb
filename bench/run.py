#!/usr/bin/env python3
"""Switchyard's benchmark runner: one command, every figure of the performance issue.

    python3 bench/run.py [--quick] [--repeats N] [--targets a,b,...] [--no-build]
    python3 bench/run.py --render bench/results/latest.json   # the tables again, nothing measured

Builds the release binaries (the gateway twice: plainly, and with profile-guided optimisation by
bench/pgo.sh), starts fake upstreams on loopback (0 ms and 20 ms latency, and two
streaming ones: 50 chunks 1 ms apart, and 50 chunks 80 ms apart for the open-streams figure,
paced by the fake's microsecond-accurate timer),
then measures each target in turn against the same upstreams with `loadgen`:

    direct                            loadgen -> upstream
    nginx                             a plain reverse proxy, the "one extra hop" limit
    switchyard                        a one-target alias on the `openai` kind (the PGO build)
    switchyard-no-pgo                 the same from a plain `cargo build --release`
    switchyard-commit-head            the same aliases with `[stream] commit = "head"` (streams only)
    switchyard-failover-refused       first target refuses connections, breaker never opens
    switchyard-failover-breaker-open  same, default breaker, opened before measuring
    litellm                           LiteLLM proxy (PyPI), --num_workers = cores
    portkey                           Portkey gateway (npm), on node

A target that cannot be installed or started is reported as such, never skipped silently.
Writes bench/results/latest.md and bench/results/latest.json and prints the tables.

Python 3.11 standard library only. Everything listens on 127.0.0.1; every process started here
is stopped here (by process group of the process it started); every load run is bounded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
LOGS = WORK / "logs"

# Pinned peer versions. LiteLLM: releases from 1.104 on require a certifi newer than the
# package index serves here; 1.100.5 resolves. (LiteLLM 1.82.7/1.82.8 and 1.107.0 were
# compromised releases and are not installable anyway.)
LITELLM_SPEC = os.environ.get("BENCH_LITELLM_SPEC", "litellm[proxy]==1.100.5")
PORTKEY_VERSION = os.environ.get("BENCH_PORTKEY_VERSION", "1.15.2")

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
UPSTREAM_MODEL = "gpt-4o-mini"

# The fake upstreams: name -> (latency ms, chunks, chunk delay µs). Chunks are paced by the
# fake's microsecond timer (--chunk-delay-us): tokio's millisecond timer spreads a 1 ms delay
# over 1-2 ms, which hides any per-chunk cost of a gateway and makes time to first chunk depend
# on where each request falls on the millisecond grid.
UPSTREAMS = {
    "up0": (0, 50, 0),
    "up20": (20, 50, 0),
    "stream": (0, 50, 1000),
    "slowstream": (0, 50, 80_000),
}

# The load runs: id -> settings. "up" is the upstream the target forwards to.
RUNS = {
    "c1": dict(up="up0", conc=1),
    "c16": dict(up="up0", conc=16),
    "c64": dict(up="up0", conc=64),
    "c256": dict(up="up0", conc=256),
    "c64_20ms": dict(up="up20", conc=64),
    "rate1000": dict(up="up0", conc=64, rate=1000),
    "stream_c1": dict(up="stream", conc=1, stream=True),
    "stream_c16": dict(up="stream", conc=16, stream=True),
}
CORE_RUNS = list(RUNS)
FAILOVER_RUNS = ["c1", "c64", "c64_20ms", "rate1000", "stream_c1"]
PEER_RUNS = ["c1", "c16", "c64", "c256", "c64_20ms", "rate1000", "stream_c1"]

OPEN_STREAMS = 1000
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class NotInstallable(Exception):
    """A peer that cannot be installed or found here."""


# ----------------------------------------------------------------------------------------------
# processes, /proc


_HANDED_OUT: set[int] = set()


def free_ports(n: int) -> list[int]:
    """Ports nothing listens on now, never the same one twice in a run (a failover target's
    "dead" port must not become another target's listening port)."""
    socks, ports = [], []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            ports.append(port)
    for s in socks:
        s.close()
    return ports


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of `pids` so far."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        user += int(fields[11])  # utime
        system += int(fields[12])  # stime
    return user / CLK_TCK, system / CLK_TCK


def status_kib(pids: list[int], key: str) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def truncate_log(path: Path, keep: int = 256 * 1024) -> None:
    """Keeps only the end of a big log (a gateway logs every request)."""
    try:
        size = path.stat().st_size
        if size > keep:
            with open(path, "rb") as f:
                f.seek(size - keep)
                tail = f.read()
            path.write_bytes(b"[... truncated ...]\n" + tail)
    except OSError:
        pass


class Proc:
    """A process this runner started, in its own session, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.stopped = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        return process_tree(self.pid) if self.alive() else []

    def tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 8192))
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        tree = self.tree()
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGTERM)  # the group of the process started here
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        # Descendants that outlived their parent (still in our process group).
        for pid in tree[1:]:
            try:
                if os.getpgid(pid) == self.pid:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.close()
        truncate_log(self.log_path)


class Sampler(threading.Thread):
    """Samples the RSS of a process tree every 100 ms inside windows; keeps the window's peak."""

    def __init__(self, proc: Proc):
        super().__init__(daemon=True)
        self.proc = proc
        self.pids = proc.tree()
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.window_peak = 0
        self.active = False

    def run(self) -> None:
        n = 0
        while not self.done.wait(0.1):
            if not self.active:
                continue
            n += 1
            if n % 10 == 0:
                self.pids = self.proc.tree()
            rss = status_kib(self.pids, "VmRSS")
            with self.lock:
                if self.active:
                    self.window_peak = max(self.window_peak, rss)

    def begin(self) -> None:
        self.pids = self.proc.tree()
        with self.lock:
            self.window_peak = status_kib(self.pids, "VmRSS")
            self.active = True

    def end(self) -> int:
        rss = status_kib(self.pids, "VmRSS")
        with self.lock:
            self.active = False
            return max(self.window_peak, rss)

    def stop(self) -> None:
        self.done.set()


# ----------------------------------------------------------------------------------------------
# the load generator


def release_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def loadgen(args: list[str], limit_s: float) -> dict:
    cmd = [str(release_dir() / "loadgen"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit_s)
    if r.returncode != 0:
        raise RuntimeError(f"loadgen failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return json.loads(r.stdout)


def loadgen_args(t: "Target", up: str, conc: int, *, stream: bool = False, duration: float | None = None,
                 requests: int | None = None, warmup: float = 0.0, rate: float | None = None,
                 ramp: float = 0.0, timeout: float = 5.0, label: str | None = None) -> tuple[list[str], float]:
    a = ["--url", t.url(up), "--model", t.model(up), "--concurrency", str(conc),
         "--warmup", f"{warmup}s", "--timeout", f"{timeout}s"]
    for h in t.headers(up):
        a += ["--header", h]
    if stream:
        a.append("--stream")
    if duration is not None:
        a += ["--duration", f"{duration}s"]
    if requests is not None:
        a += ["--requests", str(requests)]
    if rate is not None:
        a += ["--rate", str(rate)]
    if ramp:
        a += ["--ramp", f"{ramp}s"]
    if label:
        a += ["--label", label]
    limit = warmup + (duration or 0) + ramp + timeout + 60
    if requests is not None and duration is None:
        limit += 120
    return a, limit


# ----------------------------------------------------------------------------------------------
# targets


class Context:
    def __init__(self, opts):
        self.opts = opts
        self.up_ports: dict[str, int] = {}
        self.upstreams: list[Proc] = []
        self.switchyard_bin: Path = release_dir() / "switchyard"


class Target:
    name = ""
    kind = "core"  # core | failover | peer
    runs = CORE_RUNS
    open_streams = False
    ready_timeout = 30.0

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.proc: Proc | None = None
        self.version = ""

    # where loadgen sends a request for upstream `up`
    def url(self, up: str) -> str:
        raise NotImplementedError

    def model(self, up: str) -> str:
        return UPSTREAM_MODEL

    def headers(self, up: str) -> list[str]:
        return []

    def start(self) -> None:
        pass

    def warm(self) -> dict:
        return {}

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc and not self.proc.alive():
                raise RuntimeError(f"exited with status {self.proc.popen.returncode}: {self.proc.tail()}")
            try:
                ok = True
                for up, stream in (("up0", False), ("stream", True)):
                    args, limit = loadgen_args(self, up, 1, stream=stream, requests=1, timeout=10)
                    res = loadgen(args, limit)
                    if res["ok"] != 1:
                        ok = False
                        last = json.dumps(res["errors"]["samples"])[:400]
                        break
                if ok:
                    return
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline
                last = str(e)[:400]
            time.sleep(0.5)
        raise RuntimeError(f"not ready after {self.ready_timeout:.0f}s: {last}")


class Direct(Target):
    name = "direct"

    def url(self, up):
        return f"http://127.0.0.1:{self.ctx.up_ports[up]}/v1/chat/completions"

    def start(self):
        self.version = "switchyard-fake-upstream"


def ensure_nginx() -> str:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx:
        return nginx
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise NotInstallable("nginx is not installed and apt-get cannot be run as root here")
    log("installing nginx (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "nginx"], env=env, capture_output=True, text=True, timeout=900)
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if r.returncode != 0 or not nginx:
        raise NotInstallable(f"apt-get install nginx failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return nginx


class Nginx(Target):
    name = "nginx"
    open_streams = True

    def url(self, up):
        return f"http://127.0.0.1:{self.ports[up]}/v1/chat/completions"

    def start(self):
        nginx = ensure_nginx()
        v = subprocess.run([nginx, "-v"], capture_output=True, text=True)
        self.version = (v.stderr or v.stdout).strip().replace("nginx version: ", "")
        prefix = WORK / "nginx"
        if prefix.exists():
            shutil.rmtree(prefix)
        prefix.mkdir(parents=True)
        os.chmod(prefix, 0o755)
        self.ports = dict(zip(UPSTREAMS, free_ports(len(UPSTREAMS))))
        blocks = []
        for up, port in self.ports.items():
            blocks.append(f"""
    upstream {up} {{
        server 127.0.0.1:{self.ctx.up_ports[up]};
        keepalive 1024;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://{up};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}""")
        conf = f"""# Written by bench/run.py: nginx as a plain reverse proxy, the "one extra hop" baseline.
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 65536;
events {{
    worker_connections 16384;
}}
http {{
    access_log {"off" if self.ctx.opts.quiet_gateways else f"{prefix}/access.log"};
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    tcp_nodelay on;
{"".join(blocks)}
}}
"""
        (prefix / "nginx.conf").write_text(conf)
        self.prefix = prefix
        self.proc = Proc("nginx", [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"),
                                   "-c", str(prefix / "nginx.conf")])

    def stop(self):
        super().stop()
        if self.proc:
            truncate_log(self.prefix / "access.log")


class Switchyard(Target):
    name = "switchyard"
    open_streams = True
    failover = None  # None | "refused" | "breaker-open"
    stream_commit = None  # None (the default: hold the head until the first content) | "head"

    def url(self, up):
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def model(self, up):
        return up  # the alias

    def config(self) -> str:
        lines = [f'[server]\nlisten = "127.0.0.1:{self.port}"\n']
        if self.failover:
            lines.append("[retry]\nattempts_per_target = 1\n")
        if self.failover == "refused":
            lines.append("[breaker]\nfailures = 1000000\nfailure_ratio = 1.0\nmin_requests = 1000000\n")
        for up, port in self.ctx.up_ports.items():
            lines.append(f'[providers.{up}]\nkind = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
                         f'api_key = "sk-bench"\n')
        if self.failover:
            lines.append(f'[providers.dead]\nkind = "openai"\nbase_url = "http://127.0.0.1:{self.dead_port}/v1"\n'
                         f'api_key = "sk-bench"\n')
        for up in self.ctx.up_ports:
            chain = [f'"{up}/{UPSTREAM_MODEL}"']
            if self.failover:
                chain.insert(0, f'"dead/{UPSTREAM_MODEL}"')
            lines.append(f"[models.{up}]\ntargets = [{', '.join(chain)}]\n")
            if self.stream_commit:
                lines.append(f'[models.{up}.stream]\ncommit = "{self.stream_commit}"\n')
        return "\n".join(lines)

    def binary(self) -> Path:
        return self.ctx.switchyard_bin

    def start(self):
        binary = self.binary()
        v = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
        self.version = v.stdout.strip()
        self.port, self.dead_port = free_ports(2)
        path = WORK / f"{self.name}.toml"
        path.write_text(self.config())
        check = subprocess.run([str(binary), "check", "--config", str(path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"switchyard check rejected the generated config: {check.stderr.strip()[:500]}")
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        env.pop("SWITCHYARD_LOG", None)
        if self.ctx.opts.quiet_gateways:
            env["SWITCHYARD_LOG"] = "warn"
        self.proc = Proc(self.name, [str(binary), "serve", "--config", str(path)], env=env)

    def attempts_header(self) -> str | None:
        body = json.dumps({"model": "up0", "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(self.url("up0"), data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.headers.get("x-switchyard-attempts")

    def warm(self):
        if not self.failover:
            return {}
        info = {"dead_port": self.dead_port}
        if self.failover == "breaker-open":
            # Consecutive refused connections open the dead target's breaker (shared by every
            # alias, all use dead/gpt-4o-mini).
            args, limit = loadgen_args(self, "up0", 1, requests=20)
            loadgen(args, limit)
        attempts = self.attempts_header()
        expected = "1" if self.failover == "breaker-open" else "2"
        info["x-switchyard-attempts"] = attempts
        info["verified"] = attempts == expected
        if attempts != expected:
            log(f"WARNING {self.name}: x-switchyard-attempts = {attempts}, expected {expected}")
        return info


class SwitchyardNoPgo(Switchyard):
    """The gateway as a plain `cargo build --release` builds it, without the profile."""
    name = "switchyard-no-pgo"
    kind = "variant"
    runs = ["c1", "c64", "stream_c1"]
    open_streams = False

    def binary(self) -> Path:
        return release_dir() / "switchyard"


class SwitchyardCommitHead(Switchyard):
    """Streams committed on the upstream's response head (`[stream] commit = "head"`), as a
    plain reverse proxy commits them, against the default that holds the head until the first
    content chunk so that a failure before any content still fails over invisibly."""
    name = "switchyard-commit-head"
    kind = "variant"
    runs = ["stream_c1", "stream_c16"]
    open_streams = False
    stream_commit = "head"


class SwitchyardRefused(Switchyard):
    name = "switchyard-failover-refused"
    kind = "failover"
    runs = FAILOVER_RUNS
    open_streams = False
    failover = "refused"


class SwitchyardBreakerOpen(Switchyard):
    name = "switchyard-failover-breaker-open"
    kind = "failover"
    runs = FAILOVER_RUNS
    open_streams = False
    failover = "breaker-open"


def ensure_litellm() -> Path:
    venv = WORK / "litellm-venv"
    py = venv / "bin" / "python"
    want = LITELLM_SPEC.split("==")[-1] if "==" in LITELLM_SPEC else None

    def installed() -> str | None:
        if not (venv / "bin" / "litellm").exists():
            return None
        r = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    have = installed()
    if have and (want is None or have == want):
        return venv
    log(f"installing {LITELLM_SPEC} into {venv} (takes a few minutes)")
    if not py.exists():
        r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise NotInstallable(f"python venv failed: {r.stderr.strip()[-300:]}")
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", LITELLM_SPEC],
                       capture_output=True, text=True, timeout=1500)
    if r.returncode != 0 or not installed():
        raise NotInstallable(f"pip install {LITELLM_SPEC} failed: {(r.stderr or r.stdout).strip()[-400:]}")
    return venv


class LiteLLM(Target):
    name = "litellm"
    kind = "peer"
    runs = PEER_RUNS
    ready_timeout = 240.0

    def url(self, up):
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def model(self, up):
        return up

    def start(self):
        venv = ensure_litellm()
        r = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.metadata as m; print(m.version('litellm'))"],
                           capture_output=True, text=True)
        self.version = f"litellm {r.stdout.strip()} (--num_workers {CORES})"
        (self.port,) = free_ports(1)
        lines = ["model_list:"]
        for up, port in self.ctx.up_ports.items():
            lines += [f"  - model_name: {up}",
                      "    litellm_params:",
                      f"      model: openai/{UPSTREAM_MODEL}",
                      f"      api_base: http://127.0.0.1:{port}/v1",
                      "      api_key: sk-bench"]
        path = WORK / "litellm.yaml"
        path.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
        self.proc = Proc("litellm", [str(venv / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1",
                                     "--port", str(self.port), "--num_workers", str(CORES)], env=env, cwd=WORK)


def ensure_portkey() -> tuple[str, Path]:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        raise NotInstallable("node/npm not found on PATH")
    home = WORK / "portkey"
    pkg = home / "node_modules" / "@portkey-ai" / "gateway"
    try:
        have = json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        have = None
    if have != PORTKEY_VERSION:
        log(f"installing @portkey-ai/gateway@{PORTKEY_VERSION} (npm)")
        home.mkdir(parents=True, exist_ok=True)
        (home / "package.json").write_text(json.dumps({
            "name": "switchyard-bench-portkey", "private": True,
            "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION}}, indent=2) + "\n")
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home,
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0 or not (pkg / "build" / "start-server.js").exists():
            raise NotInstallable(f"npm install @portkey-ai/gateway@{PORTKEY_VERSION} failed: "
                                 f"{(r.stderr or r.stdout).strip()[-400:]}")
    return node, pkg


class Portkey(Target):
    name = "portkey"
    kind = "peer"
    runs = PEER_RUNS
    ready_timeout = 60.0

    def url(self, up):
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def headers(self, up):
        return ["x-portkey-provider: openai",
                f"x-portkey-custom-host: http://127.0.0.1:{self.ctx.up_ports[up]}/v1",
                "authorization: Bearer sk-bench"]

    def start(self):
        node, pkg = ensure_portkey()
        nv = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
        self.version = f"@portkey-ai/gateway {PORTKEY_VERSION} (node {nv}, 1 process)"
        (self.port,) = free_ports(1)
        env = dict(os.environ, NODE_ENV="production", BENCH_NATIVE_FETCH_GLOBALS="1")
        self.proc = Proc("portkey", [node, "--require", str(BENCH / "loopback-only.cjs"),
                                     str(pkg / "build" / "start-server.js"), f"--port={self.port}", "--headless"],
                         env=env, cwd=WORK / "portkey")


TARGETS = [Direct, Nginx, Switchyard, SwitchyardNoPgo, SwitchyardCommitHead, SwitchyardRefused, SwitchyardBreakerOpen, LiteLLM, Portkey]


# ----------------------------------------------------------------------------------------------
# measuring


def start_target(t: Target, opts) -> dict:
    """Starts a target, waits until it answers, warms it, records its idle RSS."""
    out: dict = {"name": t.name, "kind": t.kind, "status": "ok", "runs": {}, "memory": {}}
    try:
        t.start()
    except NotInstallable as e:
        out["status"] = f"not installable: {e}"
        log(f"{t.name}: {out['status']}")
        return out
    except Exception as e:  # noqa: BLE001 - report and go on with the next target
        out["status"] = f"failed to start: {e}"
        log(f"{t.name}: {out['status']}")
        t.stop()
        return out
    out["version"] = t.version
    try:
        t.wait_ready()
        out["warm"] = t.warm()
        if t.proc:
            time.sleep(opts.settle)
            pids = t.proc.tree()
            out["memory"]["idle_rss_kib"] = status_kib(pids, "VmRSS")
            out["memory"]["processes"] = len(pids)
        log(f"{t.name}: ready ({t.version})"
            + (f", idle RSS {out['memory']['idle_rss_kib'] / 1024:.1f} MiB" if t.proc else ""))
    except Exception as e:  # noqa: BLE001
        out["status"] = f"failed to start: {e}"
        if t.proc:
            out["log_tail"] = t.proc.tail(30)
        log(f"{t.name}: {out['status']}")
        t.stop()
    return out


def one_run(t: Target, out: dict, sampler: "Sampler | None", run_id: str, rep: int, opts) -> None:
    spec = RUNS[run_id]
    args, limit = loadgen_args(t, spec["up"], spec["conc"], stream=spec.get("stream", False),
                               duration=opts.duration, warmup=opts.warmup, rate=spec.get("rate"),
                               timeout=opts.timeout, label=f"{t.name}/{run_id}/{rep}")
    pids = t.proc.tree() if t.proc else []
    cpu0 = cpu_seconds(pids)
    if sampler:
        sampler.begin()
    res = loadgen(args, limit)
    if sampler:
        peak = sampler.end()
        res["gateway_rss_peak_kib"] = peak
        out["memory"]["peak_load_rss_kib"] = max(out["memory"].get("peak_load_rss_kib", 0), peak)
    if t.proc:
        if not t.proc.alive():
            raise RuntimeError(f"exited during {run_id}: {t.proc.tail()}")
        (user1, system1), (user0, system0) = cpu_seconds(pids), cpu0
        cpu = (user1 - user0) + (system1 - system0)
        res["gateway_cpu_s"] = round(cpu, 3)
        per_1000 = lambda seconds: round(seconds / res["ok"] * 1000, 4) if res["ok"] else None
        res["gateway_cpu_s_per_1000"] = per_1000(cpu)
        res["gateway_user_s_per_1000"] = per_1000(user1 - user0)
        res["gateway_system_s_per_1000"] = per_1000(system1 - system0)
    out["runs"].setdefault(run_id, []).append(res)
    log(f"{t.name:34s} {run_id:11s} #{rep + 1}: {summarize_run(res)}")


def paired_run(base: Target, t: Target, out: dict, rep: int, opts) -> None:
    """The failover rows' own measurement: loadgen at c=1 alternating request by request between
    the one-target gateway (`base`) and `t` (`--paired-url`), so that both see the same moment
    of this shared machine; the difference of their latencies is then the failover's cost and
    not drift between two runs (an A/A check, two identical gateways, gave p50 differences
    within ±9 µs per 1 s run this way, against −20 to +49 µs in separate runs)."""
    args, limit = loadgen_args(base, "up0", 1, duration=2 * opts.duration, warmup=opts.warmup,
                               timeout=opts.timeout, label=f"{t.name}/paired_c1/{rep}")
    args += ["--paired-url", t.url("up0"), "--paired-model", t.model("up0")]
    res = loadgen(args, limit)
    paired = res.get("paired") or {}
    a, b = res["latency_us"], paired.get("latency_us") or {}
    res["added_p50"], res["added_p99"] = sub(b.get("p50"), a.get("p50")), sub(b.get("p99"), a.get("p99"))
    out["runs"].setdefault("paired_c1", []).append(res)
    log(f"{t.name:34s} {'paired_c1':11s} #{rep + 1}: one target p50 {a.get('p50')} / p99 {a.get('p99')} µs, "
        f"this p50 {b.get('p50')} / p99 {b.get('p99')} µs: added {fmt_signed(res['added_p50'])} / "
        f"{fmt_signed(res['added_p99'])} µs" + (f"  ERRORS {res['errors']['by_kind']}" if res["errors"]["total"] else ""))


# The runs paired with nginx (see nginx_paired_run): id -> (upstream, stream, targets).
NGINX_PAIRED = {
    "paired_nginx_c1": ("up0", False, ("switchyard",)),
    "paired_nginx_ttfc": ("stream", True, ("switchyard", "switchyard-commit-head")),
}


def nginx_paired_run(nginx: Target, t: Target, run_id: str, out: dict, rep: int, opts) -> None:
    """The c=1 comparisons with nginx, measured as the failover rows are: loadgen alternates
    request by request between nginx (`--url`) and `t` (`--paired-url`), so both see the same
    moments of this shared machine and their difference (t − nginx: the direct hop cancels) is
    not drift between runs. Between separate runs nginx's own added p50 at c=1 moves by tens of
    µs here, more than the difference measured; paired, repeats agree within a few µs. Time to
    first chunk is paired on the 50-chunk `stream` upstream, 3× the usual duration (~80 streams
    to each): on 3-chunk streams the request path is still warm from the stream before, which
    flatters a gateway that does more work at the first chunk (Switchyard's default commit)."""
    up, stream, _ = NGINX_PAIRED[run_id]
    args, limit = loadgen_args(nginx, up, 1, stream=stream, duration=(3 if stream else 2) * opts.duration, warmup=opts.warmup,
                               timeout=opts.timeout, label=f"{t.name}/{run_id}/{rep}")
    args += ["--paired-url", t.url(up), "--paired-model", t.model(up)]
    res = loadgen(args, limit)
    paired = res.get("paired") or {}
    key = "ttfc_us" if stream else "latency_us"
    a = (res.get("stream_stats") or {}).get(key) if stream else res.get(key)
    a, b = a or {}, paired.get(key) or {}
    res["figure"] = "time to first chunk" if stream else "latency"
    res["nginx_p50"], res["nginx_p99"], res["this_p50"], res["this_p99"] = a.get("p50"), a.get("p99"), b.get("p50"), b.get("p99")
    res["vs_nginx_p50"], res["vs_nginx_p99"] = sub(b.get("p50"), a.get("p50")), sub(b.get("p99"), a.get("p99"))
    out["runs"].setdefault(run_id, []).append(res)
    log(f"{t.name:34s} {run_id:17s} #{rep + 1}: {res['figure']} nginx p50 {a.get('p50')} / p99 {a.get('p99')} µs, "
        f"this p50 {b.get('p50')} / p99 {b.get('p99')} µs: {fmt_signed(res['vs_nginx_p50'])} / "
        f"{fmt_signed(res['vs_nginx_p99'])} µs" + (f"  ERRORS {res['errors']['by_kind']}" if res["errors"]["total"] else ""))


def paired_vs_nginx(results: dict, name: str, run_id: str) -> tuple:
    """Medians over the repeats of (this − nginx) at p50 and p99, and the number of runs."""
    runs = [r for r in results.get(name, {}).get("runs", {}).get(run_id, []) if r.get("paired")]
    if not runs:
        return None, None, 0
    return med([r["vs_nginx_p50"] for r in runs]), med([r["vs_nginx_p99"] for r in runs]), len(runs)


def measure_all(targets: list[Target], opts) -> dict:
    """Every target is started first and stays up (idle) while the others are measured; the
    runs are interleaved (for each repeat, each kind of run, each target in turn, the order
    rotating between repeats), so a slow drift of this shared machine's speed hits every target
    alike instead of whichever happened to be measured during it."""
    results: dict = {}
    live: list[tuple[Target, dict, Sampler | None]] = []
    try:
        for t in targets:
            out = start_target(t, opts)
            results[t.name] = out
            if out["status"] == "ok":
                sampler = None
                if t.proc:
                    sampler = Sampler(t.proc)
                    sampler.start()
                live.append((t, out, sampler))
        for rep in range(opts.repeats):
            order = live[rep % len(live):] + live[:rep % len(live)] if live else []
            for run_id in RUNS:
                for t, out, sampler in order:
                    if run_id not in t.runs or out["status"] != "ok":
                        continue
                    try:
                        one_run(t, out, sampler, run_id, rep, opts)
                    except Exception as e:  # noqa: BLE001 - report and go on
                        out["status"] = f"failed: {e}"
                        if t.proc:
                            out["log_tail"] = t.proc.tail(30)
                        log(f"{t.name}: FAILED: {e}")
            base = next((t for t, out, _ in live if t.name == "switchyard" and out["status"] == "ok"), None)
            for t, out, _ in order:
                if base is None or t.kind != "failover" or out["status"] != "ok":
                    continue
                try:
                    paired_run(base, t, out, rep, opts)
                except Exception as e:  # noqa: BLE001
                    out["paired_error"] = str(e)
                    log(f"{t.name}: paired run FAILED: {e}")
            nginx = next((t for t, out, _ in live if t.name == "nginx" and out["status"] == "ok"), None)
            for run_id, (_, _, names) in NGINX_PAIRED.items():
                for t, out, _ in order:
                    if nginx is None or t.name not in names or out["status"] != "ok":
                        continue
                    try:
                        nginx_paired_run(nginx, t, run_id, out, rep, opts)
                    except Exception as e:  # noqa: BLE001
                        out["paired_error"] = str(e)
                        log(f"{t.name}: {run_id} FAILED: {e}")
        time.sleep(opts.settle_after)
        for t, out, _ in live:
            if out["status"] == "ok" and t.proc:
                pids = t.proc.tree()
                out["memory"]["hwm_sum_kib"] = status_kib(pids, "VmHWM")
                out["memory"]["after_load_rss_kib"] = status_kib(pids, "VmRSS")
        if opts.open_streams:
            for t, out, sampler in live:
                if not t.open_streams or out["status"] != "ok":
                    continue
                try:
                    args, limit = loadgen_args(t, "slowstream", OPEN_STREAMS, stream=True, requests=OPEN_STREAMS,
                                               ramp=1.0, timeout=60, label=f"{t.name}/open_streams")
                    if sampler:
                        sampler.begin()
                    res = loadgen(args, limit)
                    if sampler:
                        res["gateway_rss_peak_kib"] = sampler.end()
                        out["memory"]["open_streams_peak_rss_kib"] = res["gateway_rss_peak_kib"]
                        time.sleep(opts.settle_after)
                        out["memory"]["after_streams_rss_kib"] = status_kib(t.proc.tree(), "VmRSS")
                    out["open_streams"] = res
                    log(f"{t.name:34s} {OPEN_STREAMS} open streams: {summarize_run(res)}"
                        + (f", peak RSS {res['gateway_rss_peak_kib'] / 1024:.1f} MiB" if sampler else ""))
                except Exception as e:  # noqa: BLE001
                    out["open_streams_error"] = str(e)
                    log(f"{t.name}: open streams FAILED: {e}")
    finally:
        for t, _, sampler in live:
            if sampler:
                sampler.stop()
        for t in targets:
            t.stop()
    return results


def summarize_run(r: dict) -> str:
    lat = r["latency_us"]
    s = f"{r['throughput_rps']:>9.1f} req/s  p50 {lat['p50']} µs  p99 {lat['p99']} µs"
    if r.get("stream_stats"):
        ttfc = r["stream_stats"]["ttfc_us"]
        s += f"  ttfc p50 {ttfc['p50']} µs"
    if r["errors"]["total"]:
        s += f"  ERRORS {r['errors']['by_kind']}"
    return s


# ----------------------------------------------------------------------------------------------
# aggregation


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_median(reps: list[dict]) -> dict:
    def g(path):
        out = []
        for r in reps:
            v = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            out.append(v)
        return med(out)

    errors: dict[str, int] = {}
    for r in reps:
        for k, n in r["errors"]["by_kind"].items():
            errors[k] = errors.get(k, 0) + n
    m = {
        "repeats": len(reps),
        "throughput_rps": g(["throughput_rps"]),
        "ok": g(["ok"]),
        "errors_total": sum(r["errors"]["total"] for r in reps),
        "errors_by_kind": errors,
        "error_samples": {k: v for r in reps for k, v in r["errors"]["samples"].items()},
        "cpu_s_per_1000": g(["gateway_cpu_s_per_1000"]),
        "user_s_per_1000": g(["gateway_user_s_per_1000"]),
        "system_s_per_1000": g(["gateway_system_s_per_1000"]),
        "rss_peak_kib": g(["gateway_rss_peak_kib"]),
    }
    for q in ("p50", "p90", "p99", "p999", "max", "mean"):
        m[f"lat_{q}"] = g(["latency_us", q])
    if reps and reps[0].get("stream_stats"):
        for q in ("p50", "p99", "p999", "mean"):
            m[f"ttfc_{q}"] = g(["stream_stats", "ttfc_us", q])
            m[f"gap_{q}"] = g(["stream_stats", "chunk_gap_us", q])
            m[f"delivery_{q}"] = g(["stream_stats", "chunk_delivery_us", q])
        m["span_mean"] = g(["stream_stats", "span_us", "mean"])
        m["chunks_mean"] = g(["stream_stats", "chunks_per_stream", "mean"])
    return m


def sub(a, b):
    return None if a is None or b is None else a - b


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def derive(results: dict) -> dict:
    """Added latency over direct and ratios against nginx and the peers."""
    med_of = {name: {rid: run_median(reps) for rid, reps in r["runs"].items()} for name, r in results.items()}
    direct = med_of.get("direct", {})
    derived: dict = {"medians": med_of, "added": {}, "vs_nginx": {}, "vs_peers": {}}
    for name, runs in med_of.items():
        added = {}
        for rid, m in runs.items():
            d = direct.get(rid)
            if not d:
                continue
            a = {f"lat_{q}": sub(m.get(f"lat_{q}"), d.get(f"lat_{q}")) for q in ("p50", "p99", "p999")}
            if "ttfc_p50" in m:
                for q in ("p50", "p99"):
                    a[f"ttfc_{q}"] = sub(m.get(f"ttfc_{q}"), d.get(f"ttfc_{q}"))
                    a[f"gap_{q}"] = sub(m.get(f"gap_{q}"), d.get(f"gap_{q}"))
                    a[f"delivery_{q}"] = sub(m.get(f"delivery_{q}"), d.get(f"delivery_{q}"))
                chunks = m.get("chunks_mean") or 0
                span = sub(m.get("span_mean"), d.get("span_mean"))
                a["per_chunk_mean"] = span / (chunks - 1) if span is not None and chunks > 1 else None
            added[rid] = a
        derived["added"][name] = added
    nginx_added = derived["added"].get("nginx", {})
    nginx = med_of.get("nginx", {})
    for name, runs in med_of.items():
        v = {}
        if name == "direct":
            derived["vs_nginx"][name] = v
            continue
        for rid, m in runs.items():
            v[rid] = {
                "throughput": ratio(m.get("throughput_rps"), nginx.get(rid, {}).get("throughput_rps")),
                "added_p50": ratio(derived["added"].get(name, {}).get(rid, {}).get("lat_p50"),
                                   nginx_added.get(rid, {}).get("lat_p50")),
                "added_p99": ratio(derived["added"].get(name, {}).get(rid, {}).get("lat_p99"),
                                   nginx_added.get(rid, {}).get("lat_p99")),
            }
        derived["vs_nginx"][name] = v
    sw = med_of.get("switchyard", {})
    for peer in ("litellm", "portkey"):
        p = med_of.get(peer)
        if not p:
            continue
        derived["vs_peers"][peer] = {
            rid: {
                "throughput": ratio(sw.get(rid, {}).get("throughput_rps"), p[rid].get("throughput_rps")),
                "switchyard_added_p99": derived["added"].get("switchyard", {}).get(rid, {}).get("lat_p99"),
                "peer_added_p99": derived["added"].get(peer, {}).get(rid, {}).get("lat_p99"),
            }
            for rid in p
        }
    return derived


# ----------------------------------------------------------------------------------------------
# report


def fmt_us(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_signed(v):
    return "—" if v is None else f"{v:+,.0f}"


def fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}"


def fmt_x(v):
    return "—" if v is None else f"{v:,.1f}×"


def fmt_rps(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_mib(kib):
    return "—" if not kib else f"{kib / 1024:.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def status_row(r: dict, width: int) -> list[str] | None:
    if r["status"] == "ok":
        return None
    return [r["name"], r["status"].replace("|", "/").replace("\n", " ")[:300]] + [""] * (width - 2)


def errors_cell(meds: list[dict | None]) -> str:
    kinds: dict[str, int] = {}
    for m in meds:
        if m:
            for k, n in m["errors_by_kind"].items():
                kinds[k] = kinds.get(k, 0) + n
    return ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "0"


def checks(results: dict, derived: dict) -> list[dict]:
    med_of, added, vs = derived["medians"], derived["added"], derived["vs_nginx"]
    out = []

    def check(goal, measured, met):
        out.append({"goal": goal, "measured": measured, "met": met})

    sw = vs.get("switchyard", {})
    pc = paired_vs_nginx(results, "switchyard", "paired_nginx_c1")
    for i, q in enumerate(("p50", "p99")):
        r = sw.get("c1", {}).get(f"added_{q}")
        a_sw = added.get("switchyard", {}).get("c1", {}).get(f"lat_{q}")
        a_ng = added.get("nginx", {}).get("c1", {}).get(f"lat_{q}")
        separate = f"switchyard {fmt_signed(a_sw)} µs, nginx {fmt_signed(a_ng)} µs, ratio {fmt_ratio(r)}"
        if pc[2]:
            # Paired request by request with nginx: the difference itself, without drift.
            check(f"added latency at c=1, {q}: ≤ nginx's (switchyard − nginx ≤ 0, paired)",
                  f"paired with nginx ({pc[2]} runs, median): switchyard − nginx {fmt_signed(pc[i])} µs; "
                  f"separate runs: {separate}", pc[i] <= 0)
        else:
            check(f"added latency at c=1, {q}: ≤ nginx's (ratio ≤ 1.0)", separate, None if r is None else r <= 1.0)
    r = sw.get("c64", {}).get("throughput")
    check("throughput at c=64, 0 ms upstream: ≥ nginx's",
          f"switchyard {fmt_rps(med_of.get('switchyard', {}).get('c64', {}).get('throughput_rps'))}, "
          f"nginx {fmt_rps(med_of.get('nginx', {}).get('c64', {}).get('throughput_rps'))} req/s, ratio {fmt_ratio(r)}",
          None if r is None else r >= 1.0)
    for peer, factor in (("litellm", 50), ("portkey", 10)):
        p = derived["vs_peers"].get(peer)
        if not p:
            check(f"throughput ≥ {factor}× {peer}'s (c=64)", results.get(peer, {}).get("status", "not run"), None)
            check(f"added p99 lower than {peer}'s (c=1)", results.get(peer, {}).get("status", "not run"), None)
            continue
        r = p.get("c64", {}).get("throughput")
        check(f"throughput ≥ {factor}× {peer}'s (c=64)", f"{fmt_x(r)}", None if r is None else r >= factor)
        a, b = p.get("c1", {}).get("switchyard_added_p99"), p.get("c1", {}).get("peer_added_p99")
        check(f"added p99 lower than {peer}'s (c=1)", f"switchyard {fmt_signed(a)} µs, {peer} {fmt_signed(b)} µs",
              None if a is None or b is None else a < b)
    mem = results.get("switchyard", {}).get("memory", {})
    idle = mem.get("idle_rss_kib")
    check("idle RSS ≤ 8 MiB", f"{fmt_mib(idle)} MiB", None if not idle else idle <= 8 * 1024)
    streams = mem.get("open_streams_peak_rss_kib")
    check(f"RSS with {OPEN_STREAMS} open streams ≤ 64 MiB", f"{fmt_mib(streams)} MiB",
          None if not streams else streams <= 64 * 1024)
    after = mem.get("after_load_rss_kib")
    check("RSS back near idle after load (≤ 1.5 × idle)",
          f"idle {fmt_mib(idle)}, peak {fmt_mib(mem.get('peak_load_rss_kib'))}, after {fmt_mib(after)} MiB",
          None if not (idle and after) else after <= 1.5 * idle)
    base = med_of.get("switchyard", {}).get("c1", {})
    for name, goal, limit in (("switchyard-failover-refused", "failover past a refused target adds ≤ 1 ms (c=1)", 1000),
                              ("switchyard-failover-breaker-open",
                               "failover past an open breaker adds nothing measurable (c=1, p50 ≤ +5 µs)", 5)):
        paired = [r for r in results.get(name, {}).get("runs", {}).get("paired_c1", []) if r.get("paired")]
        m = med_of.get(name, {}).get("c1")
        if paired:
            # Interleaved request by request with the one-target gateway (see paired_run).
            d50, d99 = med([r["added_p50"] for r in paired]), med([r["added_p99"] for r in paired])
            how = f"paired with one-target switchyard, request by request ({len(paired)} runs, median)"
        elif m and base:
            d50, d99 = sub(m.get("lat_p50"), base.get("lat_p50")), sub(m.get("lat_p99"), base.get("lat_p99"))
            how = "vs one-target switchyard (separate runs)"
        else:
            check(goal, results.get(name, {}).get("status", "not run"), None)
            continue
        met = d50 is not None and d50 <= limit and (limit < 1000 or (d99 is not None and d99 <= limit))
        check(goal, f"{how}: p50 {fmt_signed(d50)} µs, p99 {fmt_signed(d99)} µs", met)
    a_sw = added.get("switchyard", {}).get("stream_c1", {})
    a_ng = added.get("nginx", {}).get("stream_c1", {})
    t_ng = a_ng.get("ttfc_p50")
    for name, how in (("switchyard", "the default, head held until the first content chunk"),
                      ("switchyard-commit-head", "`[stream] commit = \"head\"`")):
        t = added.get(name, {}).get("stream_c1", {}).get("ttfc_p50")
        separate = (f"50-chunk streams, separate runs: {name} {fmt_signed(t)} µs, nginx {fmt_signed(t_ng)} µs"
                    if t is not None else results.get(name, {}).get("status", "not run"))
        p50, p99, n = paired_vs_nginx(results, name, "paired_nginx_ttfc")
        goal = f"streams: added time-to-first-chunk ≤ nginx's (p50, c=1), {how}"
        if n:
            check(goal, f"paired with nginx ({n} runs, median): {name} − nginx {fmt_signed(p50)} µs "
                        f"(p99 {fmt_signed(p99)}); {separate}", p50 <= 0)
        else:
            check(goal, separate, None if t is None or t_ng is None else t <= max(t_ng, 0))
    g, g_ng = a_sw.get("delivery_p99"), a_ng.get("delivery_p99")
    check("streams: added per-chunk latency < 10 µs at p99 (each chunk's upstream-send-to-client-read time, "
          "p99 over direct)",
          f"switchyard {fmt_signed(g)} µs, nginx {fmt_signed(g_ng)} µs (p50: {fmt_signed(a_sw.get('delivery_p50'))} / "
          f"{fmt_signed(a_ng.get('delivery_p50'))} µs)",
          None if g is None else g < 10)
    return out


def report(results: dict, derived: dict, meta: dict) -> str:
    med_of, added, vs = derived["medians"], derived["added"], derived["vs_nginx"]
    names = [r for r in results]
    md = [f"# Switchyard benchmark results\n",
          f"- date: {meta['date']} ({meta['mode']} run, {meta['repeats']} repeat(s), medians reported; "
          f"took {meta['elapsed_s'] / 60:.1f} min)",
          f"- machine: {meta['machine']['cpus']} CPUs ({meta['machine']['cpu_model']}), "
          f"{meta['machine']['mem_gib']:.1f} GiB RAM, Linux {meta['machine']['kernel']}; load average "
          f"{meta['machine']['loadavg_start']} at start, {meta['machine']['loadavg_end']} at end "
          f"(a shared machine: treat differences of a few µs as noise)",
          "- versions: " + "; ".join(f"{k}: {v}" for k, v in meta["versions"].items()),
          f"- method: {meta['method']}",
          ""]

    md.append("## Against the targets of the performance issue\n")
    rows = [[c["goal"], c["measured"], {True: "yes", False: "**no**", None: "n/a"}[c["met"]]]
            for c in meta["checks"]]
    md.append(table(["goal", "measured (medians)", "met"], rows))

    md.append("\n## Latency at concurrency 1, 0 ms upstream (µs)\n")
    hdr = ["target", "p50", "p99", "p99.9", "added p50", "added p99", "added p50 ÷ nginx", "added p99 ÷ nginx",
           "errors"]
    rows = []
    for n in names:
        s = status_row(results[n], len(hdr))
        if s:
            rows.append(s)
            continue
        m = med_of[n].get("c1")
        if not m:
            continue
        a, v = added.get(n, {}).get("c1", {}), vs.get(n, {}).get("c1", {})
        rows.append([n, fmt_us(m["lat_p50"]), fmt_us(m["lat_p99"]), fmt_us(m["lat_p999"]),
                     fmt_signed(a.get("lat_p50")), fmt_signed(a.get("lat_p99")),
                     fmt_ratio(v.get("added_p50")), fmt_ratio(v.get("added_p99")), errors_cell([m])])
    md.append(table(hdr, rows))

    paired_rows = []
    for n in names:
        for i, r in enumerate(results[n].get("runs", {}).get("paired_c1", [])):
            b = (r.get("paired") or {}).get("latency_us") or {}
            paired_rows.append([n, str(i + 1), fmt_us(r["latency_us"].get("p50")), fmt_us(r["latency_us"].get("p99")),
                                fmt_us(b.get("p50")), fmt_us(b.get("p99")), fmt_signed(r.get("added_p50")),
                                fmt_signed(r.get("added_p99")), errors_cell([run_median([r])])])
    if paired_rows:
        md.append("\n## Failover cost, paired (c=1, 0 ms upstream, µs)\n")
        md.append("loadgen alternates request by request between the one-target `switchyard` and the failover "
                  "target (`--paired-url`), so both are measured at the same moments of this shared machine; "
                  "added = failover target − one target in the same run.\n")
        md.append(table(["target", "run", "one target p50", "one target p99", "this target p50", "this target p99",
                         "added p50", "added p99", "errors"], paired_rows))

    rows = []
    for run_id in NGINX_PAIRED:
        for n in names:
            for i, r in enumerate(results[n].get("runs", {}).get(run_id, [])):
                rows.append([n, r["figure"], str(i + 1), fmt_us(r["nginx_p50"]), fmt_us(r["nginx_p99"]),
                             fmt_us(r["this_p50"]), fmt_us(r["this_p99"]), fmt_signed(r["vs_nginx_p50"]),
                             fmt_signed(r["vs_nginx_p99"]), errors_cell([run_median([r])])])
    if rows:
        md.append("\n## Against nginx, paired (c=1, µs)\n")
        md.append("loadgen alternates request by request between nginx (`--url`) and the target "
                  "(`--paired-url`); the difference, target − nginx, is the target's added latency "
                  "minus nginx's, measured at the same moments of this shared machine. Latency on the "
                  "0 ms upstream; time to first chunk on the `stream` upstream (50 content chunks "
                  "1,000 µs apart).\n")
        md.append(table(["target", "figure", "run", "nginx p50", "nginx p99", "target p50", "target p99",
                         "target − nginx p50", "target − nginx p99", "errors"], rows))

    md.append("\n## Throughput, 0 ms upstream (requests/s, fixed concurrency)\n")
    hdr = ["target", "c=1", "c=16", "c=64", "c=256", "c=64 ÷ nginx", "c=256 ÷ nginx", "errors"]
    rows = []
    for n in names:
        s = status_row(results[n], len(hdr))
        if s:
            rows.append(s)
            continue
        ms = [med_of[n].get(c) for c in ("c1", "c16", "c64", "c256")]
        if not any(ms):
            continue  # measured on streams only (switchyard-commit-head)
        rows.append([n] + [fmt_rps(m["throughput_rps"]) if m else "—" for m in ms]
                    + [fmt_ratio(vs.get(n, {}).get("c64", {}).get("throughput")),
                       fmt_ratio(vs.get(n, {}).get("c256", {}).get("throughput")), errors_cell(ms)])
    md.append(table(hdr, rows))

    md.append("\n## Latency under load (µs)\n")
    md.append("c=64 against the 20 ms upstream (closed loop); and a fixed rate of 1,000 requests/s "
              "against the 0 ms upstream on up to 64 connections, latency from each request's due "
              "time (coordinated omission accounted for).\n")
    hdr = ["target", "20 ms c=64 p50", "p99", "added p50", "added p99", "req/s",
           "1,000/s p50", "p99", "p99.9", "added p99", "errors"]
    rows = []
    for n in names:
        s = status_row(results[n], len(hdr))
        if s:
            rows.append(s)
            continue
        m, r = med_of[n].get("c64_20ms"), med_of[n].get("rate1000")
        if not m and not r:
            continue
        a20, ar = added.get(n, {}).get("c64_20ms", {}), added.get(n, {}).get("rate1000", {})
        rows.append([n, fmt_us(m and m["lat_p50"]), fmt_us(m and m["lat_p99"]), fmt_signed(a20.get("lat_p50")),
                     fmt_signed(a20.get("lat_p99")), fmt_rps(m and m["throughput_rps"]),
                     fmt_us(r and r["lat_p50"]), fmt_us(r and r["lat_p99"]), fmt_us(r and r["lat_p999"]),
                     fmt_signed(ar.get("lat_p99")), errors_cell([m, r])])
    md.append(table(hdr, rows))
    md.append("\n`unsent` = requests due in the measured window that were never sent because every "
              "connection was still busy when the window closed: the target could not sustain the rate "
              "(a target whose every counted request is unsent shows no latency).")

    up = UPSTREAMS["stream"]
    md.append(f"\n## Streams ({up[1]} content chunks {up[2]:,} µs apart, c=1 unless noted; µs)\n")
    md.append("ttfc = time to the first SSE event carrying content; delivery = per content chunk, from "
              "the upstream's send (the fake stamps its clock into the chunk's `system_fingerprint`, which "
              "every gateway relays) to the client's read of it; gap = time between consecutive "
              "content events; per chunk = added (last − first content chunk) time ÷ (chunks − 1).\n")
    hdr = ["target", "ttfc p50", "ttfc p99", "added ttfc p50", "added ttfc p99", "delivery p50 / p99",
           "added delivery p50 / p99", "gap p50", "gap p99",
           "added gap p50", "added gap p99", "added per chunk (mean)", "chunks", "c=16 ttfc p50 / p99", "errors"]
    rows = []
    for n in names:
        s = status_row(results[n], len(hdr))
        if s:
            rows.append(s)
            continue
        m, m16 = med_of[n].get("stream_c1"), med_of[n].get("stream_c16")
        if not m:
            continue
        a = added.get(n, {}).get("stream_c1", {})
        pc = a.get("per_chunk_mean")
        rows.append([n, fmt_us(m["ttfc_p50"]), fmt_us(m["ttfc_p99"]), fmt_signed(a.get("ttfc_p50")),
                     fmt_signed(a.get("ttfc_p99")),
                     f"{fmt_us(m.get('delivery_p50'))} / {fmt_us(m.get('delivery_p99'))}",
                     f"{fmt_signed(a.get('delivery_p50'))} / {fmt_signed(a.get('delivery_p99'))}",
                     fmt_us(m["gap_p50"]), fmt_us(m["gap_p99"]),
                     fmt_signed(a.get("gap_p50")), fmt_signed(a.get("gap_p99")),
                     "—" if pc is None else f"{pc:+.1f}",
                     "—" if m["chunks_mean"] is None else f"{m['chunks_mean']:.0f}",
                     f"{fmt_us(m16['ttfc_p50'])} / {fmt_us(m16['ttfc_p99'])}" if m16 else "—",
                     errors_cell([m, m16])])
    md.append(table(hdr, rows))

    md.append("\n## Gateway cost\n")
    md.append("CPU = user + system time of the gateway's processes during the c=64 run, per 1,000 "
              "requests, and each apart (user: the gateway's own code; system: the kernel's work "
              "for its sockets, most of it TCP over loopback). RSS in MiB, summed over the gateway's processes (shared pages count once per "
              "process): idle = after start-up and one request; peak = highest sample (every 100 ms) "
              "during the load runs; after = 2 s after the last run; open streams = peak while "
              f"{OPEN_STREAMS} streams (50 chunks 80 ms apart) are open at once.\n")
    hdr = ["target", "processes", "CPU s / 1,000 req", "CPU ÷ nginx", "user / system s", "RSS idle", "RSS peak under load",
           "RSS after load", f"RSS {OPEN_STREAMS:,} open streams", "RSS after streams"]
    rows = []
    nginx_cpu = med_of.get("nginx", {}).get("c64", {}).get("cpu_s_per_1000")
    for n in names:
        s = status_row(results[n], len(hdr))
        if s:
            rows.append(s)
            continue
        mem = results[n].get("memory", {})
        if not mem:
            rows.append([n] + ["—"] * (len(hdr) - 1))
            continue
        c64 = med_of[n].get("c64", {})
        cpu, user, system = c64.get("cpu_s_per_1000"), c64.get("user_s_per_1000"), c64.get("system_s_per_1000")
        split = "—" if user is None or system is None else f"{user:.3f} / {system:.3f}"
        rows.append([n, str(mem.get("processes", "—")), "—" if cpu is None else f"{cpu:.3f}",
                     fmt_ratio(ratio(cpu, nginx_cpu)), split, fmt_mib(mem.get("idle_rss_kib")),
                     fmt_mib(mem.get("peak_load_rss_kib")), fmt_mib(mem.get("after_load_rss_kib")),
                     fmt_mib(mem.get("open_streams_peak_rss_kib")), fmt_mib(mem.get("after_streams_rss_kib"))])
    md.append(table(hdr, rows))
    for n in names:
        o = results[n].get("open_streams")
        if o and o["errors"]["total"]:
            md.append(f"\n{n}: the {OPEN_STREAMS} open streams had errors: {o['errors']['by_kind']}")

    md.append("\n## Switchyard against the peers (same run)\n")
    peers = [p for p in ("litellm", "portkey") if p in results]
    hdr = ["figure"] + peers
    rows = []
    for label, rid, key in (("throughput c=1: switchyard ÷ peer", "c1", "throughput"),
                            ("throughput c=64: switchyard ÷ peer", "c64", "throughput"),
                            ("throughput c=256: switchyard ÷ peer", "c256", "throughput")):
        rows.append([label] + [fmt_x(derived["vs_peers"].get(p, {}).get(rid, {}).get(key))
                               if results[p]["status"] == "ok" else results[p]["status"][:120] for p in peers])
    rows.append(["added p99 at c=1 (µs): switchyard / peer"] + [
        f"{fmt_signed(derived['vs_peers'].get(p, {}).get('c1', {}).get('switchyard_added_p99'))} / "
        f"{fmt_signed(derived['vs_peers'].get(p, {}).get('c1', {}).get('peer_added_p99'))}"
        if results[p]["status"] == "ok" else "—" for p in peers])
    md.append(table(hdr, rows))

    notes = [n for n in names if results[n]["status"] != "ok"]
    if notes:
        md.append("\n## Targets not measured\n")
        for n in notes:
            md.append(f"- **{n}**: {results[n]['status']}")
    md.append("")
    return "\n".join(md)


# ----------------------------------------------------------------------------------------------


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {"cpus": CORES, "cpu_model": model, "mem_gib": mem, "kernel": platform.release(),
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def start_upstreams(ctx: Context) -> None:
    binary = release_dir() / "switchyard-fake-upstream"
    for up, port in zip(UPSTREAMS, free_ports(len(UPSTREAMS))):
        latency, chunks, delay = UPSTREAMS[up]
        args = [str(binary), "--listen", f"127.0.0.1:{port}", "--latency-ms", str(latency),
                "--chunks", str(chunks), "--chunk-delay-us", str(delay)]
        if up == "stream":
            args.append("--stamp-chunks")  # per-chunk delivery times
        p = Proc(f"upstream-{up}", args)
        ctx.upstreams.append(p)
        ctx.up_ports[up] = port
    deadline = time.monotonic() + 15
    for p, port in zip(ctx.upstreams, ctx.up_ports.values()):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if not p.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{p.name} did not start: {p.tail()}")
                time.sleep(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, shorter runs (~2.5 minutes plus the build)")
    ap.add_argument("--repeats", type=int, help="repeats of every measurement (default 3, --quick 1)")
    ap.add_argument("--duration", type=float, help="seconds measured per run (default 3, --quick 1.5)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per run (default 1, --quick 0.5)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds (default 5)")
    ap.add_argument("--targets", help="comma-separated subset of: " + ", ".join(t.name for t in TARGETS))
    ap.add_argument("--no-open-streams", dest="open_streams", action="store_false",
                    help=f"skip the {OPEN_STREAMS} open streams memory figure")
    ap.add_argument("--no-build", dest="build", action="store_false", help="use the binaries already built")
    ap.add_argument("--no-pgo", dest="pgo", action="store_false",
                    help="measure the plain release build as `switchyard` (no bench/pgo.sh build or profile)")
    ap.add_argument("--quiet-gateways", action="store_true",
                    help="no per-request logs: SWITCHYARD_LOG=warn for switchyard, access_log off for nginx "
                         "(default: each gateway logs as it does out of the box)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="measure nothing: write latest.md into --out again from a run's latest.json "
                         "(the tables and checks as this version of the runner makes them)")
    opts = ap.parse_args()
    if opts.render:
        return render_again(opts.render, opts.out)
    opts.repeats = opts.repeats or (1 if opts.quick else 3)
    opts.duration = opts.duration or (1.5 if opts.quick else 3.0)
    opts.warmup = opts.warmup if opts.warmup is not None else (0.5 if opts.quick else 1.0)
    opts.settle = 1.0
    opts.settle_after = 1.0 if opts.quick else 2.0
    wanted = [t for t in TARGETS if not opts.targets or t.name in opts.targets.split(",")]
    if opts.targets:
        unknown = set(opts.targets.split(",")) - {t.name for t in TARGETS}
        if unknown:
            ap.error(f"unknown targets: {', '.join(sorted(unknown))}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    except (ValueError, OSError):
        pass
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4 * OPEN_STREAMS + 512:
        log(f"WARNING: open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} is low for "
            f"{OPEN_STREAMS} open streams")

    WORK.mkdir(parents=True, exist_ok=True)
    meta: dict = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  "mode": "quick" if opts.quick else "full", "repeats": opts.repeats, "machine": machine_info()}
    if opts.build:
        log("building release binaries")
        r = subprocess.run(["cargo", "build", "--release", "-p", "switchyard", "-p", "switchyard-fakes",
                            "-p", "switchyard-bench"], cwd=ROOT)
        if r.returncode != 0:
            log("cargo build failed")
            return 1
    pgo_bin = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "pgo" / "release" / "switchyard"
    if opts.pgo and opts.build:
        log("building the PGO gateway (bench/pgo.sh)")
        r = subprocess.run(["bash", str(ROOT / "bench" / "pgo.sh")], cwd=ROOT)
        if r.returncode != 0:
            log("bench/pgo.sh failed (run with --no-pgo to measure the plain build)")
            return 1
    if opts.pgo and not pgo_bin.exists():
        log(f"{pgo_bin} missing: run bench/pgo.sh, or pass --no-pgo")
        return 1

    ctx = Context(opts)
    ctx.switchyard_bin = pgo_bin if opts.pgo else release_dir() / "switchyard"
    meta["switchyard_build"] = "PGO (bench/pgo.sh)" if opts.pgo else "cargo build --release"
    if not opts.pgo:
        wanted = [t for t in wanted if t is not SwitchyardNoPgo]
    results: dict = {}
    try:
        start_upstreams(ctx)
        log("upstreams: " + ", ".join(f"{u}=127.0.0.1:{p} {UPSTREAMS[u]}" for u, p in ctx.up_ports.items()))
        results = measure_all([cls(ctx) for cls in wanted], opts)
    finally:
        for p in ctx.upstreams:
            p.stop()

    meta["machine"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["elapsed_s"] = time.monotonic() - T0
    meta["versions"] = {"switchyard": f"{results.get('switchyard', {}).get('version', '?')} ({git_rev()}; "
                                      f"{meta['switchyard_build']})"}
    for n in ("nginx", "litellm", "portkey"):
        if n in results:
            meta["versions"][n] = results[n].get("version") or results[n]["status"]
    meta["method"] = (
        f"loadgen (bench/src/bin/loadgen.rs: hyper HTTP/1.1, keep-alive, TCP_NODELAY, one connection per "
        f"worker, 1 runtime thread) POSTs a {json.dumps(UPSTREAM_MODEL)}-style chat request (system + user "
        f"message, ~590 bytes) to each target in turn, all against the same fake upstreams "
        f"(switchyard-fake-upstream; non-streaming answers ~1 KiB); each run = {opts.warmup:g} s warm-up + "
        f"{opts.duration:g} s measured, repeated {opts.repeats}×, medians of the per-run figures; "
        f"'added' = target minus direct in the same run; every process shares the machine's "
        f"{CORES} cores (loadgen, upstream and gateway are not pinned); every target is started first and "
        f"runs are interleaved (each kind of run, target after target) so that drift hits all alike; "
        + ("per-request logging off (--quiet-gateways: switchyard at warn, nginx access_log off)"
           if opts.quiet_gateways else
           "gateways log at their defaults (switchyard: one line per request at info; nginx: access_log "
           "on; both to files)")
    )
    meta["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()}
    derived = derive({n: r for n, r in results.items() if r["status"] == "ok"})
    meta["checks"] = checks(results, derived)
    md = report(results, derived, meta)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "latest.md").write_text(md)
    doc = {"meta": meta, "upstreams": {u: dict(zip(("latency_ms", "chunks", "chunk_delay_us"), v))
                                       for u, v in UPSTREAMS.items()},
           "runs": RUNS, "targets": results,
           "derived": {k: v for k, v in derived.items()}}
    (opts.out / "latest.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(md)
    log(f"wrote {opts.out / 'latest.md'} and {opts.out / 'latest.json'} in {meta['elapsed_s'] / 60:.1f} min")
    return 0


def render_again(path: Path, out: Path) -> int:
    """`--render`: the report of a finished run, from its JSON."""
    doc = json.loads(path.read_text())
    results, meta = doc["targets"], doc["meta"]
    derived = derive({n: r for n, r in results.items() if r["status"] == "ok"})
    meta["checks"] = checks(results, derived)
    md = report(results, derived, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(md)
    log(f"wrote {out / 'latest.md'} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
