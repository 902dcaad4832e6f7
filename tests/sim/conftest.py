"""Shared helpers of the scene tests: both backends, headless."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reflexarc import sim  # noqa: F401  (sets MUJOCO_GL=egl headless and registers the envs)
from reflexarc.sim.scene import Scene
from reflexarc.sim.scenes import make_scene

BACKENDS = ("mujoco", "pybullet")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def scene(backend: str) -> Iterator[Scene]:
    """A 3-block scene with both cameras."""
    s = make_scene(backend=backend, objects=["red", "green", "blue"], cameras=["front", "wrist"])
    yield s
    s.close()
