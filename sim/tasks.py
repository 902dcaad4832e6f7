"""Tasks on the robot scene: reach, push, pick_place.

A task samples a seeded initial state and a target (:meth:`Task.sample`: the layout the
evaluator asks the plant to reset to), tests success on privileged state, and poses a
scene in its goal state to render a goal image (inside
``scene.preserved()``, so the episode is not disturbed). The block a task is about is
the first of ``scene.object_names`` (``Task.obj`` names another one when an instruction
chose it: see :meth:`Task.retarget`); the others are distractors.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.sim.assets import BLOCK_SIZE, SPAWN_MARGIN, SceneError
from reflexarc.sim.scene import Scene

MIN_BLOCK_GAP = 0.08  # m between block centres at reset


@dataclass(frozen=True)
class Layout:
    """An episode's initial state: the arm at rest at ``q`` (dof,), the gripper command in
    [-1, 1], the blocks' poses ``objects`` (k, 7: xyz, quaternion wxyz) and the target (3,)."""

    q: np.ndarray
    gripper: float
    objects: np.ndarray
    target: np.ndarray


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class Task(abc.ABC):
    """A task: seeded reset, success test, goal state.

    Attributes:
        target: (3,) target of the current episode (hand or block centre), world frame.
        init_q: (dof,) initial joint positions of the current episode.
    """

    name: ClassVar[str]
    max_steps: ClassVar[int]  # default episode length at 10 Hz
    tolerance: float  # success radius, m (a class default; retarget may tighten it)
    needs_object: ClassVar[bool] = True

    def __init__(self, kinematics: ArmKinematics | None = None) -> None:
        self.kin = kinematics or ArmKinematics()
        self.target = np.zeros(3)
        self.init_q = self.kin.home.copy()
        self.obj = 0  # index of the block the task is about (0 after every reset)
        robot = self.kin.robot
        # episodes start with the hand near its home position (to the millimetre)
        self.home_ee = np.round(self.kin.fk(self.kin.home)[0], 3) + 0.0
        self.targets = robot.table_box  # (2, 2) x, y: where targets lie
        self.spawn = self.targets + [SPAWN_MARGIN, -SPAWN_MARGIN]  # (2, 2) where blocks start
        self.top = min(0.35, float(robot.workspace_box[2, 1]))  # highest reach target, m

    def reset(self, scene: Scene, rng: np.random.Generator) -> None:
        """Sample and apply a new initial state and target (deterministic given ``rng``)."""
        layout = self.sample(rng, len(scene.object_names))
        scene.reset(layout.q, gripper=layout.gripper, object_poses=layout.objects)

    def sample(self, rng: np.random.Generator, blocks: int) -> Layout:
        """Sample a new episode for a scene of ``blocks`` blocks: the layout to reset the
        scene to, the target (deterministic given ``rng``). The task takes it as its own
        episode (target, initial joints, block 0); the scene is not touched: the evaluator
        asks the plant to lay it out (sim/evaluator.py)."""
        if self.needs_object and not blocks:
            raise SceneError(f"task {self.name!r} needs at least one block in the scene")
        ee0 = self.home_ee + rng.uniform(-0.03, 0.03, size=3)
        self.init_q = self.kin.solve(ee0, q0=self.kin.home).q
        self.obj = 0
        self.tolerance = type(self).tolerance
        poses = self._sample_objects(rng, blocks)
        self.target = self._sample_target(rng, poses)
        return Layout(q=self.init_q.copy(), gripper=1.0, objects=poses, target=self.target.copy())

    def _sample_objects(self, rng: np.random.Generator, k: int) -> np.ndarray:
        poses = np.zeros((k, 7))
        for i in range(k):
            for _ in range(1000):
                xy = rng.uniform(self.spawn[:, 0], self.spawn[:, 1])
                if all(np.linalg.norm(xy - poses[j, :2]) >= MIN_BLOCK_GAP for j in range(i)):
                    break
            poses[i, :2] = xy
            poses[i, 2] = BLOCK_SIZE / 2
            poses[i, 3:] = _yaw_quat(rng.uniform(-0.25, 0.25))
        return poses

    def _sample_table_target(
        self, rng: np.random.Generator, poses: np.ndarray, lo: float, hi: float
    ) -> np.ndarray:
        """A target on the table, ``lo``-``hi`` m from block 0 and clear of the others."""
        for _ in range(10000):
            xy = rng.uniform(self.targets[:, 0], self.targets[:, 1])
            d = np.linalg.norm(xy - poses[0, :2])
            clear = all(np.linalg.norm(xy - p[:2]) >= MIN_BLOCK_GAP for p in poses[1:])
            if lo <= d <= hi and clear:
                return np.array([xy[0], xy[1], BLOCK_SIZE / 2])
        raise SceneError("could not place a target clear of the blocks")  # pragma: no cover

    @abc.abstractmethod
    def _sample_target(self, rng: np.random.Generator, poses: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def distance(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> float:
        """Task error in metres from privileged state (ee (3,), blocks (k, 3))."""

    @abc.abstractmethod
    def success(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> bool:
        """Whether the state (ee (3,), blocks (k, 3)) solves the task."""

    def retarget(self, obj: int, target: np.ndarray, tolerance: float = 0.0) -> None:
        """Make the episode about block ``obj`` (index in ``scene.object_names``) and end at
        ``target`` (3,) instead of the reset's sample (an instruction's task spec), within
        ``tolerance`` m if given (else the task's); the next reset undoes both."""
        self.obj = int(obj)
        self.target = np.asarray(target, dtype=float).reshape(3).copy()
        if tolerance > 0.0:
            self.tolerance = float(tolerance)

    def scene_success(self, scene: Scene) -> bool:
        """:meth:`success` on the scene's current privileged state."""
        return self.success(scene.ee_pose()[0], scene.object_poses()[:, :3])

    @abc.abstractmethod
    def pose_goal(self, scene: Scene) -> None:
        """Put ``scene`` in this episode's goal state (the caller restores it)."""

    def goal_image(self, scene: Scene, camera: str = "front", size: int = 64) -> np.ndarray:
        """Render the goal state without disturbing the episode. (size, size, 3) uint8"""
        with scene.preserved():
            self.pose_goal(scene)
            return scene.render(camera, size)  # type: ignore[return-value]


class Reach(Task):
    """Bring the end effector within 2.5 cm of a target above the table."""

    name = "reach"
    max_steps = 50
    needs_object = False
    tolerance = 0.025

    def _sample_target(self, rng: np.random.Generator, poses: np.ndarray) -> np.ndarray:
        lo = np.array([self.targets[0, 0], self.targets[1, 0], 0.1])
        hi = np.array([self.targets[0, 1], self.targets[1, 1], self.top])
        return rng.uniform(lo, hi)

    def distance(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> float:
        return float(np.linalg.norm(ee_pos - self.target))

    def success(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> bool:
        return self.distance(ee_pos, object_pos) < self.tolerance

    def pose_goal(self, scene: Scene) -> None:
        q = self.kin.solve(self.target, q0=self.init_q, iters=100).q
        scene.set_joint_positions(q)


class Push(Task):
    """Push block 0 along the table to within 4 cm (xy) of a target 10-20 cm away."""

    name = "push"
    max_steps = 100
    tolerance = 0.04

    def _sample_target(self, rng: np.random.Generator, poses: np.ndarray) -> np.ndarray:
        return self._sample_table_target(rng, poses, 0.1, 0.2)

    def distance(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> float:
        return float(np.linalg.norm(object_pos[self.obj, :2] - self.target[:2]))

    def success(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> bool:
        on_table = object_pos[self.obj, 2] < BLOCK_SIZE / 2 + 0.015
        return bool(on_table) and self.distance(ee_pos, object_pos) < self.tolerance

    def pose_goal(self, scene: Scene) -> None:
        poses = scene.object_poses()
        poses[self.obj, :3] = self.target
        scene.set_object_poses(poses)


class PickPlace(Task):
    """Lift block 0 and put it down on the table within 3.5 cm of a target 12-25 cm away."""

    name = "pick_place"
    max_steps = 100
    tolerance = 0.035

    def _sample_target(self, rng: np.random.Generator, poses: np.ndarray) -> np.ndarray:
        return self._sample_table_target(rng, poses, 0.12, 0.25)

    def distance(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> float:
        return float(np.linalg.norm(object_pos[self.obj] - self.target))

    def success(self, ee_pos: np.ndarray, object_pos: np.ndarray) -> bool:
        down = object_pos[self.obj, 2] < self.target[2] + 0.01  # put down, not held above
        return bool(down) and self.distance(ee_pos, object_pos) < self.tolerance

    def pose_goal(self, scene: Scene) -> None:
        poses = scene.object_poses()
        poses[self.obj, :3] = self.target
        scene.set_object_poses(poses)


TASKS: dict[str, type[Task]] = {t.name: t for t in (Reach, Push, PickPlace)}


def make_task(name: str, kinematics: ArmKinematics | None = None) -> Task:
    """The task called ``name`` (reach | push | pick_place)."""
    cls = TASKS.get(name)
    if cls is None:
        raise SceneError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return cls(kinematics)
