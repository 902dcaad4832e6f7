"""What the stack knows about one arm: a typed, frozen :class:`RobotDescription`.

One module per robot holds its facts (:mod:`reflexarc.robot.panda`); every package reads
them from there -- the sims build their models from it, the controller and the safety
layer size themselves and take their limits from it, the planner its workspace and hand
orientation -- so no robot constant is copied anywhere else. Descriptions are found by
name (``robot: panda`` in a node's config) through :func:`robot_description`.

Conventions (docs/robots.md): world frame = the robot's base frame, x forward,
y left, z up, metres; joint vectors are ordered as :attr:`RobotDescription.arm_joints`.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reflexarc.runtime.errors import ConfigError, ReflexarcError

if TYPE_CHECKING:
    import mujoco


class RobotError(ReflexarcError):
    """A robot description is inconsistent, or its model files cannot be found."""


@dataclass(frozen=True)
class Gripper:
    """A two-finger gripper whose joints all move with one command.

    Two kinds, both read the same way: every joint's position is linear in the opening,
    from ``closed_q`` (opening 0) to ``open_q`` (opening ``max_opening``):

    - prismatic fingers (the Panda): ``joints`` are the two fingers, each travelling
      ``finger_max`` m (the defaults: ``open_q`` = ``finger_max``, ``closed_q`` = 0);
    - a linkage (the xArm gripper): ``joints[0]`` drives and the others follow it as the
      URDF's ``<mimic>`` elements say (``mimic=True``); ``open_q`` / ``closed_q`` are the
      joints' angles (rad) when open and closed, ``finger_max`` half the opening between
      the finger pads (m) when open.

    ``force`` is the effort limit of one joint (N or N m); ``kp`` and ``kd`` the gains of
    the MuJoCo scene's position servo on the actuated joints (N/m or N m/rad, and per
    m/s or rad/s). Gripper commands are in [-1 closed, 1 open].
    """

    joints: tuple[str, ...]
    finger_max: float  # m
    force: float  # N (prismatic) or N m (revolute), one joint
    open_q: tuple[float, ...] | None = None  # default: finger_max on every joint
    closed_q: tuple[float, ...] | None = None  # default: 0 on every joint
    mimic: bool = False  # joints[1:] follow joints[0] (a linkage)
    kp: float = 1000.0
    kd: float = 20.0

    def __post_init__(self) -> None:
        m = len(self.joints)
        for key in ("open_q", "closed_q"):
            v = getattr(self, key)
            if v is not None and (len(v) != m or not np.all(np.isfinite(v))):
                raise RobotError(f"gripper {key} needs {m} finite values (one per gripper "
                                 f"joint), got {v}")
        if m < 1 or not self.finger_max > 0 or not self.force > 0:
            raise RobotError("a gripper needs joints, finger_max > 0 and force > 0")
        if np.any(self.q_open == self.q_closed):
            raise RobotError(f"gripper open_q {self.open_q} and closed_q {self.closed_q} must "
                             "differ on every joint")

    @property
    def q_open(self) -> np.ndarray:
        """Joint positions (m,) when fully open."""
        m = len(self.joints)
        return np.full(m, self.finger_max) if self.open_q is None else np.array(self.open_q)

    @property
    def q_closed(self) -> np.ndarray:
        """Joint positions (m,) when closed."""
        return np.zeros(len(self.joints)) if self.closed_q is None else np.array(self.closed_q)

    @property
    def max_opening(self) -> float:
        """Full opening between the fingers, m."""
        return 2.0 * self.finger_max

    def joint_positions(self, opening: float) -> np.ndarray:
        """The gripper joints' positions (m,) at an opening (m, clipped to the range)."""
        s = float(np.clip(opening / self.max_opening, 0.0, 1.0))
        closed = self.q_closed
        return closed + s * (self.q_open - closed)

    def joint_targets(self, command: float) -> np.ndarray:
        """The gripper joints' position targets (m,) for a command in [-1 close, 1 open]."""
        return self.joint_positions(self.opening_for(command))

    def opening_for(self, command: float) -> float:
        """The opening (m) a command in [-1 close, 1 open] asks for."""
        return float(np.clip(0.5 * (command + 1.0), 0.0, 1.0) * self.max_opening)

    def opening(self, q: np.ndarray) -> float:
        """The opening (m) at measured gripper joint positions ``q`` (m,): the mean share
        of every joint's travel (the Panda: the sum of the two fingers)."""
        closed = self.q_closed
        share = (np.asarray(q, dtype=float) - closed) / (self.q_open - closed)
        return float(np.mean(share) * self.max_opening)

    def finger_target(self, command: float) -> float:
        """Half the opening (m) a command in [-1 close, 1 open] asks for: one prismatic
        finger's position."""
        return 0.5 * self.opening_for(command)

    def command(self, opening: float) -> float:
        """The command in [-1, 1] that holds a measured ``opening`` (m, both fingers)."""
        return float(np.clip(opening / self.finger_max - 1.0, -1.0, 1.0))


@dataclass(frozen=True)
class RobotDescription:
    """One arm: its model, joints, limits, gains, home pose, workspace and end effector.

    Every per-joint field has one value per arm joint (``dof`` of them); the arrays are
    read through the properties below (fresh numpy copies, so no caller can change the
    description). The model is a URDF (``urdf``: an absolute path, or relative to
    ``pybullet_data.getDataPath()``), compiled by MuJoCo for kinematics and dynamics and
    loaded by PyBullet as is; nothing is downloaded.
    """

    name: str
    urdf: str  # absolute, or inside pybullet_data, e.g. "franka_panda/panda.urdf"
    arm_joints: tuple[str, ...]
    ee_link: str  # the link the end-effector frame is fixed to
    hand_link: str  # the last link before the gripper (the wrist camera rides on it)
    home: tuple[float, ...]  # rad: the start and rest pose
    q_min: tuple[float, ...]  # rad
    q_max: tuple[float, ...]  # rad
    dq_max: tuple[float, ...]  # rad/s
    ddq_max: tuple[float, ...]  # rad/s^2
    tau_max: tuple[float, ...]  # N m
    dtau_max: float  # N m/s, every joint
    kp: tuple[float, ...]  # N m/rad: joint PD of the scenes' position mode
    kd: tuple[float, ...]  # N m s/rad
    workspace: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]  # EE box
    # the tasks' table area (x, y) m: targets lie in it, blocks spawn 5 cm inside it
    table_area: tuple[tuple[float, float], tuple[float, float]] = ((0.35, 0.65), (-0.25, 0.25))
    gripper: Gripper | None = None
    # Cartesian limits of the end effector: speed m/s, acceleration m/s^2, angular speed rad/s
    ee_speed_max: float = float("inf")
    ee_accel_max: float = float("inf")
    ee_rot_speed_max: float = float("inf")
    ee_site: str = "ee"  # the MuJoCo site added on ee_link: the end-effector frame
    # orientation (wxyz) of the end-effector frame with the hand pointing down
    ee_down: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 0.0)
    # folder swap that draws the simpler collision meshes instead of the visual ones
    collision_meshes: tuple[str, str] | None = None
    # the end-effector frame's origin in ee_link's frame, m: a tool-centre point beyond the
    # link (the xArm's fingertips), where the site ``ee_site`` sits
    ee_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # the scenes' roles of links (URDF link names): drawn dark; the hand and every gripper
    # link (no contacts among them); the fingers (the frictional pads); links that never
    # reach the table or the blocks (no contacts at all: a large saving in both sims)
    dark_links: tuple[str, ...] = ()
    gripper_links: tuple[str, ...] = ()
    finger_links: tuple[str, ...] = ()
    no_collision_links: tuple[str, ...] = ()
    # the wrist camera's position in ``hand_link``'s frame, m (it looks along the link's z)
    wrist_camera: tuple[float, float, float] = (0.06, 0.0, 0.02)

    def __post_init__(self) -> None:
        n = len(self.arm_joints)
        if n < 1:
            raise RobotError(f"robot {self.name!r}: no arm joints")
        for key in ("home", "q_min", "q_max", "dq_max", "ddq_max", "tau_max", "kp", "kd"):
            v = np.asarray(getattr(self, key), dtype=float)
            if v.shape != (n,) or not np.all(np.isfinite(v)):
                raise RobotError(f"robot {self.name!r}: {key} needs {n} finite values "
                                 f"(one per arm joint), got {getattr(self, key)}")
        if not np.all(self.q_lo < self.q_hi):
            raise RobotError(f"robot {self.name!r}: q_min must be below q_max on every joint")
        if not np.all((self.q_lo <= self.home_q) & (self.home_q <= self.q_hi)):
            raise RobotError(f"robot {self.name!r}: home {self.home} is outside the joint limits")
        for key in ("dq_max", "ddq_max", "tau_max"):
            if np.any(np.asarray(getattr(self, key)) <= 0):
                raise RobotError(f"robot {self.name!r}: {key} must be > 0")
        ws = np.asarray(self.workspace, dtype=float)
        if ws.shape != (3, 2) or not np.all(ws[:, 0] < ws[:, 1]):
            raise RobotError(f"robot {self.name!r}: workspace is 3 (low, high) pairs, low < high")
        area = np.asarray(self.table_area, dtype=float)
        if area.shape != (2, 2) or not np.all(area[:, 1] - area[:, 0] > 0.1):
            raise RobotError(f"robot {self.name!r}: table_area is 2 (low, high) pairs (x, y), "
                             "each at least 0.1 m wide")
        if len(self.ee_offset) != 3 or not np.all(np.isfinite(self.ee_offset)):
            raise RobotError(f"robot {self.name!r}: ee_offset is 3 finite values (m)")
        if abs(float(np.linalg.norm(self.ee_down)) - 1.0) > 1e-6:
            raise RobotError(f"robot {self.name!r}: ee_down must be a unit quaternion")

    # -- arrays ----------------------------------------------------------------------------

    @property
    def dof(self) -> int:
        """Number of arm joints (the gripper not counted)."""
        return len(self.arm_joints)

    @property
    def home_q(self) -> np.ndarray:
        """Home pose (dof,) rad."""
        return np.array(self.home, dtype=float)

    @property
    def q_lo(self) -> np.ndarray:
        return np.array(self.q_min, dtype=float)

    @property
    def q_hi(self) -> np.ndarray:
        return np.array(self.q_max, dtype=float)

    @property
    def q_limits(self) -> np.ndarray:
        """Joint position limits (dof, 2) rad: (min, max) per joint."""
        return np.stack([self.q_lo, self.q_hi], axis=1)

    @property
    def dq_limits(self) -> np.ndarray:
        return np.array(self.dq_max, dtype=float)

    @property
    def ddq_limits(self) -> np.ndarray:
        return np.array(self.ddq_max, dtype=float)

    @property
    def tau_limits(self) -> np.ndarray:
        return np.array(self.tau_max, dtype=float)

    @property
    def kp_gains(self) -> np.ndarray:
        return np.array(self.kp, dtype=float)

    @property
    def kd_gains(self) -> np.ndarray:
        return np.array(self.kd, dtype=float)

    @property
    def workspace_box(self) -> np.ndarray:
        """End-effector workspace (3, 2) m: (low, high) for x, y, z."""
        return np.array(self.workspace, dtype=float)

    @property
    def table_box(self) -> np.ndarray:
        """The tasks' table area (2, 2) m: (low, high) for x, y."""
        return np.array(self.table_area, dtype=float)

    @property
    def ee_down_quat(self) -> np.ndarray:
        """Hand-down orientation (4,) wxyz."""
        return np.array(self.ee_down, dtype=float)

    @property
    def ee_down_rot(self) -> np.ndarray:
        """Hand-down orientation as a rotation matrix (3, 3)."""
        w, x, y, z = self.ee_down
        return np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ])

    @property
    def finger_max(self) -> float:
        """Half the gripper's full opening, m (0 without a gripper)."""
        return self.gripper.finger_max if self.gripper is not None else 0.0

    # -- model -----------------------------------------------------------------------------

    def urdf_path(self) -> Path:
        """The URDF file: ``urdf`` itself when absolute (a user's own arm), else inside the
        installed pybullet_data."""
        if Path(self.urdf).is_absolute():
            path = Path(self.urdf)
            if not path.is_file():
                raise RobotError(f"robot {self.name!r}: no URDF at {path}")
            return path
        try:
            import pybullet_data
        except ImportError as e:  # pragma: no cover - pybullet is a dependency
            raise RobotError("pybullet_data is not installed; `pip install pybullet`") from e
        path = Path(pybullet_data.getDataPath()) / self.urdf
        if not path.is_file():
            raise RobotError(f"robot {self.name!r}: no URDF at {path} (is the pybullet wheel "
                             "complete?)")
        return path

    def urdf_text(self, meshes: str = "collision", mujoco_compiler: bool = False) -> str:
        """The URDF text with absolute mesh paths.

        Args:
            meshes: "visual" keeps the detailed visual meshes; "collision" draws the
                collision meshes instead where the robot has them (far fewer triangles:
                software rendering is much faster and looks the same at 64-224 px).
            mujoco_compiler: insert a ``<mujoco><compiler .../></mujoco>`` element so
                MuJoCo keeps the visual geoms and every link as a body.
        """
        if meshes not in ("visual", "collision"):
            raise RobotError(f"meshes must be 'visual' or 'collision', got {meshes!r}")
        root = self.urdf_path().parent
        text = self.urdf_path().read_text()
        text = text.replace("package://", f"{root.as_posix()}/")
        if meshes == "collision" and self.collision_meshes is not None:
            text = text.replace(*self.collision_meshes)
        if mujoco_compiler:
            compiler = (
                '<mujoco><compiler strippath="false" discardvisual="false" '
                'fusestatic="false" balanceinertia="true" angle="radian"/></mujoco>'
            )
            text = re.sub(r"(<robot[^>]*>)", r"\1" + compiler, text, count=1)
        return text

    def mj_spec(self, meshes: str = "collision") -> mujoco.MjSpec:
        """The robot alone as a MuJoCo spec: the URDF's bodies, joints and meshes plus the
        end-effector site ``ee_site`` on ``ee_link``. Scenes add actuators, colours and
        cameras to it; :class:`reflexarc.robot.kinematics.ArmKinematics` compiles it."""
        import mujoco

        spec = mujoco.MjSpec.from_string(self.urdf_text(meshes, mujoco_compiler=True))
        spec.modelname = self.name
        spec.body(self.ee_link).add_site(name=self.ee_site, pos=list(self.ee_offset),
                                         size=[0.005, 0.005, 0.005], group=4)
        return spec

    def mj_model(self) -> mujoco.MjModel:
        """:meth:`mj_spec` compiled: qpos is the arm joints, then the fingers."""
        return compile_spec(self.mj_spec())


def compile_spec(spec: mujoco.MjSpec) -> mujoco.MjModel:
    """Compile ``spec``, without the warning the URDF meshes' texture coordinates raise."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*texture coordinate.*")
        return spec.compile()


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

_ROBOTS: dict[str, RobotDescription] = {}
#: Robots shipped with the package: ``reflexarc.robot.<name>`` defines ``DESCRIPTION``.
BUILTIN: tuple[str, ...] = ("panda", "xarm6")


def register(description: RobotDescription) -> RobotDescription:
    """Make ``description`` findable by its name (a later one of the same name replaces it)."""
    _ROBOTS[description.name] = description
    return description


def robot_names() -> list[str]:
    """Names :func:`robot_description` accepts."""
    return sorted(set(BUILTIN) | set(_ROBOTS))


def robot_description(name: str, key: str = "robot") -> RobotDescription:
    """The description registered as ``name``; a shipped robot is imported on first use.

    ``name`` may also be ``"package.module:NAME"``, a description in a user's own package
    (imported in whichever process asks: every node of a graph finds it the same way).
    Raises :class:`ConfigError` on ``key`` for an unknown name, listing the known ones.
    """
    if name not in _ROBOTS and ":" in name:
        from reflexarc.runtime.targets import import_object

        def error(message: str) -> ConfigError:
            return ConfigError(key, message)

        found = import_object(name, error, "robot description")
        if not isinstance(found, RobotDescription):
            raise ConfigError(key, f"{name!r} is a {type(found).__name__}, not a "
                              "RobotDescription")
        _ROBOTS[name] = found
    if name not in _ROBOTS and name in BUILTIN:
        module = importlib.import_module(f"reflexarc.robot.{name}")
        register(module.DESCRIPTION)
    if name not in _ROBOTS:
        raise ConfigError(key, f"unknown robot {name!r}; known: {', '.join(robot_names())}")
    return _ROBOTS[name]
