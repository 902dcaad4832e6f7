"""The simulated scenes by backend name: a registry, and :func:`make_scene`.

``scene.py`` holds the :class:`~reflexarc.sim.scene.Scene` interface and its config; each
backend module (``mujoco_scene.py``, ``pybullet_scene.py``) builds on it, and this module,
above them, maps ``backend: mujoco | pybullet`` to a builder. A backend is imported only
when first built, so a process that uses one simulator never loads the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reflexarc.runtime.config import validate
from reflexarc.sim.assets import SceneError, has_display
from reflexarc.sim.scene import Scene, SceneConfig


def _mujoco(cfg: SceneConfig) -> Scene:
    from reflexarc.sim.mujoco_scene import MuJoCoScene

    return MuJoCoScene(cfg)


def _pybullet(cfg: SceneConfig) -> Scene:
    from reflexarc.sim.pybullet_scene import PyBulletScene

    return PyBulletScene(cfg)


SCENES: dict[str, Callable[[SceneConfig], Scene]] = {"mujoco": _mujoco, "pybullet": _pybullet}


def register_scene(backend: str, build: Callable[[SceneConfig], Scene]) -> None:
    """Make ``build(cfg)`` the scene of ``backend`` (a later registration replaces it)."""
    SCENES[backend] = build


def make_scene(cfg: SceneConfig | None = None, **overrides: Any) -> Scene:
    """Build the scene described by ``cfg`` (and ``overrides``) with its backend."""
    cfg = replace(cfg or SceneConfig(), **overrides)
    validate(cfg)
    if cfg.backend not in SCENES:
        raise SceneError(f"no scene backend {cfg.backend!r}; known: {', '.join(SCENES)}")
    if cfg.gui and not has_display():
        raise SceneError(
            "a simulator window needs a display (DISPLAY/WAYLAND_DISPLAY is not set); "
            "use gui=False / render_mode='rgb_array' for headless runs"
        )
    return SCENES[cfg.backend](cfg)
