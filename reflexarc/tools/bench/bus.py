"""Bus latency: our typed messages against raw pyzmq bytes of the same size, same run.

A sender process publishes, at ``rate_hz``, alternately one of our messages (through
:class:`reflexarc.runtime.bus.Publisher`) and one raw single-frame byte message of the same total
size on a second socket pair; a receiver process takes both (ours fully decoded, arrays
zero-copy) and records one-way latency from the send stamp (``time.monotonic_ns``, one
clock for both processes), taken as ``publish`` is called: both paths are timed from
"message in hand" to "message decoded in hand". Interleaving makes both see the same machine noise, so the
ratio ours/raw is meaningful on a noisy machine.

``cpus`` pins both processes, and so the ZeroMQ I/O threads they start, to those cores.
Where waking a thread on another core is dear (a virtual machine), two ends that share
a core hand a message over faster than two the OS spreads out, raw pyzmq included.

``wait="spin"`` has both ends wait as a kHz node of the runtime does at its deadline,
awake: the sender busy-waits the last ``AUTO_SPIN_US`` before each send, and the
receiver busy-polls both sockets instead of sleeping in ``zmq_poll``, so no message has
to wake it. That costs the receiver a whole core.

``cpu_latency_us`` holds the kernel's PM QoS CPU latency limit while the bench runs, as
a realtime test such as cyclictest does: idle cores then use only idle states that wake
within it (0: poll, never halt). In a virtual machine a halted core wakes slowly, and
that wake-up, not the messages, can be most of a one-way latency.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from reflexarc.runtime import bus as busmod
from reflexarc.runtime.msgs import Image, JointState, Message, empty
from reflexarc.runtime.node import AUTO_SPIN_US, cpu_latency
from reflexarc.runtime.progress import Progress
from reflexarc.runtime.wire import encode


def _sample(kind: str) -> tuple[str, Message]:
    if kind == "JointState":
        z = np.zeros(7)
        return "joint_state", JointState(position=z, velocity=z, effort=z, gripper=0.04)
    size = int(kind.split()[1].split("x")[0])
    rgb = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return "camera/front", Image(camera="front", rgb=rgb, depth=empty("f4", 0, 0))


def _wire_bytes(topic: str, msg: Message) -> int:
    return sum(memoryview(f).nbytes for f in encode(topic, msg))


def _pause(seconds: float, spin: bool) -> None:
    """Sleep ``seconds``; with ``spin``, busy-wait the last ``AUTO_SPIN_US`` of them."""
    if not spin:
        time.sleep(seconds)
        return
    end = time.monotonic_ns() + int(seconds * 1e9)
    rest = seconds - AUTO_SPIN_US / 1e6
    if rest > 0:
        time.sleep(rest)
    while time.monotonic_ns() < end:
        pass


def _receiver(addr_ours: str, addr_raw: str, n: int, spin: bool, ready: Any, out: Any) -> None:
    cfg = busmod.BusConfig(transport="tcp" if addr_ours.startswith("tcp") else "ipc")
    ctx = zmq.Context()
    sec = busmod.Security(ctx, cfg)
    ours = busmod.Subscriber(ctx, [addr_ours], ["joint_state", "camera/"], cfg, sec, "bench")
    raw = ctx.socket(zmq.SUB)
    raw.setsockopt(zmq.SUBSCRIBE, b"")
    raw.rcvhwm = 100000
    raw.connect(addr_raw)
    poller = zmq.Poller()
    poller.register(ours.sock, zmq.POLLIN)
    poller.register(raw, zmq.POLLIN)

    def ready_now() -> list[tuple[zmq.Socket, int]]:  # spin: the sockets' own event flags
        return [(s, zmq.POLLIN) for s in (ours.sock, raw) if s.get(zmq.EVENTS) & zmq.POLLIN]

    lat_ours: list[int] = []
    lat_raw: list[int] = []
    ready.set()
    deadline = time.monotonic() + 120
    while (len(lat_ours) < n or len(lat_raw) < n) and time.monotonic() < deadline:
        for sock, _ in ready_now() if spin else poller.poll(500):
            if sock is raw:
                frame = raw.recv(copy=False)
                stamp = struct.unpack_from("<q", frame.buffer)[0]
                now = time.monotonic_ns()
                if stamp >= 0:
                    lat_raw.append(now - stamp)
            else:
                got = ours.recv(zmq.NOBLOCK)
                now = time.monotonic_ns()
                if got is not None and got[1].seq >= 0 and got[1].stamp_ns > 0:
                    lat_ours.append(now - got[1].stamp_ns)
    out.put((lat_ours, lat_raw, sorted(os.sched_getaffinity(0))))
    ours.close()
    raw.close()
    ctx.term()


def _row(kind: str, transport: str, n: int, rate_hz: float, warmup: int = 200,
         wait: str = "block") -> dict[str, Any]:
    topic, proto = _sample(kind)
    size = _wire_bytes(topic, proto)
    if transport == "ipc":
        d = tempfile.mkdtemp(prefix="reflexarc-bench-")
        addr_ours, addr_raw = f"ipc://{d}/ours", f"ipc://{d}/raw"
    else:
        addr_ours, addr_raw = "tcp://127.0.0.1:47391", "tcp://127.0.0.1:47392"
    cfg = busmod.BusConfig(transport=transport)
    ctx = zmq.Context()
    sec = busmod.Security(ctx, cfg)
    pub = busmod.Publisher(ctx, addr_ours, cfg, sec)
    raw = ctx.socket(zmq.PUB)
    raw.sndhwm = 100000
    raw.bind(addr_raw)
    mpctx = mp.get_context("fork")
    ready, out = mpctx.Event(), mpctx.Queue()
    spin = wait == "spin"
    proc = mpctx.Process(target=_receiver, args=(addr_ours, addr_raw, n, spin, ready, out), daemon=True)
    proc.start()
    ready.wait(10)
    time.sleep(0.3)  # subscriptions propagate
    buf = bytearray(size)
    period = 1.0 / rate_hz
    # warm-up messages carry stamp -1 / 0 and are not counted
    for i in range(warmup + n):
        counted = i >= warmup
        struct.pack_into("<q", buf, 0, time.monotonic_ns() if counted else -1)
        raw.send(buf, copy=False)
        _pause(period / 2, spin)
        # the message is built first (the node's work); the stamp is the publish call,
        # as the raw path stamps a buffer it already holds
        msg = proto.replace(stamp_ns=0)
        if counted:
            object.__setattr__(msg, "stamp_ns", time.monotonic_ns())
        pub.publish(topic, msg)
        _pause(period / 2, spin)
    lat_ours, lat_raw, cpus = out.get(timeout=120)
    proc.join(5)
    pub.close()
    raw.close()
    sec.close()
    ctx.term()
    ours_us = np.asarray(lat_ours) / 1e3
    raw_us = np.asarray(lat_raw) / 1e3
    p = np.percentile(ours_us, [50, 99, 99.9])
    r = np.percentile(raw_us, [50, 99, 99.9])
    return {
        "name": kind,
        "transport": transport,
        "bytes": size,
        "n": len(ours_us),
        "p50_us": round(float(p[0]), 1),
        "p99_us": round(float(p[1]), 1),
        "p999_us": round(float(p[2]), 1),
        "raw_p50_us": round(float(r[0]), 1),
        "raw_p99_us": round(float(r[1]), 1),
        "raw_p999_us": round(float(r[2]), 1),
        "ratio_p50": round(float(p[0] / r[0]), 3),
        "cpus": cpus,  # the cores the receiver could run on (the sender's are the same)
        "wait": wait,
        "_ours": ours_us,
        "_raw": raw_us,
    }


def bench_bus(cfg: Any) -> list[dict[str, Any]]:
    """One-way latency rows for JointState, Image 64x64x3 and 224x224x3 over ipc and tcp."""
    n = 200 if cfg.quick else cfg.messages
    rows = []
    before = os.sched_getaffinity(0)
    if cfg.cpus:
        os.sched_setaffinity(0, cfg.cpus)  # before any context: its I/O thread inherits it
    try:
        with cpu_latency(cfg.cpu_latency_us):
            progress = Progress("bench bus", 6, "cases", every_s=0.0)
            for transport in ("ipc", "tcp"):
                for kind in ("JointState", "Image 64x64x3", "Image 224x224x3"):
                    row = _row(kind, transport, n, cfg.rate_hz, warmup=50 if cfg.quick else 200,
                               wait=cfg.wait)
                    rows.append(row | {"cpu_latency_us": cfg.cpu_latency_us})
                    progress.update(len(rows), f"{kind} over {transport}")
    finally:
        os.sched_setaffinity(0, before)
    where = f"{cfg.rate_hz:g} Hz, " + (
        f"both ends on cores {list(cfg.cpus)}" if cfg.cpus else "both ends placed by the OS") + (
        ", both awake (wait=spin)" if cfg.wait == "spin" else "") + (
        f", idle cores wake within {cfg.cpu_latency_us} us" if cfg.cpu_latency_us >= 0 else "")
    _plot(rows, Path(cfg.out).with_suffix(".png") if cfg.out else Path("runs/bench/bus.png"), where)
    for r in rows:
        del r["_ours"], r["_raw"]
    return rows


def _plot(rows: list[dict[str, Any]], path: Path, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharey=False)
    for ax, r in zip(axes.ravel(), rows, strict=False):
        hi = np.percentile(np.concatenate([r["_ours"], r["_raw"]]), 99.5)
        bins = np.linspace(0, hi, 60)
        ax.hist(r["_raw"], bins=bins, alpha=0.6, label=f"raw pyzmq p50 {r['raw_p50_us']} us")
        ax.hist(r["_ours"], bins=bins, alpha=0.6, label=f"reflexarc p50 {r['p50_us']} us")
        ax.set_title(f"{r['name']} over {r['transport']} ({r['bytes']} B)")
        ax.set_xlabel("one-way latency (us)")
        ax.legend(fontsize=8)
    fig.suptitle(f"one-way latency, {where}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
