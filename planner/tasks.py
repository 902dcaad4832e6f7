"""The task layer: which stage a task is in, decided from what the robot perceives.

A task (reach, push, pick_place) with its block's name and target (the goal, as a person
or an instruction states it) is carried out as stages of end-effector motion. Each step the
layer looks at the hand (forward kinematics of the measured joints), the finger opening
(measured) and the blocks perception placed in the base frame, and returns the current
:class:`Stage`: where the hand should go next, the gripper command and how fast. No
simulator state and no imagined image enter it, so the same layer runs on a real arm.

- **reach**: the hand to the target.
- **push**: above the pre-push point (``standoff`` behind the block, on the line from the
  target through the block) -> down to pushing height -> push the block along the line
  -> back off and up, and look. The camera sees the table from the front, so the hand
  hides the block it pushes more often than not: while hidden, the block is taken to be
  where the hand pushes it (``contact`` ahead along the line); once the push is done by
  that reckoning, the hand backs off until perception sees the block again, and the
  layer either holds (on target) or re-plans from where the block is. When perception
  shows the block off its line during the push (it slid aside), it re-plans at once.
- **pick_place**: above the block -> down -> grasp -> lift -> carry over the target ->
  lower -> release -> retreat. A block that perception no longer sees between the
  fingers while carrying (or fingers that closed on nothing) sends it back to above.

The stage geometry follows the scripted experts' (sim/experts.py), which act on the
simulator's truth; here every position is a perceived one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from reflexarc.runtime.config import bounded
from reflexarc.runtime.errors import ReflexarcError

BLOCK_SIZE = 0.05  # m, the blocks' edge
OPEN, CLOSE = 1.0, -1.0


class TaskError(ReflexarcError):
    """A goal the task layer cannot pursue (unknown task, no target)."""


@dataclass(frozen=True)
class Stage:
    """Where the hand goes next: ``hand`` (3,) m in the base frame, the gripper command
    in [-1 close, 1 open], at most ``speed`` m/s."""

    name: str
    hand: np.ndarray
    gripper: float
    speed: float


@dataclass
class TaskLayerConfig:
    """The stages' geometry and speeds (metres, m/s)."""

    speed: float = bounded(0.25, 0.01, 2.0)  # free motion (faster trips the plant's joint speed hold)
    push_speed: float = bounded(0.1, 0.01, 1.0)  # while pushing
    above_z: float = bounded(0.08, 0.0, 0.5)  # over the pre-push point / carrying height - 4 cm
    push_z: float = bounded(0.015, 0.0, 0.1)  # the hand's height while pushing
    standoff: float = bounded(0.07, 0.0, 0.3)  # pre-push point behind the block centre
    contact: float = bounded(0.04, 0.0, 0.2)  # hand to block centre while pushing
    push_step: float = bounded(0.02, 0.001, 0.2)  # the push aims this far past the block
    off_line: float = bounded(0.02, 0.0, 0.2)  # lateral hand-block offset that re-plans
    drift: float = bounded(0.03, 0.0, 0.2)  # the block this far off the target's line re-plans
    reached: float = bounded(0.01, 0.0, 0.1)  # a waypoint within this is reached
    lift_z: float = bounded(0.12, 0.0, 0.5)
    grasp_z: float = bounded(0.02, 0.0, 0.2)
    grasp_s: float = bounded(0.4, 0.0, 5.0)  # fingers closing
    release_s: float = bounded(0.3, 0.0, 5.0)
    held_opening: float = bounded(0.03, 0.0, 0.08)  # fingers stopped wider than this: a block
    # weaker detections keep the last place: a block half hidden by the hand is placed
    # centimetres off (its visible part's centroid)
    min_confidence: float = bounded(0.75, 0.0, 1.0)
    # before the block's first confident sighting, a weaker one places it (the arm at its
    # start pose may half hide it; the place is refined as soon as it is seen whole)
    acquire_confidence: float = bounded(0.4, 0.0, 1.0)
    done_radius: float = bounded(0.01, 0.0, 0.1)  # push: the block this close: look again
    look_back: float = bounded(0.03, 0.0, 0.3)  # push: back off this much more to look
    # push: still hidden after looking this long, the hand goes to view_pose (m, base
    # frame: where it hides no block from the camera, as at the start) and looks from there
    look_s: float = bounded(0.6, 0.0, 10.0)
    view_pose: list[float] = field(default_factory=lambda: [0.4, 0.0, 0.3])


@dataclass
class Perceived:
    """What the layer knows of the named block: its newest confident place and when."""

    position: np.ndarray | None = None  # (3,)
    stamp_ns: int = -1
    fresh: bool = False  # placed by the newest frame
    frames: int = 0  # frames that placed it
    misses: int = 0  # frames without a confident detection of it


@dataclass
class TaskLayer:
    """Stages of one task toward one target (module docstring)."""

    task: str
    target: np.ndarray  # (3,) hand (reach) or block centre (push, pick_place)
    obj: str = ""
    cfg: TaskLayerConfig = field(default_factory=TaskLayerConfig)

    def __post_init__(self) -> None:
        if self.task not in ("reach", "push", "pick_place"):
            raise TaskError(f"task {self.task!r} is not one of reach, push, pick_place")
        t = np.asarray(self.target, dtype=float)
        if t.shape != (3,) or not np.all(np.isfinite(t)):
            raise TaskError(f"the target must be 3 finite numbers, got {t.tolist()}")
        if self.task != "reach" and not self.obj:
            raise TaskError(f"task {self.task!r} needs the name of its block")
        self.target = t
        self.block = Perceived()
        self.phase = "start"
        self.phase_ns = 0
        self.replans = 0  # push: back up and around after the block left its line
        self.push_dir: np.ndarray | None = None  # (2,) push: the line's direction while pushing
        self.regrasps = 0  # pick_place: back to above after losing the block
        self.history: list[str] = []

    # -- perception --------------------------------------------------------------------

    def see(self, objects: dict[str, tuple[np.ndarray, float]], stamp_ns: int) -> None:
        """Take one frame's detections (name -> (position (3,), confidence))."""
        if not self.obj:
            return
        hit = objects.get(self.obj)
        self.block.fresh = False
        if hit is None or hit[1] < self.cfg.min_confidence:
            self.block.misses += 1
            if hit is not None and self.block.frames == 0 and hit[1] >= self.cfg.acquire_confidence:
                self.block.position = np.asarray(hit[0], dtype=float).copy()  # not fresh
                self.block.stamp_ns = stamp_ns
            return
        self.block.fresh = True
        self.block.position = np.asarray(hit[0], dtype=float).copy()
        self.block.stamp_ns = stamp_ns
        self.block.frames += 1

    # -- stages ------------------------------------------------------------------------

    def stage(self, hand: np.ndarray, opening: float, now_ns: int) -> Stage | None:
        """The stage for the hand at ``hand`` (3,) with the fingers ``opening`` m apart;
        None while the task's block has not been seen yet."""
        if self.task == "reach":
            return Stage("reach", self.target.copy(), OPEN, self.cfg.speed)
        if self.block.position is None:
            return None
        if self.task == "push":
            return self._push(hand, self.block.position, now_ns)
        return self._pick_place(hand, opening, self.block.position, now_ns)

    def _go(self, phase: str, now_ns: int) -> None:
        self.phase = phase
        self.phase_ns = now_ns
        self.history.append(phase)

    def _push(self, hand: np.ndarray, block: np.ndarray, now_ns: int) -> Stage:
        c = self.cfg
        pushing = self.phase == "push" and self.push_dir is not None
        reckoned = pushing and not self.block.fresh
        if reckoned:
            # the hand hides the block it pushes: the block is where the hand pushes it
            block = np.array([*(hand[:2] + c.contact * self.push_dir), block[2]])
        d = self.target[:2] - block[:2]
        dist = float(np.linalg.norm(d))
        u = d / max(dist, 1e-6)  # (2,) push direction
        if reckoned:
            # keep to the line: a reckoned block follows the hand, so aiming from it would
            # steer the hand sideways away from the target (only a seen block re-aims)
            u = self.push_dir
            dist = max(float(d @ u), 0.0)
        behind = block[:2] - c.standoff * u
        rel = hand[:2] - block[:2]
        # while pushing, the block's offset is measured from the line the hand pushes along
        # (a line recomputed from a block the arm half hides swings by tens of degrees with
        # a centimetre of perception error)
        line = self.push_dir if pushing else u
        along = float(rel @ line)  # < 0: behind the block
        lateral = abs(float(rel[0] * line[1] - rel[1] * line[0]))
        if self.phase == "start":
            self._go("above", now_ns)
        if self.phase == "push" and self.block.fresh and self.push_dir is not None:
            # the block and the hand may slide off together: the block's offset from the
            # target's line, and a block pushed past the target, re-plan as well
            to_target = self.target[:2] - block[:2]
            drift = abs(float(to_target[0] * line[1] - to_target[1] * line[0]))
            past = float(to_target @ line) < -c.done_radius
            if lateral > c.off_line or along > -c.contact / 2 or drift > c.drift or past:
                self.replans += 1
                self._go("back", now_ns)
        if self.phase == "push" and dist < c.done_radius:
            self._go("back", now_ns)  # pushed (as far as the hand can tell): look again
        if self.phase == "back":
            # up and away from the block along the line, where the camera sees it again
            away = self.push_dir if self.push_dir is not None else u
            goal = np.array([*(block[:2] - (c.standoff + c.look_back) * away), c.above_z])
            if np.linalg.norm(goal - hand) >= c.reached * 2:
                return Stage("back", goal, CLOSE, c.speed / 2)
            self._go("look", now_ns)
        if self.phase == "look":
            if not self.block.fresh:
                if (now_ns - self.phase_ns) / 1e9 < c.look_s:
                    return Stage("look", hand.copy(), CLOSE, c.speed)
                # the arm hides the block where it stands: look from the view pose
                return Stage("look", np.asarray(c.view_pose, dtype=float), CLOSE, c.speed)
            if dist < c.done_radius * 2:
                self._go("done", now_ns)
            else:
                self._go("above", now_ns)
        if self.phase == "done":
            if self.block.fresh and dist > c.done_radius * 3:
                self._go("above", now_ns)  # moved (or was misjudged): push again
            else:
                return Stage("done", hand.copy(), CLOSE, c.speed)
        if self.phase == "above":
            goal = np.array([*behind, c.above_z])
            if np.linalg.norm(goal[:2] - hand[:2]) < c.reached:
                self._go("down", now_ns)
            else:
                return Stage("above", goal, CLOSE, c.speed)
        if self.phase == "down":
            goal = np.array([*behind, c.push_z])
            if hand[2] - c.push_z < c.reached:
                self._go("push", now_ns)
                # the line from where the hand stands (behind the block) to the target
                to_target = self.target[:2] - hand[:2]
                self.push_dir = to_target / max(float(np.linalg.norm(to_target)), 1e-6)
            else:
                return Stage("down", goal, CLOSE, c.speed)
        # aim the hand so that the block centre ends on the target
        goal_xy = block[:2] + u * (min(dist, c.push_step) - c.contact)
        return Stage("push", np.array([*goal_xy, c.push_z]), CLOSE, c.push_speed)

    def _pick_place(self, hand: np.ndarray, opening: float, block: np.ndarray, now_ns: int
                    ) -> Stage:
        c = self.cfg
        elapsed = (now_ns - self.phase_ns) / 1e9
        gripped = opening > c.held_opening  # closed fingers stopped by a block
        if self.phase == "start":
            self._go("above", now_ns)
        if self.phase in ("lift", "carry", "lower") and elapsed > 0.3 and not gripped:
            self.regrasps += 1
            self._go("above", now_ns)
        if self.phase == "above":
            goal = np.array([block[0], block[1], c.lift_z])
            if np.abs(goal[:2] - hand[:2]).max() < c.reached * 0.8:
                self._go("down", now_ns)
            else:
                return Stage("above", goal, OPEN, c.speed)
        if self.phase == "down":
            goal = np.array([block[0], block[1], c.grasp_z])
            if hand[2] - c.grasp_z < c.reached * 0.8:
                self._go("grasp", now_ns)
            else:
                return Stage("down", goal, OPEN, c.speed / 2)
        if self.phase == "grasp":
            if elapsed > c.grasp_s:
                self._go("lift", now_ns)
            else:
                return Stage("grasp", hand.copy(), CLOSE, c.speed)
        if self.phase == "lift":
            goal = np.array([hand[0], hand[1], c.lift_z])
            if hand[2] > c.lift_z - 0.02:
                self._go("carry", now_ns)
            else:
                return Stage("lift", goal, CLOSE, c.speed / 2)
        if self.phase == "carry":
            goal = np.array([self.target[0], self.target[1], c.lift_z])
            if np.abs(goal[:2] - hand[:2]).max() < c.reached * 0.8:
                self._go("lower", now_ns)
            else:
                return Stage("carry", goal, CLOSE, c.speed / 2)
        if self.phase == "lower":
            # the block hangs from the fingers: its centre a little below the hand
            goal = np.array([self.target[0], self.target[1], self.target[2] + 0.005])
            if hand[2] - goal[2] < c.reached:
                self._go("release", now_ns)
            else:
                return Stage("lower", goal, CLOSE, c.speed / 4)
        if self.phase == "release":
            if elapsed > c.release_s:
                self._go("retreat", now_ns)
            else:
                return Stage("release", hand.copy(), OPEN, c.speed)
        return Stage("retreat", np.array([hand[0], hand[1], c.lift_z]), OPEN, c.speed / 2)
