"""reflexarc: an embodied robotics control stack of small, fast processes over ZeroMQ.

The names a script needs are here: the node base class and its inbox, the message types,
and the launcher. The layers live in subpackages (docs/architecture.md):

- ``reflexarc.runtime``: messages, wire codec, bus, node, launcher, clock, config, episode
  files, recorder, the ``reflexarc`` command;
- ``reflexarc.robot``: robot descriptions, the controller, safety, the hardware bridge;
- ``reflexarc.sim``, ``reflexarc.perception``, ``reflexarc.policies``: scenes, perception,
  the world model;
- ``reflexarc.planner``: latent MPC, the task layer, instructions;
- ``reflexarc.tools``: benchmarks and evaluation.
"""

from __future__ import annotations

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

__all__ = [
    "ConfigError",
    "EEAction",
    "EStop",
    "Goal",
    "Image",
    "Inbox",
    "Instruction",
    "JointCommand",
    "JointState",
    "Latent",
    "Message",
    "Node",
    "NodeContext",
    "Outputs",
    "Plan",
    "ReflexarcError",
    "TaskSpec",
    "__version__",
]
