"""The bridge: a real arm in the graph, with the same topics as the sim node.

Each tick (the driver's rate, 1 kHz for a Panda) the bridge reads the arm's newest
measurement from its :class:`reflexarc.robot.drivers.Driver` and publishes it as ``joint_state``
(stamped with the measurement time), and sends the newest ``joint_command`` of the
graph to the arm. Cameras attached to the driver (optional ``read_images()``) are
published as ``camera/<name>`` the tick a new frame arrives, stamped with its capture
time (with its depth, if the camera gives it). A
``gripper_command`` (width, speed, force) goes to the driver's ``grasp``, and its
``read_gripper()`` comes back as ``gripper_state`` (with the grasp result). The graph's
one-float gripper (the joint command's ``gripper``, -1 closed .. 1 open) becomes grasps
too (``gripper: auto`` with a driver that has ``grasp``): closing is a grasp of an
object ``grasp.width`` wide with at most ``grasp.force`` N, opening a move to
``grasp.open_width``. A controller, planner or recorder cannot tell the bridge from the
sim node.

**Frame-to-command at the arm.** A command made from a camera frame carries that frame's
capture stamp (perception, planner and controller carry it forward). The first command
with the stamp of a frame this bridge published is timed when it has been written to the
driver: capture to the arm, the whole chain measured at the hardware end
(``frame_to_command_ms_p50``/``_p99``, also in the run summary's ``bridge`` entry with the
machine's load). ``command_age_ms_*`` is every applied command's age (it grows while a
plan is followed until the next frame's plan: no latency).

Before the graph may move the arm (docs/drivers.md), in this order:

1. **calibrate**: the driver's ``calibrate()``, if it has one (once, at connect);
2. **acknowledge** (``acknowledge``, on by default): the arm holds until the operator's
   signed go, the same signed release as after an e-stop (``reflexarc estop release``);
3. **move to start** (``start_position``, empty: none): the bridge itself brings the arm
   to the start pose in position mode, every joint arriving together, no faster than
   ``start_speed``; then the graph's commands are applied. Until then they are ignored
   (counted: ``ignored_before_start``), so the first plan starts from the start pose.

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
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reflexarc.robot.authority import AuthorityError, ReleaseCheck
from reflexarc.robot.description import robot_description
from reflexarc.robot.drivers import CameraFrame, Driver, DriverError, load_driver
from reflexarc.robot.guard import CommandGuard, GuardConfig, LimitCounter, joint_limits
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError, ReflexarcError
from reflexarc.runtime.msgs import (
    EStop,
    GripperCommand,
    GripperState,
    Image,
    JointCommand,
    JointState,
    empty,
)
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.stats import Ring

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
class GraspArgs:
    """How the graph's one-float gripper becomes the driver's grasps (``gripper: grasp``)."""

    width: float = bounded(0.05, 0.0, 0.3)  # m, the object a closing gripper grasps
    force: float = bounded(20.0, 0.0, 200.0)  # N, at most
    speed: float = bounded(0.1, 0.001, 1.0)  # m/s, the fingers
    epsilon: float = bounded(0.01, 0.0, 0.1)  # m: held if they stop this close to width
    open_width: float = bounded(0.08, 0.0, 0.3)  # m, an opening gripper's move
    close_below: float = bounded(-0.5, -1.0, 1.0)  # the joint command's gripper below: close
    open_above: float = bounded(0.5, -1.0, 1.0)  # above: open (between: no change)


@dataclass
class BridgeConfig:
    """Arguments of :class:`BridgeNode` (``graph.nodes.<bridge>.args``)."""

    driver: str = "reflexarc.sim.pretend_arm:PretendDriver"  # "package.module:Class"
    driver_args: dict[str, Any] = field(default_factory=dict)
    command_timeout_s: float = bounded(0.01, 0.001, 10.0)  # silent graph -> stop the arm
    overspeed_hold_s: float = bounded(0.2, 0.0, 10.0)  # commands ignored after an overspeed stop
    guard: GuardConfig = field(default_factory=GuardConfig)
    operator_key: str = ""  # public key releases must be signed with (docs/safety.md); "": none

    camera_hz: float = bounded(30.0, 0.0, 1000.0)  # drivers with read_images(); 0: none
    robot: str = "panda"  # the arm (reflexarc.robot.description): its joints and limits
    # hold until the operator's signed go (operator_key) before the first motion
    acknowledge: bool = True
    start_position: list[float] = field(default_factory=list)  # rad; empty: no move to start
    start_speed: float = bounded(0.3, 0.01, 2.0)  # rad/s, the fastest joint of the move
    start_tolerance: float = bounded(0.02, 1e-4, 0.5)  # rad: every joint this close = there
    start_timeout_s: float = bounded(30.0, 1.0, 600.0)  # beyond the move's own duration
    # the joint command's gripper: "joint" passes it to the driver as it is; "grasp" makes
    # it grasps and opening moves (grasp); "auto": grasp if the driver has grasp()
    gripper: str = choice("auto", "auto", "joint", "grasp")
    grasp: GraspArgs = field(default_factory=GraspArgs)

    def validate(self) -> None:
        if self.operator_key:
            try:
                ReleaseCheck(self.operator_key)
            except (AuthorityError, ValueError) as e:
                raise ConfigError("operator_key", f"{e} (a public key file or 64 hex digits)") from None
        elif self.acknowledge:
            raise ConfigError(
                "acknowledge", "the bridge waits for the operator's signed go before the first "
                "motion: give operator_key (`reflexarc estop keygen dir=DIR`), or "
                "acknowledge=false where nobody needs to (a simulated arm)")
        n = robot_description(self.robot).dof
        if self.grasp.close_below >= self.grasp.open_above:
            raise ConfigError("grasp.close_below", f"got {self.grasp.close_below}; must be below "
                              f"grasp.open_above ({self.grasp.open_above})")
        if self.start_position and len(self.start_position) != n:
            raise ConfigError("start_position", f"{len(self.start_position)} values for "
                              f"{n} joints ({self.robot}); or empty for no move to start")


class BridgeNode(Node):
    """Joint state out, joint commands in, backed by a hardware driver (module docstring)."""

    Config = BridgeConfig
    subscribes = {"joint_command": "latest", "estop": "all", "gripper_command": "latest"}
    publishes = ("joint_state", "camera/", "gripper_state")

    def __init__(self, ctx: NodeContext, cfg: BridgeConfig, driver: Driver | None = None) -> None:
        super().__init__(ctx, cfg)
        if ctx.clock != "realtime":
            raise ConfigError(f"graph.nodes.{ctx.name}", "a hardware bridge runs in realtime only")
        check_exposure(ctx.bus)  # refuse an unauthenticated bus beyond this host
        self.driver = driver if driver is not None else load_driver(cfg.driver, cfg.driver_args)
        self.n_joints = robot_description(cfg.robot).dof
        self.connected = False
        self.closed = False
        self.timeout_ns = int(cfg.command_timeout_s * 1e9)
        self.cmd_seq = -1
        self.last_cmd_ns: int | None = None
        self.commanding = False  # commands flowing (not stopped by silence or e-stop)
        self.estop = False
        self.state_stamp = -1
        self.next_frame_ns: dict[str, int] = {}  # per camera, unstamped frames: camera_hz
        self.frame_stamp: dict[str, int] = {}  # per camera, the newest stamp published
        self.read_images = getattr(self.driver, "read_images", None)
        limits = joint_limits(robot_description(cfg.robot))
        self.guard = CommandGuard(limits, cfg.guard)
        self.measured = LimitCounter(limits)
        self.q: np.ndarray | None = None  # newest measured position and velocity
        self.dq: np.ndarray | None = None
        self.overspeed_until_ns = 0
        self.releases = ReleaseCheck(cfg.operator_key, realtime=True)
        self.counts = {"states": 0, "commands": 0, "rejected": 0, "silent_stops": 0,
                       "estops": 0, "resets": 0, "ignored_in_estop": 0, "frames": 0,
                       "ignored_after_overspeed": 0, "releases_refused": 0,
                       "ignored_before_start": 0, "unstamped_frames": 0, "grasps": 0,
                       "held": 0}
        # start-up: calibrate (at connect) -> acknowledge -> start (move) -> running
        self.start = np.asarray(cfg.start_position, float)
        self.phase = "acknowledge" if cfg.acknowledge else self._after_acknowledge()
        self.calibration: dict[str, Any] = {}
        self.move: tuple[int, np.ndarray, float] | None = None  # (t0_ns, q0, duration_s)
        self.started_ns: int | None = None  # when the graph's commands were first let through
        self.frame_age = Ring(4096)  # capture -> publish, ms
        # a command's stamp is its source reading's (the camera frame's capture, carried
        # forward by perception, planner and controller): its age when it reaches the arm
        # is the frame-to-command latency measured at the hardware end
        self.command_age = Ring(1 << 15)
        # stamps of the frames published lately, not yet answered by a command: the first
        # command carrying one times the whole chain, capture -> arm
        self.unanswered: deque[int] = deque(maxlen=256)
        self.frame_to_command = Ring(1 << 15)
        self.load_1m: list[float] = []  # the machine's load average, sampled each second
        self.next_load_ns = 0
        self.grasp_seq = -1
        self.grasp = getattr(self.driver, "grasp", None)
        self.read_gripper = getattr(self.driver, "read_gripper", None)
        self.map_gripper = cfg.gripper == "grasp" or (cfg.gripper == "auto" and callable(self.grasp))
        if self.map_gripper and not callable(self.grasp):
            raise ConfigError("gripper", f"grasp: the driver {cfg.driver!r} has no grasp(); "
                              "use gripper=joint")
        self.fingers = ""  # the mapped gripper: "", "open" or "closed" (the last asked)
        self.gripper_result: dict[str, Any] = {}  # the newest grasp result
        self.grasped = False
        self.grasp_held = False  # the newest grasp call has held an object
        # the slow part (an arm process to start, a connection to open) here, before the
        # loop and its heartbeats start: a loop stuck in it would be taken for a hung node
        self.connect()

    def connect(self) -> None:
        if not self.connected:
            self.driver.connect()
            self.connected = True
            calibrate = getattr(self.driver, "calibrate", None)
            if callable(calibrate):
                self.calibration = dict(calibrate() or {})
                log.info("%s: calibrated: %s", self.ctx.name, self.calibration)

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
            self.measured.add(self.q, self.dq, effort, s.stamp_ns / 1e9)
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
        if self.phase == "start" and not self.estop and self.q is not None:
            self._move_to_start(now_ns)
        cmd = inbox.latest("joint_command")
        if cmd is not None and cmd.seq != self.cmd_seq:
            self.cmd_seq = cmd.seq
            if self.phase == "running":
                self._command(cmd, now_ns)
            else:
                self.counts["ignored_before_start"] += 1
        gcmd = inbox.latest("gripper_command")
        if gcmd is not None and gcmd.seq != self.grasp_seq:
            self.grasp_seq = gcmd.seq
            self._grasp(gcmd)
        if self.read_gripper is not None:
            g = self.read_gripper()
            if g is not None:
                if g.grasped and not self.grasped and not self.grasp_held:
                    self.grasp_held = True  # counted once per grasp, however its result flickers
                    self.counts["held"] += 1  # a grasp that closed on an object and holds it
                    log.info("%s: grasp holds an object %.1f mm wide with %.0f N", self.ctx.name,
                             1e3 * g.width, g.force)
                self.grasped = bool(g.grasped)
                self.gripper_result = {"width_m": round(float(g.width), 5),
                                       "force_n": round(float(g.force), 2),
                                       "moving": bool(g.moving), "grasped": bool(g.grasped)}
                out.append(("gripper_state", GripperState(
                    stamp_ns=g.stamp_ns, width=float(g.width), force=float(g.force),
                    moving=bool(g.moving), grasped=bool(g.grasped), command_seq=self.grasp_seq)))
        if self.commanding and self.last_cmd_ns is not None and now_ns - self.last_cmd_ns > self.timeout_ns:
            self._stop()
            self.counts["silent_stops"] += 1
            log.warning("%s: no joint_command for %.0f ms: arm stopped", self.ctx.name,
                        (now_ns - self.last_cmd_ns) / 1e6)
        if self.read_images is not None and self.cfg.camera_hz:
            out.extend(self._frames(now_ns))
        if now_ns >= self.next_load_ns:
            self.next_load_ns = now_ns + 1_000_000_000
            self.load_1m.append(os.getloadavg()[0])
        return out

    def _frames(self, now_ns: int) -> list[tuple[str, Image]]:
        """Each camera's frame, the tick it arrives (once per capture stamp)."""
        out = []
        for name, frame in self.read_images().items():
            if isinstance(frame, CameraFrame):
                stamp, rgb = int(frame.stamp_ns), frame.rgb
                if stamp <= self.frame_stamp.get(name, -1):
                    continue  # published already
                self.frame_age.add((time.monotonic_ns() - stamp) / 1e6)
                depth = (np.asarray(frame.depth, np.float32) if frame.depth is not None
                         else empty("f4", 0, 0))
            else:  # a driver without capture stamps: the tick is the best guess
                if now_ns < self.next_frame_ns.get(name, 0):
                    continue
                self.next_frame_ns[name] = now_ns + int(1e9 / self.cfg.camera_hz)
                stamp, rgb, depth = now_ns, frame, empty("f4", 0, 0)
                self.counts["unstamped_frames"] += 1
            self.frame_stamp[name] = stamp
            self.counts["frames"] += 1
            self.unanswered.append(stamp)
            out.append((f"camera/{name}", Image(stamp_ns=stamp, camera=name, rgb=rgb, depth=depth)))
        return out

    # -- start-up ----------------------------------------------------------------------------

    def _move_to_start(self, now_ns: int) -> None:
        """One tick of the move to ``start_position``: a straight line in joint space, every
        joint arriving together, the farthest at ``start_speed``; then the graph's turn."""
        q = self.q
        if self.move is None:
            distance = float(np.max(np.abs(self.start - q)))
            self.move = (now_ns, q.copy(), distance / self.cfg.start_speed)
            log.info("%s: moving to the start pose (%.2f rad, %.1f s)", self.ctx.name,
                     distance, self.move[2])
        t0, q0, duration = self.move
        elapsed = (now_ns - t0) / 1e9
        s = 1.0 if duration <= 0 else min(1.0, elapsed / duration)
        target = q0 + s * (self.start - q0)
        if s >= 1.0 and np.all(np.abs(self.start - q) <= self.cfg.start_tolerance):
            self._running(now_ns)
            return
        if elapsed > duration + self.cfg.start_timeout_s:
            raise BridgeError(
                f"the arm did not reach start_position within {self.cfg.start_timeout_s} s "
                f"after its move (largest error {np.max(np.abs(self.start - q)):.3f} rad)")
        n = self.n_joints
        cmd = JointCommand(stamp_ns=now_ns, mode="position",
                           position=self.guard.position(target, q, now_ns),
                           velocity=np.zeros(n), effort=np.zeros(n), gripper=1.0)
        self.driver.write_command(cmd)

    def _after_acknowledge(self) -> str:
        """The next phase once the arm may move: the move to start, if there is one."""
        return "start" if self.start.size else "running"

    def _running(self, now_ns: int) -> None:
        self.phase = "running"
        self.started_ns = now_ns
        self.driver.stop()  # hold at the start pose until the graph's first command
        self.guard.reset()
        log.info("%s: at the start pose: the graph's commands now move the arm", self.ctx.name)

    def _grasp(self, g: GripperCommand) -> None:
        if self.grasp is None:
            self.counts["rejected"] += 1
            log.warning("%s: the driver has no grasp(); gripper_command dropped", self.ctx.name)
            return
        if self.estop or self.phase != "running":
            self.counts["ignored_before_start" if not self.estop else "ignored_in_estop"] += 1
            return
        if not all(np.isfinite([g.width, g.speed, g.force])) or min(g.width, g.speed, g.force) < 0:
            self.counts["rejected"] += 1
            return
        self.grasp(float(g.width), float(g.speed), float(g.force), float(g.epsilon))
        self.counts["grasps"] += 1
        self.grasp_held = False

    def _valid(self, cmd: JointCommand) -> str:
        n = self.n_joints
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
        if self.map_gripper:
            self._map_gripper(float(cmd.gripper))
        if cmd.stamp_ns > 0:
            written = time.monotonic_ns()
            self.command_age.add((written - cmd.stamp_ns) / 1e6)
            if cmd.stamp_ns in self.unanswered:  # the first command planned from that frame
                self.unanswered.remove(cmd.stamp_ns)
                self.frame_to_command.add((written - cmd.stamp_ns) / 1e6)
        self.counts["commands"] += 1
        self.last_cmd_ns = now_ns
        self.commanding = True

    def _map_gripper(self, g: float) -> None:
        """The graph's one-float gripper as the driver's grasp (closing) or move (opening)."""
        a = self.cfg.grasp
        if g < a.close_below and self.fingers != "closed":
            self.fingers = "closed"
            self.grasp(a.width, a.speed, a.force, a.epsilon)
        elif g > a.open_above and self.fingers != "open":
            self.fingers = "open"
            self.grasp(a.open_width, a.speed, 0.0, a.epsilon)
        else:
            return
        self.counts["grasps"] += 1
        self.grasp_held = False

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
        elif self.phase == "acknowledge":  # the operator's go before the first motion
            why = self.releases(e, now_ns)
            if why:
                self.counts["releases_refused"] += 1
                log.warning("%s: acknowledgement refused: %s", self.ctx.name, why)
                return
            self.phase = self._after_acknowledge()
            log.warning("%s: acknowledged by the operator", self.ctx.name)

    def _stop(self) -> None:
        """Stop the arm (it holds where it is); the guard's rate limits start over."""
        self.driver.stop()
        self.commanding = False
        self.guard.reset()

    # -- reporting -------------------------------------------------------------------------

    def state(self) -> str:
        if self.estop:
            return "fault"
        return "running" if self.commanding or self.phase == "start" else "holding"

    def summary(self) -> dict[str, Any]:
        """Counts, and the driver's own figures (``figures()``, if it has one). Called at
        shutdown: the arm is stopped and the driver closed first, so they are final."""
        self.close()
        figures = getattr(self.driver, "figures", None)
        p50, p99 = self.frame_age.percentiles([50, 99])
        c50, c99 = self.command_age.percentiles([50, 99])
        f2c: dict[str, Any] = {}
        if self.frame_to_command.n:
            f50, f99 = self.frame_to_command.percentiles([50, 99])
            f2c = {"frame_to_command_ms_p50": round(f50, 2), "frame_to_command_ms_p99": round(f99, 2),
                   "frame_to_command_samples": self.frame_to_command.n}
        load = ({"load_1m_mean": round(float(np.mean(self.load_1m)), 2),
                 "load_1m_max": round(float(np.max(self.load_1m)), 2), "cpus": os.cpu_count()}
                if self.load_1m else {})
        run = {"phase": self.phase, "frames": self.counts["frames"], "grasps": self.counts["grasps"],
               "held": self.counts["held"], **f2c, **load,
               **({"gripper": self.gripper_result} if self.gripper_result else {})}
        return {**self.counts, "phase": self.phase, "calibration": self.calibration,
                "run": {"bridge": run}, **f2c,
                **({"frame_age_ms_p50": p50, "frame_age_ms_p99": p99} if self.frame_age.n else {}),
                **({"command_age_ms_p50": c50, "command_age_ms_p99": c99}
                   if self.command_age.n else {}),
                **({"gripper": self.gripper_result} if self.gripper_result else {}),
                "guard": dict(self.guard.counts), **self.measured.summary(),
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
