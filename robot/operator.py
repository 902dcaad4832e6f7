"""The operator's channel into a graph: e-stops in, from this user (or a CURVE key holder) only.

:class:`OperatorNode` publishes ``estop`` for what arrives on its request socket
(``listen``: an ipc socket in a directory private to the user, itself 0600; over tcp only
with CURVE keys). ``reflexarc estop engage`` stops the arm; ``reflexarc estop release
key=DIR`` sends a release signed with the operator's secret key in ``DIR`` (made with
``reflexarc estop keygen dir=DIR``), which the controller and the bridge check against the
public key they were given (``operator_key``; :mod:`reflexarc.robot.authority`). The node
relays; it holds no key, so it cannot release anything by itself. See docs/safety.md.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from reflexarc.robot.authority import (
    AuthorityError,
    Operator,
    make_operator_key,
    private_dir,
    private_ipc,
    request_security,
    seal_ipc,
)
from reflexarc.runtime.config import bounded, choice, register
from reflexarc.runtime.errors import ConfigError, MalformedMessage, ReflexarcError
from reflexarc.runtime.msgs import EStop
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.runtime.wire import decode, encode

DEFAULT_ADDRESS = f"ipc://{private_dir()}/operator.sock"


class OperatorNode(Node):
    """Relays the operator's e-stops (engage, signed release) onto the bus."""

    @dataclass
    class Config:
        listen: str = DEFAULT_ADDRESS  # ipc (private), or tcp with curve_keys_dir
        curve_keys_dir: str = ""

        def validate(self) -> None:
            if self.listen.startswith("tcp://") and not self.curve_keys_dir:
                raise ConfigError("curve_keys_dir", f"listen={self.listen!r}: tcp needs CURVE keys "
                                  "(`reflexarc keys DIR`), or listen on ipc:// (the default)")

    subscribes: dict[str, str] = {}
    publishes = ("estop",)

    def __init__(self, ctx: NodeContext, cfg: Config) -> None:
        super().__init__(ctx, cfg)
        self.queue: queue.SimpleQueue[EStop] = queue.SimpleQueue()
        self.stop_event = threading.Event()
        self.bound = threading.Event()
        self.error = ""
        self.relayed = 0
        self.rejected = 0
        self.thread = threading.Thread(target=self._serve, name=f"{ctx.name}-rep", daemon=True)
        self.thread.start()
        self.bound.wait(5.0)
        if self.error:
            raise ConfigError("listen", f"cannot bind {cfg.listen}: {self.error}")

    def _serve(self) -> None:
        zctx = zmq.Context()
        sock = zctx.socket(zmq.REP)
        sock.linger = 0
        security = request_security(zctx, self.cfg.curve_keys_dir)
        security.server(sock)
        try:
            private_ipc(self.cfg.listen)
            sock.bind(self.cfg.listen)
            seal_ipc(self.cfg.listen)
        except (zmq.ZMQError, AuthorityError, OSError) as e:
            self.error = str(e)
        self.bound.set()
        try:
            while not self.error and not self.stop_event.is_set():
                if not sock.poll(100):
                    continue
                frames = sock.recv_multipart()
                try:
                    topic, msg = decode(frames)
                    if topic != "estop" or not isinstance(msg, EStop):
                        raise MalformedMessage("type", f"expected an estop, got {topic!r}")
                    self.queue.put(msg)
                    sock.send(b"ok")
                except MalformedMessage as e:
                    self.rejected += 1
                    sock.send(f"refused: {e}".encode())
        finally:
            sock.close()
            security.close()
            zctx.term()

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        out: list[tuple[str, Any]] = []
        while True:
            try:
                out.append(("estop", self.queue.get_nowait()))
            except queue.Empty:
                break
        self.relayed += len(out)
        return out

    def summary(self) -> dict[str, Any]:
        return {"estops_relayed": self.relayed, "requests_rejected": self.rejected}

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=2.0)


def send_estop(msg: EStop, address: str = DEFAULT_ADDRESS, timeout_s: float = 5.0,
               curve_keys_dir: str = "") -> str:
    """Send ``msg`` to the operator node at ``address``; its answer ("ok"), or raise."""
    zctx = zmq.Context()
    sock = zctx.socket(zmq.REQ)
    sock.linger = 0
    security = request_security(zctx, curve_keys_dir)
    security.client(sock)
    try:
        sock.connect(address)
        sock.send_multipart(encode("estop", msg))
        if not sock.poll(int(timeout_s * 1000)):
            raise ReflexarcError(f"no operator node answered at {address} within {timeout_s:g} s: "
                                 "is a graph with an operator node running?")
        return sock.recv().decode()
    finally:
        sock.close()
        security.close()
        zctx.term()


@dataclass
class EStopConfig:
    """``reflexarc estop engage|release|keygen``."""

    action: str = choice("engage", "engage", "release", "keygen")
    key: str = ""  # release: the operator's secret key file (or its directory)
    dir: str = ""  # keygen: where to write operator.key and operator.key_secret
    address: str = DEFAULT_ADDRESS  # the running graph's operator node
    curve_keys_dir: str = ""  # tcp: the CURVE keys the node was given
    reason: str = "operator"
    timeout_s: float = bounded(5.0, 0.1, 600.0)
    out: str = ""

    def validate(self) -> None:
        if self.action == "release" and not self.key:
            raise ConfigError("key", "release needs the operator's secret key: key=DIR")
        if self.action == "keygen" and not self.dir:
            raise ConfigError("dir", "keygen needs a directory: dir=DIR")


register("estop_schema", EStopConfig)


def estop_verb(cfg: EStopConfig) -> dict[str, Any]:
    if cfg.action == "keygen":
        public = make_operator_key(cfg.dir)
        return {"public_key": str(public), "secret_key": str(Path(cfg.dir) / "operator.key_secret"),
                "use": f"graph.nodes.controller.args.safety.operator_key={public}"}
    if cfg.action == "engage":
        msg = EStop(stamp_ns=time.monotonic_ns(), engage=True, reason=cfg.reason)
    else:
        msg = Operator.load(cfg.key).release()
    answer = send_estop(msg, cfg.address, cfg.timeout_s, cfg.curve_keys_dir)
    return {"action": cfg.action, "address": cfg.address, "answer": answer}
