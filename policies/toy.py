"""A tiny procedural push scene for fast tests of collection, training and evaluation.

Top-down 2-D: a grey end effector (a disc whose radius grows with its height) moves by the
commanded displacement; when it is low (z < ``contact_z``) and overlaps the red block, the
block is pushed out of the overlap along the push direction. Rendered with numpy alone.
Same observation, action and info conventions as ``reflexarc/PandaPush-v0`` (docs/architecture.md,
"Conventions"), so :mod:`reflexarc.policies.collect` and :mod:`reflexarc.policies.train` run on it
unchanged. Registered as ``reflexarc/ToyPush-v0`` when this module is imported.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from reflexarc.robot.panda import PANDA

WORKSPACE_LO = PANDA.workspace_box[:, 0]  # the hand's box: the Panda's workspace
WORKSPACE_HI = PANDA.workspace_box[:, 1]
SPAWN_LO = np.array([0.4, -0.2])
SPAWN_HI = np.array([0.6, 0.2])
BLOCK_HALF = 0.025


class ToyPushEnv(gym.Env):
    """Kinematic 2-D push: obs {"image", "proprio", "goal_image"}, action (dx, dy, dz, grip)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        backend: str = "toy",
        image_size: int = 64,
        max_delta: float = 0.05,
        max_episode_steps: int = 50,
        contact_z: float = 0.05,
    ) -> None:
        self.backend = backend
        self.image_size = image_size
        self.max_delta = max_delta
        self.max_episode_steps = max_episode_steps
        self.contact_z = contact_z
        s = image_size
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (s, s, 3), np.uint8),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                "goal_image": gym.spaces.Box(0, 255, (s, s, 3), np.uint8),
            }
        )
        hi = np.array([max_delta] * 3 + [1.0], dtype=np.float32)
        self.action_space = gym.spaces.Box(-hi, hi, dtype=np.float32)
        # pixel grid in world coordinates: image row <- x (far = top), column <- y (left = left)
        u = (np.arange(s) + 0.5) / s
        self._gx = WORKSPACE_HI[0] - u * (WORKSPACE_HI[0] - WORKSPACE_LO[0])  # (s,) per row
        self._gy = WORKSPACE_HI[1] - u * (WORKSPACE_HI[1] - WORKSPACE_LO[1])  # (s,) per column
        self.ee = np.zeros(3)
        self.block = np.zeros(3)
        self.target = np.zeros(3)
        self.gripper = 1.0
        self.t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        r = self.np_random
        self.block = np.array([*r.uniform(SPAWN_LO, SPAWN_HI), BLOCK_HALF])
        self.ee = np.array([r.uniform(0.3, 0.7), r.uniform(-0.3, 0.3), r.uniform(0.05, 0.3)])
        self.target = np.array([*r.uniform([0.35, -0.25], [0.65, 0.25]), BLOCK_HALF])
        self.gripper = 1.0
        self.t = 0
        return self._obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        new = np.clip(self.ee + a[:3], WORKSPACE_LO, WORKSPACE_HI)
        new[2] = max(new[2], 0.01)
        if new[2] < self.contact_z:
            reach = BLOCK_HALF + 0.02  # block half size + effector radius at the table
            d = new[:2] - self.block[:2]
            if np.all(np.abs(d) < reach):
                # push the block out of the overlap along the effector's motion
                move = a[:2]
                axis = int(np.argmax(np.abs(move))) if np.any(move) else int(np.argmax(np.abs(d)))
                sign = np.sign(move[axis]) if move[axis] else -np.sign(d[axis])
                self.block[axis] = new[axis] + sign * reach
                self.block[:2] = np.clip(self.block[:2], WORKSPACE_LO[:2] + 0.03, WORKSPACE_HI[:2] - 0.03)
        self.ee = new
        self.gripper = float(a[3])
        self.t += 1
        success = bool(np.linalg.norm(self.block[:2] - self.target[:2]) < 0.05)
        reward = -float(np.linalg.norm(self.block[:2] - self.target[:2]))
        truncated = self.t >= self.max_episode_steps
        return self._obs(), reward, success, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": bool(np.linalg.norm(self.block[:2] - self.target[:2]) < 0.05),
            "ee_pos": self.ee.copy(),
            "object_pos": self.block[None].copy(),
            "object_names": ("red",),
            "target": self.target.copy(),
        }

    def _obs(self) -> dict[str, np.ndarray]:
        proprio = np.array([*self.ee, 0.04 * (self.gripper + 1.0)], dtype=np.float32)
        return {"image": self.render(), "proprio": proprio, "goal_image": self._draw(self.ee, self.target)}

    def render(self) -> np.ndarray:
        return self._draw(self.ee, self.block)

    def _draw(self, ee: np.ndarray, block: np.ndarray) -> np.ndarray:
        s = self.image_size
        img = np.empty((s, s, 3), np.uint8)
        img[:] = (200, 190, 170)  # table
        dx = np.abs(self._gx[:, None] - block[0])
        dy = np.abs(self._gy[None, :] - block[1])
        img[(dx < BLOCK_HALF) & (dy < BLOCK_HALF)] = (200, 30, 30)
        radius = 0.02 + 0.1 * ee[2]
        d2 = (self._gx[:, None] - ee[0]) ** 2 + (self._gy[None, :] - ee[1]) ** 2
        img[d2 < radius**2] = (60, 60, 60)
        return img


def register() -> None:
    """Register ``reflexarc/ToyPush-v0`` (idempotent)."""
    if "reflexarc/ToyPush-v0" not in gym.registry:
        gym.register("reflexarc/ToyPush-v0", entry_point=ToyPushEnv)


register()
