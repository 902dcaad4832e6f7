"""The Scene interface: one robot scene, whatever simulator (or gym env) runs it.

A Scene is what the graph's sim node drives: read the joint state, apply a torque or a
joint position command, step the physics, render camera frames. Simulated scenes also
give privileged state (end-effector pose, object poses) for experts, success tests and
probes, and can save and restore their full state (used to render goal images without
disturbing an episode).

Backends: :class:`reflexarc.sim.mujoco_scene.MuJoCoScene`, :class:`reflexarc.sim.pybullet_scene.PyBulletScene`
(a robot from its description, a table, 0-3 blocks) and :class:`reflexarc.sim.gym_scene.GymScene` (any gymnasium env
with Box spaces). :func:`reflexarc.sim.scenes.make_scene` builds the first two from a :class:`SceneConfig`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from reflexarc.robot.description import Gripper, RobotDescription
from reflexarc.runtime.config import bounded, choice
from reflexarc.sim.assets import BLOCK_COLORS, BLOCK_SIZE, CAMERAS, SceneError


class JointSample(NamedTuple):
    """Measured joint state.

    ``tau`` is the motor torque (command, plus gravity compensation in position mode,
    clipped to the effort limits): MuJoCo reports it for the current state, PyBullet as
    applied during the last physics step.
    """

    q: np.ndarray  # (n,) rad
    dq: np.ndarray  # (n,) rad/s
    tau: np.ndarray  # (n,) N m
    gripper: float  # finger opening, m (0 closed; the Panda 0.08 open)


@dataclass
class SceneConfig:
    """What a robot scene holds and how it is simulated."""

    backend: str = choice("mujoco", "pybullet")
    robot: str = "panda"  # the arm (reflexarc.robot.description: panda, xarm6, or registered)
    objects: list[str] = field(default_factory=lambda: ["red"])  # block colours, 0 to 3
    cameras: list[str] = field(default_factory=lambda: ["front"])  # "front", "wrist"
    physics_hz: int = bounded(500, 500, 1000)
    meshes: str = choice("collision", "visual")  # meshes drawn for the robot (see assets)
    gui: bool = False  # open the simulator's window (needs a display)

    def validate(self) -> None:
        from reflexarc.robot.description import robot_description
        from reflexarc.runtime.errors import ConfigError

        robot_description(self.robot)  # a ConfigError on "robot" naming the known ones
        if len(self.objects) > 3 or len(set(self.objects)) != len(self.objects):
            raise ConfigError(
                "objects", f"got {self.objects}; allowed: 0-3 distinct of red, green, blue"
            )
        for name in self.objects:
            if name not in BLOCK_COLORS:
                raise ConfigError("objects", f"got {name!r}; allowed: {', '.join(BLOCK_COLORS)}")
        for cam in self.cameras:
            if cam not in CAMERAS:
                raise ConfigError("cameras", f"got {cam!r}; allowed: {', '.join(CAMERAS)}")


def default_object_poses(n: int) -> np.ndarray:
    """Blocks resting in a row across the spawn area, unrotated. (n, 7) xyz + quat wxyz."""
    poses = np.zeros((n, 7))
    poses[:, 0] = 0.5
    poses[:, 1] = np.linspace(-0.12, 0.12, n) if n > 1 else 0.0
    poses[:, 2] = BLOCK_SIZE / 2
    poses[:, 3] = 1.0
    return poses


def as_object_poses(poses: np.ndarray, n: int) -> np.ndarray:
    """Validate object poses: (n, 3) positions (unrotated) or (n, 7) xyz + quat wxyz."""
    poses = np.asarray(poses, dtype=float)
    if poses.ndim != 2 or poses.shape[0] != n or poses.shape[1] not in (3, 7):
        raise SceneError(f"object poses must be ({n}, 3) or ({n}, 7), got {poses.shape}")
    if poses.shape[1] == 3:
        poses = np.concatenate([poses, np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))], axis=1)
    quat = poses[:, 3:]
    norm = np.linalg.norm(quat, axis=1, keepdims=True)
    if not np.all(np.isfinite(poses)) or np.any(norm < 1e-9):
        raise SceneError("object poses must be finite with non-zero quaternions")
    return np.concatenate([poses[:, :3], quat / norm], axis=1)


def scene_gripper(robot: RobotDescription) -> Gripper:
    """The gripper of ``robot``; the scenes' tasks need one (SceneError without)."""
    if robot.gripper is None:
        raise SceneError(f"the scenes need a robot with a gripper; {robot.name!r} has none")
    return robot.gripper


def position_setpoint(q: np.ndarray, dq: np.ndarray | None, robot: RobotDescription) -> np.ndarray:
    """Validate a position command; fold the velocity feedforward into one setpoint.

    With ``KP (s - q_meas) - KD dq_meas`` as the PD law, ``s = q + (KD / KP) dq`` gives
    ``KP (q - q_meas) + KD (dq - dq_meas)``: both backends use it (MuJoCo's affine
    actuator bias then needs nothing else). ``KP``, ``KD``: the robot's gains.
    """
    n = robot.dof
    q = np.asarray(q, dtype=float)
    if q.shape != (n,) or not np.all(np.isfinite(q)):
        raise SceneError(f"position command must be {n} finite values, got shape {q.shape}")
    if dq is None:
        return q.copy()
    dq = np.asarray(dq, dtype=float)
    if dq.shape != (n,) or not np.all(np.isfinite(dq)):
        raise SceneError(f"velocity feedforward must be {n} finite values, got shape {dq.shape}")
    return q + (robot.kd_gains / robot.kp_gains) * dq


class Scene(abc.ABC):
    """A robot scene stepped by a simulator.

    Joint-space interface: ``joint_state``, ``command_torque`` / ``command_position``
    (held until the next command), ``step(n)``. The gripper is always position
    controlled. Cameras render (H, W, 3) uint8 RGB and optionally (H, W) float32 depth
    in metres.
    """

    backend: str
    joint_names: tuple[str, ...]
    object_names: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    dt: float  # physics step, s

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    # ---- joint-space interface --------------------------------------------------------

    @abc.abstractmethod
    def joint_state(self) -> JointSample:
        """The measured joint state."""

    @abc.abstractmethod
    def command_torque(self, tau: np.ndarray, gripper: float | None = None) -> None:
        """Apply joint torques ``tau`` (n,) N m (clipped to the effort limits) from now on.

        The caller compensates gravity itself. ``gripper`` in [-1 close, 1 open]; None
        keeps the previous gripper command.
        """

    @abc.abstractmethod
    def command_position(
        self, q: np.ndarray, gripper: float | None = None, dq: np.ndarray | None = None
    ) -> None:
        """Track joint positions ``q`` (n,) rad, moving at ``dq`` (n,) rad/s (default 0),
        from now on with the scene's joint PD controller plus gravity compensation:
        ``tau = KP (q - q_meas) + KD (dq - dq_meas) + g(q_meas)``, clipped."""

    def command_gripper(self, gripper: float) -> None:
        """Set the gripper command alone, in [-1 close, 1 open]; the arm's command stays."""
        self._set_gripper(gripper)

    def _set_gripper(self, gripper: float | None) -> None:
        raise SceneError(f"{type(self).__name__} has no gripper")

    def apply(
        self,
        mode: str,
        position: np.ndarray,
        effort: np.ndarray,
        gripper: float | None,
        velocity: np.ndarray | None = None,
    ) -> None:
        """Apply a joint command as carried by ``reflexarc.runtime.msgs.JointCommand``
        (``velocity`` may be empty: no velocity feedforward)."""
        if mode == "torque":
            self.command_torque(effort, gripper)
        elif mode == "position":
            dq = None if velocity is None or np.size(velocity) == 0 else velocity
            self.command_position(position, gripper, dq)
        else:
            raise SceneError(f"joint command mode must be 'torque' or 'position', got {mode!r}")

    @abc.abstractmethod
    def step(self, n: int = 1) -> None:
        """Advance the physics by ``n`` steps of ``dt`` with the current command."""

    @property
    @abc.abstractmethod
    def time(self) -> float:
        """Simulated time since the last reset, s."""

    @abc.abstractmethod
    def reset(
        self,
        q: np.ndarray | None = None,
        gripper: float = 1.0,
        object_poses: np.ndarray | None = None,
    ) -> None:
        """Put the robot at rest at ``q`` (default: home), holding it with a position
        command, the gripper at ``gripper`` in [-1, 1], the objects at ``object_poses``
        ((k, 3) or (k, 7), default: a row in the spawn area). Time restarts at 0."""

    # ---- cameras ----------------------------------------------------------------------

    @abc.abstractmethod
    def render(
        self, camera: str = "front", size: int = 64, depth: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Render ``camera``: RGB (size, size, 3) uint8, and with ``depth`` also
        (size, size) float32 metres along the optical axis."""

    # ---- privileged state (simulation only) --------------------------------------------

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position (3,) and orientation quaternion wxyz (4,) in the world."""
        raise SceneError(f"{type(self).__name__} has no privileged end-effector pose")

    def object_poses(self) -> np.ndarray:
        """Poses of the blocks in ``object_names`` order: (k, 7) xyz + quat wxyz."""
        raise SceneError(f"{type(self).__name__} has no privileged object poses")

    def set_object_poses(self, poses: np.ndarray) -> None:
        """Teleport the blocks to ``poses`` ((k, 3) or (k, 7)) at rest."""
        raise SceneError(f"{type(self).__name__} cannot place objects")

    def set_joint_positions(self, q: np.ndarray, gripper: float | None = None) -> None:
        """Teleport the arm to ``q`` (and the fingers to ``gripper`` opening in m) at rest."""
        raise SceneError(f"{type(self).__name__} cannot set joint positions")

    # ---- full state ---------------------------------------------------------------------

    @abc.abstractmethod
    def snapshot(self) -> Any:
        """An opaque copy of the full simulator and command state."""

    @abc.abstractmethod
    def restore(self, snapshot: Any) -> None:
        """Return exactly to a state taken by :meth:`snapshot` on this scene."""

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        """Run a block that may change the scene, then put the full state back."""
        snap = self.snapshot()
        try:
            yield
        finally:
            self.restore(snap)
            self.discard(snap)

    def discard(self, snapshot: Any) -> None:  # noqa: B027 - optional hook
        """Free the resources a snapshot holds (a no-op unless the backend keeps some)."""

    def human_render(self) -> None:
        """Show the current state in the simulator's window (render_mode="human")."""
        raise SceneError(f"{type(self).__name__} has no window")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the simulator."""

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
