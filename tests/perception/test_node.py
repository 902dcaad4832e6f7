"""The perception node with plain objects: frames in, latents out, hot swap between frames."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import reflexarc.perception.encoding as encoding
from reflexarc.perception.node import PerceptionNode
from reflexarc.policies.checkpoint import CheckpointInfo
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import Image, Latent, Weights, empty
from reflexarc.runtime.node import Inbox, NodeContext


def make_node(ckpt: CheckpointInfo, clock: str = "realtime", **args: object) -> PerceptionNode:
    cfg = from_mapping(PerceptionNode.Config, {"checkpoint": str(ckpt.path), **args})
    return PerceptionNode(NodeContext(name="perception", rate_hz=100, clock=clock), cfg)


def frame(camera: str, seq: int, size: int = 32) -> Image:
    rgb = np.random.default_rng([seq, len(camera)]).integers(0, 256, (size, size, 3), np.uint8)
    return Image(seq=seq, stamp_ns=1_000_000 * (seq + 1), camera=camera, rgb=rgb,
                 depth=empty("f4", 0, 0), render_us=100.0 * (seq + 1))


def run_step(node: PerceptionNode, inbox: Inbox, msgs: list[tuple[str, object]], now: int
             ) -> list[tuple[str, Latent]]:
    for topic, m in msgs:
        inbox.put(topic, m, now)  # type: ignore[arg-type]
    out = list(node.step(now, inbox))
    inbox.clear_new()
    return out


def direct(ckpt: CheckpointInfo, img: Image) -> np.ndarray:
    model = encoding.load_model(ckpt.path).model
    with torch.no_grad():
        return model.encode(torch.from_numpy(np.asarray(img.rgb))[None])[0].numpy()


def test_every_camera_frame_becomes_a_latent_with_its_stamp(ckpt_v1: CheckpointInfo) -> None:
    node, inbox = make_node(ckpt_v1), Inbox()
    f1, f2, w1 = frame("front", 0), frame("front", 1), frame("wrist", 0)
    out = run_step(node, inbox, [("camera/front", f1), ("camera/front", f2),
                                 ("camera/wrist", w1)], now=5_000_000)
    assert [t for t, _ in out] == ["latent/front", "latent/front", "latent/wrist"]
    for (_, lat), img in zip(out, (f1, f2, w1), strict=True):
        assert lat.stamp_ns == img.stamp_ns and lat.camera == img.camera
        assert lat.render_us == img.render_us  # the frame's timing travels with it
        assert lat.model_version == 1 and lat.encode_us > 0
        np.testing.assert_allclose(lat.z, direct(ckpt_v1, img), rtol=1e-4, atol=1e-5)
    assert run_step(node, inbox, [], now=6_000_000) == []  # nothing new: nothing out
    s = node.summary()
    assert s["frames"] == s["encoded"] == 3 and s["per_camera"] == {"front": 2, "wrist": 1}
    assert s["encode_ms_p50"] > 0


def test_camera_filter_and_bad_frames(ckpt_v1: CheckpointInfo) -> None:
    node, inbox = make_node(ckpt_v1, cameras=["wrist"]), Inbox()
    bad = Image(seq=1, stamp_ns=9, camera="wrist", rgb=np.zeros((32, 32, 4), np.uint8),
                depth=empty("f4", 0, 0))
    out = run_step(node, inbox, [("camera/front", frame("front", 0)),
                                 ("camera/wrist", frame("wrist", 0)), ("camera/wrist", bad)], 1)
    assert [t for t, _ in out] == ["latent/wrist"]
    assert node.summary()["rejected"] == 1


def test_hot_swap_between_frames_misses_none(
    ckpt_v1: CheckpointInfo, ckpt_v2: CheckpointInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While new weights load, frames keep being encoded by the old model; the swap
    happens between two frames, every frame gets exactly one latent, each from the
    model whose version it carries."""
    gate = threading.Event()
    real = encoding.load_model

    def gated(path, sha256="", device="cpu"):  # the background load waits for the gate
        if "v2" in str(path):
            gate.wait(10)
        return real(path, sha256, device)

    node, inbox = make_node(ckpt_v1), Inbox()  # realtime: loads in the background
    monkeypatch.setattr(encoding, "load_model", gated)
    weights = Weights(version=2, path=str(ckpt_v2.path), sha256=ckpt_v2.sha256)
    latents: list[tuple[Image, Latent]] = []
    for k in range(12):
        img = frame("front", k)
        msgs: list[tuple[str, object]] = [("camera/front", img)]
        if k == 3:
            msgs.append(("weights", weights))
        out = run_step(node, inbox, msgs, now=k)
        assert len(out) == 1, "a frame was not encoded"
        latents.append((img, out[0][1]))
        if k == 3:
            assert node.state() == "loading"
        if k == 6:  # let the load finish; the swap comes at a later step's start
            gate.set()
            node.slot.wait()
    versions = [lat.model_version for _, lat in latents]
    assert versions == sorted(versions) and versions[0] == 1 and versions[-1] == 2
    assert versions[:7] == [1] * 7  # frames during the load: the old model
    for img, lat in latents:
        ckpt = ckpt_v1 if lat.model_version == 1 else ckpt_v2
        np.testing.assert_allclose(lat.z, direct(ckpt, img), rtol=1e-4, atol=1e-5)
    s = node.summary()
    assert s["swaps"] == 1 and s["model_version"] == 2 and s["frames_while_loading"] >= 3
    assert s["encoded"] == s["frames"] == 12


def test_lockstep_swaps_in_the_step_that_announces(
    ckpt_v1: CheckpointInfo, ckpt_v2: CheckpointInfo
) -> None:
    node, inbox = make_node(ckpt_v1, clock="lockstep"), Inbox()
    w = Weights(version=2, path=str(ckpt_v2.path), sha256=ckpt_v2.sha256)
    out = run_step(node, inbox, [("camera/front", frame("front", 0)), ("weights", w)], 1)
    assert out[0][1].model_version == 2  # deterministic: no race with the loader


def test_bad_weights_keep_the_current_model(ckpt_v1: CheckpointInfo, ckpt_v2: CheckpointInfo
                                             ) -> None:
    node, inbox = make_node(ckpt_v1, clock="lockstep"), Inbox()
    w = Weights(version=2, path=str(ckpt_v2.path), sha256="0" * 64)
    out = run_step(node, inbox, [("camera/front", frame("front", 0)), ("weights", w)], 1)
    assert out[0][1].model_version == 1
    s = node.summary()
    assert s["swap_failures"] == 1 and "sha256" in s["swap_error"]


def test_checkpoint_is_validated_before_start(tmp_path) -> None:
    with pytest.raises(ConfigError, match="checkpoint"):
        from_mapping(PerceptionNode.Config, {})
    with pytest.raises(ConfigError, match="not a checkpoint"):
        from_mapping(PerceptionNode.Config, {"checkpoint": str(tmp_path / "nope")})


def test_calibrated_cameras_publish_the_blocks_they_see_with_the_frames_stamp(
        ckpt_v1: CheckpointInfo) -> None:
    from reflexarc.runtime.msgs import Objects
    from reflexarc.sim.scene import SceneConfig
    from reflexarc.sim.scenes import make_scene
    from reflexarc.sim.tasks import make_task

    with make_scene(SceneConfig(backend="mujoco", objects=["red", "blue"])) as scene:
        make_task("push").reset(scene, np.random.default_rng(1))
        rgb = scene.render("front", 64)
        truth = scene.object_poses()[:, :3]
    node, inbox = make_node(ckpt_v1, calibration={"front": "sim-front-mujoco"}), Inbox()
    img = Image(seq=0, stamp_ns=7_000, camera="front", rgb=rgb, depth=empty("f4", 0, 0),
                render_us=50.0)
    out = run_step(node, inbox, [("camera/front", img), ("camera/wrist", frame("wrist", 0))],
                   now=9_000)
    assert [t for t, _ in out] == ["latent/front", "latent/wrist", "objects/front"]
    objs = out[-1][1]
    assert isinstance(objs, Objects) and objs.stamp_ns == 7_000 and objs.render_us == 50.0
    seen = objs.as_dict()
    assert sorted(seen) == ["blue", "red"]
    for i, name in enumerate(("red", "blue")):
        assert np.linalg.norm(seen[name][0] - truth[i]) < 0.015
    assert node.summary()["detected"] == {"red": 1, "blue": 1}


def test_a_missing_calibration_file_is_a_config_error(ckpt_v1: CheckpointInfo) -> None:
    with pytest.raises(ConfigError, match="calibration.front"):
        make_node(ckpt_v1, calibration={"front": "nowhere"})


def test_perception_encodes_goal_images_with_its_model_version(
    ckpt_v1: CheckpointInfo, ckpt_v2: CheckpointInfo
) -> None:
    from reflexarc.runtime.msgs import Goal

    node, inbox = make_node(ckpt_v1, clock="lockstep", goal_period_s=1.0), Inbox()
    img = frame("front", 3)
    shown = Goal(stamp_ns=7, task="push", object="red", target=np.ones(3), image=img.rgb,
                 z=empty("f4", 0), source="person")
    out = run_step(node, inbox, [("goal", shown)], now=10)
    assert [t for t, _ in out] == ["goal_latent"]
    g = out[0][1]
    assert g.stamp_ns == 7 and g.model_version == 1 and g.image.size == 0 and g.task == "push"
    np.testing.assert_allclose(g.z, direct(ckpt_v1, img), rtol=1e-4, atol=1e-5)
    assert run_step(node, inbox, [("goal", shown)], now=20) == []  # the same goal: nothing new
    assert [t for t, _ in run_step(node, inbox, [], now=10 + 10**9)] == ["goal_latent"]  # again
    # new weights: the goal is re-encoded with them
    w = Weights(version=2, path=str(ckpt_v2.path), sha256=ckpt_v2.sha256)
    out = run_step(node, inbox, [("weights", w)], now=2 * 10**9)
    g2 = out[0][1]
    assert out[0][0] == "goal_latent" and g2.model_version == 2 and g2.stamp_ns == 7
    np.testing.assert_allclose(g2.z, direct(ckpt_v2, img), rtol=1e-4, atol=1e-5)
    # a task as a person states it (no image) is the planner's: nothing to encode
    task = Goal(stamp_ns=9, task="push", object="red", target=np.ones(3),
                image=empty("u1", 0, 0, 3), z=empty("f4", 0))
    assert run_step(node, inbox, [("goal", task)], now=3 * 10**9) == []
    assert node.summary()["goals_encoded"] == 2


def test_a_goal_image_file_is_encoded_at_start(ckpt_v1: CheckpointInfo, tmp_path) -> None:
    import cv2

    img = frame("front", 5)
    path = tmp_path / "goal.png"
    cv2.imwrite(str(path), np.ascontiguousarray(img.rgb[:, :, ::-1]))
    node, inbox = make_node(ckpt_v1, goal_image=str(path)), Inbox()
    out = run_step(node, inbox, [], now=10)
    assert [t for t, _ in out] == ["goal_latent"] and out[0][1].source == "file"
    np.testing.assert_allclose(out[0][1].z, direct(ckpt_v1, img), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="goal_image"):
        make_node(ckpt_v1, goal_image=str(tmp_path / "missing.png"))
