"""reflexarc: an embodied robotics control stack of small, fast processes over ZeroMQ.

The names a script needs are here (docs/python-api.md): :func:`run` a graph to its end and
get a typed :class:`RunResult`; :func:`start` one and talk to it while it runs; build a
:class:`Graph` from :func:`node` specs; the node base class and its inbox; the message
types; :class:`Episode` to read recorded episode files. The layers live in subpackages (docs/architecture.md):

- ``reflexarc.runtime``: messages, wire codec, bus, node, launcher, clock, config, episode
  files, recorder, the ``reflexarc`` command;
- ``reflexarc.robot``: robot descriptions, the controller, safety, the hardware bridge;
- ``reflexarc.sim``, ``reflexarc.perception``, ``reflexarc.policies``: scenes, perception,
  the world model;
- ``reflexarc.planner``: latent MPC, the task layer, instructions;
- ``reflexarc.tools``: benchmarks and evaluation.
"""

from __future__ import annotations

from reflexarc.runtime.api import (
    EpisodeResult,
    Graph,
    NodeFigures,
    NodeSpec,
    Running,
    RunResult,
    Subscription,
    configure,
    node,
    run,
    start,
)
from reflexarc.runtime.errors import ConfigError, ReflexarcError
from reflexarc.runtime.msgs import (
    EEAction,
    EStop,
    Goal,
    Image,
    Instruction,
    JointCommand,
    JointState,
    Latent,
    Message,
    Plan,
    TaskSpec,
)
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``Episode`` and ``list_episodes`` on first use: they import h5py, which a script
    that never reads an episode should not pay for."""
    if name in ("Episode", "list_episodes"):
        from reflexarc.runtime import episode

        return getattr(episode, name)
    raise AttributeError(f"module 'reflexarc' has no attribute {name!r}")

__all__ = [
    "ConfigError",
    "EEAction",
    "EStop",
    "Episode",
    "EpisodeResult",
    "Goal",
    "Graph",
    "Image",
    "Inbox",
    "Instruction",
    "JointCommand",
    "JointState",
    "Latent",
    "Message",
    "Node",
    "NodeContext",
    "NodeFigures",
    "NodeSpec",
    "Outputs",
    "Plan",
    "ReflexarcError",
    "RunResult",
    "Running",
    "Subscription",
    "TaskSpec",
    "__version__",
    "configure",
    "list_episodes",
    "node",
    "run",
    "start",
]
