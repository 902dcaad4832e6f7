"""Shared fixtures: tiny toy episodes (policies/toy.py) collected once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflexarc.policies.collect import CollectConfig, collect


def toy_collect_config(root: Path, episodes: int = 6, steps: int = 12) -> CollectConfig:
    return CollectConfig(
        env="reflexarc/ToyPush-v0", backend="toy", image_size=32, root=str(root),
        episodes=episodes, steps=steps, num_envs=2, vector="sync", expert_ratio=0.0, progress=False,
    )


@pytest.fixture(scope="session")
def toy_episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "episodes"
    collect(toy_collect_config(root))
    return root
