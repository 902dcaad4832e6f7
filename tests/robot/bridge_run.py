"""A bridge node stepped in real time at about 1 kHz by a test, as the runtime would."""

from __future__ import annotations

import time
from typing import Any

from reflexarc.robot.bridge import BridgeNode
from reflexarc.runtime.node import Inbox


class BridgeRun:
    """Steps a bridge in real time at about 1 kHz, collecting what it publishes."""

    def __init__(self, node: BridgeNode) -> None:
        self.node, self.inbox = node, Inbox()
        self.out: list[tuple[int, str, Any]] = []

    def put(self, topic: str, msg: Any) -> None:
        self.inbox.put(topic, msg, time.monotonic_ns())

    def until(self, done: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"timed out; phase {self.node.phase}"
            published = self.node.step(time.monotonic_ns(), self.inbox)
            now = time.monotonic_ns()  # when what the step returned was ready
            self.out += [(now, t, m) for t, m in published]
            self.inbox.clear_new()
            time.sleep(0.0005)

    def settled_gripper(self, timeout_s: float) -> Any:
        """The gripper's state once it moved after the last command and came to rest."""
        start = len(self.out)
        self.until(lambda: any(t == "gripper_state" and m.moving for _, t, m in self.out[start:]),
                   timeout_s)
        self.until(lambda: not self.last("gripper_state").moving, timeout_s)
        return self.last("gripper_state")

    def last(self, topic: str) -> Any:
        return next(m for _, t, m in reversed(self.out) if t == topic)
