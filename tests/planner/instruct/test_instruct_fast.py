"""The fast parser against the instruction corpus (instruct_corpus.json), and its promise:
never a wrong spec with high confidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reflexarc.planner.instruct.fast import FastParser, normalise
from reflexarc.planner.instruct.instructor import InstructConfig, Instructor
from reflexarc.planner.instruct.scene import SceneInfo, SceneObject

CORPUS = json.loads((Path(__file__).parent / "instruct_corpus.json").read_text())
THRESHOLD = InstructConfig().threshold
SCENES = {
    name: SceneInfo(objects=tuple(SceneObject(n, tuple(p), n) for n, p in objs.items()))
    for name, objs in CORPUS["scenes"].items()
}
PARSER = FastParser()


def _reading(text: str, scene: str = "default") -> tuple[tuple[str, str, str] | None, float, object]:
    r = PARSER.parse(text, SCENES[scene])
    got = (r.intent.task, r.intent.object, r.intent.target.text) if r.intent else None
    return got, r.confidence, r


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS["specs"]) >= 60
    assert len(CORPUS["escalate"]) >= 20


def test_fast_path_handles_at_least_90_percent_of_the_corpus() -> None:
    correct, misses = 0, []
    for case in CORPUS["specs"]:
        got, conf, _ = _reading(case["text"], case.get("scene", "default"))
        expected = (case["task"], case["object"], case["target"])
        if got == expected and conf >= THRESHOLD:
            correct += 1
        else:
            misses.append((case["text"], got, round(conf, 2)))
    accuracy = correct / len(CORPUS["specs"])
    print(f"\nfast path: {correct}/{len(CORPUS['specs'])} = {accuracy:.1%} without escalation; misses: {misses}")
    assert accuracy >= 0.9, misses


def test_never_a_wrong_spec_with_high_confidence() -> None:
    wrong = []
    for case in CORPUS["specs"]:
        got, conf, r = _reading(case["text"], case.get("scene", "default"))
        expected = (case["task"], case["object"], case["target"])
        if conf >= THRESHOLD and (got != expected or r.refusal):
            wrong.append((case["text"], got, conf))
    for text in CORPUS["escalate"]:
        got, conf, r = _reading(text)
        if r.confident(THRESHOLD):
            wrong.append((text, got, conf))
    assert not wrong


@pytest.mark.parametrize("text", CORPUS["refuse"])
def test_objects_not_in_the_scene_are_refused_with_confidence(text: str) -> None:
    _, _, r = _reading(text)
    assert r.intent is None and r.refusal and r.confident(THRESHOLD)
    assert "red, green, blue" in r.refusal  # says what is there


def _spec_cases() -> list[dict]:
    return [c for c in CORPUS["specs"] if c.get("scene", "default") == "default"]


@pytest.mark.parametrize(
    "change",
    [
        lambda t: "don't " + t,
        lambda t: "never " + t,
        lambda t: t + " and then touch the blue block",
        lambda t: t + " twice",
        lambda t: t + " with a spoon",
        lambda t: t.replace(" ", " wobbly ", 1),
    ],
    ids=["dont", "never", "two-steps", "twice", "unknown-tail", "unknown-adjective"],
)
def test_perturbed_instructions_are_never_confident(change) -> None:  # noqa: ANN001
    """Negation, a second step or one unknown word must always drop below the threshold."""
    confident = []
    for case in _spec_cases():
        text = change(case["text"])
        _, conf, r = _reading(text)
        if r.confident(THRESHOLD):
            confident.append((text, conf))
    assert not confident


def test_a_colour_that_is_not_there_is_never_read_as_another_object() -> None:
    for case in _spec_cases():
        if "red" not in case["text"]:
            continue
        _, _, r = _reading(case["text"].replace("red", "yellow"))
        assert r.intent is None and "no yellow object" in r.refusal, case["text"]


def test_ambiguous_reference_depends_on_the_scene() -> None:
    got, conf, _ = _reading("push the block to the left", "red_only")
    assert got == ("push", "red", "direction:left") and conf >= THRESHOLD
    _, conf, _ = _reading("push the block to the left", "default")
    assert conf < THRESHOLD


def test_scene_objects_with_names_are_known() -> None:
    scene = SceneInfo(objects=(SceneObject("mug", (0.5, 0.0, 0.025), ""), SceneObject("red", (0.45, 0.1, 0.025), "red")))
    r = PARSER.parse("push the mug to the right", scene)
    assert r.intent is not None and r.intent.object == "mug" and r.confident(THRESHOLD)
    r = PARSER.parse("put the red block on the mug", scene)
    assert r.intent is not None and r.intent.target.text == "on:mug"


def test_normalise_splits_units_and_drops_punctuation() -> None:
    assert normalise("Push the RED block 10cm left!") == ["push", "the", "red", "block", "10", "cm", "left"]
    assert normalise("don't move it 2.5 cm.") == ["do", "not", "move", "it", "2.5", "cm"]
    assert normalise("the table's front-left corner") == ["the", "table", "front", "left", "corner"]


def test_distances_and_modifiers() -> None:
    parser = FastParser(distance=0.08)
    scene = SCENES["default"]
    assert parser.parse("push the red block to the left", scene).intent.target.distance is None
    assert parser.parse("push the red block a bit to the left", scene).intent.target.distance == pytest.approx(0.04)
    assert parser.parse("push the red block 25 mm to the left", scene).intent.target.distance == pytest.approx(0.025)
    assert parser.parse("push the red block left by 0.1 m", scene).intent.target.distance == pytest.approx(0.1)
    assert parser.parse("push the red block one block to the left", scene).intent.target.distance == pytest.approx(0.05)


def test_quick_returns_none_only_when_not_confident(tmp_path: Path) -> None:
    inst = Instructor(InstructConfig(cache_dir=str(tmp_path)), llm=None)
    scene = SCENES["default"]
    spec = inst.quick("push the red block to the left", scene)
    assert spec is not None and spec.source == "fast" and not spec.refusal
    assert inst.quick("push the red block to the left with a spoon", scene) is None
    long = inst.understand("push the red block to the left " * 50, scene)
    assert "at most 500" in long.refusal and len(long.target_pos) == 0
    inst.close()


def test_a_confident_reading_that_does_not_fit_is_refused_not_escalated(tmp_path: Path) -> None:
    inst = Instructor(InstructConfig(cache_dir=str(tmp_path)), llm=None)
    edge = SCENES["default"].with_positions({"red": (0.5, 0.22, 0.025)})
    spec = inst.quick("push the red block to the left", edge)
    assert spec is not None and spec.source == "fast" and len(spec.target_pos) == 0
    assert "outside the target area" in spec.refusal
    spec = inst.quick("push the red block up", edge)
    assert spec is not None and "direction 'up' is not allowed" in spec.refusal
    inst.close()
