"""The policy node: a scripted expert (or random actions) acting on the sim's scene state.

At its rate (the control rate, 10 Hz by default, as the envs' control step) it reads the
newest ``scene_state`` (privileged: hand, blocks, target; simulation only), runs the
task's scripted expert (:func:`reflexarc.sim.experts.make_expert`) or samples random actions, and
publishes either

- ``output: ee_action``: an EEAction (dx, dy, dz, gripper) for the sim node in
  ``command=ee_action`` mode, or
- ``output: plan``: a Plan of end-effector setpoints for the low-level controller (which
  publishes joint commands for the sim in ``command=joint`` mode): ``ee_pos[0]`` is the
  measured hand position at ``t0_ns`` (the scene state's stamp), ``ee_pos[i]`` that plus
  the first ``i`` displacements of the policy, one per ``dt_ns`` (the node's period);
  ``gripper[i]`` is the gripper command from setpoint ``i`` on. The expert's later
  actions come from a copy of it rolled out on a kinematic guess (the hand moves by each
  displacement, the blocks stay put); only the first matters much, since the plan is
  redone every period.

With ``follow_goal`` (instructions: configs/graph/instruction_expert.yaml) the task, the
block and the target are the newest ``goal``'s (the evaluator publishes the instruction's
task spec it adopted as the episode's goal): the expert of ``goal.task`` acts on
``goal.object``. It acts only on a goal stated after the plant's last reset (the scene
state's ``reset_ns``), i.e. one of this episode.

Every message carries the stamp of the scene state it was computed from. A scene state
already acted on, older than ``state_timeout_s``, malformed, or of a finished episode
(success) produces nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.msgs import EEAction, Goal, Plan, SceneState
from reflexarc.runtime.node import Inbox, Node, NodeContext, Outputs
from reflexarc.sim.experts import Expert, make_expert


@dataclass
class PolicyConfig:
    """Arguments of :class:`PolicyNode` (``graph.nodes.<policy>.args``)."""

    task: str = choice("push", "reach", "push", "pick_place")
    policy: str = choice("expert", "expert", "random")
    output: str = choice("ee_action", "ee_action", "plan")
    max_delta: float = bounded(0.05, 1e-4, 0.2)  # m per step, as the sim's
    plan_steps: int = bounded(3, 1, 100)  # plan: displacements ahead (T = plan_steps + 1)
    state_timeout_s: float = bounded(0.5, 0.0, None)  # ignore older scene states; 0: never
    follow_goal: bool = False  # task, block and target from the newest goal (see above)


class PolicyNode(Node):
    """Expert or random end-effector actions from the privileged scene state."""

    Config = PolicyConfig
    subscribes = {"scene_state": "latest"}
    publishes = ("ee_action", "plan")

    @classmethod
    def subscribes_for(cls, cfg: PolicyConfig) -> dict[str, str]:
        """Topics subscribed to with ``cfg``."""
        return {**cls.subscribes, "goal": "latest"} if cfg.follow_goal else dict(cls.subscribes)

    @classmethod
    def publishes_for(cls, cfg: PolicyConfig) -> tuple[str, ...]:
        """Topics published with ``cfg`` (the launcher's one-publisher-per-topic check)."""
        return (cfg.output,)

    def __init__(self, ctx: NodeContext, cfg: PolicyConfig) -> None:
        super().__init__(ctx, cfg)
        self.expert: Expert | None = (
            make_expert(cfg.task, cfg.max_delta) if cfg.policy == "expert" else None
        )
        self.subscribes = self.subscribes_for(cfg)
        self.goal_key: tuple[int, int] | None = None  # (episode, goal stamp) being followed
        self.rng = ctx.rng
        self.dt_ns = int(round(1e9 / ctx.rate_hz))
        self.last_seq = -1
        self.episode = -1
        # scene states: acted on, seen before, too old, malformed, of a finished episode
        self.counts = {"actions": 0, "repeat": 0, "old_states": 0, "bad_states": 0,
                       "finished": 0, "no_goal": 0}

    def step(self, now_ns: int, inbox: Inbox) -> Outputs:
        ss: SceneState | None = inbox.latest("scene_state")
        if ss is None:
            return ()
        if ss.seq == self.last_seq:
            self.counts["repeat"] += 1
            return ()
        self.last_seq = ss.seq
        timeout_ns = int(1e9 * self.cfg.state_timeout_s)
        if timeout_ns and now_ns - ss.stamp_ns > timeout_ns:
            self.counts["old_states"] += 1
            return ()
        info = _info(ss)
        if info is not None and self.cfg.follow_goal:
            info = self._follow(inbox.latest("goal"), ss, info)
            if info is None:
                self.counts["no_goal"] += 1
                return ()
        if info is None or (self.expert is not None and self.expert.task != "reach"
                            and len(info["object_pos"]) == 0):
            self.counts["bad_states"] += 1
            return ()
        if ss.episode != self.episode:
            self.episode = ss.episode
            if self.expert is not None:
                self.expert.reset(info)
        if ss.success:
            self.counts["finished"] += 1
            return ()
        self.counts["actions"] += 1
        if self.cfg.output == "ee_action":
            return [("ee_action", EEAction(stamp_ns=ss.stamp_ns, action=self._act(info)))]
        return [("plan", self._plan(ss.stamp_ns, info))]

    def _follow(self, goal: Goal | None, ss: SceneState, info: dict[str, Any]) -> dict[str, Any] | None:
        """``info`` with the goal's target and its block first (the experts act on block 0),
        or None while there is no goal stated since the plant's last reset."""
        target = np.asarray(goal.target, np.float64) if goal is not None else np.zeros(0)
        if goal is None or goal.stamp_ns < ss.reset_ns or target.shape != (3,):
            return None
        info = {**info, "target": target}
        names = info["object_names"]
        if goal.task != "reach" and goal.object not in names:
            return None
        key = (ss.episode, goal.stamp_ns)
        if key != self.goal_key:  # a new goal: the expert of its task, from its start
            self.goal_key = key
            self.episode = ss.episode
            if self.cfg.policy == "expert":
                if self.expert is None or self.expert.task != goal.task:
                    self.expert = make_expert(goal.task, self.cfg.max_delta)
                self.expert.reset(info)
        if goal.object in names:
            i = names.index(goal.object)
            order = [i, *(j for j in range(len(names)) if j != i)]
            info = {**info, "object_pos": info["object_pos"][order],
                    "object_names": tuple(names[j] for j in order)}
        return info

    def _act(self, info: dict[str, Any], expert: Expert | None = None) -> np.ndarray:
        """One action (4,) float32."""
        expert = expert or self.expert
        if expert is not None:
            return expert.act(info)
        d = self.cfg.max_delta
        return self.rng.uniform([-d, -d, -d, -1.0], [d, d, d, 1.0]).astype(np.float32)

    def _plan(self, stamp_ns: int, info: dict[str, Any]) -> Plan:
        """The policy's next ``plan_steps`` displacements as hand setpoints. (T = steps + 1)"""
        steps = self.cfg.plan_steps
        actions = np.zeros((steps, 4), np.float32)
        actions[0] = self._act(info)  # advances the real expert by one step
        rollout = copy.deepcopy(self.expert) if self.expert is not None else None
        guess = dict(info)
        for i in range(1, steps):
            guess["ee_pos"] = guess["ee_pos"] + actions[i - 1, :3]
            actions[i] = self._act(guess, rollout)
        ee_pos = info["ee_pos"] + np.concatenate([np.zeros((1, 3)), np.cumsum(actions[:, :3], 0)])
        gripper = np.concatenate([actions[:, 3], actions[-1:, 3]]).astype(np.float32)
        return Plan(
            stamp_ns=stamp_ns,
            t0_ns=stamp_ns,
            dt_ns=self.dt_ns,
            ee_pos=ee_pos,
            ee_quat=np.zeros((0, 4)),
            gripper=gripper,
        )

    def summary(self) -> dict[str, Any]:
        c = self.counts
        out = {"policy": self.cfg.policy, "output": self.cfg.output, "actions": c["actions"],
               "old_states": c["old_states"], "bad_states": c["bad_states"]}
        if self.cfg.follow_goal:
            out["waited_for_goal"] = c["no_goal"]
        return out


def _info(ss: SceneState) -> dict[str, Any] | None:
    """The env-style info dict the experts read, or None if ``ss`` is malformed."""
    ee = np.asarray(ss.ee_pos, np.float64)
    target = np.asarray(ss.target, np.float64)
    objects = np.asarray(ss.objects, np.float64)
    if ee.shape != (3,) or target.shape != (3,) or objects.ndim != 2 or objects.shape[1] != 7:
        return None
    if not (np.all(np.isfinite(ee)) and np.all(np.isfinite(target))
            and np.all(np.isfinite(objects))):
        return None
    return {"ee_pos": ee, "object_pos": objects[:, :3], "target": target,
            "object_names": tuple(n for n in ss.names.split(",") if n)}


ExpertNode = PolicyNode
"""The same node under the name the graph configs use for a scripted expert."""
