"""TVM's RPC tracker and servers: measuring kernels on other machines (the only RPC code that touches TVM).

    check_tracker("127.0.0.1:9190", key)           # ConvschedError if the tracker is down (or has no such key)
    remote_run_and_time(built, args, out_specs, ("127.0.0.1:9190", "key"), repeat, min_repeat_ms, timeout)
    with local_cluster(n_servers=2, key="k") as addr: ...   # a tracker + servers on 127.0.0.1 (tests, demos)

A remote run: the kernel is exported to a shared library here, uploaded to a server the tracker picks for the
key, loaded there, run once on the given inputs (the outputs come back for the correctness check) and timed
with TVM's time_evaluator on the server's CPU.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import tvm
from tvm import rpc as _rpc

from ..errors import ConvschedError


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = str(addr).rpartition(":")
    if not host or not port.isdigit():
        raise ConvschedError(f"RPC tracker address must be host:port, got {addr!r}")
    return host, int(port)


def check_tracker(addr: str, key: str | None = None, timeout: float = 5.0) -> dict:
    """The tracker's summary; ConvschedError naming the cause if it cannot be reached."""
    host, port = parse_addr(addr)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ConvschedError(f"RPC tracker at {host}:{port} is not reachable ({e.strerror or e}); start one with "
                             f"`python -m tvm.exec.rpc_tracker --host {host} --port {port}`") from None
    try:
        summary = _rpc.connect_tracker(host, port).summary()
    except Exception as e:
        raise ConvschedError(f"{host}:{port} does not answer as a TVM RPC tracker: {e}") from None
    return summary


def queue_keys(summary: dict) -> dict:
    """{key: number of free servers} from a tracker summary."""
    out = {}
    for key, info in (summary.get("queue_info") or {}).items():
        out[key] = int(info.get("free", 0)) if isinstance(info, dict) else 0
    for s in summary.get("server_info") or []:
        k = str(s.get("key", "")).split(":")[-1]
        out.setdefault(k, 0)
    return out


def remote_run_and_time(built, args, out_specs, rpc_cfg, repeat: int, min_repeat_ms: int, timeout: float,
                        also=()):
    """Run a compiled function (a Built) on a server of the tracker's queue `key`, on `args` (checked, aligned
    arrays), and once on each argument list of `also` (more inputs to check): -> (the output arrays, seconds per
    call, one per repeat, [the output arrays of each of `also`])."""
    addr, key = rpc_cfg
    host, port = parse_addr(addr)
    with tempfile.TemporaryDirectory(prefix="convsched-rpc-") as d:
        lib = os.path.join(d, f"cand_{os.getpid()}_{time.monotonic_ns()}.so")
        built.executable.export_library(lib)
        remote = _rpc.connect_tracker(host, port).request(key, priority=1, session_timeout=int(timeout) + 1)
        remote.upload(lib)
        mod = remote.load_module(os.path.basename(lib))
    dev = remote.cpu(0)
    remote_args = [tvm.runtime.tensor(a, dev) for a in args]
    outs = [tvm.runtime.empty(tuple(s.shape), s.dtype, dev) for s in out_specs]
    more = []
    for extra in also:
        extra_outs = [tvm.runtime.empty(tuple(s.shape), s.dtype, dev) for s in out_specs]
        mod["main"](*[tvm.runtime.tensor(a, dev) for a in extra], *extra_outs)
        more.append([o.numpy() for o in extra_outs])
    mod["main"](*remote_args, *outs)
    got = [o.numpy() for o in outs]
    ev = mod.time_evaluator("main", dev, number=1, repeat=repeat, min_repeat_ms=min_repeat_ms)
    secs = list(ev(*remote_args, *outs).results)
    return got, secs, more


# ------------------------------------------------------------------------------ a local tracker + servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise ConvschedError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def kill_tree(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop a process and every process below it (TVM's tracker and servers listen in a child process)."""
    import psutil       # optional: the tune extra (only local clusters need it)
    try:
        parent = psutil.Process(proc.pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)
    with contextlib.suppress(Exception):
        proc.wait(timeout)


@contextlib.contextmanager
def local_cluster(n_servers: int = 2, key: str = "convsched", startup_timeout: float = 60.0):
    """A tracker and `n_servers` servers on 127.0.0.1, stopped (children included) on exit. Yields
    (tracker "host:port", [Popen of tracker and servers])."""
    procs = []
    env = dict(os.environ)
    try:
        tport = _free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                       "--port", str(tport), "--port-end", str(tport + 1)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_port(tport, startup_timeout)
        addr = f"127.0.0.1:{tport}"
        for _ in range(n_servers):
            sport = _free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                           "--port", str(sport), "--port-end", str(sport + 1),
                                           "--tracker", addr, "--key", key], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        end = time.monotonic() + startup_timeout
        while time.monotonic() < end:
            with contextlib.suppress(ConvschedError):
                if queue_keys(check_tracker(addr)).get(key, 0) >= n_servers:
                    break
            time.sleep(0.3)
        else:
            raise ConvschedError(f"RPC servers did not register with the tracker at {addr} within "
                                 f"{startup_timeout:.0f} s")
        yield addr, procs
    finally:
        for p in reversed(procs):
            kill_tree(p)
