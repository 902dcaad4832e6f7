"""Nodes of the user's own, in a module beside the scripts that use them.

A graph names them by ``module:Class`` (``my_nodes:Balance``): the folder of the script
being run, and a graph file's folder, are on the Python path of every node process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reflexarc import Inbox, JointCommand, Node, NodeContext, Outputs


class Balance(Node):
    """A linear state-feedback policy for a gymnasium env: ``action = gains @ obs``.

    It reads the observation from ``joint_state.position`` (what the gym sim publishes)
    and sends the env's action in ``joint_command.effort``. The default gains hold
    InvertedPendulum-v5's pole up (obs: cart position, pole angle, their velocities).
    """

    @dataclass
    class Config:
        gains: list[float] = field(default_factory=lambda: [1.0, 10.0, 1.0, 1.0])
        limit: float = 3.0  # the env's action bound

    subscribes = {"joint_state": "latest"}
    publishes = ("joint_command",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.gains = np.asarray(cfg.gains, dtype=np.float64)
        self.actions = 0

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        state = inbox.latest("joint_state")
        if state is None or state.position.shape != self.gains.shape:
            return ()
        force = np.clip([self.gains @ state.position], -self.cfg.limit, self.cfg.limit)
        self.actions += 1
        zeros = np.zeros(1)
        return [("joint_command", JointCommand(stamp_ns=state.stamp_ns, mode="torque",
                                               position=zeros, velocity=zeros, effort=force))]

    def summary(self) -> dict[str, Any]:
        return {"actions": self.actions}


class JointWatch(Node):
    """Watches ``joint_state`` and reports, in the run's node figures, how many states it
    saw, the fastest joint speed and the total joint travel of the first ``joints``."""

    @dataclass
    class Config:
        joints: int = 7

    subscribes = {"joint_state": "all"}

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.states = 0
        self.max_speed = 0.0
        self.travel = 0.0
        self.last: np.ndarray | None = None

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        for state in inbox.new("joint_state"):
            q = np.asarray(state.position[: self.cfg.joints])
            self.states += 1
            self.max_speed = max(self.max_speed, float(np.abs(state.velocity[: self.cfg.joints]).max()))
            if self.last is not None:
                self.travel += float(np.abs(q - self.last).sum())
            self.last = q
        return ()

    def summary(self) -> dict[str, Any]:
        return {"states": self.states, "max_speed": self.max_speed, "travel": self.travel}
