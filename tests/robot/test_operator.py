"""The operator's channel: e-stops over a private request socket, releases signed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reflexarc.robot.authority import Operator
from reflexarc.robot.operator import OperatorNode, send_estop
from reflexarc.robot.safety import EventLog, Mode, SafetyConfig, Supervisor
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.msgs import EStop
from reflexarc.runtime.node import Inbox, NodeContext
from tests.conftest import reflexarc


def test_operator_node_relays_estops_and_only_signed_releases_count(tmp_path: Path) -> None:
    r = reflexarc("estop", "keygen", f"dir={tmp_path / 'op'}", f"out={tmp_path / 'k.json'}", timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    public = json.loads((tmp_path / "k.json").read_text())["public_key"]
    listen = f"ipc://{tmp_path}/sock/operator.sock"
    node = OperatorNode(NodeContext(name="operator", rate_hz=50.0),
                        from_mapping(OperatorNode.Config, {"listen": listen}))
    cfg = SafetyConfig(operator_key=public)
    events = EventLog("controller", cfg.rearm_s)
    sup = Supervisor(cfg, events)
    try:
        assert os.stat(f"{tmp_path}/sock/operator.sock").st_mode & 0o777 == 0o600
        assert send_estop(EStop(engage=True, reason="button"), listen) == "ok"
        assert send_estop(EStop(engage=False), listen) == "ok"  # relayed, but unsigned
        r = reflexarc("estop", "release", f"key={tmp_path / 'op'}", f"address={listen}", timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        out = node.step(0, Inbox())
        assert [m.engage for _, m in out] == [True, False, False]
        for _, m in out:
            sup.state_arrived(m.stamp_ns)  # the arm's state streams meanwhile
            sup.estops([m], m.stamp_ns)
        assert sup.update(out[-1][1].stamp_ns) == Mode.HOLDING  # released by the signed one
        assert [e.kind for e in events.take()] == ["estop", "release_refused", "reset"]
        assert Operator.generate().release().reason != out[-1][1].reason
    finally:
        node.close()
