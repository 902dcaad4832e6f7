"""Imagined subgoals: the states a task passes through on its way to its goal.

A goal image of a push shows where the block ends, not how it gets there: the hand has
to go around the block, come down behind it on the side away from the target, and push
it through. A planner that compares predicted latents with that one image over a 0.5 s
horizon never finds out (the hand pays to leave its start pose and gains nothing until
the block moves). So the scene imagines the push as it proceeds, the way a person
pictures the steps of a task, and renders one image per step:

0. only when the hand is down near the block (a push being imagined anew): the hand
   lifted straight up where it is. Without it the planner heads for the next stage in
   a line at the hand's height, through the block, and knocks it away;
1. the hand above the pre-push point (``PUSH_STANDOFF`` behind the block, on the line
   from the target through the block), fingers closed, the block where it is;
2. the hand down at the pre-push point, at pushing height;
3. the goal: the block at the target, the hand behind it where the push ends.

When a push goes wrong (the block stops short, past the target or aside, or the hand
knocks it while coming down) the images no longer show a way to the goal: once the block
has lain at rest away from where they show it, the sim node imagines the stages anew
from where it lies (``SimConfig.reimagine_rest_s``), as a person would look again and
start over.

The images are all the planner gets (:class:`reflexarc.runtime.msgs.Goal`: ``subgoals`` holds the
stages before the last, ``image`` the last); it moves on from one to the next when its
own latent comes close to the current one (planner/node.py, "Stages"). Like every
imagined goal, this needs the simulator's state (block and target positions) and exists
in simulation only; on a robot the same sequence comes from frames of a demonstration or
from memory.

Tasks without stages (reach, pick_place) have their single goal image.
"""

from __future__ import annotations

import numpy as np

from reflexarc.sim.experts import PushExpert
from reflexarc.sim.scene import Scene
from reflexarc.sim.tasks import Task

# m: pre-push point behind the block centre. Wider than the expert's 6 cm (2.5 cm of
# clearance between fingers and block): a hand placed from pixels lands a centimetre or
# two off, and landing on the block's edge flings it across the table
PUSH_STANDOFF = 0.08
PUSH_CONTACT = PushExpert.contact  # m: hand-to-block-centre distance while pushing
PUSH_Z = PushExpert.push_z  # m: end-effector height while pushing
ABOVE_Z = 0.08  # m: end-effector height over the pre-push point
LIFT_BELOW_Z = 0.05  # m: a hand lower than this ...
LIFT_NEAR_M = 0.15  # m: ... and this close to the block (xy) lifts first (stage 0)
FINGERS_CLOSED = 0.0  # finger opening while pushing, m


def push_stages(task: Task, scene: Scene) -> list[tuple[np.ndarray, np.ndarray]]:
    """The hand position (3,) and block poses (k, 7) of each stage of the current push
    episode (module docstring), the goal last: 3 stages, 4 with the lift."""
    obj = task.obj
    poses = scene.object_poses()
    block = poses[obj, :3].copy()
    d = task.target[:2] - block[:2]
    u = d / max(float(np.linalg.norm(d)), 1e-6)  # (2,) push direction
    behind = block[:2] - PUSH_STANDOFF * u
    end = poses.copy()
    end[obj, :3] = task.target
    hand = scene.ee_pose()[0]
    lift = []
    if hand[2] < LIFT_BELOW_Z and np.linalg.norm(hand[:2] - block[:2]) < LIFT_NEAR_M:
        lift = [(np.array([*hand[:2], ABOVE_Z]), poses)]
    return [
        *lift,
        (np.array([*behind, ABOVE_Z]), poses),
        (np.array([*behind, PUSH_Z]), poses),
        (np.array([*(task.target[:2] - PUSH_CONTACT * u), PUSH_Z]), end),
    ]


def has_stages(task: Task) -> bool:
    """Whether ``task`` is imagined as a sequence of stages."""
    return task.name == "push"


def goal_sequence(task: Task, scene: Scene, camera: str = "front", size: int = 64
                  ) -> np.ndarray:
    """Images of the episode's stages, the goal last: (K, size, size, 3) uint8, K = 1 for
    tasks without stages. The episode is not disturbed (``scene.preserved()``)."""
    if not has_stages(task):
        return task.goal_image(scene, camera, size)[None]
    images = []
    with scene.preserved():
        for hand, poses in push_stages(task, scene):
            q = task.kin.solve(hand, q0=task.init_q, iters=100).q
            scene.set_joint_positions(q, FINGERS_CLOSED)
            scene.set_object_poses(poses)
            images.append(scene.render(camera, size))
    return np.stack(images)
