"""What the gateway adds to an image request, against calling the emulator directly and against
nginx proxying the same bytes (the floor for moving them).

Three targets, same request (``gpt-image-1``, 1024x1024, realistic ~1.6 MB PNG → ~2.1 MB of base64
JSON), each at 1, 16 and 64 concurrent requests, all on 127.0.0.1:

* ``direct``  the emulator under uvicorn (its own process, latency off, images cached)
* ``nginx``   nginx (temp config, ``proxy_pass`` to the emulator, buffering off)
* ``gateway`` ``imagegate serve`` (its own process, open mode, upstream = the emulator)
* ``pyfloor`` ``bench/floor_proxy.py``: one route forwarding to the emulator on the gateway's
              own byte path (uvicorn, FastAPI, its upstream transport, body parse and sliced
              answer) and nothing else: what the gateway spends above it is its governance and
              routing, what it spends above nginx is Python's

Printed from one run: p50/p95 latency, the p50 the proxy adds over ``direct`` at the same
concurrency, CPU seconds per request of the proxy process(es) (and the kernel's part of it), the
share of the machine's CPU time the hypervisor took while each target ran ("steal", from
``/proc/stat``: on a shared VM it varies from minute to minute, and a round with a high share
ran on a slower machine; it shows only part of that: on this VM the same run has also been 2x
slower with under 2 % steal), the gateway/nginx ratios, and the gateway's peak RSS during the
64-concurrent run. Targets (issue 5):
added p50 ≤ 5 ms at 16 concurrent and within 2x of nginx's; memory bounded at 64 concurrent.

    .venv/bin/python bench/bench_gateway.py [--quick] [--pin] [--runs N]

``--pin`` puts the proxy under test on a CPU of its own (the emulator and the load generator on
the other), which is what a gateway in front of Azure has; by default the four processes share
the two cores, so whatever CPU the proxy spends is taken from the emulator too.

nginx is the Debian package ``nginx``; when missing the script installs it with apt-get (as root)
or prints the command. The load generator is an aiohttp client in this process (see ``load``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import psutil

API_VERSION = "2025-04-01-preview"
KEY = "emulator-key"
BODY = b'{"prompt": "a benchmark of moving image bytes", "size": "1024x1024", "quality": "low"}'
LEVELS = (1, 16, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_up(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def ensure_nginx() -> str | None:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing nginx (apt-get install -y nginx) ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx"], env=env, check=False, capture_output=True
        )
        if not Path("/usr/sbin/nginx").exists():
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "nginx"], env=env, check=False, capture_output=True
            )
        return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    print("nginx not found: install it with `sudo apt-get install -y nginx` to get the floor figures")
    return None


@dataclass
class Procs:
    emulator: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    nginx: subprocess.Popen[bytes] | None
    emulator_url: str
    gateway_url: str
    nginx_url: str | None
    floor: subprocess.Popen[bytes]
    floor_url: str

    @property
    def proxies(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in (self.gateway, self.nginx, self.floor) if p is not None]


def start(tmp: Path) -> Procs:
    py = sys.executable
    emu_port, gw_port = free_port(), free_port()
    emu_cfg = tmp / "emulator.yaml"
    emu_cfg.write_text(
        textwrap.dedent(
            """\
            time_scale: 0
            deployments:
              - name: bench
                model: gpt-image-1
                rpm: 60000000
                window_s: 1
                concurrency: 1024
                image_bytes: realistic
            """
        )
    )
    # The emulator under uvicorn with a long keep-alive: with uvicorn's 5 s default, a pooled
    # connection idle between rounds can be closed just as the gateway reuses it.
    serve_emulator = (
        "import sys, uvicorn\n"
        "from imagegate.emulator import create_emulator_app, load_emulator_config\n"
        "app = create_emulator_app(load_emulator_config(sys.argv[1]), time_scale=0.0)\n"
        "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning',\n"
        "            timeout_keep_alive=300)\n"
    )
    emulator = subprocess.Popen(
        [py, "-c", serve_emulator, str(emu_cfg), str(emu_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    emulator_url = f"http://127.0.0.1:{emu_port}"
    gw_cfg = tmp / "gateway.yaml"
    gw_cfg.write_text(
        textwrap.dedent(
            f"""\
            deployments:
              - name: bench
                endpoint: {emulator_url}
                model: gpt-image-1
                api_key: {KEY}
                api_version: {API_VERSION}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEGATE_", "AZURE_OPENAI_"))}
    env["IMAGEGATE_DATA_DIR"] = str(tmp / "gateway-data")  # its ledger, not the one in the cwd
    gateway = subprocess.Popen(
        [py, "-m", "imagegate", "serve", "--config", str(gw_cfg), "--port", str(gw_port)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "gateway.log", "wb"),  # noqa: SIM115 - lives as long as the process
        env=env,
    )
    gateway_url = f"http://127.0.0.1:{gw_port}"
    nginx, nginx_url = start_nginx(tmp, emu_port)
    floor_port = free_port()
    floor = subprocess.Popen(
        [py, str(Path(__file__).with_name("floor_proxy.py")), emulator_url, str(floor_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    floor_url = f"http://127.0.0.1:{floor_port}"
    wait_up(f"{emulator_url}/_emulator/deployments")
    wait_up(f"{gateway_url}/healthz")
    wait_up(f"{floor_url}/healthz")
    if nginx_url:
        wait_up(f"{nginx_url}/nginx-health")
    return Procs(emulator, gateway, nginx, emulator_url, gateway_url, nginx_url, floor, floor_url)


def pin(procs: Procs) -> None:
    """CPU 0: the emulator and this load generator; CPU 1: the proxies (with their threads)."""
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--pin needs two CPUs")
    os.sched_setaffinity(0, {0})
    os.sched_setaffinity(procs.emulator.pid, {0})
    for proc in procs.proxies:
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {1})


def start_nginx(tmp: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    binary = ensure_nginx()
    if binary is None:
        return None, None
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""\
            worker_processes 1;
            daemon off;
            pid {tmp}/nginx.pid;
            error_log {tmp}/nginx-error.log warn;
            events {{ worker_connections 1024; }}
            http {{
              access_log off;
              client_body_temp_path {tmp}/body;
              proxy_temp_path {tmp}/proxy;
              fastcgi_temp_path {tmp}/fastcgi;
              uwsgi_temp_path {tmp}/uwsgi;
              scgi_temp_path {tmp}/scgi;
              upstream emulator {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
              server {{
                listen 127.0.0.1:{port};
                location = /nginx-health {{ return 200 "ok"; }}
                location / {{
                  proxy_pass http://emulator;
                  proxy_http_version 1.1;
                  proxy_set_header Connection "";
                  proxy_buffering off;
                  proxy_request_buffering off;
                }}
              }}
            }}
            """
        )
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, f"http://127.0.0.1:{port}"


def steal_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of the machine so far, from ``/proc/stat`` ((0, 0) elsewhere):
    the time a hypervisor gave these CPUs to someone else. A run with a high share measured a
    machine that was slower than itself for part of the time."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def cpu_s(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of the process trees."""
    user = system = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                user += t.user
                system += t.system
            except psutil.NoSuchProcess:
                pass
    return user, system


class RssSampler:
    """Peak RSS of a process tree, sampled every 5 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        proc = psutil.Process(self.pid)
        return sum(p.memory_info().rss for p in (proc, *proc.children(recursive=True)))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    latencies_s: list[float]
    cpu_per_request_s: float
    sys_per_request_s: float  # the kernel's part of cpu_per_request_s
    bytes_per_response: int
    steal: int = 0  # clock ticks the hypervisor took from this machine's CPUs during the run
    ticks: int = 0  # all clock ticks of this machine's CPUs during the run
    # CPU per request of the emulator and this load generator together: with --pin, what the
    # other core spends per request. In a closed loop a proxy slower than that is the bottleneck
    # and adds about concurrency x the difference; a faster one adds about nothing.
    upstream_cpu_per_request_s: float = 0.0

    @property
    def steal_share(self) -> float:
        return self.steal / self.ticks if self.ticks else 0.0


async def load(
    url: str,
    headers: dict[str, str],
    body: bytes,
    concurrency: int,
    total: int,
    pids: list[int],
    upstream_pids: list[int] = [],  # noqa: B006 - read only
) -> Run:
    """``total`` requests, ``concurrency`` at a time, from an aiohttp client: its C parser reads a
    2 MB body for ~1 ms of CPU, where httpx's h11 spends ~10 ms, which made this load generator
    the slowest stage of every target and its queue the figure being measured."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=120.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one() -> tuple[float, int]:
            began = time.perf_counter()
            async with client.post(url, data=body, headers=headers) as response:
                content = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{url}: {response.status} {content[:300]!r}")
            return time.perf_counter() - began, len(content)

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm connections
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(total):
            queue.put_nowait(None)
        results: list[tuple[float, int]] = []

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                results.append(await one())

        user0, sys0 = cpu_s(pids)
        up0 = sum(cpu_s(upstream_pids)) + time.process_time()
        steal0, ticks0 = steal_ticks()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        steal1, ticks1 = steal_ticks()
        up1 = sum(cpu_s(upstream_pids)) + time.process_time()
        user1, sys1 = cpu_s(pids)
    used, kernel = (user1 - user0) + (sys1 - sys0), sys1 - sys0
    return Run(
        [r[0] for r in results],
        used / total,
        kernel / total,
        results[0][1],
        steal1 - steal0,
        ticks1 - ticks0,
        (up1 - up0) / total,
    )


def merge(total: Run | None, more: Run) -> Run:
    if total is None:
        return more
    n, m = len(total.latencies_s), len(more.latencies_s)
    cpu = (total.cpu_per_request_s * n + more.cpu_per_request_s * m) / (n + m)
    kernel = (total.sys_per_request_s * n + more.sys_per_request_s * m) / (n + m)
    upstream = (total.upstream_cpu_per_request_s * n + more.upstream_cpu_per_request_s * m) / (n + m)
    return Run(
        total.latencies_s + more.latencies_s,
        cpu,
        kernel,
        total.bytes_per_response,
        total.steal + more.steal,
        total.ticks + more.ticks,
        upstream,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Measured:
    """One run: every target at every level, and the gateway's memory."""

    results: dict[tuple[str, int], Run]
    idle_rss: int
    peak_rss: int

    def added_ms(self, name: str, level: int) -> float:
        base = statistics.median(self.results[("direct", level)].latencies_s)
        return (statistics.median(self.results[(name, level)].latencies_s) - base) * 1000


Target = tuple[str, dict[str, str], bytes, list[int]]


def measure(targets: dict[str, Target], procs: Procs, per_level: dict[int, int], rounds: int) -> Measured:
    results: dict[tuple[str, int], Run] = {}
    idle_rss = peak_rss = 0
    upstream = [procs.emulator.pid]
    for level in LEVELS:
        # Targets take turns in short rounds, so a change in machine load (other processes on
        # the same cores) lands on all of them alike instead of on whichever ran last.
        batch = max(level, per_level[level] // rounds)
        if level == LEVELS[-1]:
            idle_rss = RssSampler(procs.gateway.pid).rss()  # warmed up, between runs
        for _ in range(rounds):
            for name, (url, headers, body, pids) in targets.items():
                measured = asyncio.run(load(url, headers, body, level, batch, pids, upstream))
                results[(name, level)] = merge(results.get((name, level)), measured)
        if level == LEVELS[-1]:
            # Peak memory in a round of its own, not timed: the sampler thread polls psutil
            # every 5 ms in this process and would slow the load generator of that round only.
            url, headers, body, pids = targets["gateway"]
            with RssSampler(procs.gateway.pid) as sampler:
                asyncio.run(load(url, headers, body, level, batch, pids))
            peak_rss = sampler.peak
        print(f"  measured {len(targets)} targets at {level:2d} concurrent", flush=True)
    return Measured(results, idle_rss, peak_rss)


def report(m: Measured, targets: dict[str, Target], per_level: dict[int, int], pinned: bool) -> None:
    results = m.results
    size = results[("direct", 1)].bytes_per_response
    placement = "proxy on CPU 1, emulator and load on CPU 0" if pinned else "all share 2 CPUs"
    print(
        f"\nresponse body: {size / 1e6:.2f} MB of JSON (base64 PNG); requests per level: {per_level}; "
        f"{placement}"
    )
    print(
        f"{'target':8s} {'conc':>4s} {'p50 ms':>8s} {'p95 ms':>8s} {'added p50 ms':>13s} "
        f"{'CPU ms/req':>11s} {'of it sys':>9s} {'emu+load':>9s} {'steal':>6s}"
    )
    for level in LEVELS:
        for name in targets:
            run = results[(name, level)]
            p50 = statistics.median(run.latencies_s)
            added = "" if name == "direct" else f"{m.added_ms(name, level):13.2f}"
            cpu = "" if name == "direct" else f"{run.cpu_per_request_s * 1000:11.2f}"
            kernel = "" if name == "direct" else f"{run.sys_per_request_s * 1000:9.2f}"
            print(
                f"{name:8s} {level:4d} {p50 * 1000:8.2f} {pct(run.latencies_s, 0.95) * 1000:8.2f} "
                f"{added:>13s} {cpu:>11s} {kernel:>9s} {run.upstream_cpu_per_request_s * 1000:9.2f} "
                f"{run.steal_share:6.1%}"
            )
    print(
        "(emu+load: CPU ms per request of the emulator and the load generator together; pinned, "
        "a proxy whose own CPU per request is above it queues requests)"
    )
    if "nginx" in targets:
        print("\ngateway vs nginx (same run):")
        for level in LEVELS:
            g, n = m.added_ms("gateway", level) / 1000, m.added_ms("nginx", level) / 1000
            gc = results[("gateway", level)].cpu_per_request_s
            nc = results[("nginx", level)].cpu_per_request_s
            ratio = f"{g / n:.2f}x" if n > 0.0005 else "n/a (nginx adds < 0.5 ms)"
            cpu_ratio = f"{gc / nc:.1f}x" if nc > 0 else "n/a (nginx CPU below the clock's resolution)"
            print(
                f"  {level:2d} concurrent: added p50 gateway {g * 1000:.2f} ms vs nginx {n * 1000:.2f} ms "
                f"({ratio}); CPU/request {gc * 1000:.2f} ms vs {nc * 1000:.2f} ms ({cpu_ratio})"
            )
    print("\ngateway vs pyfloor (the same byte path without the gateway's own work), same run:")
    for level in LEVELS:
        gc = results[("gateway", level)].cpu_per_request_s
        fc = results[("pyfloor", level)].cpu_per_request_s
        print(
            f"  {level:2d} concurrent: CPU/request {gc * 1000:.2f} ms vs {fc * 1000:.2f} ms "
            f"(governance, routing, ledger: {(gc - fc) * 1000:.2f} ms); added p50 "
            f"{m.added_ms('gateway', level):.2f} ms vs {m.added_ms('pyfloor', level):.2f} ms"
        )
    g16 = m.added_ms("gateway", 16)
    print(f"\ntarget: added p50 at 16 concurrent <= 5 ms: {g16:.2f} ms -> {'met' if g16 <= 5 else 'NOT met'}")
    print(
        f"gateway RSS: between runs {m.idle_rss / 1e6:.0f} MB, "
        f"peak at 64 concurrent {m.peak_rss / 1e6:.0f} MB "
        f"(+{(m.peak_rss - m.idle_rss) / 1e6:.0f} MB = {(m.peak_rss - m.idle_rss) / 64 / size:.1f} "
        "response bodies per in-flight request)"
    )


def summary(runs: list[Measured], targets: dict[str, Target]) -> None:
    """One line per run at 16 concurrent, and how many runs met the targets."""
    print(f"\n{len(runs)} runs at 16 concurrent:")
    print(
        f"{'run':>3s} {'gateway adds':>12s} {'nginx adds':>10s} {'gw CPU/req':>10s} {'emu+load':>9s} "
        f"{'nginx CPU':>9s} {'pyfloor CPU':>11s} {'peak RSS MB':>11s}"
    )
    met = within = 0
    for i, m in enumerate(runs, start=1):
        g = m.added_ms("gateway", 16)
        n = m.added_ms("nginx", 16) if "nginx" in targets else float("nan")
        run = m.results[("gateway", 16)]
        nginx_cpu = m.results[("nginx", 16)].cpu_per_request_s * 1000 if "nginx" in targets else float("nan")
        met += g <= 5
        within += g <= 2 * max(n, 0.5)  # nginx adding under 0.5 ms counts as 0.5
        print(
            f"{i:3d} {g:12.2f} {n:10.2f} {run.cpu_per_request_s * 1000:10.2f} "
            f"{run.upstream_cpu_per_request_s * 1000:9.2f} {nginx_cpu:9.2f} "
            f"{m.results[('pyfloor', 16)].cpu_per_request_s * 1000:11.2f} {m.peak_rss / 1e6:11.0f}"
        )
    size = runs[0].results[("direct", 1)].bytes_per_response
    top = max(m.peak_rss for m in runs)
    print(
        f"gateway RSS before the first 64-concurrent round {runs[0].idle_rss / 1e6:.0f} MB, highest peak "
        f"{top / 1e6:.0f} MB (+{(top - runs[0].idle_rss) / 64 / size:.1f} response bodies per in-flight "
        "request; later runs start from the heap the earlier ones kept)"
    )
    print(f"added p50 <= 5 ms at 16 concurrent: met in {met} of {len(runs)} runs")
    if "nginx" in targets:
        print(f"within 2x of nginx's added p50 (or of 0.5 ms): {within} of {len(runs)} runs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the proxy (gateway or nginx) to CPU 1 and the emulator and load generator to CPU 0, "
        "as if the proxy had a host of its own; default: all share both cores",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="measure everything this many times (same processes)"
    )
    args = parser.parse_args()
    per_level = {1: 60, 16: 384, 64: 384} if not args.quick else {1: 8, 16: 32, 64: 128}
    tmp = Path(tempfile.mkdtemp(prefix="imagegate-bench-"))
    procs = start(tmp)
    if args.pin:
        pin(procs)
    deployment_path = f"/openai/deployments/bench/images/generations?api-version={API_VERSION}"
    azure_headers = {"api-key": KEY, "content-type": "application/json"}
    gateway_body = BODY.replace(b'{"prompt"', b'{"model": "bench", "prompt"')
    targets: dict[str, Target] = {
        "direct": (procs.emulator_url + deployment_path, azure_headers, BODY, []),
        "gateway": (
            procs.gateway_url + "/v1/images/generations",
            {"authorization": "Bearer anything", "content-type": "application/json"},
            gateway_body,
            [procs.gateway.pid],
        ),
    }
    if procs.nginx_url and procs.nginx is not None:
        targets["nginx"] = (procs.nginx_url + deployment_path, azure_headers, BODY, [procs.nginx.pid])
    targets["pyfloor"] = (
        procs.floor_url + "/v1/images/generations",
        {"content-type": "application/json"},
        gateway_body,
        [procs.floor.pid],
    )
    rounds = 4 if not args.quick else 2
    runs: list[Measured] = []
    try:
        for i in range(args.runs):
            if args.runs > 1:
                print(f"run {i + 1} of {args.runs}", flush=True)
            runs.append(measure(targets, procs, per_level, rounds))
            report(runs[-1], targets, per_level, args.pin)
    finally:
        for proc in (*procs.proxies, procs.emulator):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
        for proc in (*procs.proxies, procs.emulator):
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    if len(runs) > 1:
        summary(runs, targets)


if __name__ == "__main__":
    main()
