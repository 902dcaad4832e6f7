"""Pretend hardware: a simulated Panda in its own process, in real time, over a socket.

The bridge's path is then exercised exactly as with an arm: a separate process with its
own clock runs the physics at ``physics_hz`` against the wall clock, streams a state
message every step and applies the newest command it has received, whatever the graph
does. Like a real arm's controller box, it protects itself: with no command for
``hold_after_s`` (or on ``stop``) it holds its position with its own joint PD and
gravity compensation until commands come again; it clips every command to its joint
limits (:class:`reflexarc.robot.guard.CommandGuard`), and a frame it cannot read (not
msgpack, not a map, wrong fields) is counted and dropped while it keeps holding. It
counts every measured sample beyond a joint limit (``beyond_limits`` in its figures).

Wire format (ZeroMQ PAIR, one msgpack map per message, arrays as raw little-endian
float64 bytes):

- arm -> driver: ``{"t": "hello", "pid", "n", "physics_hz"}`` once, then per step
  ``{"t": "state", "stamp", "q", "dq", "tau", "g"}``; with ``camera_hz``, a frame of the
  front camera ``{"t": "frame", "stamp", "cam", "h", "w", "rgb"}`` (``stamp``: just before
  it was rendered, its capture time; with ``depth``, also ``"d"``: (h, w) float32 metres);
  once a gripper command came, per step
  ``{"t": "grip", "stamp", "w", "f", "moving", "grasped"}``; ``{"t": "bye", ...figures}``
  at the end.
- driver -> arm: ``{"t": "cmd", "mode", "q", "dq", "tau", "g"}``, ``{"t": "stop"}``,
  ``{"t": "grip", "w", "v", "f", "e"}``, ``{"t": "close"}``.

The gripper is a separate device, as on a real arm: once it has had a ``grip`` command it
follows only those (a joint command's ``g`` no longer moves it). ``f == 0`` moves the
fingers to the opening ``w`` at ``v`` m/s; ``f > 0`` is a grasp: the fingers close at ``v``
until something stops them, and the grasp holds if they came to rest within ``e`` of ``w``
(the width of the object expected), as Franka's gripper reports it. The simulated fingers
are position-driven, so the force reported is the force asked for while they rest short
of closed on something, 0 otherwise: a stand-in for a measurement.

**A table to work on** (``objects``): blocks on the table in front of the arm, laid out as
the episode reset of the ``layout`` task with ``seed`` lays them (:mod:`reflexarc.sim.tasks`),
the arm starting where that reset puts it. The blocks' places are the world's, not the
arm's: nothing of them is sent while it runs (a real arm does not know where the blocks
are; the graph sees them through the camera). At the end, ``bye`` says where they were at
the start and at the end (``blocks_start``, ``blocks_end``: name -> x, y, z in m, the
robot's base frame), as a person watching the arm would, to score the run.

Run it by hand with ``python -m reflexarc.sim.pretend_arm --address ipc:///tmp/arm``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from reflexarc.robot.drivers import CameraFrame, DriverError, DriverState, GraspResult
from reflexarc.robot.guard import CommandGuard, LimitCounter, joint_limits
from reflexarc.robot.panda import PANDA
from reflexarc.runtime.msgs import JointCommand
from reflexarc.sim.assets import BLOCK_COLORS
from reflexarc.sim.tasks import TASKS, make_task

log = logging.getLogger(__name__)

_F8 = np.dtype("<f8")
ROBOT = PANDA  # the arm it simulates (the scenes' robot)
FINGER_TRAVEL = ROBOT.finger_max  # m, one finger of the gripper (the opening is twice it)
MAX_DRAIN = 2000  # messages read_state() takes at most per call (the arm's send + our receive queues)


def _arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=_F8)


def _unpack(frame: bytes) -> dict[str, Any] | None:
    """A received frame as a msgpack map with a string ``t``, or None if it is not one."""
    try:
        msg = msgpack.unpackb(frame)
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        return None
    return msg


def _command_arrays(msg: dict[str, Any], n: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, float]:
    """Mode, q, dq, tau (n,) and gripper of a ``cmd`` message; ValueError if malformed."""
    mode = msg.get("mode")
    if mode not in ("torque", "position"):
        raise ValueError(f"mode {mode!r}")
    arrays = []
    for key in ("q", "dq", "tau"):
        b = msg.get(key)
        if not isinstance(b, bytes) or len(b) not in (0, 8 * n):
            raise ValueError(f"{key} must be 0 or {n} float64 values")
        a = _arr(b)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{key} is not finite")
        arrays.append(a)
    q, dq, tau = arrays
    used = tau if mode == "torque" else q
    if used.size != n:
        raise ValueError(f"{mode} mode needs {n} values in {'tau' if mode == 'torque' else 'q'}")
    g = msg.get("g", 1.0)
    if not isinstance(g, int | float) or not np.isfinite(g):
        raise ValueError("gripper is not a finite number")
    return mode, q, dq, tau, float(np.clip(g, -1.0, 1.0))


def _local(address: str) -> bool:
    """True for ipc:// and loopback tcp:// addresses."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    if address.startswith("tcp://"):
        host = address[len("tcp://"):].rsplit(":", 1)[0]
        return host in ("localhost", "::1", "[::1]") or host.startswith("127.")
    return False


class PretendDriver:
    """Driver of the pretend arm: starts :func:`serve` in a child process and talks to it.

    Args:
        backend: "mujoco" or "pybullet", the simulator playing the arm.
        physics_hz: the arm's own control/physics rate (500 or 1000).
        address: its socket (default: a fresh ipc:// path); local only (this stand-in
            has no authentication).
        hold_after_s: the arm holds its position after this long without a command.
        start_timeout_s: how long ``connect`` waits for the first message.
        rt_priority: > 0 runs the arm's process SCHED_FIFO (if the OS allows).
        camera_hz: > 0: the arm's process renders its front camera at this rate and the
            driver has ``read_images()`` (frames with their capture stamps).
        image_size: the camera's square frame side, pixels.
        depth: the frames carry depth too (a depth camera), float32 m.
        objects: blocks on the table (red, green, blue; up to 3, each once).
        layout: the task whose seeded reset lays the blocks out and places the arm
            (reach, push, pick_place).
        seed: the layout's seed.
    """

    def __init__(
        self,
        backend: str = "mujoco",
        physics_hz: int = 1000,
        address: str = "",
        hold_after_s: float = 0.01,
        start_timeout_s: float = 60.0,
        rt_priority: int = 0,
        camera_hz: float = 0.0,
        image_size: int = 64,
        depth: bool = False,
        objects: list[str] | tuple[str, ...] = (),
        layout: str = "push",
        seed: int = 0,
    ) -> None:
        if backend not in ("mujoco", "pybullet"):
            raise DriverError(f"backend must be 'mujoco' or 'pybullet', got {backend!r}")
        if physics_hz not in (500, 1000):
            raise DriverError(f"physics_hz must be 500 or 1000, got {physics_hz}")
        address = address or f"ipc://{tempfile.gettempdir()}/reflexarc-arm-{uuid.uuid4().hex[:8]}"
        if not _local(address):
            raise DriverError(f"the pretend arm listens on local addresses only, got {address!r}")
        self.backend = backend
        self.physics_hz = physics_hz
        self.address = address
        self.hold_after_s = hold_after_s
        self.start_timeout_s = start_timeout_s
        self.rt_priority = rt_priority
        if not 0.0 <= camera_hz <= 60.0:
            raise DriverError(f"camera_hz must be in [0, 60], got {camera_hz}")
        self.camera_hz = camera_hz
        self.image_size = image_size
        self.depth = bool(depth)
        self.objects = [str(o) for o in objects]
        if len(self.objects) > 3 or len(set(self.objects)) != len(self.objects) or any(
                o not in BLOCK_COLORS for o in self.objects):
            raise DriverError(f"objects must be up to 3 distinct of {', '.join(BLOCK_COLORS)}, "
                              f"got {self.objects}")
        if layout not in TASKS:
            raise DriverError(f"layout must be one of {', '.join(TASKS)}, got {layout!r}")
        self.layout = layout
        self.seed = int(seed)
        self.frames: dict[str, CameraFrame] = {}
        self.gripper: GraspResult | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctx: zmq.Context | None = None
        self.sock: zmq.Socket | None = None
        self.hello: dict[str, Any] = {}
        self.bye: dict[str, Any] = {}
        self.states = 0
        self.bad_frames = 0
        self.unsent = 0  # messages dropped on a full queue (the arm process starved)
        self._closed = False

    # -- Driver protocol ----------------------------------------------------------------

    def connect(self) -> None:
        cmd = [
            sys.executable, "-m", "reflexarc.sim.pretend_arm", "--address", self.address,
            "--backend", self.backend, "--physics-hz", str(self.physics_hz),
            "--hold-after-s", str(self.hold_after_s), "--rt-priority", str(self.rt_priority),
            "--parent-pid", str(os.getpid()), "--camera-hz", str(self.camera_hz),
            "--image-size", str(self.image_size), "--objects", ",".join(self.objects),
            "--layout", self.layout, "--seed", str(self.seed), *(["--depth"] if self.depth else []),
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PAIR)
        self.sock.linger = 0
        self.sock.rcvhwm = 1000
        self.sock.sndhwm = 100
        self.sock.connect(self.address)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DriverError(f"the pretend arm exited at start (code {self.proc.returncode})")
            if self.sock.poll(100):
                msg = _unpack(self.sock.recv())
                if msg is not None and msg.get("t") == "hello":
                    self.hello = msg
                    return
        self.close()
        raise DriverError(f"no hello from the pretend arm at {self.address} "
                          f"within {self.start_timeout_s} s")

    def read_state(self) -> DriverState | None:
        sock = self._socket()
        newest = None
        # at most what the two queues hold: an arm that sends faster than this process reads
        # (a starved bridge on a busy machine) must not keep the tick here forever
        for _ in range(MAX_DRAIN):
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            msg = _unpack(frame)
            if msg is None:
                self.bad_frames += 1
                continue
            t = msg.get("t")
            if t == "state":
                newest = msg
            elif t == "frame":
                h, w = msg["h"], msg["w"]
                rgb = np.frombuffer(msg["rgb"], np.uint8).reshape(h, w, 3)
                d = msg.get("d")
                depth = np.frombuffer(d, "<f4").reshape(h, w) if d else None
                self.frames[str(msg["cam"])] = CameraFrame(int(msg["stamp"]), rgb, depth)
            elif t == "grip":
                self.gripper = GraspResult(int(msg["stamp"]), float(msg["w"]), float(msg["f"]),
                                           bool(msg["moving"]), bool(msg["grasped"]))
            elif t == "bye":
                self.bye = msg
        if newest is None:
            if self.proc is not None and self.proc.poll() is not None:
                raise DriverError(f"the pretend arm died (exit code {self.proc.returncode})")
            return None
        self.states += 1
        return DriverState(int(newest["stamp"]), _arr(newest["q"]), _arr(newest["dq"]),
                           _arr(newest["tau"]), float(newest["g"]))

    def write_command(self, cmd: JointCommand) -> None:
        self._send({
            "t": "cmd", "mode": cmd.mode,
            "q": np.ascontiguousarray(cmd.position, _F8).tobytes(),
            "dq": np.ascontiguousarray(cmd.velocity, _F8).tobytes(),
            "tau": np.ascontiguousarray(cmd.effort, _F8).tobytes(),
            "g": float(cmd.gripper),
        })

    def stop(self) -> None:
        self._send({"t": "stop"})

    # -- optional parts of the protocol: cameras, gripper, calibration ---------------------

    def read_images(self) -> dict[str, CameraFrame]:
        """The frames that came since the last call, with their capture stamps."""
        frames, self.frames = self.frames, {}
        return frames

    def grasp(self, width: float, speed: float, force: float, epsilon: float = 0.005) -> None:
        """Move the fingers to ``width`` (``force`` 0), or grasp an object ``width`` wide."""
        self._send({"t": "grip", "w": float(width), "v": float(speed), "f": float(force),
                    "e": float(epsilon)})

    def read_gripper(self) -> GraspResult | None:
        """The newest gripper measurement (read_state() collects them), once each."""
        g, self.gripper = self.gripper, None
        return g

    def calibrate(self) -> dict[str, Any]:
        """Open the gripper fully and measure its opening: the range grasps can use."""
        self.grasp(2 * FINGER_TRAVEL, 0.1, 0.0)
        deadline = time.monotonic() + 10.0
        last: GraspResult | None = None
        while time.monotonic() < deadline:
            self.read_state()
            g = self.read_gripper()
            last = g or last
            if last is not None and not last.moving:
                return {"gripper_max_width_m": round(last.width, 5)}
            time.sleep(0.005)
        raise DriverError("the pretend arm's gripper did not come to rest within 10 s")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.sock is not None:
            try:
                self.sock.send(msgpack.packb({"t": "close"}), zmq.NOBLOCK)
                deadline = time.monotonic() + 2.0
                while not self.bye and time.monotonic() < deadline:
                    if self.sock.poll(50):
                        msg = _unpack(self.sock.recv())
                        if msg is not None and msg.get("t") == "bye":
                            self.bye = msg
            except zmq.ZMQError:
                pass
            self.sock.close()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=3.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.ctx is not None:
            self.ctx.term()
        if self.address.startswith("ipc://"):
            Path(self.address[len("ipc://"):]).unlink(missing_ok=True)

    # -- helpers ---------------------------------------------------------------------------

    def _socket(self) -> zmq.Socket:
        if self.sock is None:
            raise DriverError("the pretend arm is not connected (call connect first)")
        return self.sock

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self._socket().send(msgpack.packb(msg), zmq.NOBLOCK)
        except zmq.Again:
            # its queue is full: the arm process is alive but starved (a busy machine), or
            # gone. Alive, it holds by itself after hold_after_s without a command, so the
            # message is dropped and counted, as a lossy link would lose it
            if self.proc is not None and self.proc.poll() is not None:
                raise DriverError(f"the pretend arm died (exit code {self.proc.returncode})") from None
            self.unsent += 1
            if self.unsent == 1:
                log.warning("pretend arm: its queue is full (the arm process is starved): "
                            "messages to it are dropped and counted (unsent)")

    def figures(self) -> dict[str, Any]:
        """The arm process's pid and its own loop figures (after close)."""
        return {"arm_pid": self.hello.get("pid"), "arm_backend": self.backend,
                "arm_states_read": self.states, "bad_frames_from_arm": self.bad_frames,
                "unsent_to_arm": self.unsent, **{f"arm_{k}": v for k, v in self.bye.items()
                                                    if k != "t"}}


# --------------------------------------------------------------------------------------
# The arm process
# --------------------------------------------------------------------------------------


class _Gripper:
    """The arm process's gripper: a move or grasp ramped at its speed, then judged at rest."""

    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.active = False  # a grip command came: the fingers follow grip commands only
        self.target = self.opening = 2 * FINGER_TRAVEL  # ramp end and current ramp value, m
        self.speed = self.force = self.width = self.eps = 0.0
        self.still = 0  # steps the measured opening has not moved
        self.last = 0.0

    def command(self, msg: dict[str, Any], measured: float) -> None:
        w, v, f, e = (float(msg.get(k, 0.0)) for k in ("w", "v", "f", "e"))
        if not all(np.isfinite([w, v, f, e])) or v <= 0 or w < 0 or f < 0:
            raise ValueError(f"grip w={w} v={v} f={f} e={e}")
        self.active = True
        self.width, self.speed, self.force, self.eps = w, v, f, e
        self.target = 0.0 if f > 0 else min(w, 2 * FINGER_TRAVEL)  # a grasp closes
        self.opening, self.still = measured, 0

    def step(self) -> float:
        """Advance the ramp one step; the scene's gripper command in [-1, 1]."""
        delta = self.target - self.opening
        self.opening += float(np.clip(delta, -self.speed * self.dt, self.speed * self.dt))
        return float(np.clip(self.opening / FINGER_TRAVEL - 1.0, -1.0, 1.0))

    def report(self, stamp: int, measured: float) -> dict[str, Any]:
        self.still = self.still + 1 if abs(measured - self.last) < 2e-5 else 0
        self.last = measured
        moving = self.opening != self.target or self.still < 20
        blocked = self.force > 0 and not moving and measured > self.target + 0.002
        grasped = blocked and abs(measured - self.width) <= self.eps
        return {"t": "grip", "stamp": stamp, "w": measured,
                "f": self.force if blocked else 0.0, "moving": moving, "grasped": grasped}


def _blocks(scene: Any) -> dict[str, list[float]]:
    """Where the blocks are (name -> x, y, z m): the world's truth, for the score at the end."""
    if not scene.object_names:
        return {}
    poses = scene.object_poses()
    return {n: [round(float(v), 5) for v in poses[i, :3]] for i, n in enumerate(scene.object_names)}


def serve(address: str, backend: str, physics_hz: int, hold_after_s: float,
          rt_priority: int = 0, parent_pid: int = 0, camera_hz: float = 0.0,
          image_size: int = 64, depth: bool = False, objects: list[str] | None = None,
          layout: str = "push", seed: int = 0) -> int:
    """Run the pretend arm until told to close, its parent dies, or SIGTERM/SIGINT."""
    from reflexarc.sim.scenes import make_scene

    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
        except OSError as e:
            log.warning("pretend arm: no SCHED_FIFO (%s)", e)
    scene = make_scene(backend=backend, objects=list(objects or []),
                       cameras=["front"] if camera_hz else [], physics_hz=physics_hz)
    if objects:  # the table as the layout task's seeded reset lays it, the arm where it puts it
        make_task(layout).reset(scene, np.random.default_rng(seed))
    blocks_start = _blocks(scene)
    if camera_hz:  # the first render sets the renderer up (1.2 s for MuJoCo on a busy
        # machine): here, before the arm streams, not as a stall of its 1 kHz loop
        scene.render("front", image_size, depth=depth)
    gripper = _Gripper(1.0 / physics_hz)
    frame_ns = int(1e9 / camera_hz) if camera_hz else 0
    next_frame = time.monotonic_ns()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.linger = 0
    sock.sndhwm = 1000
    sock.bind(address)
    period = 1_000_000_000 // physics_hz
    hold_ns = int(hold_after_s * 1e9)
    sock.send(msgpack.packb({"t": "hello", "pid": os.getpid(), "n": ROBOT.dof, "physics_hz": physics_hz}))
    steps = late = dropped = holds = rejected = bad_frames = 0
    limits = joint_limits(ROBOT)
    guard = CommandGuard(limits)  # the arm's own limits, whatever the bridge sent
    counter = LimitCounter(limits)
    last_cmd: int | None = None
    holding = True  # reset() holds the arm with a position command
    next_ns = time.monotonic_ns()
    t_start = time.monotonic()
    try:
        while not stopping:
            wait = next_ns - time.monotonic_ns()
            if wait > 150_000:
                time.sleep((wait - 100_000) / 1e9)
            while time.monotonic_ns() < next_ns:
                pass
            now = time.monotonic_ns()
            if now - next_ns > period:
                late += 1
            newest = None
            while sock.poll(0):
                msg = _unpack(sock.recv())
                if msg is None:  # not a msgpack map: counted, dropped; the arm keeps holding
                    bad_frames += 1
                    if bad_frames == 1:
                        log.warning("pretend arm: dropped a frame that is not a msgpack map")
                    continue
                t = msg["t"]
                if t == "cmd":
                    newest = msg
                elif t == "stop":
                    newest = None
                    scene.command_position(scene.joint_state().q)
                    guard.reset()
                    holding, last_cmd = True, None
                    holds += 1
                elif t == "grip":
                    try:
                        gripper.command(msg, float(scene.joint_state().gripper))
                    except ValueError as e:
                        rejected += 1
                        log.warning("pretend arm: rejected a gripper command: %s", e)
                elif t == "close":
                    stopping = True
                else:
                    bad_frames += 1
            if stopping:
                break
            js = scene.joint_state()
            if newest is not None:
                try:
                    mode, q, dq, tau, g = _command_arrays(newest, ROBOT.dof)
                except ValueError as e:  # a bad command must not bring the arm down
                    rejected += 1
                    if rejected == 1:
                        log.warning("pretend arm: rejected a command: %s", e)
                else:
                    if mode == "torque":
                        tau = guard.torque(tau, js.q, js.dq, now)
                    else:
                        q = guard.position(q, js.q, now)
                        dq = guard.velocity(dq) if dq.size else dq
                    scene.apply(mode, q, tau, None if gripper.active else g, dq)
                    last_cmd, holding = now, False
            if not holding and last_cmd is not None and now - last_cmd > hold_ns:
                scene.command_position(js.q)  # communication lost: hold
                guard.reset()
                holding = True
                holds += 1
            if guard.overspeed(js.dq) and not holding:  # the arm's own reflex
                scene.command_position(js.q)
                guard.reset()
                holding, last_cmd = True, None
                holds += 1
            if gripper.active:
                scene.command_gripper(gripper.step())
            scene.step(1)
            steps += 1
            s = scene.joint_state()
            counter.add(s.q, s.dq, s.tau, steps * scene.dt)
            state = {"t": "state", "stamp": time.monotonic_ns(), "q": s.q.tobytes(),
                     "dq": s.dq.tobytes(), "tau": s.tau.tobytes(), "g": float(s.gripper)}
            out = [state]
            if gripper.active:
                out.append(gripper.report(state["stamp"], float(s.gripper)))
            if frame_ns and time.monotonic_ns() >= next_frame:
                next_frame += frame_ns
                captured = time.monotonic_ns()  # the shutter: before the render's own time
                frame: dict[str, Any] = {"t": "frame", "stamp": captured, "cam": "front"}
                if depth:
                    rgb, d = scene.render("front", image_size, depth=True)
                    frame["d"] = np.ascontiguousarray(d, "<f4").tobytes()
                else:
                    rgb = scene.render("front", image_size)
                rgb = np.ascontiguousarray(rgb)
                frame.update(h=rgb.shape[0], w=rgb.shape[1], rgb=rgb.tobytes())
                out.append(frame)
            for m in out:
                try:
                    sock.send(msgpack.packb(m), zmq.NOBLOCK)
                except zmq.Again:
                    dropped += 1
            next_ns += period
            if time.monotonic_ns() - next_ns > 10 * period:  # far behind: do not burst
                next_ns = time.monotonic_ns() + period
            if parent_pid and os.getppid() != parent_pid:
                break
    finally:
        elapsed = time.monotonic() - t_start
        bye = {"t": "bye", "steps": steps, "rate_hz": steps / elapsed if elapsed > 0 else 0.0,
               "late_steps": late, "dropped_states": dropped, "holds": holds,
               "rejected": rejected, "bad_frames": bad_frames, "guard": guard.counts,
               **counter.summary()}
        if blocks_start:
            bye.update(blocks_start=blocks_start, blocks_end=_blocks(scene))
        try:
            sock.send(msgpack.packb(bye), zmq.NOBLOCK)
            time.sleep(0.05)
        except zmq.ZMQError:
            pass
        sock.close()
        ctx.term()
        scene.close()
    return 0


def _die_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="a simulated Panda playing real hardware")
    p.add_argument("--address", required=True)
    p.add_argument("--backend", default="mujoco", choices=("mujoco", "pybullet"))
    p.add_argument("--physics-hz", type=int, default=1000, choices=(500, 1000))
    p.add_argument("--hold-after-s", type=float, default=0.01)
    p.add_argument("--rt-priority", type=int, default=0)
    p.add_argument("--parent-pid", type=int, default=0)
    p.add_argument("--camera-hz", type=float, default=0.0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--depth", action="store_true")
    p.add_argument("--objects", default="", help="blocks on the table, comma-separated")
    p.add_argument("--layout", default="push", choices=("reach", "push", "pick_place"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not _local(a.address):
        p.error(f"the pretend arm listens on local addresses only, got {a.address!r}")
    _die_with_parent()
    logging.basicConfig(level=logging.INFO, format="[pretend-arm] %(levelname)s %(message)s")
    return serve(a.address, a.backend, a.physics_hz, a.hold_after_s, a.rt_priority, a.parent_pid,
                 a.camera_hz, a.image_size, a.depth, [o for o in a.objects.split(",") if o],
                 a.layout, a.seed)


if __name__ == "__main__":
    sys.exit(main())
