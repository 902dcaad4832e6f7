"""Scheduling policy of node processes (docs/liveness.md, "Scheduling"): SCHED_FIFO where
the OS allows it, time-shared with one warning where it refuses."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from reflexarc.robot.controller import ControllerNode
from reflexarc.runtime import node as nodemod
from reflexarc.runtime.node import NodeSpec, _set_sched, set_scheduling
from reflexarc.runtime.testnodes import Source

CHILD = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
from reflexarc.runtime.node import set_scheduling
if {uid} is not None:
    os.setuid({uid})  # a user without CAP_SYS_NICE (imports first: it may not read them)
import threading, zmq
ctx = zmq.Context(); sock = ctx.socket(zmq.PUB)  # starts ZeroMQ's background threads
ev = threading.Event(); helper = threading.Thread(target=ev.wait); helper.start()
got = set_scheduling("fifo", 3, "child")
print(got, os.sched_getscheduler(0) == os.SCHED_FIFO)
for tid in sorted(os.listdir("/proc/self/task")):  # every thread: its name and policy
    name = open(f"/proc/self/task/{{tid}}/comm").read().strip().split("/")[0]
    print(name, os.sched_getscheduler(int(tid)) == os.SCHED_FIFO)
ev.set(); helper.join(); sock.close(); ctx.term()
"""


def _child(uid: int | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD.format(uid=uid)], capture_output=True,
                          text=True, timeout=60, check=True)


def test_a_refused_fifo_falls_back_time_shared_with_one_warning(monkeypatch, caplog) -> None:
    calls = []

    def refuse(pid, policy, param):  # the OS call only, as without CAP_SYS_NICE
        calls.append(pid)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(nodemod.os, "sched_setscheduler", refuse)
    with caplog.at_level(logging.WARNING, logger="reflexarc.runtime.node"):
        assert set_scheduling("fifo", 10, "controller") == "other"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "controller" in lines[0] and "CAP_SYS_NICE" in lines[0]
    assert len(calls) == 1  # the first refusal ends it: no warning per thread
    caplog.clear()
    assert set_scheduling("other", 10, "controller") == "other"  # nothing asked, nothing said
    assert not caplog.records and len(calls) == 1


def test_the_controller_is_fifo_by_default_in_realtime_only(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(nodemod, "set_scheduling",
                        lambda policy, prio, name, pid=0: asked.append((policy, prio)) or policy)

    def spec(clock: str, sched: str = "auto") -> NodeSpec:
        return NodeSpec(name="n", target="", rate_hz=1000, args={}, seed=0, clock=clock,
                        bus={}, addresses={}, sched=sched, sched_priority=7)

    ctrl = object.__new__(ControllerNode)
    other = object.__new__(Source)
    assert _set_sched(spec("realtime"), ctrl) == "fifo"
    assert _set_sched(spec("realtime"), other) == "other"
    assert _set_sched(spec("realtime", "other"), ctrl) == "other"
    assert _set_sched(spec("realtime", "fifo"), other) == "fifo"
    assert _set_sched(spec("lockstep"), ctrl) == "other"  # a lockstep graph waits on its clock
    assert asked == [("fifo", 7), ("other", 7), ("other", 7), ("fifo", 7)]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to a user without CAP_SYS_NICE")
def test_the_os_refusing_fifo_to_an_unprivileged_process_gives_one_warning() -> None:
    out = _child(65534)  # nobody
    assert out.stdout.splitlines()[0].split() == ["other", "False"]
    warnings = [ln for ln in out.stderr.splitlines() if "SCHED_FIFO" in ln]
    assert len(warnings) == 1 and "child" in warnings[0]


def test_fifo_is_taken_where_the_os_allows_it() -> None:
    out = _child(None)
    if out.stdout.split()[0] == "other":
        pytest.skip(f"this process may not run SCHED_FIFO: {out.stderr.strip()}")
    first, *threads = out.stdout.splitlines()
    assert first.split() == ["fifo", "True"]
    assert "SCHED_FIFO" not in out.stderr
    # the Python threads (they share the interpreter's lock) run SCHED_FIFO; ZeroMQ's own
    # I/O threads stay time-shared
    fifo = {}
    for line in threads:
        name, is_fifo = line.split()
        fifo.setdefault(name, set()).add(is_fifo == "True")
    assert fifo.pop("ZMQbg") == {False} and fifo == {"python": {True}}, threads


SLEEPER = """
import signal, time
from reflexarc.runtime.node import set_timer_slack, sleep_until_ns
print(set_timer_slack(1000), open("/proc/self/timerslack_ns").read().strip())
signal.signal(signal.SIGALRM, lambda *a: None)
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)  # a signal every 0.5 ms
early = 0
for k in range(40):
    deadline = time.monotonic_ns() + 3_000_000
    sleep_until_ns(deadline)
    early += time.monotonic_ns() < deadline
signal.setitimer(signal.ITIMER_REAL, 0)
print(early)
"""


def test_the_loop_sleeps_to_absolute_deadlines_through_signals_with_a_small_timer_slack() -> None:
    """The realtime loop's sleep: never back before its deadline, though a signal arrives
    every 0.5 ms of a 3 ms sleep (each resumes toward the same deadline); the timer slack
    (how late the kernel may end a sleep) set to 1 us in the process's own /proc entry."""
    out = subprocess.run([sys.executable, "-c", SLEEPER], capture_output=True, text=True,
                         timeout=120, check=True)
    slack, early = out.stdout.strip().splitlines()
    assert slack.split() == ["True", "1000"]
    assert early == "0"
