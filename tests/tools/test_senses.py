"""The rule of the senses on every shipped graph (reflexarc.tools.senses, docs/senses.md)."""

from __future__ import annotations

import pytest

from reflexarc.tools.senses import REFERENCE_GRAPHS, Violation, check_graph, shipped_graphs

#: Shipped graphs that still break the rule, and why (docs/senses.md, "What is left").
KNOWN_BREAKS = {
    "pixels": "the planner pursues the goal images the sim imagines with its renderer",
    "pixels_hosts": "as pixels, across hosts",
}


def test_every_graph_is_checked() -> None:
    graphs = shipped_graphs()
    assert {"pixels", "instruction", "bridge", "expert", "senses"} <= set(graphs)
    assert set(graphs) >= REFERENCE_GRAPHS and set(KNOWN_BREAKS) <= set(graphs)


@pytest.mark.parametrize("graph", shipped_graphs())
def test_no_node_that_acts_reads_privileged_state(graph: str) -> None:
    if graph in KNOWN_BREAKS:
        pytest.xfail(KNOWN_BREAKS[graph])
    violations = check_graph(graph)
    if graph in REFERENCE_GRAPHS:
        assert violations  # a reference graph's scripted expert acts on the truth on purpose
        return
    assert violations == []


def test_the_known_breaks_are_still_broken() -> None:
    # when one is fixed, it moves out of KNOWN_BREAKS (the parametrised test then holds it)
    for graph in KNOWN_BREAKS:
        assert check_graph(graph)


def test_a_node_reading_the_truth_is_caught() -> None:
    spy = "+graph.nodes.spy={target:reflexarc.sim.policy_node:PolicyNode,rate_hz:10}"
    assert check_graph("control_scripted") == []
    assert check_graph("control_scripted", (spy,)) == [Violation("spy", "scene_state", "sim")]


def test_a_goal_without_imagined_images_is_not_privileged() -> None:
    assert check_graph("pixels") == [Violation("planner", "goal", "sim")]
    assert check_graph("pixels", ("+graph.nodes.sim.args.goal_images=false",)) == []
