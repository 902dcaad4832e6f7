"""Task instructions in plain language: a fast parser first, an LLM only when needed.

    from reflexarc.planner.instruct import Instructor, SceneInfo
    spec = Instructor().understand("push the red block to the left", SceneInfo())
    spec.task, spec.object, spec.target, spec.target_pos, spec.source   # TaskSpec message

Modules: scene (SceneInfo), spec (intents, resolution to a goal position), fast (the
parser), llm (OpenAI-compatible client), prompt (LLM schema and reply validation), memory
(persistent cache), instructor (the pipeline), verb (``reflexarc say``), node (InstructNode,
InstructGoalNode; imported on demand: it needs the node runtime), bench (fast-path latency),
testing (a scripted chat-completions server).
"""

from reflexarc.planner.instruct.errors import (
    InstructionError,
    InstructionRefused,
    InvalidInstruction,
    LLMError,
)
from reflexarc.planner.instruct.fast import FastParser, FastResult, normalise, normalised_text
from reflexarc.planner.instruct.instructor import InstructConfig, Instructor
from reflexarc.planner.instruct.llm import LLMClient, LLMConfig, Secret
from reflexarc.planner.instruct.memory import InstructionMemory
from reflexarc.planner.instruct.scene import SceneInfo, SceneObject
from reflexarc.planner.instruct.spec import (
    Intent,
    Resolved,
    Target,
    goal_from_spec,
    refusal,
    resolve,
    spec_dict,
    task_spec,
)
from reflexarc.planner.instruct.verb import SayConfig, say_verb

__all__ = [
    "FastParser", "FastResult", "InstructConfig", "InstructionError", "InstructionMemory",
    "InstructionRefused", "Instructor", "Intent", "InvalidInstruction", "LLMClient", "LLMConfig",
    "LLMError", "Resolved", "SayConfig", "SceneInfo", "SceneObject", "Secret", "Target",
    "goal_from_spec", "normalise", "normalised_text", "refusal", "resolve", "say_verb",
    "spec_dict", "task_spec",
]
