"""Scripted experts: one per task, acting from the privileged state in the env's info.

An expert is a small state machine over end-effector waypoints. ``act(info)`` returns
the env action (dx, dy, dz, gripper); the displacement moves toward the current waypoint
at most ``max_delta`` per step (the direction kept, the length clipped). They exist to
measure the scenes (tasks are solvable, success tests fire) and to collect
demonstrations; they see the block and target positions, which a learned policy does not.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from reflexarc.sim.assets import BLOCK_SIZE, SceneError

LIFT_Z = 0.12  # carrying height of the end effector, m
OPEN, CLOSE = 1.0, -1.0


def move(ee: np.ndarray, goal: np.ndarray, max_delta: float, gain: float = 1.0) -> np.ndarray:
    """Displacement toward ``goal`` scaled by ``gain``, length clipped to ``max_delta``. (3,)"""
    d = gain * (np.asarray(goal, float) - ee)
    n = np.abs(d).max()
    return d if n <= max_delta else d * (max_delta / n)


class Expert(abc.ABC):
    """A scripted policy for one task (see module docstring)."""

    task: ClassVar[str]

    def __init__(self, max_delta: float = 0.05) -> None:
        self.max_delta = max_delta
        self.phase = "start"
        self.timer = 0

    def reset(self, info: dict[str, Any]) -> None:
        """Start a new episode from the reset info."""
        self.phase = "start"
        self.timer = 0

    @abc.abstractmethod
    def act(self, info: dict[str, Any]) -> np.ndarray:
        """Action (4,) float32 for the current info (ee_pos, object_pos, target, gripper)."""

    def _action(self, delta: np.ndarray, gripper: float) -> np.ndarray:
        return np.array([*delta, gripper], dtype=np.float32)

    def _go(self, phase: str) -> None:
        self.phase = phase
        self.timer = 0


class ReachExpert(Expert):
    """Straight to the target, gripper open."""

    task = "reach"

    def act(self, info: dict[str, Any]) -> np.ndarray:
        return self._action(move(info["ee_pos"], info["target"], self.max_delta), OPEN)


class PushExpert(Expert):
    """Closed gripper behind the block, then push it through toward the target.

    Phases: above (over the pre-push point) -> down -> push; a push that drifts off the
    line from the block to the target goes back up and around.
    """

    task = "push"
    push_z = 0.015  # end-effector height while pushing
    standoff = 0.06  # pre-push point: this far behind the block centre
    contact = 0.04  # ee-to-block-centre distance when touching
    push_step = 0.02

    def act(self, info: dict[str, Any]) -> np.ndarray:
        ee = info["ee_pos"]
        block = info["object_pos"][0]
        target = info["target"]
        d = target[:2] - block[:2]
        dist = float(np.linalg.norm(d))
        u = d / max(dist, 1e-6)
        behind = block[:2] - self.standoff * u
        rel = ee[:2] - block[:2]
        along = float(rel @ u)  # < 0: behind the block
        lateral = float(abs(rel[0] * u[1] - rel[1] * u[0]))
        self.timer += 1
        if self.phase == "start":
            self._go("above")
        if self.phase == "push" and (lateral > 0.02 or along > -0.02):
            self._go("up")
        if self.phase == "up":
            if ee[2] > 0.06:
                self._go("above")
            else:
                return self._action(move(ee, [ee[0], ee[1], 0.08], self.max_delta), CLOSE)
        if self.phase == "above":
            goal = np.array([*behind, 0.08])
            if np.linalg.norm(goal[:2] - ee[:2]) < 0.01:
                self._go("down")
            else:
                return self._action(move(ee, goal, self.max_delta), CLOSE)
        if self.phase == "down":
            goal = np.array([*behind, self.push_z])
            if ee[2] - self.push_z < 0.01:
                self._go("push")
            else:
                return self._action(move(ee, goal, self.max_delta), CLOSE)
        # push: aim the hand so that the block centre ends on the target
        if dist < 0.01:
            return self._action(np.zeros(3), CLOSE)
        goal_xy = block[:2] + u * (min(dist, self.push_step) - self.contact)
        goal = np.array([*goal_xy, self.push_z])
        return self._action(move(ee, goal, self.max_delta), CLOSE)


class PickPlaceExpert(Expert):
    """Above the block, down, grasp, lift, carry above the target, lower, release.

    Phases: above -> down -> grasp -> lift -> carry -> lower -> release -> retreat; a
    block lost while carrying sends it back to "above".
    """

    task = "pick_place"
    grasp_z = 0.02
    grasp_steps = 4
    release_steps = 3

    def act(self, info: dict[str, Any]) -> np.ndarray:
        ee = info["ee_pos"]
        block = info["object_pos"][0]
        target = info["target"]
        self.timer += 1
        held = block[2] > BLOCK_SIZE / 2 + 0.01 and np.linalg.norm(block[:2] - ee[:2]) < 0.03
        if self.phase == "start":
            self._go("above")
        if self.phase in ("lift", "carry") and self.timer > 3 and not held:
            self._go("above")
        if self.phase == "above":
            goal = np.array([block[0], block[1], LIFT_Z])
            if np.abs(goal[:2] - ee[:2]).max() < 0.008:
                self._go("down")
            else:
                return self._action(move(ee, goal, self.max_delta), OPEN)
        if self.phase == "down":
            goal = np.array([block[0], block[1], self.grasp_z])
            if ee[2] - self.grasp_z < 0.008:
                self._go("grasp")
            else:
                return self._action(move(ee, goal, self.max_delta), OPEN)
        if self.phase == "grasp":
            if self.timer > self.grasp_steps:
                self._go("lift")
            else:
                return self._action(np.zeros(3), CLOSE)
        if self.phase == "lift":
            goal = np.array([ee[0], ee[1], LIFT_Z])
            if ee[2] > LIFT_Z - 0.02:
                self._go("carry")
            else:
                return self._action(move(ee, goal, self.max_delta), CLOSE)
        if self.phase == "carry":
            goal = np.array([target[0], target[1], LIFT_Z])
            if np.abs(goal[:2] - block[:2]).max() < 0.008:
                self._go("lower")
            else:
                return self._action(
                    move(ee, goal + (ee - block) * [1, 1, 0], self.max_delta), CLOSE
                )
        if self.phase == "lower":
            goal = ee + (target - block) + np.array([0.0, 0.0, 0.005])
            if block[2] - target[2] < 0.008:
                self._go("release")
            else:
                return self._action(move(ee, goal, self.max_delta), CLOSE)
        if self.phase == "release":
            if self.timer > self.release_steps:
                self._go("retreat")
            else:
                return self._action(np.zeros(3), OPEN)
        goal = np.array([ee[0], ee[1], LIFT_Z])
        return self._action(move(ee, goal, self.max_delta), OPEN)


EXPERTS: dict[str, type[Expert]] = {e.task: e for e in (ReachExpert, PushExpert, PickPlaceExpert)}


def make_expert(task: str, max_delta: float = 0.05) -> Expert:
    """The scripted expert of ``task``."""
    cls = EXPERTS.get(task)
    if cls is None:
        raise SceneError(f"no expert for task {task!r}; tasks: {', '.join(EXPERTS)}")
    return cls(max_delta)
