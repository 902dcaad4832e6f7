"""MuJoCo backend: the robot compiled from its description's URDF, plus our own additions.

:func:`robot_spec` takes the robot's MuJoCo spec from its description (URDF and the
end-effector site, :meth:`reflexarc.robot.description.RobotDescription.mj_spec`) and adds
what the URDF lacks: joint actuators (torque, switched to a joint PD when position
commands are used), the gripper's position servo, the wrist camera and colours. A linkage
gripper (the xArm's) keeps the equality constraints MuJoCo's URDF compiler makes of its
``<mimic>`` joints, and the servo drives its first joint. :func:`scene_spec` adds the
table, the blocks, the fixed cameras and the light, with shadows, reflections and skybox
off so headless EGL rendering is fast.

For controllers: :func:`robot_model` returns the robot alone as an ``MjModel`` whose qpos
is (arm joints, gripper joints) -- the same layout as the start of every scene's qpos --
so ``mj_jacSite(model, data, jacp, jacr, model.site("ee").id)`` and ``mj_rne`` give the
Jacobian and gravity/Coriolis torques of the simulated robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from reflexarc.robot.description import RobotDescription, compile_spec, robot_description
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
    has_display,
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

_COLLISION_GROUP = 3  # hidden when rendering
_STATE = mujoco.mjtState.mjSTATE_INTEGRATION


def _camera_quat(cam: CameraSpec) -> np.ndarray:
    """Quaternion (wxyz) of a MuJoCo camera frame (looks along -z, image up = +y)."""
    x, y = cam.axes()
    mat = np.stack([x, y, np.cross(x, y)], axis=1)  # columns: camera axes in parent frame
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat


def _add_camera(body: Any, cam: CameraSpec) -> None:
    body.add_camera(name=cam.name, pos=list(cam.pos), quat=list(_camera_quat(cam)), fovy=cam.fovy)


def robot_spec(
    robot: RobotDescription, physics_hz: int = 500, meshes: str = "collision"
) -> mujoco.MjSpec:
    """The robot alone: URDF bodies and meshes, actuators, gripper, EE site, wrist camera.

    Actuators: one per arm joint, named as the joint (general, force = gain * ctrl +
    bias; torque mode: gain 1, no bias), then the gripper's position servos, named as
    their joints (ctrl in the joint's unit): every gripper joint, or only the first of a
    linkage whose other joints mimic it.
    """
    grip = scene_gripper(robot)
    spec = robot.mj_spec(meshes)
    spec.option.timestep = 1.0 / physics_hz
    # Semi-implicit Euler, as Bullet: with the same model both integrate the same way
    # (joint paths agree to ~1e-6 rad when the motors do not saturate).
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_EULER
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0

    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0  # compiled in so position mode can switch it on (see below)
        for geom in body.geoms:
            visual = geom.contype == 0 and geom.conaffinity == 0
            if visual:
                geom.rgba = HAND_RGBA if body.name in robot.dark_links else ROBOT_RGBA
                geom.group = 1
            else:
                geom.group = _COLLISION_GROUP
                geom.rgba = (0.5, 0.5, 0.5, 1.0)
                if body.name in robot.no_collision_links:
                    geom.contype = geom.conaffinity = 0
                if body.name in robot.finger_links:
                    geom.friction = (1.0, 0.005, 0.0001)
                    geom.condim = 4
    links = robot.gripper_links
    for i, a in enumerate(links):
        for b in links[i + 1:]:
            spec.add_exclude(bodyname1=a, bodyname2=b)

    for name, limit in zip(robot.arm_joints, robot.tau_max, strict=True):
        # gravity compensation counts as motor torque, clamped with it to the effort limit
        joint = spec.joint(name)
        joint.actgravcomp = True
        joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_TRUE
        joint.actfrcrange = [-limit, limit]
        # the rigid-body model both sims integrate: no joint damping or friction (the
        # xArm's URDF has some; PyBullet's scene turns them off as well)
        joint.damping = np.zeros(3)  # MuJoCo 4: damping coefficients (linear first)
        joint.frictionloss = 0.0
    for name in robot.arm_joints:
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.gainprm[0] = 1.0
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_FALSE  # the joint clamps the total
    lo, hi = np.minimum(grip.q_open, grip.q_closed), np.maximum(grip.q_open, grip.q_closed)
    if grip.mimic:
        # a linkage's joints are light (1e-5 kg m^2 each): its damping goes on the joints,
        # where the Euler step integrates it implicitly (an actuator's explicit damping
        # diverges at a 2 ms step), which also keeps its closing speed near a real one
        for joint in grip.joints:
            spec.joint(joint).damping = np.array([grip.kd, 0.0, 0.0])
    for i in gripper_actuated(robot):
        joint = grip.joints[i]
        act = spec.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.gainprm[0] = grip.kp
        act.biasprm[1] = -grip.kp
        act.biasprm[2] = 0.0 if grip.mimic else -grip.kd
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = [lo[i], hi[i]]
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-grip.force, grip.force]

    for cam in CAMERAS.values():
        cam = robot_camera(cam, robot)
        if cam.body is not None:
            _add_camera(spec.body(cam.body), cam)

    home = spec.add_key(name="home")
    home.qpos = [*robot.home, *grip.q_open]
    home.ctrl = [0.0] * robot.dof + [grip.q_open[i] for i in gripper_actuated(robot)]
    return spec


def gripper_actuated(robot: RobotDescription) -> list[int]:
    """Indices (in ``gripper.joints``) of the gripper joints the MuJoCo scene drives: all,
    or the first of a linkage (the others follow through equality constraints)."""
    grip = scene_gripper(robot)
    return [0] if grip.mimic else list(range(len(grip.joints)))


def panda_spec(physics_hz: int = 500, meshes: str = "collision") -> mujoco.MjSpec:
    """The Panda alone (:func:`robot_spec`)."""
    return robot_spec(robot_description("panda"), physics_hz, meshes)


def scene_spec(cfg: SceneConfig) -> mujoco.MjSpec:
    """The robot on the table with the blocks of ``cfg.objects`` and the fixed cameras."""
    robot = robot_description(cfg.robot)
    spec = robot_spec(robot, cfg.physics_hz, cfg.meshes)
    spec.modelname = f"{robot.name}_table"
    spec.delete(spec.key("home"))  # the scene's qpos is longer; reset() sets the state
    spec.visual.global_.offwidth = 512
    spec.visual.global_.offheight = 512
    spec.visual.quality.shadowsize = 0
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.visual.map.znear = 0.005
    spec.stat.extent = 2.0
    spec.stat.center = [0.4, 0.0, 0.2]

    world = spec.worldbody
    world.add_light(
        name="sun",
        pos=[0.6, 0.0, 2.0],
        dir=[-0.2, 0.0, -1.0],
        castshadow=False,
        diffuse=[0.5, 0.5, 0.5],
        specular=[0.0, 0.0, 0.0],
    )
    # A thin box, not a plane: MuJoCo draws planes as fine grids, 4 ms a frame in software GL.
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[15.0, 15.0, 0.01],
        pos=[0.0, 0.0, FLOOR_Z - 0.01],
        rgba=FLOOR_RGBA,
        contype=0,
        conaffinity=0,
    )
    world.add_geom(
        name="table",
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=list(TABLE_HALF),
        pos=list(TABLE_CENTER),
        rgba=TABLE_RGBA,
        friction=[0.5, 0.005, 0.0001],
    )
    for pose, name in zip(default_object_poses(len(cfg.objects)), cfg.objects, strict=True):
        body = world.add_body(name=name, pos=list(pose[:3]))
        body.add_freejoint(name=f"{name}_joint")
        h = BLOCK_SIZE / 2
        body.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[h, h, h],
            mass=BLOCK_MASS,
            rgba=BLOCK_COLORS[name],
            condim=4,
            friction=[0.5, 0.005, 0.0001],
        )
    for cam in CAMERAS.values():
        if cam.body is None:
            _add_camera(world, cam)
    return spec


def robot_model(
    robot: RobotDescription, physics_hz: int = 500, scene: SceneConfig | None = None
) -> mujoco.MjModel:
    """An ``MjModel`` of ``robot`` alone (or of the scene ``scene`` when given).

    The robot's qpos/qvel are the first entries (arm joints, then the gripper's). The
    end-effector site is the description's ``ee_site`` ("ee"). Arm actuators are in
    torque mode and gravity compensation is off, so ``mj_rne``/``qfrc_bias`` and
    ``mj_jacSite`` describe the plain rigid-body dynamics and kinematics that both
    backends simulate.
    """
    spec = scene_spec(scene) if scene is not None else robot_spec(robot, physics_hz)
    model = compile_spec(spec)
    model.body_gravcomp[:] = 0.0
    return model


def panda_model(physics_hz: int = 500, scene: SceneConfig | None = None) -> mujoco.MjModel:
    """:func:`robot_model` of the Panda (the scene ``scene`` must be the Panda's)."""
    return robot_model(robot_description("panda"), physics_hz, scene)


@dataclass
class _Snapshot:
    state: np.ndarray
    mode: str
    gripper: float


class MuJoCoScene(Scene):
    """The robot scene simulated by MuJoCo (see module docstring)."""

    backend = "mujoco"

    def __init__(self, cfg: SceneConfig) -> None:
        self.cfg = cfg
        self.description = robot_description(cfg.robot)
        self.grip = scene_gripper(self.description)
        self.n = n = self.description.dof
        self.m = len(self.grip.joints)  # gripper joints, after the arm's in qpos
        self._grip_act = np.array(gripper_actuated(self.description)) + n  # their actuators
        self._grip_idx = self._grip_act - n  # ... as indices of the gripper's joints
        self.model = compile_spec(scene_spec(cfg))
        self.data = mujoco.MjData(self.model)
        self.dt = float(self.model.opt.timestep)
        self.joint_names = self.description.arm_joints
        self.object_names = tuple(cfg.objects)
        self.cameras = tuple(cfg.cameras)
        self.ee_site = self.model.site(self.description.ee_site).id
        self._obj_adr = np.array(
            [self.model.jnt_qposadr[self.model.joint(f"{n}_joint").id] for n in cfg.objects], int
        )
        self._obj_dof = np.array(
            [self.model.jnt_dofadr[self.model.joint(f"{n}_joint").id] for n in cfg.objects], int
        )
        self._robot_bodies = np.array(
            [i for i in range(1, self.model.nbody) if self.model.body(i).name not in cfg.objects]
        )
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._viewer: Any = None
        self._mode = ""
        self._gripper = 1.0
        self._state = np.empty(mujoco.mj_stateSize(self.model, _STATE))
        self.reset()

    # ---- commands ---------------------------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        if mode == self._mode:
            return
        m = self.model
        n = self.n
        if mode == "torque":
            m.actuator_gainprm[:n, 0] = 1.0
            m.actuator_biasprm[:n, :3] = 0.0
            m.body_gravcomp[self._robot_bodies] = 0.0
        else:
            m.actuator_gainprm[:n, 0] = self.description.kp_gains
            m.actuator_biasprm[:n, 0] = 0.0
            m.actuator_biasprm[:n, 1] = -self.description.kp_gains
            m.actuator_biasprm[:n, 2] = -self.description.kd_gains
            m.body_gravcomp[self._robot_bodies] = 1.0
        self._mode = mode

    def _set_gripper(self, gripper: float | None) -> None:
        if gripper is not None:
            self._gripper = float(np.clip(gripper, -1.0, 1.0))
        self.data.ctrl[self._grip_act] = self.grip.joint_targets(self._gripper)[self._grip_idx]

    def command_torque(self, tau: np.ndarray, gripper: float | None = None) -> None:
        tau = np.asarray(tau, dtype=float)
        if tau.shape != (self.n,) or not np.all(np.isfinite(tau)):
            raise SceneError(
                f"torque command must be {self.n} finite values, got shape {tau.shape}"
            )
        self._set_mode("torque")
        self.data.ctrl[:self.n] = tau
        self._set_gripper(gripper)

    def command_position(
        self, q: np.ndarray, gripper: float | None = None, dq: np.ndarray | None = None
    ) -> None:
        q = position_setpoint(q, dq, self.description)
        self._set_mode("position")
        self.data.ctrl[:self.n] = q  # the PD's affine bias makes this KP q + KD dq (see scene.py)
        self._set_gripper(gripper)

    # ---- state ------------------------------------------------------------------------

    def joint_state(self) -> JointSample:
        d, n = self.data, self.n
        tau = d.qfrc_actuator[:n].copy()  # PD or torque command + gravity compensation, clamped
        opening = self.grip.opening(d.qpos[n:n + self.m])
        return JointSample(d.qpos[:n].copy(), d.qvel[:n].copy(), tau, opening)

    def step(self, n: int = 1) -> None:
        mujoco.mj_step(self.model, self.data, nstep=int(n))
        # mj_step leaves positions-derived quantities (site poses, actuator forces) at the
        # start of the last step; recompute them for the new state.
        mujoco.mj_forward(self.model, self.data)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset(
        self,
        q: np.ndarray | None = None,
        gripper: float = 1.0,
        object_poses: np.ndarray | None = None,
    ) -> None:
        mujoco.mj_resetData(self.model, self.data)
        q = self.description.home_q if q is None else np.asarray(q, dtype=float)
        k = len(self.object_names)
        poses = default_object_poses(k) if object_poses is None else object_poses
        self._write_objects(as_object_poses(poses, k))
        self.command_position(q, gripper)
        n = self.n
        self.data.qpos[:n] = q
        self.data.qpos[n:n + self.m] = self.grip.joint_targets(self._gripper)
        mujoco.mj_forward(self.model, self.data)

    def _write_objects(self, poses: np.ndarray) -> None:
        for adr, dof, pose in zip(self._obj_adr, self._obj_dof, poses, strict=True):
            self.data.qpos[adr : adr + 7] = pose
            self.data.qvel[dof : dof + 6] = 0.0

    def set_joint_positions(self, q: np.ndarray, gripper: float | None = None) -> None:
        q = np.asarray(q, dtype=float)
        n = self.n
        if q.shape != (n,):
            raise SceneError(f"joint positions must be ({n},), got {q.shape}")
        self.data.qpos[:n] = q
        self.data.qvel[:n + self.m] = 0.0
        if gripper is not None:
            self.data.qpos[n:n + self.m] = self.grip.joint_positions(gripper)
        mujoco.mj_forward(self.model, self.data)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pos = self.data.site_xpos[self.ee_site].copy()
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self.ee_site])
        return pos, quat

    def object_poses(self) -> np.ndarray:
        return np.array([self.data.qpos[a : a + 7] for a in self._obj_adr]).reshape(-1, 7)

    def set_object_poses(self, poses: np.ndarray) -> None:
        self._write_objects(as_object_poses(poses, len(self.object_names)))
        mujoco.mj_forward(self.model, self.data)

    def snapshot(self) -> _Snapshot:
        mujoco.mj_getState(self.model, self.data, self._state, _STATE)
        return _Snapshot(self._state.copy(), self._mode, self._gripper)

    def restore(self, snapshot: _Snapshot) -> None:
        self._set_mode(snapshot.mode)
        self._gripper = snapshot.gripper
        mujoco.mj_setState(self.model, self.data, snapshot.state, _STATE)
        mujoco.mj_forward(self.model, self.data)

    # ---- cameras ----------------------------------------------------------------------

    def _renderer(self, size: int) -> mujoco.Renderer:
        r = self._renderers.get(size)
        if r is None:
            if not 16 <= size <= 512:
                raise SceneError(f"image size must be in [16, 512], got {size}")
            try:
                r = mujoco.Renderer(self.model, size, size)
            except mujoco.FatalError as e:
                raise SceneError(
                    f"MuJoCo cannot render ({e}); headless, set MUJOCO_GL=egl before mujoco "
                    "is imported (importing sim first does it)"
                ) from e
            flags = r.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
            self._renderers[size] = r
        return r

    def render(
        self, camera: str = "front", size: int = 64, depth: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if camera not in self.cameras:
            raise SceneError(
                f"no camera {camera!r} in this scene; cameras: {', '.join(self.cameras)}"
            )
        r = self._renderer(int(size))
        r.update_scene(self.data, camera=camera)
        rgb = r.render().copy()
        if not depth:
            return rgb
        r.enable_depth_rendering()
        try:
            d = r.render().astype(np.float32)
        finally:
            r.disable_depth_rendering()
        return rgb, d

    def human_render(self) -> None:
        if self._viewer is None:
            if not has_display():
                raise SceneError("render_mode='human' needs a display (DISPLAY is not set)")
            import mujoco.viewer

            self._viewer = mujoco.viewer.launch_passive(self.model, self.data)
        self._viewer.sync()

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
