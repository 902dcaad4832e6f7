"""PyBullet backend: the same robot URDF, table, blocks and cameras as the MuJoCo scene.

The arm is torque controlled in both modes (PyBullet's own velocity motors are switched
off): torque mode applies the caller's torques; position mode applies the same joint PD
plus gravity compensation as the MuJoCo scene (``calculateInverseDynamics`` at zero
velocity and acceleration), recomputed every physics step. Link damping is zeroed and
inertias are read from the URDF, so both simulators integrate the same rigid-body model.
Links and joints are found by their names in the robot's description. PyBullet ignores
the URDF's ``<mimic>`` elements: every joint of a linkage gripper (the xArm's) gets its
own position motor, with the target its drive joint's target implies.
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

from reflexarc.robot.description import robot_description
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
    robot_camera,
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
    """The robot scene simulated by PyBullet (see module docstring)."""

    backend = "pybullet"

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self.dt = 1.0 / cfg.physics_hz
        self.description = robot_description(cfg.robot)
        self.grip = scene_gripper(self.description)
        self.n = self.description.dof
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
        self._tau = np.zeros(self.n)
        self._steps = 0
        self._zeros = [0.0] * len(self.robot_joints)
        self._proj = {
            name: pb.computeProjectionMatrixFOV(cam.fovy, 1.0, cam.near, cam.far)
            for name, cam in CAMERAS.items()
        }
        self._cams = {name: robot_camera(cam, self.description) for name, cam in CAMERAS.items()}
        self._clean = pb.saveState()
        self.reset()

    def _load_robot(self) -> int:
        pb, robot_d = self.pb, self.description
        fd, path = tempfile.mkstemp(suffix=".urdf", prefix=f"{robot_d.name}_")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(robot_d.urdf_text(self.cfg.meshes))
            flags = pb.URDF_USE_INERTIA_FROM_FILE | pb.URDF_ENABLE_CACHED_GRAPHICS_SHAPES
            # quiet: the xArm's URDF gives link2 and link3 inertia tensors that break the
            # triangle inequality, which PyBullet zeroes with a printed warning (MuJoCo's
            # compiler balances them: docs/robots.md, "The xArm6")
            with _quiet_stdout():
                robot = pb.loadURDF(path, [0, 0, 0], useFixedBase=True, flags=flags)
        finally:
            os.unlink(path)
        # PyBullet's link index of every link name (-1: the base), and of every joint name
        count = pb.getNumJoints(robot)
        infos = [pb.getJointInfo(robot, j) for j in range(count)]
        link = {pb.getBodyInfo(robot)[0].decode(): -1}
        link.update({info[12].decode(): j for j, info in enumerate(infos)})
        joint = {info[1].decode(): j for j, info in enumerate(infos)}
        missing = [n for n in (*robot_d.arm_joints, *self.grip.joints) if n not in joint]
        if missing:
            raise SceneError(f"the {robot_d.name} URDF has no joints {missing}")
        self.arm = [joint[n] for n in robot_d.arm_joints]
        self.fingers = [joint[n] for n in self.grip.joints]
        self.robot_joints = self.arm + self.fingers  # in MuJoCo's qpos order
        self.hand = link[robot_d.hand_link]
        self.ee = link[robot_d.ee_link]
        self.ee_offset = np.asarray(robot_d.ee_offset, dtype=float)
        dark = {link[n] for n in robot_d.dark_links}
        for i in range(-1, count):
            pb.changeDynamics(robot, i, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0)
            pb.changeVisualShape(robot, i, rgbaColor=HAND_RGBA if i in dark else ROBOT_RGBA)
        for name in robot_d.no_collision_links:
            pb.setCollisionFilterGroupMask(robot, link[name], 0, 0)
        for name in robot_d.finger_links:
            pb.changeDynamics(robot, link[name], lateralFriction=1.0, spinningFriction=0.005)
        grip_links = [link[n] for n in robot_d.gripper_links]
        for i, a in enumerate(grip_links):
            for b in grip_links[i + 1:]:
                pb.setCollisionFilterPair(robot, robot, a, b, 0)
        # PyBullet drives every joint with a velocity motor by default: switch the arm's off.
        pb.setJointMotorControlArray(robot, self.arm, pb.VELOCITY_CONTROL, forces=[0.0] * self.n)
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
        k = len(self.fingers)
        self.pb.setJointMotorControlArray(
            self.robot,
            self.fingers,
            self.pb.POSITION_CONTROL,
            targetPositions=self.grip.joint_targets(self._gripper).tolist(),
            forces=[self.grip.force] * k,
            positionGains=[0.05] * k,
        )

    def command_torque(self, tau: np.ndarray, gripper: float | None = None) -> None:
        tau = np.asarray(tau, dtype=float)
        if tau.shape != (self.n,) or not np.all(np.isfinite(tau)):
            raise SceneError(
                f"torque command must be {self.n} finite values, got shape {tau.shape}"
            )
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
        states = self.pb.getJointStates(self.robot, self.robot_joints)
        q = np.array([s[0] for s in states])
        dq = np.array([s[1] for s in states])
        return q, dq  # (n + m,), (n + m,): arm, then gripper

    def joint_state(self) -> JointSample:
        q, dq = self._robot_state()
        n = self.n
        return JointSample(q[:n], dq[:n], self._tau.copy(), self.grip.opening(q[n:]))

    def step(self, n: int = 1) -> None:
        pb = self.pb
        for _ in range(int(n)):
            if self._mode == "position":
                q, dq = self._robot_state()
                g = pb.calculateInverseDynamics(self.robot, q.tolist(), self._zeros, self._zeros)
                n = self.n
                tau = self._kp * (self._command - q[:n]) - self._kd * dq[:n] + np.asarray(g[:n])
            else:
                tau = self._command
            self._tau = np.clip(tau, -self._tau_max, self._tau_max)
            pb.setJointMotorControlArray(
                self.robot, self.arm, pb.TORQUE_CONTROL, forces=self._tau.tolist()
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
        self._write_joints(q, self.grip.opening_for(self._gripper))
        self._tau = np.zeros(self.n)
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
        for j, v in zip(self.arm, q, strict=True):
            self.pb.resetJointState(self.robot, j, float(v), 0.0)
        if opening is not None:
            for j, v in zip(self.fingers, self.grip.joint_positions(opening), strict=True):
                self.pb.resetJointState(self.robot, j, float(v), 0.0)

    def _write_objects(self, poses: np.ndarray) -> None:
        for body, pose in zip(self.blocks, poses, strict=True):
            self.pb.resetBasePositionAndOrientation(body, pose[:3].tolist(), _xyzw(pose[3:]))
            self.pb.resetBaseVelocity(body, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])

    def set_joint_positions(self, q: np.ndarray, gripper: float | None = None) -> None:
        q = np.asarray(q, dtype=float)
        if q.shape != (self.n,):
            raise SceneError(f"joint positions must be ({self.n},), got {q.shape}")
        self._write_joints(q, gripper)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.pb.getLinkState(self.robot, self.ee, computeForwardKinematics=True)
        pos = np.array(s[4])
        if self.ee_offset.any():  # the tool-centre point beyond the link
            rot = np.array(self.pb.getMatrixFromQuaternion(s[5])).reshape(3, 3)
            pos = pos + rot @ self.ee_offset
        return pos, _wxyz(s[5])

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
            s = self.pb.getLinkState(self.robot, self.hand, computeForwardKinematics=True)
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
        cam = self._cams[camera]
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
