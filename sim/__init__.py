"""Scenes: the Franka Panda on a table with coloured blocks, in MuJoCo and PyBullet.

Importing ``reflexarc.sim`` registers the gymnasium ids :data:`ENV_IDS` (kwargs ``backend``,
``image_size`` ... see :class:`reflexarc.sim.envs.PandaEnv`). The simulators are imported lazily,
when a scene is built.
"""

from __future__ import annotations

import os
import sys

from gymnasium.envs.registration import register, registry

from reflexarc.sim.assets import has_display

# Headless machines render MuJoCo through EGL; mujoco reads this when it is imported.
if "mujoco" not in sys.modules and not has_display():
    os.environ.setdefault("MUJOCO_GL", "egl")

ENV_IDS: dict[str, str] = {
    "reach": "reflexarc/PandaReach-v0",
    "push": "reflexarc/PandaPush-v0",
    "pick_place": "reflexarc/PandaPickPlace-v0",
}
MAX_EPISODE_STEPS: dict[str, int] = {"reach": 50, "push": 100, "pick_place": 100}

for _task, _id in ENV_IDS.items():
    if _id not in registry:
        register(
            id=_id,
            entry_point="reflexarc.sim.envs:PandaEnv",
            kwargs={"task": _task},
            max_episode_steps=MAX_EPISODE_STEPS[_task],
        )

# The table without any block (the reach task with objects=[]): the world a model learns
# before it ever sees a block, as in the online-learning demo (policies/online.py).
EMPTY_ENV_ID = "reflexarc/PandaEmpty-v0"
if EMPTY_ENV_ID not in registry:
    register(
        id=EMPTY_ENV_ID,
        entry_point="reflexarc.sim.envs:PandaEnv",
        kwargs={"task": "reach", "objects": []},
        max_episode_steps=MAX_EPISODE_STEPS["push"],
    )

__all__ = ["EMPTY_ENV_ID", "ENV_IDS", "MAX_EPISODE_STEPS"]
