"""The launcher with real node processes: deaths, policies, Ctrl-C, lockstep, bad configs."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from reflexarc.runtime import config
from reflexarc.runtime.config import CPU_LATENCY_DEV
from reflexarc.runtime.episode import Episode
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.launcher import RunConfig
from reflexarc.runtime.load import background_load
from tests.conftest import cpu_latency_limit, reflexarc, start_reflexarc, wait_for_file

HB_HZ = 10.0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_running(run_dir: Path, names: set[str]) -> dict[str, int]:
    """Wait until every node is up; returns the pids."""
    deadline = time.monotonic() + 180  # a loaded machine takes long to import
    while not names <= set(wait_for_file(run_dir / "pids.json").get("up", [])):
        assert time.monotonic() < deadline, "nodes did not start"
        time.sleep(0.05)
    time.sleep(0.5)
    pids = json.loads((run_dir / "pids.json").read_text())
    pids.pop("up")
    return pids


@pytest.mark.parametrize("policy", ["restart", "stop"])
def test_sigkill_of_a_node_is_noticed_within_three_heartbeats(run_dir: Path, policy: str) -> None:
    out = run_dir / "summary.json"
    proc = start_reflexarc(
        "run", "graph=counter", "duration_s=8", f"run_dir={run_dir}", f"out={out}", f"heartbeat_hz={HB_HZ}",
        f"graph.nodes.echo.on_death={policy}",
    )
    pids = _wait_running(run_dir, {"source", "echo", "sink"})
    killed_at = time.time()
    os.kill(pids["echo"], signal.SIGKILL)
    proc.wait(60)
    summary = json.loads(out.read_text())
    died = [e for e in summary["events"] if e["node"] == "echo" and e["event"] in ("died", "silent")]
    assert died, summary["events"]
    assert died[0]["wall"] - killed_at < 3.0 / HB_HZ
    if policy == "restart":
        assert summary["ok"] is True
        echo = next(r for r in summary["nodes"] if r["node"] == "echo")
        assert echo["restarts"] == 1
        new_pids = json.loads((run_dir / "pids.json").read_text())
        assert new_pids["echo"] != pids["echo"]
        assert summary["ended_by"] == "duration reached"
    else:
        assert summary["ok"] is False
        assert "echo died" in summary["ended_by"]
        assert proc.returncode == 1
    for pid in pids.values():
        assert not _alive(pid) or pid == pids.get("launcher") and proc.returncode is not None


def test_ctrl_c_on_the_launcher_leaves_no_child_alive(run_dir: Path) -> None:
    proc = start_reflexarc("run", "graph=counter", f"run_dir={run_dir}")
    pids = _wait_running(run_dir, {"source", "echo", "sink"})
    children = [pid for name, pid in pids.items() if name != "launcher"]
    assert all(_alive(p) for p in children)
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(120)  # nodes still working past stop_timeout_s get up to 4x it
    time.sleep(0.2)
    assert [p for p in children if _alive(p)] == []


def test_sigkill_of_the_launcher_takes_its_children_and_sockets_down(run_dir: Path) -> None:
    ipc = run_dir.parent / "ipc"
    proc = start_reflexarc("run", "graph=counter", f"run_dir={run_dir}", f"bus.ipc_dir={ipc}",
                           "hung_timeout_s=60",  # the launcher must not end the stuck one first
                           "+graph.nodes.stuck={target:reflexarc.runtime.testnodes:Stuck,"
                           "rate_hz:100,args:{after_ticks:5}}")
    pids = _wait_running(run_dir, {"source", "echo", "sink", "stuck"})
    children = [pid for name, pid in pids.items() if name != "launcher"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed = time.monotonic()
    # within 0.5 s on a quiet machine (docs/benchmarks.md); a loaded one gets longer here
    deadline = killed + 10
    while time.monotonic() < deadline and (any(_alive(p) for p in children) or any(ipc.rglob("*.pub"))):
        time.sleep(0.02)
    assert [p for p in children if _alive(p)] == []  # the one stuck in its step too
    assert list(ipc.rglob("*")) == []


def _record_lockstep(run_dir: Path, seed: int) -> Episode:
    res = reflexarc(
        "run", "graph=counter_rec", "clock=lockstep", "duration_s=0.5", f"seed={seed}",
        f"run_dir={run_dir}",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return Episode(run_dir / "episode")


def _streams(ep: Episode) -> dict[str, dict[str, np.ndarray]]:
    return {t: {k: v for k, v in ep.read(t).items() if k != "recv_ns"} for t in ep.topics()}


def test_lockstep_runs_with_the_same_seed_record_identical_streams(tmp_path: Path) -> None:
    a = _streams(_record_lockstep(tmp_path / "a", seed=7))
    b = _streams(_record_lockstep(tmp_path / "b", seed=7))
    c = _streams(_record_lockstep(tmp_path / "c", seed=8))
    assert set(a) == set(b) == {"joint_state", "joint_command"}
    assert len(a["joint_state"]["seq"]) == 250  # 500 Hz for 0.5 simulated seconds
    for topic in a:
        assert a[topic].keys() == b[topic].keys()
        for k in a[topic]:
            np.testing.assert_array_equal(a[topic][k], b[topic][k], err_msg=f"{topic}.{k}")
    assert not np.array_equal(a["joint_state"]["position"], c["joint_state"]["position"])
    # stamps are simulated time: 2 ms apart at 500 Hz
    assert np.all(np.diff(a["joint_state"]["stamp_ns"]) == 2_000_000)


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("clock=bogus", "clock", "realtime, lockstep"),
        ("duration_s=-1", "duration_s", "[0.0, inf]"),
        ("bogus_key=1", "bogus_key", ""),
        ("graph.nodes.source.rate_hz=abc", "graph.nodes.source.rate_hz", "Float"),
        ("graph.nodes.source.args.dof=1000", "graph.nodes.source.args.dof", "[1, 64]"),
        ("graph.nodes.source.args.nope=1", "graph.nodes.source.args.nope", ""),
        ("graph.nodes.echo.on_death=explode", "graph.nodes.echo.on_death", "stop, restart"),
        ("graph.nodes.sink.target=robot.nowhere:Nothing", "graph.nodes.sink.target", ""),
        ("bus.transport=udp", "bus.transport", "ipc, tcp"),
        ("graph.nodes.echo.cpus=[99999]", "graph.nodes.echo.cpus", "allowed: CPUs"),
    ],
)
def test_a_bad_config_fails_fast_naming_the_key(run_dir: Path, override: str, key: str, allowed: str) -> None:
    t0 = time.monotonic()
    res = reflexarc("run", "graph=counter", override, f"run_dir={run_dir}")
    assert res.returncode == 2
    assert f"'{key}'" in res.stderr, res.stderr
    assert allowed in res.stderr
    assert not (run_dir / "pids.json").exists(), "a process started despite the bad config"
    assert time.monotonic() - t0 < 30


def test_a_node_runs_on_the_cpus_it_is_given(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    res = reflexarc("run", "graph=counter", "clock=lockstep", "duration_s=0.2", "graph.nodes.sink.cpus=[0]",
                    f"run_dir={tmp_path / 'run'}", f"out={out}")
    assert res.returncode == 0, res.stderr
    sink = json.loads(out.read_text())["node_figures"]["sink"]
    assert sink["cpus"] == [0] and sink["received"]["joint_command"] > 0


def test_a_node_spins_before_its_deadlines_as_configured(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    res = reflexarc("run", "graph=counter", "duration_s=3", "graph.nodes.echo.spin_us=0",
                    "graph.nodes.sink.spin_us=40", f"run_dir={tmp_path / 'run'}", f"out={out}")
    assert res.returncode == 0, res.stderr
    figures = json.loads(out.read_text())["node_figures"]
    # source: automatic (200 Hz: 150 us); echo: none; sink (50 Hz, automatically none): 40
    assert [figures[n]["spin_us"] for n in ("source", "echo", "sink")] == [150, 0, 40]
    assert figures["echo"]["woken_steps"] == 0 and figures["sink"]["received"]["joint_state"] > 0
    # each tick's parts and the process's cost: the source publishes every tick, the echo
    # takes in what the source sent; CPU time is some, and at most the machine's cores
    src, echo = figures["source"], figures["echo"]
    assert src["publish_p50_us"] > 0 and echo["recv_p99_us"] > 0
    assert all(0 < figures[n]["cpu_share"] <= os.cpu_count() for n in ("source", "echo", "sink"))
    bad = reflexarc("run", "graph=counter", "graph.nodes.echo.spin_us=-5")
    assert bad.returncode != 0 and "graph.nodes.echo.spin_us" in bad.stderr


def test_a_node_runs_at_its_configured_priority(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    base = os.getpriority(os.PRIO_PROCESS, 0)
    res = reflexarc("run", "graph=counter", "duration_s=2", "graph.nodes.echo.nice=3",
                    "graph.nodes.sink.nice=5", f"run_dir={tmp_path / 'run'}", f"out={out}")
    assert res.returncode == 0, res.stderr
    figures = json.loads(out.read_text())["node_figures"]
    expected = [min(base + d, 19) for d in (0, 3, 5)]
    assert [figures[n]["nice"] for n in ("source", "echo", "sink")] == expected
    assert figures["sink"]["received"]["joint_state"] > 0
    bad = reflexarc("run", "graph=counter", "graph.nodes.echo.nice=40")
    assert bad.returncode != 0 and "graph.nodes.echo.nice" in bad.stderr


def test_a_node_can_be_added_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    res = reflexarc("run", "graph=counter", "duration_s=3",
                    "+graph.nodes.tap={target:reflexarc.runtime.testnodes:Sink,rate_hz:20}",
                    "graph.nodes.echo.nice=2", f"run_dir={tmp_path / 'run'}", f"out={out}")
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    assert next(r for r in summary["nodes"] if r["node"] == "tap")["target_hz"] == 20
    assert summary["node_figures"]["tap"]["received"]["joint_state"] > 0
    bad = reflexarc("run", "graph=counter", "+graph.nodes.tap={target:reflexarc.runtime.testnodes:Sink,hz:20}")
    assert bad.returncode != 0 and "graph.nodes.tap.hz" in bad.stderr


def test_a_message_it_wakes_on_steps_a_node_between_its_ticks(tmp_path: Path) -> None:
    counts = {}
    for target in ("Echo", "WakingEcho"):
        out = tmp_path / f"{target}.json"
        res = reflexarc("run", "graph=counter", "duration_s=2", "graph.nodes.echo.rate_hz=1",
                        f"graph.nodes.echo.target=reflexarc.runtime.testnodes:{target}",
                        f"run_dir={tmp_path / target}", f"out={out}")
        assert res.returncode == 0, res.stderr
        figures = json.loads(out.read_text())["node_figures"]
        counts[target] = (figures["sink"]["received"].get("joint_command", 0),
                          figures["sink"]["received"]["joint_state"], figures["echo"]["woken_steps"])
    # at 1 Hz the plain echo answers on its ticks only; the waking one answers each state
    assert counts["Echo"][0] <= 3 and counts["Echo"][2] == 0
    commands, states, woken = counts["WakingEcho"]
    assert commands > 0.5 * states and woken >= commands - 3


def test_a_hung_node_is_killed_and_restarted(run_dir: Path) -> None:
    out = run_dir / "summary.json"
    proc = start_reflexarc(
        "run", "graph=counter", "duration_s=8", f"run_dir={run_dir}", f"out={out}",
        "silent_timeout_s=0.5", "graph.nodes.sink.on_death=restart",
    )
    pids = _wait_running(run_dir, {"source", "echo", "sink"})
    stopped_at = time.time()
    os.kill(pids["sink"], signal.SIGSTOP)  # alive, but silent
    proc.wait(60)
    summary = json.loads(out.read_text())
    silent = [e for e in summary["events"] if e["node"] == "sink" and e["event"] == "silent"]
    assert silent and silent[0]["wall"] - stopped_at < 0.5 + 0.5
    assert next(r for r in summary["nodes"] if r["node"] == "sink")["restarts"] == 1
    assert summary["ok"] is True
    assert not _alive(pids["sink"])


@pytest.mark.skipif(not os.access(CPU_LATENCY_DEV, os.W_OK), reason="needs root on Linux")
def test_the_cpu_latency_limit_is_held_while_the_graph_runs_and_dropped_after(run_dir: Path) -> None:
    before = cpu_latency_limit()
    out = run_dir / "summary.json"
    proc = start_reflexarc("run", "graph=counter", "duration_s=3", "cpu_latency_us=0",
                           f"run_dir={run_dir}", f"out={out}")
    _wait_running(run_dir, {"source", "echo", "sink"})
    assert cpu_latency_limit() == 0  # the kernel's limit is the lowest anyone holds
    assert proc.wait(60) == 0
    assert cpu_latency_limit() == before
    summary = json.loads(out.read_text())
    assert summary["ok"] is True and summary["cpu_latency_us"] == 0


def test_a_cpu_latency_limit_that_cannot_be_held_fails_fast_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "CPU_LATENCY_DEV", str(tmp_path / "no_such_device"))
    with pytest.raises(ConfigError) as e:
        RunConfig(cpu_latency_us=0).validate()
    assert e.value.key == "cpu_latency_us" and "allowed: -1" in str(e.value)
    RunConfig().validate()  # the default holds nothing and needs nothing


def _events(summary: dict, node: str, *kinds: str) -> list[dict]:
    return [e for e in summary["events"] if e["node"] == node and e["event"] in kinds]


@pytest.mark.slow
def test_a_stopped_node_is_found_within_three_seconds_on_a_busy_machine_despite_forged_heartbeats(
        run_dir: Path) -> None:
    """Four CPU-bound processes beside the graph, and a node that publishes heartbeats in the
    stopped node's name with its pid: the launcher trusts the OS and the node's own pipe."""
    out = run_dir / "summary.json"
    with background_load(4, 120):
        proc = start_reflexarc(
            "run", "graph=counter", "duration_s=30", f"run_dir={run_dir}", f"out={out}",
            "+graph.nodes.forger={target:reflexarc.runtime.testnodes:Forger,rate_hz:50}",
        )
        pids = _wait_running(run_dir, {"source", "echo", "sink", "forger"})
        stopped_at = time.time()
        os.kill(pids["sink"], signal.SIGSTOP)
        assert proc.wait(90) == 1
    summary = json.loads(out.read_text())
    found = _events(summary, "sink", "silent")
    assert found and "stopped by a signal" in found[0]["why"], summary["events"]
    assert found[0]["wall"] - stopped_at < 3.0
    assert summary["ok"] is False and summary["reasons"][0].startswith("sink died")
    assert not _alive(pids["sink"])


@pytest.mark.parametrize("how", ["sleep", "spin"])
def test_a_node_stuck_in_its_step_is_found(run_dir: Path, how: str) -> None:
    out = run_dir / "summary.json"
    res = reflexarc(
        "run", "graph=counter", "duration_s=30", f"run_dir={run_dir}", f"out={out}",
        "+graph.nodes.stuck={target:reflexarc.runtime.testnodes:Stuck,rate_hz:100,"
        f"args:{{after_ticks:5,how:{how}}}}}",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    summary = json.loads(out.read_text())
    stalled = _events(summary, "stuck", "stalled")
    assert stalled, summary["events"]
    up_s = next(r for r in summary["nodes"] if r["node"] == "stuck")["up_s"]
    if how == "sleep":  # asleep in a step counts in full; spinning, as the OS lets it run
        assert stalled[0]["t"] - up_s < 3.0
    assert res.stdout.lstrip().startswith("reflexarc run: NOT OK: stuck died")
    assert not [e for e in summary["events"] if e["node"] not in ("stuck", "graph")]
    assert "loop has not moved" in stalled[0]["why"]


@pytest.mark.slow
def test_a_starved_node_is_not_taken_for_a_hung_one(run_dir: Path) -> None:
    """At nice 19 beside four CPU-bound processes, the sink waits long for a core; with a
    short silence limit it is still left alone, and the run is ok with a warning."""
    out = run_dir / "summary.json"
    res = reflexarc("run", "graph=counter", "duration_s=6", "load=4", "silent_timeout_s=0.2",
                    "graph.nodes.sink.nice=19", "graph.nodes.sink.rate_hz=200",
                    f"run_dir={run_dir}", f"out={out}", timeout=180)
    summary = json.loads(out.read_text())
    assert res.returncode == 0 and summary["ok"] is True, summary["reasons"]
    assert [e for e in summary["events"] if e["event"] != "up"] == []
    # the warnings name the starved sink (the machine's 1-minute load average, behind the
    # "busy" warning, need not rise within a 6 s run)
    assert any("sink" in w for w in summary["warnings"]), summary["warnings"]


def test_a_run_whose_node_ends_in_fault_is_not_ok(run_dir: Path) -> None:
    out = run_dir / "summary.json"
    res = reflexarc("run", "graph=counter", "duration_s=2",
                    "graph.nodes.sink.target=reflexarc.runtime.testnodes:Faulty",
                    f"run_dir={run_dir}", f"out={out}")
    assert res.returncode == 1
    summary = json.loads(out.read_text())
    assert summary["ok"] is False and summary["reasons"] == ["sink ended in fault"]
    assert res.stdout.lstrip().startswith("reflexarc run: NOT OK: sink ended in fault")


def test_a_run_whose_node_never_comes_up_is_not_ok(run_dir: Path) -> None:
    out = run_dir / "summary.json"
    res = reflexarc("run", "graph=counter", "duration_s=1",
                    "+graph.nodes.crash={target:reflexarc.runtime.testnodes:Crasher,rate_hz:1000,"
                    "args:{after_ticks:0}}", f"run_dir={run_dir}", f"out={out}")
    assert res.returncode == 1
    summary = json.loads(out.read_text())
    assert summary["ok"] is False
    assert summary["reasons"][0].startswith("crash died"), summary["reasons"]
    assert next(r for r in summary["nodes"] if r["node"] == "crash")["exit"] == -9


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "taks=push"], "config key 'taks': Key 'taks' not in 'RunConfig' (did you mean 'task'?)"),
        (["run", "graph=counter", "graph.nodes.source.args.nosie=1"], "(did you mean 'noise'?)"),
        (["rnu"], "unknown verb 'rnu' (did you mean 'run'?)"),
        # suggested from the keys of the graph the user chose, not the default graph's
        (["run", "graph=counter", "graph.nodes.source.rate_hx=3"],
         "(did you mean 'graph.nodes.source.rate_hz'?)"),
        (["run", "graph=counter", "graph.nodes.sourc.rate_hz=3"], "(did you mean 'graph.nodes.source'?)"),
        (["run", "graph=GRAPH", "FILE=ok", "graph.nodes.a.rate_hx=3"],
         "(did you mean 'graph.nodes.a.rate_hz'?)"),
        # read from the node's source, before torch is imported (argkeys)
        (["run", "graph.nodes.planner.args.realtime_sampels=32"],
         "Key 'realtime_sampels' not in the arguments of reflexarc.planner.node:PlannerNode "
         "(did you mean 'realtime_samples'?)"),
        (["run", "graph=GRAPH", "FILE=syntax"], "GRAPH:4:4: not valid YAML"),
        (["run", "graph=GRAPH", "FILE=rate"], "'graph.nodes.a.rate_hz': Value 'fast' of type 'str' "
                                             "could not be converted to Float (in GRAPH)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_starts(tmp_path: Path, args: list[str], says: str) -> None:
    graph = tmp_path / "graph.yaml"
    bodies = {
        "syntax": "nodes:\n  a:\n    target: x\n   rate_hz: [\n",
        "rate": "nodes:\n  a:\n    target: reflexarc.runtime.testnodes:Sink\n    rate_hz: fast\n",
        "ok": "nodes:\n  a:\n    target: reflexarc.runtime.testnodes:Sink\n    rate_hz: 50\n",
    }
    for a in args:
        if a.startswith("FILE="):
            graph.write_text(bodies[a[5:]])
    args = [a.replace("GRAPH", str(graph)) for a in args if not a.startswith("FILE=")]
    run = tmp_path / "run"
    res = reflexarc(*args, f"run_dir={run}")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0, res.stderr  # one line
    assert says.replace("GRAPH", str(graph)) in res.stderr
    assert not run.exists()


def _plant_and_controller(tmp_path: Path, **plant: Any) -> Path:
    """A graph of a still plant (the Panda at home, 500 Hz) and the real 1 kHz controller,
    whose state watchdog latches a fault after 1.5 s without a joint state (longer than a
    starved plant's gaps on a loaded machine)."""
    from reflexarc.robot.description import robot_description

    args = {"position": list(robot_description("panda").home), **plant}
    graph = {"nodes": {
        "plant": {"target": "reflexarc.runtime.testnodes:Plant", "rate_hz": 500, "args": args},
        "controller": {"target": "reflexarc.robot.controller:ControllerNode", "rate_hz": 1000,
                       "args": {"safety": {"state_timeout_s": 1.5}}},
    }}
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(graph))  # JSON is YAML
    return path


@pytest.mark.slow
def test_the_plant_finishing_does_not_latch_a_controller_fault(tmp_path: Path) -> None:
    """The plant ends its work and takes 4 s to shut down (a simulator closing, on a busy
    machine): its joint states stop long before the plant's process ends, and the
    controller, if still running, latches a fault, as it must. That is the end of the run,
    not a fault in it."""
    graph, out = _plant_and_controller(tmp_path, ticks=1000, close_s=4.0), tmp_path / "summary.json"
    res = reflexarc("run", f"graph={graph}", f"run_dir={tmp_path / 'run'}", f"out={out}", timeout=240)
    summary = json.loads(out.read_text())
    assert res.returncode == 0 and summary["ok"] is True, (summary["reasons"], res.stderr[-2000:])
    assert summary["ended_by"] == "plant finished"
    ctl = json.loads((tmp_path / "run" / "controller.summary.json").read_text())
    # its state when the plant's done arrived (if it came before the launcher's stop)
    assert ctl.get("state_at_end", ctl["final_mode"]) == "holding", ctl


@pytest.mark.slow
def test_joint_states_lost_mid_run_still_end_the_run_in_fault(tmp_path: Path) -> None:
    # silent for 1,200 ticks of 2 ms, at least 2.4 s, while still working
    graph, out = _plant_and_controller(tmp_path, ticks=1500, silent_after_ticks=300), tmp_path / "summary.json"
    res = reflexarc("run", f"graph={graph}", f"run_dir={tmp_path / 'run'}", f"out={out}", timeout=240)
    summary = json.loads(out.read_text())
    assert res.returncode == 1 and summary["ok"] is False
    assert summary["reasons"] == ["controller ended in fault"], summary["reasons"]
    ctl = json.loads((tmp_path / "run" / "controller.summary.json").read_text())
    assert ctl.get("state_at_end", ctl["final_mode"]) == "fault"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flipped", "truncated", "garbage"])
def test_a_damaged_checkpoint_stops_the_run_before_any_process(tmp_path: Path, how: str) -> None:
    import shutil

    from reflexarc.policies.checkpoint import weights_path
    from tests.policies.test_checkpoint import _damage

    ck = tmp_path / "ck"
    shutil.copytree(weights_path("push-mujoco").parent, ck)
    _damage(ck / "model.safetensors", how)
    run = tmp_path / "run"
    res = reflexarc("run", f"graph.nodes.perception.args.checkpoint={ck}", f"run_dir={run}")
    assert res.returncode == 2, res.stdout + res.stderr
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 1 and str(ck / "model.safetensors") in lines[0], lines
    assert "graph.nodes.perception.args" in lines[0]
    assert not (run / "pids.json").exists()  # nothing started


def test_a_node_stuck_in_its_shutdown_is_killed_with_its_stacks_written(run_dir: Path) -> None:
    """Its work is done, then its close never returns: at the stop it is killed once asleep
    past stop_timeout_s, the run stays ok (its work was done), and the warnings name the
    file holding its threads' stacks, which shows where it was stuck."""
    out = run_dir / "summary.json"
    res = reflexarc("run", "graph=counter", "stop_timeout_s=1",
                    "graph.nodes.sink.target=reflexarc.runtime.testnodes:StuckInClose",
                    "+graph.nodes.sink.args.after_ticks=150", f"run_dir={run_dir}", f"out={out}",
                    timeout=240)
    summary = json.loads(out.read_text())
    assert res.returncode == 0 and summary["ok"] is True, summary["reasons"]
    assert summary["ended_by"] == "sink finished"
    stacks = run_dir / "sink.stacks.txt"
    killed = [w for w in summary["warnings"] if w.startswith("killed at stop: ")]
    assert killed and "sink" in killed[0].split(" (")[0], summary["warnings"]
    assert any(str(stacks) in w for w in summary["warnings"]), summary["warnings"]
    text = stacks.read_text()
    assert "testnodes.py" in text and "in close" in text, text
    assert not (run_dir / "source.stacks.txt").exists()  # no dump asked of the others
