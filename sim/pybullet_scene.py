"""PyBullet backend: the same Panda URDF, table, blocks and cameras as the MuJoCo scene.

The arm is torque controlled in both modes (PyBullet's own velocity motors are switched
off): torque mode applies the caller's torques; position mode applies the same joint PD
plus gravity compensation as the MuJoCo scene (``calculateInverseDynamics`` at zero
velocity and acceleration), recomputed every physics step. Link damping is zeroed and
inertias are read from the URDF, so both simulators integrate the same rigid-body model.
Rendering uses PyBullet's TinyRenderer (software, headless).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet
from pybullet_utils.bullet_client import BulletClient

from reflexarc.robot.panda import PANDA
from reflexarc.sim.assets import (
    BLOCK_COLORS,
    BLOCK_MASS,
    BLOCK_SIZE,
    CAMERAS,
    FLOOR_RGBA,
    FLOOR_Z,
    HAND_RGBA,
    ROBOT_RGBA,
    TABLE_CENTER,
    TABLE_HALF,
    TABLE_RGBA,
    CameraSpec,
    SceneError,
)
from reflexarc.sim.scene import (
    JointSample,
    Scene,
    SceneConfig,
    as_object_poses,
    default_object_poses,
    position_setpoint,
    scene_gripper,
)

ARM = list(range(7))  # joint indices of panda_joint1..7
FINGERS = [9, 10]  # panda_finger_joint1, 2
ROBOT_JOINTS = ARM + FINGERS  # the 9 movable joints, in MuJoCo's qpos order
HAND = 8  # link index of panda_hand
EE = 11  # link index of panda_grasptarget
_DARK = (6, 7, 8, 9, 10)  # link7 .. fingers
_NO_COLLISION = (-1, 0, 1, 2, 3, 4, 5)  # link0 .. link6, as in the MuJoCo scene
_LIGHT_DIR = (0.2, 0.0, 1.0)


def _xyzw(wxyz: np.ndarray) -> list[float]:
    return [float(wxyz[1]), float(wxyz[2]), float(wxyz[3]), float(wxyz[0])]


def _wxyz(xyzw: Any) -> np.ndarray:
    return np.array([xyzw[3], xyzw[0], xyzw[1], xyzw[2]], dtype=float)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence the process's file descriptor 1 (C-level prints) for a block."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # pragma: no cover - no usable stdout
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass
class _Snapshot:
    state_id: int
    mode: str
    command: np.ndarray
    gripper: float
    tau: np.ndarray
    steps: int


class PyBulletScene(Scene):
    """The Panda scene simulated by PyBullet (see module docstring)."""

    backend = "pybullet"

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self.dt = 1.0 / cfg.physics_hz
        self.description = PANDA
        self.grip = scene_gripper(self.description)
        self._kp = self.description.kp_gains
        self._kd = self.description.kd_gains
        self._tau_max = self.description.tau_limits
        self.joint_names = self.description.arm_joints
        self.object_names = tuple(cfg.objects)
        self.cameras = tuple(cfg.cameras)
        with _quiet_stdout():  # PyBullet's C code prints "argv[0]=" on connect
            self.pb = BulletClient(pybullet.GUI if cfg.gui else pybullet.DIRECT)
        pb = self.pb
        pb.setGravity(0.0, 0.0, -9.81)
        pb.setPhysicsEngineParameter(
            fixedTimeStep=self.dt,
            numSubSteps=0,
            numSolverIterations=50,
            deterministicOverlappingPairs=1,
        )
        self.robot = self._load_robot()
        self._load_world()
        self._mode = "position"
        self._command = self.description.home_q
        self._gripper = 1.0
        self._tau = np.zeros(7)
        self._steps = 0
        self._zeros9 = [0.0] * 9
        self._proj = {
            name: pb.computeProjectionMatrixFOV(cam.fovy, 1.0, cam.near, cam.far)
            for name, cam in CAMERAS.items()
        }
        self._clean = pb.saveState()
        self.reset()

    def _load_robot(self) -> int:
        pb = self.pb
        fd, path = tempfile.mkstemp(suffix=".urdf", prefix="panda_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.description.urdf_text(self.cfg.meshes))
            flags = pb.URDF_USE_INERTIA_FROM_FILE | pb.URDF_ENABLE_CACHED_GRAPHICS_SHAPES
            robot = pb.loadURDF(path, [0, 0, 0], useFixedBase=True, flags=flags)
        finally:
            os.unlink(path)
        for link in range(-1, pb.getNumJoints(robot)):
            pb.changeDynamics(robot, link, linearDamping=0.0, angularDamping=0.0)
            pb.changeVisualShape(robot, link, rgbaColor=HAND_RGBA if link in _DARK else ROBOT_RGBA)
        for link in _NO_COLLISION:
            pb.setCollisionFilterGroupMask(robot, link, 0, 0)
        for link in FINGERS:
            pb.changeDynamics(robot, link, lateralFriction=1.0, spinningFriction=0.005)
        pb.setCollisionFilterPair(robot, robot, FINGERS[0], FINGERS[1], 0)
        # PyBullet drives every joint with a velocity motor by default: switch the arm's off.
        pb.setJointMotorControlArray(robot, ARM, pb.VELOCITY_CONTROL, forces=[0.0] * 7)
        return robot

    def _load_world(self) -> None:
        pb = self.pb
        floor = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[15, 15, 0.01], rgbaColor=FLOOR_RGBA)
        pb.createMultiBody(0.0, -1, floor, [0.0, 0.0, FLOOR_Z - 0.01])
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=list(TABLE_HALF))
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=list(TABLE_HALF), rgbaColor=TABLE_RGBA)
        self.table = pb.createMultiBody(0.0, col, vis, list(TABLE_CENTER))
        pb.changeDynamics(self.table, -1, lateralFriction=0.5)
        h = BLOCK_SIZE / 2
        self.blocks: list[int] = []
        for pose, name in zip(
            default_object_poses(len(self.object_names)), self.object_names, strict=True
        ):
            col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=[h, h, h])
            vis = pb.createVisualShape(
                pb.GEOM_BOX, halfExtents=[h, h, h], rgbaColor=BLOCK_COLORS[name]
            )
            body = pb.createMultiBody(BLOCK_MASS, col, vis, list(pose[:3]))
            pb.changeDynamics(body, -1, lateralFriction=1.0, spinningFriction=0.005)
            self.blocks.append(body)

    # ---- commands ---------------------------------------------------------------------

    def _set_gripper(self, gripper: float | None) -> None:
        if gripper is not None:
            self._gripper = float(np.clip(gripper, -1.0, 1.0))
        target = self.grip.finger_target(self._gripper)
        self.pb.setJointMotorControlArray(
            self.robot,
            FINGERS,
            self.pb.POSITION_CONTROL,
            targetPositions=[target, target],
            forces=[self.grip.force, self.grip.force],
            positionGains=[0.05, 0.05],
        )

    def command_torque(self, tau: np.ndarray, gripper: float | None = None) -> None:
        tau = np.asarray(tau, dtype=float)
        if tau.shape != (7,) or not np.all(np.isfinite(tau)):
            raise SceneError(f"torque command must be 7 finite values, got shape {tau.shape}")
        self._mode = "torque"
        self._command = tau.copy()
        self._set_gripper(gripper)

    def command_position(
        self, q: np.ndarray, gripper: float | None = None, dq: np.ndarray | None = None
    ) -> None:
        q = position_setpoint(q, dq, self.description)
        self._mode = "position"
        self._command = q.copy()
        self._set_gripper(gripper)

    # ---- state ------------------------------------------------------------------------

    def _robot_state(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.pb.getJointStates(self.robot, ROBOT_JOINTS)
        q = np.array([s[0] for s in states])
        dq = np.array([s[1] for s in states])
        return q, dq  # (9,), (9,)

    def joint_state(self) -> JointSample:
        q, dq = self._robot_state()
        return JointSample(q[:7], dq[:7], self._tau.copy(), float(q[7] + q[8]))

    def step(self, n: int = 1) -> None:
        pb = self.pb
        for _ in range(int(n)):
            if self._mode == "position":
                q, dq = self._robot_state()
                g = pb.calculateInverseDynamics(self.robot, q.tolist(), self._zeros9, self._zeros9)
                tau = self._kp * (self._command - q[:7]) - self._kd * dq[:7] + np.asarray(g[:7])
            else:
                tau = self._command
            self._tau = np.clip(tau, -self._tau_max, self._tau_max)
            pb.setJointMotorControlArray(
                self.robot, ARM, pb.TORQUE_CONTROL, forces=self._tau.tolist()
            )
            pb.stepSimulation()
            self._steps += 1

    @property
    def time(self) -> float:
        return self._steps * self.dt

    def reset(
        self,
        q: np.ndarray | None = None,
        gripper: float = 1.0,
        object_poses: np.ndarray | None = None,
    ) -> None:
        self._flush_contacts()
        self.pb.restoreState(self._clean)
        q = self.description.home_q if q is None else np.asarray(q, dtype=float)
        k = len(self.object_names)
        poses = default_object_poses(k) if object_poses is None else object_poses
        self._write_objects(as_object_poses(poses, k))
        self.command_position(q, gripper)
        self._write_joints(q, 2 * self.grip.finger_target(self._gripper))
        self._tau = np.zeros(7)
        self._steps = 0

    def _flush_contacts(self) -> None:
        """Drop Bullet's cached contact manifolds (restoreState keeps them), so a reset
        is deterministic whatever ran before: lift the hand and move every block away from
        everything, then run collision detection."""
        self._write_joints(self.description.home_q, self.grip.max_opening)
        for i, body in enumerate(self.blocks):
            self.pb.resetBasePositionAndOrientation(body, [10.0 + i, 10.0, 10.0], [0, 0, 0, 1])
        self.pb.performCollisionDetection()

    def _write_joints(self, q: np.ndarray, opening: float | None) -> None:
        for j, v in zip(ARM, q, strict=True):
            self.pb.resetJointState(self.robot, j, float(v), 0.0)
        if opening is not None:
            f = float(np.clip(opening / 2, 0.0, self.grip.finger_max))
            for j in FINGERS:
                self.pb.resetJointState(self.robot, j, f, 0.0)

    def _write_objects(self, poses: np.ndarray) -> None:
        for body, pose in zip(self.blocks, poses, strict=True):
            self.pb.resetBasePositionAndOrientation(body, pose[:3].tolist(), _xyzw(pose[3:]))
            self.pb.resetBaseVelocity(body, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])

    def set_joint_positions(self, q: np.ndarray, gripper: float | None = None) -> None:
        q = np.asarray(q, dtype=float)
        if q.shape != (7,):
            raise SceneError(f"joint positions must be (7,), got {q.shape}")
        self._write_joints(q, gripper)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.pb.getLinkState(self.robot, EE, computeForwardKinematics=True)
        return np.array(s[4]), _wxyz(s[5])

    def object_poses(self) -> np.ndarray:
        out = np.zeros((len(self.blocks), 7))
        for i, body in enumerate(self.blocks):
            pos, quat = self.pb.getBasePositionAndOrientation(body)
            out[i, :3] = pos
            out[i, 3:] = _wxyz(quat)
        return out

    def set_object_poses(self, poses: np.ndarray) -> None:
        self._write_objects(as_object_poses(poses, len(self.object_names)))

    def snapshot(self) -> _Snapshot:
        return _Snapshot(
            self.pb.saveState(),
            self._mode,
            self._command.copy(),
            self._gripper,
            self._tau.copy(),
            self._steps,
        )

    def restore(self, snapshot: _Snapshot) -> None:
        self.pb.restoreState(snapshot.state_id)
        self._mode = snapshot.mode
        self._command = snapshot.command.copy()
        self._tau = snapshot.tau.copy()
        self._steps = snapshot.steps
        self._set_gripper(snapshot.gripper)

    def discard(self, snapshot: _Snapshot) -> None:
        self.pb.removeState(snapshot.state_id)

    # ---- cameras ----------------------------------------------------------------------

    def _view(self, cam: CameraSpec) -> Any:
        pos = np.asarray(cam.pos, float)
        fwd = np.asarray(cam.forward, float)
        up = np.asarray(cam.up, float)
        if cam.body is not None:
            s = self.pb.getLinkState(self.robot, HAND, computeForwardKinematics=True)
            rot = np.array(self.pb.getMatrixFromQuaternion(s[5])).reshape(3, 3)
            pos = np.asarray(s[4]) + rot @ pos
            fwd, up = rot @ fwd, rot @ up
        return self.pb.computeViewMatrix(pos.tolist(), (pos + fwd).tolist(), up.tolist())

    def render(
        self, camera: str = "front", size: int = 64, depth: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if camera not in self.cameras:
            raise SceneError(
                f"no camera {camera!r} in this scene; cameras: {', '.join(self.cameras)}"
            )
        size = int(size)
        if not 16 <= size <= 512:
            raise SceneError(f"image size must be in [16, 512], got {size}")
        cam = CAMERAS[camera]
        _, _, rgba, zbuf, _ = self.pb.getCameraImage(
            size,
            size,
            self._view(cam),
            self._proj[camera],
            renderer=self.pb.ER_TINY_RENDERER,
            flags=self.pb.ER_NO_SEGMENTATION_MASK,
            lightDirection=list(_LIGHT_DIR),
            shadow=0,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[:, :, :3].copy()
        if not depth:
            return rgb
        z = np.asarray(zbuf, dtype=np.float32).reshape(size, size)
        d = cam.far * cam.near / (cam.far - (cam.far - cam.near) * z)
        return rgb, d.astype(np.float32)

    def human_render(self) -> None:
        if not self.cfg.gui:
            raise SceneError("this PyBullet scene has no window; build it with gui=True")

    def close(self) -> None:
        if getattr(self, "pb", None) is not None:
            with contextlib.suppress(pybullet.error):
                self.pb.disconnect()
            self.pb = None  # type: ignore[assignment]
