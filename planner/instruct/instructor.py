"""Instruction -> validated TaskSpec: the fast parser, then memory, then the LLM.

    text ──► fast parser ──(confident)──────────────────────────────► spec (source=fast)
                 │ not confident
                 ▼
              memory ──(hit)────────────────────────────────────────► spec (source=memory)
                 │ miss
                 ▼
     LLM (worker thread) ──► reply validated against scene + workspace ─► spec (source=llm)
                                              │ invalid / timeout            and remembered
                                              ▼
                                         refusal (TaskSpec.refusal says why)

:meth:`Instructor.quick` does the first two steps (microseconds, no I/O: callable from a
node's ``step``) and returns None when the LLM is needed; :meth:`Instructor.escalate`
does the blocking third; :meth:`Instructor.understand` does all three.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from reflexarc.planner.instruct.errors import InvalidInstruction, LLMError
from reflexarc.planner.instruct.fast import FastParser, FastResult, normalised_text
from reflexarc.planner.instruct.llm import LLMClient, LLMConfig
from reflexarc.planner.instruct.memory import DEFAULT_DIR, InstructionMemory
from reflexarc.planner.instruct.prompt import clean, interpret_reply, messages, reply_schema
from reflexarc.planner.instruct.scene import SceneInfo
from reflexarc.planner.instruct.spec import Intent, refusal, resolve, task_spec
from reflexarc.robot.authority import private_dir
from reflexarc.runtime.config import bounded
from reflexarc.runtime.msgs import TaskSpec

MAX_CHARS = 500
"""Longer instructions are refused (they come from outside: the bus, a socket)."""

DEFAULT_ADDRESS = f"ipc://{private_dir()}/instruct.sock"
"""Where the instruct node takes instructions from ``reflexarc say`` (REQ/REP): an ipc
socket in a directory only this user may enter (made 0700 by the node), the socket file
itself 0600. Over tcp the socket must be CURVE-authenticated (docs/safety.md)."""


@dataclass
class InstructConfig:
    """How instructions are understood.

    ``threshold``: the fast parser's confidence at or above which its reading is used
    without asking the LLM. ``distance``: metres of a plain direction ("to the left").
    ``memory``/``cache_dir``: the persistent memory of understood instructions.
    ``llm_confidence``: the confidence given to a validated LLM reading. ``fast=false``
    skips the fast parser's reading (memory, then the LLM, for every instruction): to
    evaluate the LLM path on instructions the parser would understand.
    """

    threshold: float = bounded(0.8, 0.0, 1.0)
    fast: bool = True
    distance: float = bounded(0.10, 0.005, 0.3)
    memory: bool = True
    cache_dir: str = DEFAULT_DIR
    llm_confidence: float = bounded(0.9, 0.0, 1.0)
    llm: LLMConfig = field(default_factory=LLMConfig)


_UNSET = object()


class Instructor:
    """Turns instruction text into a validated :class:`reflexarc.runtime.msgs.TaskSpec` for a scene.

    ``llm`` and ``memory`` default to what ``cfg`` describes (the LLM from config or the
    environment; None when none is configured, and :attr:`llm_problem` says why); pass
    them explicitly (or None) to override.
    """

    def __init__(
        self,
        cfg: InstructConfig | None = None,
        *,
        llm: LLMClient | None | object = _UNSET,
        memory: InstructionMemory | None | object = _UNSET,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg = InstructConfig() if cfg is None else cfg
        self.parser = FastParser(cfg.distance)
        self.llm_problem = ""
        if llm is _UNSET:
            try:
                llm = LLMClient.from_config(cfg.llm, os.environ if env is None else env)
            except LLMError as e:
                llm, self.llm_problem = None, e.detail
        elif llm is None:
            self.llm_problem = "no LLM configured"
        self.llm: LLMClient | None = llm  # type: ignore[assignment]
        if memory is _UNSET:
            memory = InstructionMemory(cfg.cache_dir) if cfg.memory else None
        self.memory: InstructionMemory | None = memory  # type: ignore[assignment]
        self.counts = {"fast": 0, "memory": 0, "llm": 0, "refused": 0}

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        if self.memory is not None:
            self.memory.close()

    # ------------------------------------------------------------------ the three steps

    def fast(self, text: str, scene: SceneInfo) -> FastResult:
        """The fast parser's reading (no resolution)."""
        return self.parser.parse(text, scene)

    def quick(self, text: str, scene: SceneInfo, stamp_ns: int = 0) -> TaskSpec | None:
        """The spec from the fast parser (if confident) or from memory; None when only the
        LLM can tell. No network, no disk: microseconds."""
        if len(text) > MAX_CHARS:
            return self._count(refusal(
                f"instruction of {len(text)} characters; at most {MAX_CHARS}", "fast", 1.0, stamp_ns=stamp_ns
            ))
        fr = self.parser.parse(text, scene)
        if self.cfg.fast and fr.confident(self.cfg.threshold):
            if fr.refusal:
                return self._count(refusal(fr.refusal, "fast", fr.confidence, stamp_ns=stamp_ns))
            return self._count(self._resolve(fr.intent, scene, fr.confidence, "fast", stamp_ns))  # type: ignore[arg-type]
        if self.memory is not None:
            mem = self.memory.get(fr.key, scene.signature)
            if mem is not None:
                return self._count(self._resolve(mem.intent, scene, mem.confidence, "memory", stamp_ns))
        return None

    def escalate(
        self, text: str, scene: SceneInfo, stamp_ns: int = 0, fast: FastResult | None = None
    ) -> TaskSpec:
        """Ask the LLM (blocking: at most ``(retries + 1) * timeout_s``), validate its reply
        and remember it. Every failure is a refusal saying why."""
        if len(text) > MAX_CHARS:
            return self._count(refusal(f"instruction longer than {MAX_CHARS} characters", "fast", 1.0,
                                       stamp_ns=stamp_ns))
        fr = self.parser.parse(text, scene) if fast is None else fast
        if self.llm is None:
            guess = ""
            if fr.intent is not None:
                it = fr.intent
                guess = f"; best guess: {it.task} {it.object or 'hand'} -> {it.target.text}"
            why = "; ".join(fr.reasons) or "no reading"
            return self._count(refusal(
                f"not understood by the fast parser (confidence {fr.confidence:.2f} < "
                f"{self.cfg.threshold:g}: {why}{guess}) and {self.llm_problem}",
                "fast", fr.confidence, fr.intent, stamp_ns,
            ))
        try:
            reply = self.llm.chat_json(
                messages(text, scene, self.cfg.distance), reply_schema(scene), "task_spec"
            )
        except LLMError as e:
            return self._count(refusal(f"could not ask the LLM: {e}", "llm", 0.0, stamp_ns=stamp_ns))
        try:
            intent, declined = interpret_reply(reply, scene)
            if intent is None:
                return self._count(refusal(f"the LLM declined: {declined}", "llm", 0.0, stamp_ns=stamp_ns))
            resolved = resolve(intent, scene, self.cfg.distance)
        except InvalidInstruction as e:
            return self._count(
                refusal(f"the LLM's reply was rejected: {clean(str(e))}", "llm", 0.0, stamp_ns=stamp_ns)
            )
        conf = self.cfg.llm_confidence
        if self.memory is not None:
            self.memory.put(fr.key, scene.signature, intent, conf, "llm")
        return self._count(task_spec(resolved, conf, "llm", stamp_ns))

    def understand(self, text: str, scene: SceneInfo, stamp_ns: int = 0) -> TaskSpec:
        """quick, else escalate."""
        spec = self.quick(text, scene, stamp_ns)
        return spec if spec is not None else self.escalate(text, scene, stamp_ns)

    # ------------------------------------------------------------------ helpers

    def _resolve(
        self, intent: Intent, scene: SceneInfo, conf: float, source: str, stamp_ns: int
    ) -> TaskSpec:
        try:
            return task_spec(resolve(intent, scene, self.cfg.distance), conf, source, stamp_ns)
        except InvalidInstruction as e:
            return refusal(f"cannot do that here: {e}", source, conf, intent, stamp_ns)

    def _count(self, spec: TaskSpec) -> TaskSpec:
        self.counts["refused" if spec.refusal else spec.source] += 1
        return spec

    @staticmethod
    def key(text: str) -> str:
        """The memory key of ``text``."""
        return normalised_text(text)
