"""The rule of the senses on every shipped graph (reflexarc.tools.senses, docs/senses.md)."""

from __future__ import annotations

import pytest

from reflexarc.tools.senses import REFERENCE_GRAPHS, Violation, check_graph, shipped_graphs


def test_every_graph_is_checked() -> None:
    graphs = shipped_graphs()
    assert {"pixels", "instruction", "bridge", "expert", "senses"} <= set(graphs)
    assert set(graphs) >= REFERENCE_GRAPHS


@pytest.mark.parametrize("graph", shipped_graphs())
def test_no_node_that_acts_reads_privileged_state(graph: str) -> None:
    violations = check_graph(graph)
    if graph in REFERENCE_GRAPHS:
        assert violations  # a reference graph's scripted expert acts on the truth on purpose
        return
    assert violations == []


def test_a_node_reading_the_truth_is_caught() -> None:
    spy = "+graph.nodes.spy={target:reflexarc.sim.policy_node:PolicyNode,rate_hz:10}"
    assert check_graph("control_scripted") == []
    assert check_graph("control_scripted", (spy,)) == [Violation("spy", "scene_state", "sim")]


def test_a_goal_with_imagined_images_is_privileged() -> None:
    assert check_graph("pixels") == []  # the goal says the task, block and target
    imagined = ("graph.nodes.evaluator.args.goal_images=true",)
    # perception (which encodes goal images) and the planner would read the evaluator's
    # rendering of the goal state
    assert set(check_graph("pixels", imagined)) == {Violation("planner", "goal", "evaluator"),
                                                    Violation("perception", "goal", "evaluator")}


def test_the_evaluators_reset_is_privileged() -> None:
    # the reset carries the layout (the truth): only the plant may read it; a node that
    # reads every topic is caught on it and on scene_state
    spy = "+graph.nodes.spy={target:reflexarc.runtime.testnodes:Sink,rate_hz:10}"
    assert set(check_graph("pixels", (spy,))) == {Violation("spy", "scene_state", "sim"),
                                                  Violation("spy", "reset", "evaluator")}
