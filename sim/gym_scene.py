"""Any gymnasium environment with Box observation and action spaces, as a Scene.

The graph can then run a stock environment (gymnasium's MuJoCo suite, a user's env)
exactly like the Panda scenes:

- ``joint_state().q`` is the latest observation (flattened, float64), ``dq`` zeros,
  ``tau`` the action last applied, ``gripper`` 0;
- ``command_torque(action)`` (or ``apply("torque", ..., effort=action, ...)``) sets the
  action held for the following env steps, clipped to the action space;
- ``step(n)`` takes ``n`` env steps (``dt`` is the env's step time); an episode that
  terminates or truncates is reset with the next seed, and counted in ``episodes``;
- ``render("front", size)`` is ``env.render()`` (render_mode "rgb_array"), centre
  cropped to a square and resized to ``size``.
- ``snapshot``/``restore`` work for MuJoCo-based envs (``env.unwrapped.model/data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from reflexarc.sim.assets import SceneError
from reflexarc.sim.scene import JointSample, Scene


@dataclass
class _Snapshot:
    state: np.ndarray
    obs: np.ndarray
    action: np.ndarray
    steps: int


class GymScene(Scene):
    """A gymnasium env as a Scene (see module docstring).

    Args:
        env: an env made with ``render_mode="rgb_array"``, Box observation and action
            spaces. The scene owns it and closes it.
        seed: seed of the first reset; each later reset uses the next integer.
        camera: the name its single camera is published under.
    """

    backend = "gym"

    def __init__(self, env: gym.Env, seed: int = 0, camera: str = "front") -> None:
        if not isinstance(env.observation_space, spaces.Box):
            raise SceneError(f"GymScene needs a Box observation space, got {env.observation_space}")
        if not isinstance(env.action_space, spaces.Box):
            raise SceneError(f"GymScene needs a Box action space, got {env.action_space}")
        if env.render_mode != "rgb_array":
            raise SceneError(
                f"GymScene renders camera frames with env.render(); make the env with "
                f"render_mode='rgb_array' (got {env.render_mode!r})"
            )
        self.env = env
        self.seed = int(seed)
        self.cameras = (camera,)
        self.object_names = ()
        act = env.action_space
        self._low = act.low.astype(np.float64).reshape(-1)
        self._high = act.high.astype(np.float64).reshape(-1)
        self.joint_names = tuple(f"action{i}" for i in range(self._low.size))
        self.dt = float(
            getattr(env.unwrapped, "dt", 0.0) or 1.0 / env.metadata.get("render_fps", 20)
        )
        self.episodes = 0  # episodes finished (terminated or truncated) since construction
        self.last_reward = 0.0
        self.last_terminated = False  # the last episode ended by termination, not truncation
        self._action = np.clip(np.zeros_like(self._low), self._low, self._high)
        self._steps = 0
        self._obs = np.zeros(int(np.prod(env.observation_space.shape)))
        self.reset()

    @classmethod
    def make(cls, env_id: str, seed: int = 0, camera: str = "front", **kwargs: Any) -> GymScene:
        """``gymnasium.make(env_id, render_mode="rgb_array", **kwargs)`` wrapped as a Scene."""
        return cls(gym.make(env_id, render_mode="rgb_array", **kwargs), seed=seed, camera=camera)

    # ---- joint-space interface --------------------------------------------------------

    def joint_state(self) -> JointSample:
        return JointSample(self._obs.copy(), np.zeros_like(self._obs), self._action.copy(), 0.0)

    def command_torque(self, tau: np.ndarray, gripper: float | None = None) -> None:
        tau = np.asarray(tau, dtype=np.float64).reshape(-1)
        if tau.shape != self._low.shape or not np.all(np.isfinite(tau)):
            raise SceneError(
                f"action must be {self._low.size} finite values for this env, got shape {tau.shape}"
            )
        self._action = np.clip(tau, self._low, self._high)

    def command_position(
        self, q: np.ndarray, gripper: float | None = None, dq: np.ndarray | None = None
    ) -> None:
        raise SceneError(
            "a gym env takes actions, not joint positions: send mode='torque' with the action "
            "in effort"
        )

    def step(self, n: int = 1) -> None:
        action = self._action.astype(self.env.action_space.dtype).reshape(
            self.env.action_space.shape
        )
        for _ in range(int(n)):
            obs, reward, terminated, truncated, _ = self.env.step(action)
            self.last_reward = float(reward)
            self._steps += 1
            if terminated or truncated:
                self.episodes += 1
                self.last_terminated = bool(terminated)
                self.seed += 1
                obs, _ = self.env.reset(seed=self.seed)
            self._obs = np.asarray(obs, dtype=np.float64).reshape(-1)

    @property
    def time(self) -> float:
        return self._steps * self.dt

    def reset(
        self,
        q: np.ndarray | None = None,
        gripper: float = 1.0,
        object_poses: np.ndarray | None = None,
    ) -> None:
        if q is not None or object_poses is not None:
            raise SceneError(
                "a gym env resets itself from its seed; q and object_poses must be None"
            )
        obs, _ = self.env.reset(seed=self.seed)
        self._obs = np.asarray(obs, dtype=np.float64).reshape(-1)
        self._steps = 0

    # ---- cameras ----------------------------------------------------------------------

    def render(
        self, camera: str = "front", size: int = 64, depth: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if camera not in self.cameras:
            raise SceneError(f"no camera {camera!r}; this scene has {self.cameras[0]!r}")
        if depth:
            raise SceneError("a gym env renders RGB only (no depth)")
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            raise SceneError(
                f"env.render() must return an (H, W, 3) array, got {type(frame).__name__}"
            )
        h, w = frame.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        square = np.ascontiguousarray(frame[top : top + s, left : left + s, :3])
        if s != size:
            square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
        return square.astype(np.uint8, copy=False)

    # ---- full state (MuJoCo-based envs) -------------------------------------------------

    def _mujoco(self) -> tuple[Any, Any]:
        model = getattr(self.env.unwrapped, "model", None)
        data = getattr(self.env.unwrapped, "data", None)
        if model is None or data is None:
            raise SceneError("snapshot/restore needs a MuJoCo-based env (env.unwrapped.model/data)")
        return model, data

    def snapshot(self) -> _Snapshot:
        import mujoco

        model, data = self._mujoco()
        kind = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(model, kind))
        mujoco.mj_getState(model, data, state, kind)
        return _Snapshot(state, self._obs.copy(), self._action.copy(), self._steps)

    def restore(self, snapshot: _Snapshot) -> None:
        import mujoco

        model, data = self._mujoco()
        mujoco.mj_setState(model, data, snapshot.state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(model, data)
        self._obs = snapshot.obs.copy()
        self._action = snapshot.action.copy()
        self._steps = snapshot.steps

    def close(self) -> None:
        self.env.close()
