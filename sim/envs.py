"""gymnasium environments: the Panda tasks with an end-effector action space.

``gymnasium.make("reflexarc/PandaPush-v0", backend="pybullet", image_size=64)``.

Action (4,): end-effector displacement (dx, dy, dz) in metres, within +-``max_delta``,
and the gripper in [-1 close, 1 open]. A built-in joint controller tracks it
(:class:`reflexarc.sim.ee_control.EETracker`, shared with the graph's sim node): the
commanded hand position moves by the displacement (kept within 3 cm of the measured
hand, and inside the workspace box), damped least squares IK turns it into joint
positions with the hand pointing down, and the joint command ramps there linearly over
the control period (with its velocity as feedforward), tracked by the scene's joint PD
with gravity compensation. At full speed the hand lags its command by about 5 mm.

Observation: {"image": (H, W, 3) uint8 from ``camera``, "proprio": (11,) float32 = ee
position (3), gripper opening (1), joint positions (7), "goal_image": (H, W, 3) uint8}.
Info: "is_success", "distance", privileged "ee_pos" (3,), "object_pos" (k, 3),
"object_quat" (k, 4) in "object_names" order, "target" (3,), "gripper" (m).
Reward: 1.0 on success, else 0.0.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.sim.assets import CAMERAS, SceneError, has_display
from reflexarc.sim.ee_control import EETracker
from reflexarc.sim.scene import Scene, SceneConfig
from reflexarc.sim.scenes import make_scene
from reflexarc.sim.tasks import TASKS, make_task

PROPRIO_DIM = 11
# ee position (within the arm's reach), gripper opening, joint positions (limits + margin)
PROPRIO_LOW = np.array([-1.3, -1.3, -0.5, -0.01, *(PANDA.q_lo - 0.1)], dtype=np.float32)
PROPRIO_HIGH = np.array([1.3, 1.3, 1.5, 0.1, *(PANDA.q_hi + 0.1)], dtype=np.float32)
_DEFAULT_OBJECTS = {"reach": ["red"], "push": ["red"], "pick_place": ["red"]}


class PandaEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A Panda task as a gymnasium environment (see module docstring).

    Args:
        task: "reach" | "push" | "pick_place".
        backend: "mujoco" | "pybullet".
        image_size: side of the square observation images, 16-512 px.
        camera: camera of the "image" observation and of ``render()``: "front" | "wrist".
        objects: block colours (the first is the task's block); default ["red"].
        control_hz: env steps per simulated second; physics_hz must be a multiple.
        physics_hz: physics steps per second, 500-1000.
        max_delta: largest end-effector displacement per step, m.
        render_mode: None, "rgb_array" or "human" (needs a display).
        render_size: side of ``render()`` frames; default ``image_size``.
        terminate_on_success: end the episode (terminated=True) on success.
    """

    @property
    def metadata(self) -> dict[str, Any]:  # type: ignore[override]
        """Render modes: "human" is listed only where a window can open.

        A property (not a class dict) so ``gymnasium.make(render_mode="human")`` reaches
        this class and its clear error on a headless machine, instead of wrapping the env
        in gymnasium's pygame-based HumanRendering.
        """
        modes = ["rgb_array", "human"] if has_display() else ["rgb_array"]
        return {"render_modes": modes, "render_fps": getattr(self, "_fps", 10)}

    def __init__(
        self,
        task: str = "push",
        backend: str = "mujoco",
        image_size: int = 64,
        camera: str = "front",
        objects: list[str] | None = None,
        control_hz: int = 10,
        physics_hz: int = 500,
        max_delta: float = 0.05,
        render_mode: str | None = None,
        render_size: int | None = None,
        terminate_on_success: bool = False,
    ) -> None:
        if task not in TASKS:
            raise SceneError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        if render_mode not in (None, "rgb_array", "human"):
            raise SceneError(
                f"render_mode must be None, 'rgb_array' or 'human', got {render_mode!r}"
            )
        if render_mode == "human" and not has_display():
            raise SceneError(
                "render_mode='human' opens a window and needs a display (DISPLAY is not set); "
                "use render_mode='rgb_array' headless"
            )
        if control_hz <= 0 or physics_hz % control_hz != 0:
            raise SceneError(
                f"physics_hz ({physics_hz}) must be a multiple of control_hz ({control_hz})"
            )
        if not 0.0 < max_delta <= 0.2:
            raise SceneError(f"max_delta must be in (0, 0.2] m, got {max_delta}")
        if not 16 <= image_size <= 512:
            raise SceneError(f"image_size must be in [16, 512], got {image_size}")
        if camera not in CAMERAS:
            raise SceneError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
        cameras = ["front", "wrist"] if camera == "wrist" else ["front"]
        cfg = SceneConfig(
            backend=backend,
            objects=list(objects) if objects is not None else list(_DEFAULT_OBJECTS[task]),
            cameras=cameras,
            physics_hz=physics_hz,
            gui=render_mode == "human" and backend == "pybullet",
        )
        self.scene: Scene = make_scene(cfg)
        self.kin = ArmKinematics()
        self.task = make_task(task, self.kin)
        self.camera = camera
        self.image_size = int(image_size)
        self.render_size = int(render_size or image_size)
        self.render_mode = render_mode
        self.terminate_on_success = terminate_on_success
        self.max_delta = float(max_delta)
        self.substeps = physics_hz // control_hz
        self.chunks = next(c for c in (10, 5, 4, 2, 1) if self.substeps % c == 0)
        self._fps = control_hz

        img = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(
            {
                "image": img,
                "proprio": spaces.Box(PROPRIO_LOW, PROPRIO_HIGH, dtype=np.float32),
                "goal_image": img,
            }
        )
        high = np.array([self.max_delta] * 3 + [1.0], dtype=np.float32)
        self.action_space = spaces.Box(-high, high, dtype=np.float32)
        self.tracker = EETracker(self.kin, self.max_delta, self.substeps * self.scene.dt)
        self.tracker.reset(self.task.init_q)
        self._goal_image = np.zeros((self.image_size, self.image_size, 3), np.uint8)

    # ---- gymnasium API ---------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.task.reset(self.scene, self.np_random)
        self.tracker.reset(self.task.init_q)
        self._goal_image = self.task.goal_image(self.scene, self.camera, self.image_size)
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        # the built-in joint controller (reflexarc.sim.ee_control): IK toward the commanded hand
        # position + delta, then a joint ramp over the control period in `chunks` pieces
        ee, _ = self.scene.ee_pose()
        self.tracker.act(action, ee)
        per_chunk = self.substeps // self.chunks
        for k in range(1, self.chunks + 1):
            q_k, velocity = self.tracker.setpoint(k / self.chunks)
            self.scene.command_position(q_k, self.tracker.gripper, velocity)
            self.scene.step(per_chunk)
        info = self._info()
        success = info["is_success"]
        if self.render_mode == "human":
            self.scene.human_render()
        return self._obs(), float(success), bool(success and self.terminate_on_success), False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self.scene.render(self.camera, self.render_size)  # type: ignore[return-value]
        if self.render_mode == "human":
            self.scene.human_render()
        return None

    def close(self) -> None:
        self.scene.close()

    # ---- observations ------------------------------------------------------------------

    def _obs(self) -> dict[str, np.ndarray]:
        js = self.scene.joint_state()
        ee, _ = self.scene.ee_pose()
        proprio = np.concatenate([ee, [js.gripper], js.q]).astype(np.float32)
        image = self.scene.render(self.camera, self.image_size)
        return {"image": image, "proprio": proprio, "goal_image": self._goal_image.copy()}

    def _info(self) -> dict[str, Any]:
        ee, _ = self.scene.ee_pose()
        objects = self.scene.object_poses()
        pos = objects[:, :3]
        return {
            "is_success": self.task.success(ee, pos),
            "distance": self.task.distance(ee, pos),
            "ee_pos": ee,
            "object_pos": pos.copy(),
            "object_quat": objects[:, 3:].copy(),
            "object_names": self.scene.object_names,
            "target": self.task.target.copy(),
            "gripper": self.scene.joint_state().gripper,
        }
