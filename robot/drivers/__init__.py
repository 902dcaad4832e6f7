"""Hardware drivers for the bridge (:mod:`reflexarc.robot.bridge`): one small protocol per arm.

A driver connects the graph to one real arm (or to a stand-in: :mod:`reflexarc.sim.pretend_arm`
runs a simulator in another process, in real time, over its own socket). The bridge
node calls it from its loop, one call per tick, so every method must return quickly
(well under the bridge's period); ``connect`` and ``calibrate`` run once, before the loop,
and may take their time. See ``robot/drivers/README.md`` and docs/drivers.md.

Besides the protocol's five methods a driver may have (the bridge looks them up):

- ``calibrate() -> dict``: once after ``connect``, before any motion (a bus-servo arm
  reads its joint offsets, a gripper finds its range); the dict joins the bridge summary;
- ``read_images() -> dict[str, CameraFrame]``: camera frames with their capture stamps
  (and depth, where the camera gives it); the bridge calls it every tick and publishes a
  frame once per new stamp, so returning the newest frame again is fine (a bare (H, W, 3)
  array is stamped with the tick time, published at ``camera_hz`` and counted as
  unstamped);
- ``grasp(width, speed, force) -> None``: start moving the fingers to ``width`` m at
  ``speed`` m/s, squeezing with at most ``force`` N (returns at once);
  ``read_gripper() -> GraspResult | None``: the newest gripper measurement;
- ``figures() -> dict``: the driver's own figures for the summary.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from reflexarc.runtime.errors import ReflexarcError
from reflexarc.runtime.msgs import JointCommand
from reflexarc.runtime.targets import import_object


class DriverError(ReflexarcError):
    """The arm cannot be reached, refused a command, or reported a fault."""


class DriverState(NamedTuple):
    """One measurement of the arm.

    ``stamp_ns`` is when it was measured, on this host's ``time.monotonic_ns()`` clock
    (the graph's clock); position in rad, velocity in rad/s, effort in N m, all (n,);
    ``gripper`` the finger opening in m.
    """

    stamp_ns: int
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    gripper: float


class CameraFrame(NamedTuple):
    """One camera image and when it was captured (``time.monotonic_ns()`` of this host).

    ``read_images()`` returns these, so the bridge stamps each frame with its capture time
    (not with the tick that read it): latencies measured from the frame are then true.
    """

    stamp_ns: int
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 m along the optical axis, if the camera gives it


class GraspResult(NamedTuple):
    """The gripper after a ``grasp``: measured opening (m), squeezing force (N), whether
    the fingers still move, and whether they stopped on an object (``grasped``: the
    opening came to rest within ``epsilon`` of the width asked for)."""

    stamp_ns: int
    width: float
    force: float
    moving: bool
    grasped: bool


@runtime_checkable
class Driver(Protocol):
    """What the bridge needs from an arm."""

    def connect(self) -> None:
        """Open the connection; return when the arm streams its state (raise DriverError
        otherwise). The arm holds still until the first command."""

    def read_state(self) -> DriverState | None:
        """The newest measurement not read before, or None (never blocks)."""

    def write_command(self, cmd: JointCommand) -> None:
        """Send a joint command (torque or position mode, validated by the bridge)."""

    def stop(self) -> None:
        """Stop the arm where it is and hold it there, until the next command."""

    def close(self) -> None:
        """Stop the arm and release the connection (idempotent)."""


#: Drivers that moved, by their old name: configs that name them keep working.
MOVED = {"reflexarc.robot.drivers.pretend:PretendDriver": "reflexarc.sim.pretend_arm:PretendDriver"}


def load_driver(target: str, args: dict[str, Any] | None = None) -> Driver:
    """Build the driver ``package.module:Class`` with keyword arguments ``args``."""
    cls = import_object(MOVED.get(target, target), DriverError, "driver")
    try:
        driver = cls(**(args or {}))
    except TypeError as e:
        raise DriverError(f"driver {target!r}: bad arguments {args}: {e}") from None
    if not isinstance(driver, Driver):
        raise DriverError(f"{target!r} does not implement the Driver protocol "
                          "(connect, read_state, write_command, stop, close)")
    return driver
