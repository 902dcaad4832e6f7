"""The bridge: a real arm in the graph, with the same topics as the sim node.

Each tick (the driver's rate, 1 kHz for a Panda) the bridge reads the arm's newest
measurement from its :class:`reflexarc.robot.drivers.Driver` and publishes it as ``joint_state``
(stamped with the measurement time), and sends the newest ``joint_command`` of the
graph to the arm. Cameras attached to the driver (optional ``read_images()``) are
published as ``camera/<name>`` at ``camera_hz``. A controller, planner or recorder
cannot tell the bridge from the sim node.

Safety at the hardware end (the controller has its own, :mod:`reflexarc.robot.safety`):

- **Authenticated peers only.** The bridge refuses to start when the graph's bus is
  bound beyond this host (``transport=tcp`` on a non-loopback ``host``) without CURVE
  (``bus.curve=true``): nobody without the graph's keys may command the arm.
- **Silent graph -> stop.** No valid ``joint_command`` for ``command_timeout_s`` (10 ms):
  the arm is stopped (``driver.stop()``: it holds where it is) until commands come again.
- **A second check, independent of the controller** (:class:`reflexarc.robot.guard.CommandGuard`):
  torques clipped to the effort limits and their rate of change to the torque-rate limits,
  damped near the position limits; position targets clipped into the limits and moving at
  most ``guard.speed_share`` of the velocity limits; a measured joint faster than
  ``guard.stop_share`` of its limit stops the arm for ``overspeed_hold_s``. Every measured
  sample beyond a limit is counted (``beyond_limits``, ``max_speed_share`` in the summary).
- **E-stop.** ``EStop(engage=True)`` stops the arm and latches: commands are ignored
  until an ``EStop(engage=False)`` signed by the operator (``operator_key``,
  :mod:`reflexarc.robot.authority`); other releases are refused and counted.
- Malformed commands (wrong mode, shape, non-finite values) are dropped and counted.

Interventions are counted in the summary and logged; the ``safety`` topic belongs to
the controller (one publisher per topic).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reflexarc.robot.authority import AuthorityError, ReleaseCheck
from reflexarc.robot.drivers import Driver, DriverError, load_driver
from reflexarc.robot.guard import CommandGuard, GuardConfig, LimitCounter, panda_limits
from reflexarc.runtime.config import bounded
from reflexarc.runtime.errors import ConfigError, ReflexarcError
from reflexarc.runtime.msgs import EStop, Image, JointCommand, JointState, empty
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


class BridgeError(ReflexarcError):
    """The bridge cannot run safely as configured."""


def loopback(host: str) -> bool:
    """True if ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or a wildcard ("*"): reachable from elsewhere


def check_exposure(bus: dict[str, Any]) -> None:
    """Refuse a bus reachable from other hosts without CURVE authentication.

    ``bus`` is the graph's bus config as a mapping (transport, host, curve).
    """
    if bus.get("transport", "ipc") != "tcp" or bus.get("curve", False):
        return
    host = str(bus.get("host", "127.0.0.1"))
    if not loopback(host):
        raise BridgeError(
            f"the bus binds tcp on {host!r} (beyond this host) without authentication: an "
            "unauthenticated peer could command the arm. Use bus.curve=true with "
            "bus.keys_dir (make keys with `reflexarc keys DIR`), or bus.host=127.0.0.1"
        )


@dataclass
class BridgeConfig:
    """Arguments of :class:`BridgeNode` (``graph.nodes.<bridge>.args``)."""

    driver: str = "reflexarc.robot.drivers.pretend:PretendDriver"  # "package.module:Class"
    driver_args: dict[str, Any] = field(default_factory=dict)
    command_timeout_s: float = bounded(0.01, 0.001, 10.0)  # silent graph -> stop the arm
    overspeed_hold_s: float = bounded(0.2, 0.0, 10.0)  # commands ignored after an overspeed stop
    guard: GuardConfig = field(default_factory=GuardConfig)
    operator_key: str = ""  # public key releases must be signed with (docs/safety.md); "": none

    def validate(self) -> None:
        if self.operator_key:
            try:
                ReleaseCheck(self.operator_key)
            except (AuthorityError, ValueError) as e:
                raise ConfigError("operator_key", f"{e} (a public key file or 64 hex digits)") from None
    camera_hz: float = bounded(30.0, 0.0, 1000.0)  # drivers with read_images(); 0: none
    n_joints: int = bounded(7, 1, 64)


class BridgeNode(Node):
    """Joint state out, joint commands in, backed by a hardware driver (module docstring)."""

    Config = BridgeConfig
    subscribes = {"joint_command": "latest", "estop": "all"}
    publishes = ("joint_state", "camera/")

    def __init__(self, ctx: NodeContext, cfg: BridgeConfig, driver: Driver | None = None) -> None:
        super().__init__(ctx, cfg)
        if ctx.clock != "realtime":
            raise ConfigError(f"graph.nodes.{ctx.name}", "a hardware bridge runs in realtime only")
        check_exposure(ctx.bus)  # refuse an unauthenticated bus beyond this host
        self.driver = driver if driver is not None else load_driver(cfg.driver, cfg.driver_args)
        self.connected = False
        self.closed = False
        self.timeout_ns = int(cfg.command_timeout_s * 1e9)
        self.cmd_seq = -1
        self.last_cmd_ns: int | None = None
        self.commanding = False  # commands flowing (not stopped by silence or e-stop)
        self.estop = False
        self.state_stamp = -1
        self.next_frame_ns = 0
        self.read_images = getattr(self.driver, "read_images", None)
        limits = panda_limits()
        if limits.n != cfg.n_joints:
            raise ConfigError(f"graph.nodes.{ctx.name}.args.n_joints",
                              f"the arm's limits are for {limits.n} joints, not {cfg.n_joints}")
        self.guard = CommandGuard(limits, cfg.guard)
        self.measured = LimitCounter(limits)
        self.q: np.ndarray | None = None  # newest measured position and velocity
        self.dq: np.ndarray | None = None
        self.overspeed_until_ns = 0
        self.releases = ReleaseCheck(cfg.operator_key, realtime=True)
        self.counts = {"states": 0, "commands": 0, "rejected": 0, "silent_stops": 0,
                       "estops": 0, "resets": 0, "ignored_in_estop": 0, "frames": 0,
                       "ignored_after_overspeed": 0, "releases_refused": 0}

    def connect(self) -> None:
        if not self.connected:
            self.driver.connect()
            self.connected = True

    # -- the tick ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        out: list[tuple[str, Any]] = []
        if not self.connected:
            self.connect()
        s = self.driver.read_state()
        if s is not None and s.stamp_ns != self.state_stamp:
            self.state_stamp = s.stamp_ns
            self.counts["states"] += 1
            self.q, self.dq = np.asarray(s.position, float), np.asarray(s.velocity, float)
            effort = np.asarray(s.effort, float)
            self.measured.add(self.q, self.dq, effort)
            out.append(("joint_state", JointState(
                stamp_ns=s.stamp_ns, position=self.q, velocity=self.dq, effort=effort,
                gripper=float(s.gripper))))
            if self.guard.overspeed(self.dq):  # whatever was commanded: stop, then hold
                if self.commanding or now_ns >= self.overspeed_until_ns:
                    log.warning("%s: joint speed %s rad/s over %.0f %% of the limit: arm stopped",
                                self.ctx.name, np.round(self.dq, 2).tolist(),
                                100 * self.cfg.guard.stop_share)
                self._stop()
                self.overspeed_until_ns = now_ns + int(self.cfg.overspeed_hold_s * 1e9)
        for e in inbox.new("estop"):
            self._estop(e, now_ns)
        cmd = inbox.latest("joint_command")
        if cmd is not None and cmd.seq != self.cmd_seq:
            self.cmd_seq = cmd.seq
            self._command(cmd, now_ns)
        if self.commanding and self.last_cmd_ns is not None and now_ns - self.last_cmd_ns > self.timeout_ns:
            self._stop()
            self.counts["silent_stops"] += 1
            log.warning("%s: no joint_command for %.0f ms: arm stopped", self.ctx.name,
                        (now_ns - self.last_cmd_ns) / 1e6)
        if self.read_images is not None and self.cfg.camera_hz and now_ns >= self.next_frame_ns:
            self.next_frame_ns = now_ns + int(1e9 / self.cfg.camera_hz)
            for name, rgb in self.read_images().items():
                self.counts["frames"] += 1
                out.append((f"camera/{name}", Image(stamp_ns=now_ns, camera=name, rgb=rgb,
                                                    depth=empty("f4", 0, 0))))
        return out

    def _valid(self, cmd: JointCommand) -> str:
        n = self.cfg.n_joints
        if cmd.mode not in ("torque", "position"):
            return f"mode {cmd.mode!r}"
        used = cmd.effort if cmd.mode == "torque" else cmd.position
        if used.shape != (n,) or not np.all(np.isfinite(used)):
            return f"{cmd.mode} values of shape {used.shape}, or not finite"
        if cmd.velocity.size and (cmd.velocity.shape != (n,) or not np.all(np.isfinite(cmd.velocity))):
            return f"velocity of shape {cmd.velocity.shape}, or not finite"
        if not np.isfinite(cmd.gripper):
            return "gripper not finite"
        return ""

    def _command(self, cmd: JointCommand, now_ns: int) -> None:
        why = self._valid(cmd)
        if why:
            if self.counts["rejected"] == 0:
                log.warning("%s: dropping a joint_command: %s", self.ctx.name, why)
            self.counts["rejected"] += 1
            return
        if self.estop:
            self.counts["ignored_in_estop"] += 1
            return
        if now_ns < self.overspeed_until_ns:
            self.counts["ignored_after_overspeed"] += 1
            return
        if cmd.mode == "torque":
            safe = dataclasses.replace(cmd, effort=self.guard.torque(cmd.effort, self.q, self.dq, now_ns))
        else:
            vel = self.guard.velocity(cmd.velocity) if cmd.velocity.size else cmd.velocity
            safe = dataclasses.replace(cmd, position=self.guard.position(cmd.position, self.q, now_ns),
                                       velocity=vel)
        self.driver.write_command(safe)
        self.counts["commands"] += 1
        self.last_cmd_ns = now_ns
        self.commanding = True

    def _estop(self, e: EStop, now_ns: int) -> None:
        if e.engage:
            if not self.estop:
                self.counts["estops"] += 1
                log.warning("%s: e-stop (%s): arm stopped", self.ctx.name, e.reason or "engaged")
            self.estop = True
            self._stop()
        elif self.estop:
            why = self.releases(e, now_ns)
            if why:
                self.counts["releases_refused"] += 1
                log.warning("%s: e-stop release refused: %s", self.ctx.name, why)
                return
            self.estop = False
            self.counts["resets"] += 1
            log.warning("%s: e-stop reset", self.ctx.name)

    def _stop(self) -> None:
        """Stop the arm (it holds where it is); the guard's rate limits start over."""
        self.driver.stop()
        self.commanding = False
        self.guard.reset()

    # -- reporting -------------------------------------------------------------------------

    def state(self) -> str:
        if self.estop:
            return "fault"
        return "running" if self.commanding else "holding"

    def summary(self) -> dict[str, Any]:
        """Counts, and the driver's own figures (``figures()``, if it has one). Called at
        shutdown: the arm is stopped and the driver closed first, so they are final."""
        self.close()
        figures = getattr(self.driver, "figures", None)
        return {**self.counts, "guard": dict(self.guard.counts), **self.measured.summary(),
                **(figures() if callable(figures) else {})}

    def close(self) -> None:
        """Stop the arm and close the driver (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.connected:
                self.driver.stop()
        except DriverError:
            pass
        finally:
            self.driver.close()
