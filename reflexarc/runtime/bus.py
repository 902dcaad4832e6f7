"""ZeroMQ transport: addresses, publishers, subscribers, CURVE authentication.

Every node binds one PUB socket; every subscriber connects one SUB socket to the PUB of
every node of the graph and filters by topic prefix (filtering happens at the publisher).
Local by default (``ipc://``); across hosts ``tcp://`` with CURVE: each binding socket is
a CURVE server holding the graph's server key and accepting only client public keys
found in ``<keys_dir>/authorized``; each connecting socket is a CURVE client that
verifies the server's public key. A peer without the keys can neither read the graph
nor inject into it.

Key layout (made by ``reflexarc keys dir=...`` / :func:`make_keys`)::

    <keys_dir>/server.key, server.key_secret     the graph's server key pair
    <keys_dir>/client.key, client.key_secret     the graph's client key pair
    <keys_dir>/authorized/client.key             public keys allowed to connect
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq import EVENTS, POLLIN, SNDMORE
from zmq.auth.thread import ThreadAuthenticator

from reflexarc.runtime.config import bounded, choice, register
from reflexarc.runtime.errors import ConfigError, MalformedMessage
from reflexarc.runtime.msgs import Message
from reflexarc.runtime.wire import decode, encode

log = logging.getLogger(__name__)


@dataclass
class BusConfig:
    """Where the graph's sockets live and how they are secured."""

    transport: str = choice("ipc", "ipc", "tcp")
    ipc_dir: str = ""  # default: a fresh directory under the system temp dir
    host: str = "127.0.0.1"  # tcp: address to bind and to reach nodes on
    # tcp, a graph split over machines: host name -> its address; a node whose ``host``
    # names one binds and is reached there (docs/scale.md, "A graph across hosts")
    hosts: dict[str, str] = field(default_factory=dict)
    base_port: int = bounded(47100, 1024, 65000)  # tcp: node i binds base_port + i
    curve: bool = False  # CURVE authentication and encryption (tcp)
    keys_dir: str = ""  # see module docstring
    rcvhwm: int = bounded(10000, 1, 10_000_000)
    sndhwm: int = bounded(10000, 1, 10_000_000)

    def validate(self) -> None:
        if self.curve and not self.keys_dir:
            raise ConfigError("keys_dir", "curve=true needs keys_dir (make keys with `reflexarc keys`)")
        if self.curve and self.transport != "tcp":
            raise ConfigError("curve", "CURVE applies to transport=tcp only")


def addresses(
    cfg: BusConfig, names: list[str], run_id: str, placement: dict[str, str] | None = None
) -> dict[str, str]:
    """The PUB address of each node, in graph order. ``placement``: node -> host name
    (a key of ``cfg.hosts``) for the nodes that run on another machine's address."""
    if cfg.transport == "ipc":
        base = Path(cfg.ipc_dir or tempfile.gettempdir()) / f"reflexarc-{run_id}"
        base.mkdir(parents=True, exist_ok=True)
        return {n: f"ipc://{base}/{n}.pub" for n in names}
    where = placement or {}
    return {
        n: f"tcp://{cfg.hosts[where[n]] if where.get(n) else cfg.host}:{cfg.base_port + i}"
        for i, n in enumerate(names)
    }


def cleanup_ipc(addrs: dict[str, str]) -> None:
    """Remove the ipc socket directory of a finished run."""
    for a in addrs.values():
        if a.startswith("ipc://"):
            shutil.rmtree(Path(a[len("ipc://"):]).parent, ignore_errors=True)
            return


def make_keys(keys_dir: str | Path) -> Path:
    """Create the graph's server and client key pairs and authorise the client."""
    keys_dir = Path(keys_dir)
    (keys_dir / "authorized").mkdir(parents=True, exist_ok=True)
    for name in ("server", "client"):
        pub, _ = zmq.auth.create_certificates(str(keys_dir), name)
    shutil.copy(Path(pub), keys_dir / "authorized" / "client.key")
    os.chmod(keys_dir / "server.key_secret", 0o600)
    os.chmod(keys_dir / "client.key_secret", 0o600)
    return keys_dir


@dataclass
class KeysConfig:
    """``reflexarc keys DIR``: make the CURVE keys of a multi-host graph."""

    dir: str = ""
    out: str = ""

    def validate(self) -> None:
        if not self.dir:
            raise ConfigError("dir", "give a directory: reflexarc keys DIR")


def keys_verb(cfg: KeysConfig) -> dict[str, Any]:
    path = make_keys(cfg.dir)
    return {"keys_dir": str(path), "use": f"bus.transport=tcp bus.curve=true bus.keys_dir={path}"}


class Security:
    """CURVE set-up for the sockets of one process (no-op when disabled)."""

    def __init__(self, ctx: zmq.Context, cfg: BusConfig) -> None:
        self.enabled = cfg.curve
        self.auth: ThreadAuthenticator | None = None
        if not self.enabled:
            return
        keys = Path(cfg.keys_dir)
        try:
            self.server_public, self.server_secret = zmq.auth.load_certificate(
                keys / "server.key_secret"
            )
            self.client_public, self.client_secret = zmq.auth.load_certificate(
                keys / "client.key_secret"
            )
        except (OSError, ValueError) as e:
            raise ConfigError("bus.keys_dir", f"cannot load CURVE keys from {keys}: {e}") from None
        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(keys / "authorized"))

    def server(self, sock: zmq.Socket) -> None:
        if self.enabled:
            sock.curve_secretkey = self.server_secret
            sock.curve_publickey = self.server_public
            sock.curve_server = True

    def client(self, sock: zmq.Socket) -> None:
        if self.enabled:
            sock.curve_secretkey = self.client_secret
            sock.curve_publickey = self.client_public
            sock.curve_serverkey = self.server_public

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None


class Publisher:
    """One PUB socket; assigns a per-topic ``seq`` to every message it sends."""

    def __init__(self, ctx: zmq.Context, address: str, cfg: BusConfig, security: Security) -> None:
        self.sock = ctx.socket(zmq.PUB)
        self.sock.sndhwm = cfg.sndhwm
        self.sock.linger = 100
        security.server(self.sock)
        self.sock.bind(address)
        self.seqs: dict[str, int] = {}

    def publish(self, topic: str, msg: Message) -> int:
        """Send ``msg`` on ``topic`` with the next seq of that topic; returns the seq."""
        seq = self.seqs.get(topic, -1) + 1
        self.seqs[topic] = seq
        if msg.seq != seq:
            object.__setattr__(msg, "seq", seq)  # the runtime owns seq; the node leaves it 0
        # frame by frame: pyzmq's send_multipart costs more than the three or four sends
        # it makes. Topic, header and the packed buffer are small and copied (cheaper than
        # a zero-copy frame's bookkeeping); large arrays go zero-copy.
        frames = encode(topic, msg)
        send = self.sock.send
        last = len(frames) - 1
        for i, f in enumerate(frames):
            send(f, SNDMORE if i < last else 0, copy=i < 3)
        return seq

    def close(self) -> None:
        self.sock.close()


class TopicMatch:
    """Which topics a list of names covers, as nodes write them: an exact topic,
    ``'prefix/'`` for a family (``camera/`` is every camera), ``''`` for every topic."""

    def __init__(self, topics: list[str] | tuple[str, ...]) -> None:
        self.exact = {t for t in topics if not t.endswith("/") and t != ""}
        self.prefixes = tuple(t for t in topics if t.endswith("/") or t == "")

    def __call__(self, topic: str) -> bool:
        return topic in self.exact or topic.startswith(self.prefixes)


class Subscriber:
    """One SUB socket connected to every publisher of the graph.

    Malformed or unknown messages are dropped and counted per kind; the first of each
    kind is logged. A message whose topic was not subscribed exactly (prefix filtering
    lets ``plan`` match ``planner``) is ignored.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        addrs: list[str],
        topics: list[str],
        cfg: BusConfig,
        security: Security,
        name: str = "",
    ) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.rcvhwm = cfg.rcvhwm
        self.sock.linger = 0
        security.client(self.sock)
        self.wanted = TopicMatch(topics)  # the exact test (see above)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        for a in addrs:
            self.sock.connect(a)
        self.name = name
        self.drops: Counter[str] = Counter()
        self._fd = (self.sock.get(zmq.FD),)  # see wait()

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def _drop(self, e: MalformedMessage) -> None:
        if e.kind not in self.drops:
            log.warning("%s: dropping %s (logged once per kind)", self.name or "subscriber", e)
        self.drops[e.kind] += 1

    def recv(self, flags: int = 0) -> tuple[str, Message, int] | None:
        """One message (topic, msg, recv_ns); None if malformed, unwanted or nothing ready."""
        sock = self.sock
        # every frame arrives zero-copy: a frame says itself whether more follow, where
        # asking the socket (getsockopt RCVMORE) costs more than the frame's bookkeeping
        try:
            f = sock.recv(flags, copy=False)
        except zmq.Again:
            return None
        frames = [f]
        recv = sock.recv
        while f.more:
            f = recv(copy=False)
            frames.append(f)
        recv_ns = time.monotonic_ns()
        try:
            topic, msg = decode(frames)
        except MalformedMessage as e:
            self._drop(e)
            return None
        if not self.wanted(topic):
            return None
        return topic, msg, recv_ns

    def drain(self, until_ns: int | None = None) -> list[tuple[str, Message, int]]:
        """Every message waiting now, oldest first (never blocks); with ``until_ns``
        (``time.monotonic_ns()``), those taken before then: the rest wait in the socket.
        A subscriber that decodes slower than messages arrive (starved on a busy machine)
        would otherwise never come back from a drain."""
        out = []
        get = self.sock.get
        clock = time.monotonic_ns
        while get(EVENTS) & POLLIN:  # cheaper than poll(0), which builds a Poller per call
            got = self.recv(zmq.NOBLOCK)
            if got is not None:
                out.append(got)
            if until_ns is not None and clock() >= until_ns:
                break
        return out

    def wait(self, timeout_s: float) -> bool:
        """Block until a message is ready or ``timeout_s`` passes, to the microsecond.

        ``zmq_poll`` counts whole milliseconds, so a node waiting 0.9 ms for its next
        tick could not be woken by a message in that time. This waits on the socket's
        file descriptor instead, which ZeroMQ signals edge-triggered: the socket's
        events are read before every wait, and again after it.
        """
        get = self.sock.get
        if get(EVENTS) & POLLIN:
            return True
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            select.select(self._fd, (), (), left)
            if get(EVENTS) & POLLIN:
                return True
        return False

    def close(self) -> None:
        self.sock.close()


def context() -> Any:
    """A fresh ZeroMQ context for one process (never shared across fork)."""
    return zmq.Context()


register("keys_schema", KeysConfig)
