"""The learner node: keeps training the world model on experience, publishes new weights.

Experience comes from episode files (``episodes``: a root that is rescanned, so episodes
the recorder finishes are picked up) and/or from the live stream (``camera/<camera>``
frames and ``ee_action`` commands, or for any gymnasium env the env's own actions on
``joint_command.effort``, aligned by stamp as in :mod:`reflexarc.policies.data`). It goes
into a replay buffer of uint8 frames; a model with a frame history (``model.frames``)
trains on stacked frames that never cross an episode's start.

Training runs (``train_in``) either in a background thread of the node's process
(``thread``: the node's loop only ingests experience and forwards published weights, so
its heartbeats never wait for a gradient step) or inside :meth:`LearnerNode.step`
(``step``: a bounded number of updates per step, ``updates_per_step`` within
``max_step_ms``; deterministic, for lockstep runs and tests). ``auto`` picks ``thread``
on the realtime clock and ``step`` in lockstep. The node's process runs at OS niceness
``nice`` with ``threads`` torch threads, so on a small machine it takes the CPU only
when the control nodes leave it idle.

Several streams at once (``sources``): besides its own graph's, the node subscribes to
the camera and action streams of other graphs (other sims or robots, over TCP with CURVE:
each source names the publishing nodes' addresses and that graph's key directory). Each
source fills its own replay ring, aligned on its own stamps (the clocks of two machines
never mix), and training draws windows uniformly over all rings. docs/scale.md shows a
learner fed by two graphs.

Every ``publish_every`` updates the model is written atomically (temporary file +
os.replace) as version ``v`` to ``out_dir/v<v:06d>/model.safetensors`` (the newest
``keep_versions`` are kept; 0 keeps all) and to ``out_dir/model.safetensors`` (the
latest), and a ``Weights`` message (version, path of the versioned file, sha256) tells
perception and the planner to hot-swap it. A versioned file is never rewritten, so a
reader still loading version v is not raced by version v + 1. The checkpoint config's
``learner`` entry records how much experience made it (updates, frames, transitions,
seconds of streamed experience, wall time).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from reflexarc.policies.checkpoint import load_checkpoint, save_checkpoint
from reflexarc.policies.data import load_episode
from reflexarc.policies.train import OptimConfig, Trainer
from reflexarc.policies.world_model import ModelConfig, WorldModel
from reflexarc.runtime import bus as busmod
from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.episode import list_episodes
from reflexarc.runtime.errors import ConfigError, NodeError
from reflexarc.runtime.msgs import Weights
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

log = logging.getLogger(__name__)


class ReplayBuffer:
    """A ring of frames (cap, 3, S, S) uint8 with the action after each frame.

    ``valid[i]``: frame i and the next slot (i + 1) % cap are one transition. The newest
    frame is never valid, so no window crosses from the newest to the oldest frame.
    """

    def __init__(self, capacity: int, image_size: int, action_dim: int = 4) -> None:
        self.capacity = capacity
        self.image_size = image_size
        self.frames = torch.zeros((capacity, 3, image_size, image_size), dtype=torch.uint8)
        self.actions = torch.zeros((capacity, action_dim), dtype=torch.float32)
        self.valid = torch.zeros(capacity, dtype=torch.bool)
        self.size = 0
        self.ptr = 0  # next slot to write
        self.added = 0  # frames ever added

    def add_frame(self, rgb: np.ndarray, action_before: np.ndarray | None = None) -> None:
        """Append one frame (S, S, 3) uint8; ``action_before`` links it to the previous one."""
        prev = (self.ptr - 1) % self.capacity
        if action_before is not None and self.size > 0:
            self.actions[prev] = torch.as_tensor(action_before, dtype=torch.float32)
            self.valid[prev] = True
        # a received frame is a read-only view of its message: copied (12 KB) for torch
        self.frames[self.ptr] = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)
        self.valid[self.ptr] = False
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def add_episode(self, rgb: np.ndarray, actions: np.ndarray, valid: np.ndarray) -> None:
        """Append a whole episode: rgb (N, S, S, 3), actions (N, A), valid (N,)."""
        self.break_link()
        for j in range(len(rgb)):
            before = actions[j - 1] if j > 0 and valid[j - 1] else None
            self.add_frame(rgb[j], before)

    def break_link(self) -> None:
        """The next frame does not follow the newest one (a new episode starts)."""
        if self.size:
            self.valid[(self.ptr - 1) % self.capacity] = False

    def window_starts(self, horizon: int) -> Tensor:
        """(M,) slots starting H consecutive valid transitions."""
        n = self.size
        if n <= horizon:
            return torch.zeros(0, dtype=torch.int64)
        v = self.valid[:n].to(torch.int64)
        if n == self.capacity:
            v = torch.cat([v, v[:horizon]])
        c = torch.cat([torch.zeros(1, dtype=torch.int64), v.cumsum(0)])
        t = torch.arange(n)
        ok = t + horizon < c.numel()
        t = t[ok]
        return t[(c[t + horizon] - c[t]) == horizon]

    def windows(self, starts: Tensor, horizon: int, device: torch.device | str = "cpu",
                frames: int = 1) -> tuple[Tensor, Tensor]:
        """images (B, H+1, 3F, S, S) uint8 (F = ``frames`` of history, oldest first, the
        first frame of an episode repeated before it), actions (B, H, A) at ``starts``."""
        idx = (starts[:, None] + torch.arange(horizon + 1)) % self.capacity
        images = self.frames[self.history(idx, frames)].flatten(-4, -3) if frames > 1 else self.frames[idx]
        return images.to(device), self.actions[idx[:, :-1]].to(device)

    def history(self, idx: Tensor, frames: int) -> Tensor:
        """Slots (*R, F) of the F frames up to each slot of ``idx`` (*R), oldest first: a
        step back only along linked transitions (it stops at an episode's first frame)."""
        out = [idx]
        cur = idx
        for _ in range(frames - 1):
            prev = (cur - 1) % self.capacity
            cur = torch.where(self.valid[prev], prev, cur)
            out.append(cur)
        return torch.stack(out[::-1], dim=-1)


@dataclass
class StreamSource:
    """Another graph whose experience the learner takes (``sources`` entry)."""

    name: str = ""  # how the summary and checkpoints name it
    # PUB addresses of that graph's nodes publishing camera/<camera> and ee_action
    # (tcp://host:port; its bus.base_port + the node's index in its graph)
    connect: list[str] = field(default_factory=list)
    keys_dir: str = ""  # that graph's CURVE keys (reflexarc keys); "" = no CURVE

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("name", "a stream source needs a name")
        if not self.connect:
            raise ConfigError("connect", f"source {self.name!r} has no address; give tcp://host:port of its sim and explorer nodes")
        for a in self.connect:
            if not a.startswith(("tcp://", "ipc://")):
                raise ConfigError("connect", f"source {self.name!r}: {a!r} is not tcp://host:port or ipc://path")


class ClientKeys:
    """CURVE client keys of a source graph (``keys_dir`` made by ``reflexarc keys``).

    Only the client side: a subscriber needs no authenticator of its own, and ZeroMQ
    allows one authenticator per context (the node's runtime may hold it)."""

    def __init__(self, keys_dir: str) -> None:
        import zmq.auth

        self.enabled = bool(keys_dir)
        if not self.enabled:
            return
        keys = Path(keys_dir)
        try:
            self.server_public, _ = zmq.auth.load_certificate(keys / "server.key")
            self.client_public, self.client_secret = zmq.auth.load_certificate(keys / "client.key_secret")
        except (OSError, ValueError) as e:
            raise ConfigError("sources.keys_dir", f"cannot load CURVE keys from {keys}: {e}") from None

    def client(self, sock: Any) -> None:
        if self.enabled:
            sock.curve_secretkey = self.client_secret
            sock.curve_publickey = self.client_public
            sock.curve_serverkey = self.server_public


class StreamState:
    """One stream's replay ring and the alignment of its frames with its actions."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.last_frame_stamp: int | None = None
        self.pending_actions: list[tuple[int, np.ndarray]] = []
        self.transitions = 0
        self.stream_ns = 0


@dataclass
class LearnerConfig:
    """Arguments of the learner node (graph YAML ``args``)."""

    init: str = ""  # checkpoint to continue from; "" = a fresh model from ``model``
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(warmup=0))
    out_dir: str = "runs/learner"  # v<version>/ + the latest model.safetensors, atomically
    keep_versions: int = bounded(5, 0, None)  # versioned checkpoints kept; 0 = all
    episodes: str = ""  # root of episode directories to learn from ("" = none)
    rescan_s: float = bounded(30.0, 0.0, None)  # how often to look for new episodes
    stream: bool = True  # learn from camera/<camera> + ee_action messages too
    sources: list[StreamSource] = field(default_factory=list)  # other graphs' streams
    camera: str = "front"
    buffer_frames: int = bounded(50000, 16, None)
    min_windows: int = bounded(256, 1, None)  # wait for this much experience
    train_in: str = choice("auto", "auto", "thread", "step")  # auto: thread unless lockstep
    updates_per_step: int = bounded(8, 1, None)  # train_in=step: updates per node step
    max_step_ms: float = bounded(500.0, 1.0, None)  # train_in=step: stop updating after this
    publish_every: int = bounded(500, 1, None)  # updates between published checkpoints
    # replay ratio cap: at most this many updates per frame of experience taken in (0: no
    # cap). A few hundred updates on the first minute of a stream overfit it: the model got
    # worse on held-out episodes until the cap (0.25, one batch of 32 per 4 frames)
    max_updates_per_frame: float = bounded(0.0, 0.0, None)
    device: str = "cpu"
    threads: int = bounded(1, 0, 64)  # torch threads in this process (0 = default)
    nice: int = bounded(10, 0, 19)  # OS niceness of the training (never lowered)
    # Linux scheduling class of the training thread (train_in=thread): "idle"
    # (SCHED_IDLE) runs it only on a CPU nothing else wants, so it does not delay the
    # control loops; "normal": niceness only
    sched: str = choice("idle", "idle", "normal")
    seed: int = 0


def lower_priority(nice: int, native_id: int = 0) -> int:
    """Raise the niceness of a thread (``native_id``; 0 = the calling thread) to ``nice``.

    On Linux niceness is per thread; threads started afterwards inherit it. Never lowers
    it (that needs privileges). Returns the niceness now in effect.
    """
    tid = native_id or threading.get_native_id()
    cur = os.getpriority(os.PRIO_PROCESS, tid)
    if nice > cur:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    return os.getpriority(os.PRIO_PROCESS, tid)


class LearnerNode(Node):
    """Self-supervised world-model training as a node; publishes ``weights``."""

    Config = LearnerConfig
    # actions: the hand's (ee_action) or, for any gymnasium env, the env's own
    # (joint_command.effort, as the gym graph's policy sends them)
    subscribes: ClassVar[dict[str, str]] = {"camera/": "all", "ee_action": "all", "joint_command": "all"}
    publishes: ClassVar[tuple[str, ...]] = ("weights",)
    SCAN_BATCH: ClassVar[int] = 8  # episode files loaded per scan call

    def __init__(self, ctx: NodeContext, cfg: LearnerConfig) -> None:
        super().__init__(ctx, cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        if cfg.init:
            model, info = load_checkpoint(cfg.init, self.device)
            self.version = info.version
            self.train_config: dict[str, Any] = info.config
        else:
            model = WorldModel(cfg.model).to(self.device)
            self.version = 0
            self.train_config = {}
        self.init_version = self.version
        self.model = model.train()
        self.trainer = Trainer(self.model, cfg.optim)
        mc = self.model.cfg
        names = [s.name for s in cfg.sources]
        if len(set(names)) != len(names) or "local" in names:
            raise ConfigError("sources", f"source names must be unique and not 'local'; got {names}")
        # the capacity is shared: this graph's ring (and episode files) and one per source
        cap = max(16, cfg.buffer_frames // (1 + len(cfg.sources)))
        self.buffer = ReplayBuffer(cap, mc.image_size, mc.action_dim)
        self.streams = {"local": StreamState(self.buffer)}
        for src in cfg.sources:
            self.streams[src.name] = StreamState(ReplayBuffer(cap, mc.image_size, mc.action_dim))
        self.zctx: Any = None
        self.source_subs: dict[str, busmod.Subscriber] = {}
        if cfg.sources:
            self.zctx = busmod.context()
            for src in cfg.sources:
                bcfg = busmod.BusConfig(transport="tcp")
                self.source_subs[src.name] = busmod.Subscriber(
                    self.zctx, src.connect, [f"camera/{cfg.camera}", "ee_action"], bcfg,
                    ClientKeys(src.keys_dir), f"{ctx.name}<-{src.name}")  # type: ignore[arg-type]
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.out_dir = Path(cfg.out_dir)
        self.seen_episodes: set[str] = set()
        self.next_scan_ns: int | None = None
        self.updates = 0
        self.last_loss: Tensor | None = None
        self.published = 0
        self.file_transitions = 0  # linked frame pairs added from episode files
        self.wrong_size_actions = 0  # actions not of the model's size: dropped, counted
        self.train_s = 0.0  # time inside training updates
        self.t0 = time.monotonic()
        self.threaded = cfg.train_in == "thread" or (cfg.train_in == "auto" and ctx.clock != "lockstep")
        self.lock = threading.Lock()  # buffer and counters, between the loop and the trainer
        self.outbox: queue.SimpleQueue[Weights] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        # the whole process yields (threads started later inherit it): a niced training
        # thread holding the GIL would otherwise stall a loop thread of higher priority
        self.niceness = lower_priority(cfg.nice)

    # ---- experience --------------------------------------------------------------------

    def _scan(self, now_ns: int) -> None:
        cfg = self.cfg
        if not cfg.episodes or (self.next_scan_ns is not None and now_ns < self.next_scan_ns):
            return
        self.next_scan_ns = now_ns + int(cfg.rescan_s * 1e9)
        root = Path(cfg.episodes)
        if not root.is_dir():
            return
        new = [p for p in list_episodes(root) if p.name not in self.seen_episodes]
        if len(new) > self.SCAN_BATCH:  # training starts on the first ones; the rest next call
            new, self.next_scan_ns = new[: self.SCAN_BATCH], now_ns
        for path in new:
            d = load_episode(path, self.buffer.image_size, cfg.camera, self.model.cfg.action_dim)
            with self.lock:
                self.buffer.add_episode(d["rgb"], d["actions"], d["valid"])
                self.file_transitions += int(np.count_nonzero(d["valid"]))
            self.seen_episodes.add(path.name)

    @property
    def transitions(self) -> int:
        """Linked frame pairs ever added (files and every stream)."""
        return self.file_transitions + sum(st.transitions for st in self.streams.values())

    @property
    def stream_ns(self) -> int:
        """Time spanned by linked stream frames, summed over streams (each on its own clock)."""
        return sum(st.stream_ns for st in self.streams.values())

    @property
    def frames_added(self) -> int:
        return sum(st.buffer.added for st in self.streams.values())

    def _ingest_stream(self, inbox: Inbox) -> None:
        # a model of the Panda's hand learns from ee_action; a model of an env's own actions
        # (action_scales from its data) from joint_command.effort. In the Panda's graphs
        # joint_command carries the controller's joint torques, which are not its actions.
        own_actions = bool(self.model.cfg.action_scales)
        ee, joint = inbox.new("ee_action"), inbox.new("joint_command")
        self._ingest(self.streams["local"], inbox.new(f"camera/{self.cfg.camera}"),
                     list(joint) if own_actions else list(ee))

    def _ingest_sources(self) -> None:
        cam = f"camera/{self.cfg.camera}"
        for name, sub in self.source_subs.items():
            got = sub.drain()
            self._ingest(self.streams[name], [m for t, m, _ in got if t == cam],
                         [m for t, m, _ in got if t == "ee_action"])

    def _ingest(self, st: StreamState, frames: list[Any], actions: list[Any]) -> None:
        """Frames and actions of one stream into its ring, linked by their stamps."""
        for msg in actions:  # EEAction.action, or an env's own action in JointCommand.effort
            a = np.asarray(msg.action if hasattr(msg, "action") else msg.effort, np.float32)
            if a.size != st.buffer.actions.shape[1]:
                self.wrong_size_actions += 1
                continue
            st.pending_actions.append((msg.stamp_ns, a.reshape(-1)))
        for img in sorted(frames, key=lambda m: m.stamp_ns):
            rgb = np.asarray(img.rgb)
            buf = st.buffer
            if rgb.shape[:2] != (buf.image_size, buf.image_size):
                import cv2

                rgb = cv2.resize(rgb, (buf.image_size, buf.image_size), interpolation=cv2.INTER_AREA)
            before = None
            if st.last_frame_stamp is not None:
                lo, hi = st.last_frame_stamp, img.stamp_ns
                acts = [a for s, a in st.pending_actions if lo <= s < hi]
                if acts:
                    before = np.array(acts[-1], np.float32)  # an env's action: the last one holds
                    if not self.model.cfg.action_scales:  # the hand's displacements add up
                        before[:3] = np.sum([a[:3] for a in acts], axis=0)
            with self.lock:
                if st.last_frame_stamp is None:
                    buf.break_link()
                buf.add_frame(rgb, before)
                if before is not None and st.last_frame_stamp is not None:
                    st.transitions += 1
                    st.stream_ns += img.stamp_ns - st.last_frame_stamp
            st.last_frame_stamp = img.stamp_ns
            st.pending_actions = [(s, a) for s, a in st.pending_actions if s >= img.stamp_ns]

    # ---- training ------------------------------------------------------------------------

    def _update(self, starts: Tensor) -> None:
        """One gradient step on a batch of windows drawn from ``starts``."""
        h = self.cfg.optim.horizon
        pick = torch.randint(len(starts), (self.cfg.optim.batch_size,), generator=self.gen)
        with self.lock:
            images, actions = self._windows(starts[pick], h)
        t = time.perf_counter()
        self.last_loss = self.trainer.step(images, actions)[0]
        self.train_s += time.perf_counter() - t
        self.updates += 1

    def _starts(self) -> Tensor:
        """(M,) window starts over every ring: ring k's slot i is k * capacity + i."""
        with self.lock:
            h = self.cfg.optim.horizon
            if len(self.streams) == 1:
                return self.buffer.window_starts(h)
            return torch.cat([k * st.buffer.capacity + st.buffer.window_starts(h)
                              for k, st in enumerate(self.streams.values())])

    def _windows(self, starts: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
        """images (B, H+1, 3, S, S), actions (B, H, A) at global ``starts`` (see _starts)."""
        if len(self.streams) == 1:
            return self.buffer.windows(starts, horizon, self.device, self.model.cfg.frames)
        cap = self.buffer.capacity
        ring = starts // cap
        parts = [(ring == k).nonzero().flatten() for k in range(len(self.streams))]
        got = [st.buffer.windows(starts[i] % cap, horizon, self.device, self.model.cfg.frames)
               for st, i in zip(self.streams.values(), parts, strict=True)]
        order = torch.cat(parts).argsort()  # back to the sampled order
        return torch.cat([g[0] for g in got])[order], torch.cat([g[1] for g in got])[order]

    def _capped(self) -> bool:
        """Whether the replay ratio cap (``max_updates_per_frame``) stops updates for now."""
        cap = self.cfg.max_updates_per_frame
        return bool(cap) and self.updates >= cap * self.frames_added

    def _train_loop(self) -> None:
        """The background trainer (``train_in=thread``): update, publish, until stopped."""
        if self.cfg.sched == "idle" and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only
        try:
            while not self.stop.is_set():
                self._scan(time.monotonic_ns())  # episode files load here, off the loop
                starts = self._starts()
                if len(starts) < self.cfg.min_windows:
                    self.stop.wait(0.2)
                    continue
                if self._capped():
                    self.stop.wait(0.05)  # wait for more experience
                    continue
                for _ in range(16):  # re-read the buffer's windows now and then
                    if self._capped():
                        break
                    self._update(starts)
                    if self.updates % self.cfg.publish_every == 0:
                        self.outbox.put(self._publish(time.monotonic_ns()))
                    if self.stop.is_set():
                        break
        except BaseException as e:  # reported by the loop thread, which ends the node
            self.error = e
            log.exception("%s: training failed", self.ctx.name)

    # ---- the node ------------------------------------------------------------------------

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        if self.cfg.stream:
            self._ingest_stream(inbox)
        self._ingest_sources()
        if self.threaded:
            return self._step_threaded()
        self._scan(now_ns)
        starts = self._starts()
        if len(starts) < self.cfg.min_windows:
            return []
        out = []
        t_end = time.perf_counter() + self.cfg.max_step_ms / 1e3
        for _ in range(self.cfg.updates_per_step):
            if self._capped():
                break
            self._update(starts)
            if self.updates % self.cfg.publish_every == 0:
                out.append(("weights", self._publish(now_ns)))
            if time.perf_counter() > t_end:
                break
        return out

    def _step_threaded(self) -> Outputs:
        if self.error is not None:
            raise NodeError(f"{self.ctx.name}: training failed: {self.error!r}") from self.error
        if self.thread is None:
            self.thread = threading.Thread(target=self._train_loop, name="learner-train", daemon=True)
            self.thread.start()
        out = []
        while True:
            try:
                w = self.outbox.get_nowait()
            except queue.Empty:
                return out
            out.append(("weights", w))

    def _publish(self, now_ns: int) -> Weights:
        self.version += 1
        config = {k: v for k, v in self.train_config.items() if k not in ("model", "learner")}
        with self.lock:
            frames, transitions, stream_ns = self.frames_added, self.transitions, self.stream_ns
        config["learner"] = {
            "updates": self.updates, "frames_seen": frames, "transitions": transitions,
            "experience_s": stream_ns / 1e9, "wall_s": time.monotonic() - self.t0,
            "train_s": self.train_s, "init_version": self.init_version,
            "loss": float("nan") if self.last_loss is None else float(self.last_loss),
            "episodes": sorted(self.seen_episodes),
            "streams": {n: st.buffer.added for n, st in self.streams.items()},
        }
        vdir = self.out_dir / f"v{self.version:06d}"
        info = save_checkpoint(vdir, self.model, self.version, config)
        save_checkpoint(self.out_dir, self.model, self.version, config)  # the latest
        self._prune()
        self.published += 1
        return Weights(stamp_ns=now_ns, version=info.version, path=str(info.path.resolve()),
                       sha256=info.sha256)

    def _prune(self) -> None:
        keep = self.cfg.keep_versions
        if not keep:
            return
        vdirs = sorted(p for p in self.out_dir.glob("v[0-9]*") if p.is_dir())
        for old in vdirs[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

    def summary(self) -> dict[str, Any]:
        # the runtime asks for the summary at shutdown, before close(): stop the trainer
        # first, so no version is published after the figures are taken
        self._stop_trainer()
        return {"updates": self.updates, "version": self.version, "published": self.published,
                "frames": self.frames_added, "transitions": self.transitions,
                "wrong_size_actions": self.wrong_size_actions,
                "stream_frames": {n: st.buffer.added for n, st in self.streams.items()},
                "experience_s": round(self.stream_ns / 1e9, 2),
                "episodes": len(self.seen_episodes), "train_s": round(self.train_s, 2),
                "train_in": "thread" if self.threaded else "step", "nice": self.niceness,
                "torch_threads": torch.get_num_threads(), "out_dir": str(self.out_dir),
                "last_loss": float("nan") if self.last_loss is None else float(self.last_loss)}

    def close(self) -> None:
        self._stop_trainer()
        for sub in self.source_subs.values():
            sub.close()
        self.source_subs.clear()
        if self.zctx is not None:
            self.zctx.term()
            self.zctx = None

    def _stop_trainer(self) -> None:
        self.stop.set()
        if self.thread is not None:
            # let the update in flight end (a daemon thread inside torch at interpreter exit
            # aborts the process); within the launcher's default 5 s stop timeout
            self.thread.join(timeout=4.0)
