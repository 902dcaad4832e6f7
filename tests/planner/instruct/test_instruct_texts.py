"""The instruction set (reflexarc.tools.bench.instruct.INSTRUCTION_SET) carried out by the
planner from pixels: ``graph=instruction`` in lockstep, real simulators, on both backends.
One run per backend tells each episode the next text (seed i for the i-th text); the
instruct node understands it against perceived blocks through the fast parser, or, for the
texts the parser is unsure of, through a scripted OpenAI-compatible server on 127.0.0.1 (the
LLM path, over real HTTP). Each text has its own test: its spec, and the named block within
tolerance of its target with the other blocks moved at most 2 cm.

The set's runs step the graph's nodes in this process (reflexarc/tools/inprocess.py: the
same composed graph, node configs and node code, on the launcher's lockstep schedule), a
quarter of the launcher's CPU time; that the launcher's processes give the same episodes
is tested below, and ``reflexarc run graph=instruction`` end to end in test_instruct_run.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reflexarc.planner.instruct.instructor import InstructConfig, Instructor
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.tools.bench.instruct import INSTRUCTION_SET, Case, case_problems, run_texts
from reflexarc.tools.senses import check_graph

_RUNS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
BACKENDS = ("mujoco", "pybullet")


def _rows_of(backend: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The set's run on ``backend``, its rows naming their case by index (sent between
    processes: a case holds its scripted reply, a function)."""
    rows, summary = run_texts(backend, in_process=True)
    return [{**{k: v for k, v in r.items() if k != "case"}, "case": INSTRUCTION_SET.index(r["case"])}
            for r in rows], summary


def ran(backend: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The set's run on ``backend`` (once per session: every text's test reads it). The first
    call runs both backends at once, PyBullet's in a child process: each run is one process,
    so the two use both cores of a small machine."""
    if backend not in _RUNS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        other = next(b for b in BACKENDS if b != backend)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            child = pool.submit(_rows_of, other)
            runs = {backend: _rows_of(backend), other: child.result()}
        for name, (rows, summary) in runs.items():
            _RUNS[name] = [{**r, "case": INSTRUCTION_SET[r["case"]]} for r in rows], summary
    return _RUNS[backend]


def test_the_set_spans_the_tasks_and_both_paths() -> None:
    assert len(INSTRUCTION_SET) >= 12 and len({c.text for c in INSTRUCTION_SET}) == len(INSTRUCTION_SET)
    assert {c.task for c in INSTRUCTION_SET} == {"reach", "push", "pick_place"}
    assert {c.path for c in INSTRUCTION_SET} == {"fast", "llm"}
    # the path each text is said to take is the one the instructor takes (default scene)
    inst = Instructor(InstructConfig(memory=False), llm=None, memory=None)
    for c in INSTRUCTION_SET:
        fast = inst.fast(c.text, SceneInfo())
        assert fast.confident(inst.cfg.threshold) == (c.path == "fast"), c.text
        if c.path == "fast":
            assert fast.intent is not None and fast.intent.task == c.task, c.text
            assert c.target.startswith(fast.intent.target.text), c.text


def test_the_instruction_graph_keeps_the_rule_of_the_senses() -> None:
    assert check_graph("instruction") == []


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", INSTRUCTION_SET, ids=lambda c: c.text.replace(" ", "_"))
def test_the_planner_carries_out_the_instruction(
        case: Case, backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    rows, summary = ran(backend, tmp_path_factory)
    assert summary["ok"] and summary["backend"] == backend, summary.get("ended_by")
    (row,) = [r for r in rows if r["case"] is case]
    spec, ep = row["spec"], row["episode"]
    assert ep["instruction"] == case.text and ep["seed"] == INSTRUCTION_SET.index(case)
    assert (spec["task"], spec["target"], spec["source"], spec["refusal"]) == (
        case.task, case.target, case.path, "")
    if case.object is not None:
        assert spec["object"] == case.object
    assert case_problems(case, spec, ep) == []
    assert ep["success"] and ep["task_success"] and ep["tolerance_m"] == 0.02
    if case.task != "reach":  # the named block within tolerance of its target
        assert ep["object"] == spec["object"]
        end, target = np.array(ep["object_to"]), np.array(ep["target"])
        assert np.allclose(target, spec["target_pos"], atol=1e-3)
        assert ep["final_distance_m"] < 0.02 and np.linalg.norm(end[:2] - target[:2]) < 0.0205
    assert ep["others_moved_m"] <= 0.02  # the other blocks stayed (at most 2 cm)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_llm_path_asked_the_local_server_and_the_planner_ran(
        backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    rows, summary = ran(backend, tmp_path_factory)
    llm = [c for c in INSTRUCTION_SET if c.path == "llm"]
    assert summary["llm_requests"] == len(llm)  # no memory: one request per LLM text
    planner = summary["node_figures"]["planner"]
    assert planner["goals"] == len(INSTRUCTION_SET) and planner["goal_errors"] == 0
    ok = sum(not case_problems(r["case"], r["spec"], r["episode"]) for r in rows)
    assert ok / len(rows) >= 0.8


def test_a_path_not_known_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed auto, llm"):
        run_texts("mujoco", path="slow")


def test_what_counts_as_carried_out() -> None:
    case = INSTRUCTION_SET[0]  # push the red block to the left, fast path
    spec = {"task": "push", "object": "red", "target": case.target, "source": "fast", "refusal": "",
            "target_pos": [0.5, 0.1, 0.025]}
    ep = {"instruction": case.text, "success": True, "task_success": True, "object": "red",
          "object_to": [0.5, 0.085, 0.025], "target": [0.5, 0.1, 0.025], "final_distance_m": 0.015,
          "tolerance_m": 0.02, "others_moved_m": 0.004}
    assert case_problems(case, spec, ep) == []
    assert case_problems(case, {**spec, "source": "llm"}, ep) == [
        f"spec ('push', '{case.target}', 'llm') != ('push', '{case.target}', 'fast')"]
    assert case_problems(case, {**spec, "source": "llm"}, ep, path="llm") == []  # bench path=llm
    assert case_problems(case, spec, {**ep, "others_moved_m": 0.03}) == ["another block moved 3.0 cm"]
    assert case_problems(case, spec, {**ep, "object_to": [0.5, 0.07, 0.025], "final_distance_m": 0.03}) == [
        "red ended 3.0 cm from its target"]
    assert case_problems(case, {**spec, "refusal": "no room"}, ep) == ["refused: no room"]
    assert case_problems(case, {}, ep) == ["no spec"]
