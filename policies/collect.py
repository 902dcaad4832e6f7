"""``reflexarc collect``: exploration episodes for world-model training.

Runs ``num_envs`` copies of a gymnasium scene in parallel (AsyncVectorEnv: one process
per env) and records each episode in the recorder's format (reflexarc/runtime/episode.py) with the
topics ``camera/<camera>`` (Image), ``joint_state`` (JointState), ``ee_action``
(EEAction) and ``scene_state`` (SceneState). The frame, state and the action chosen from
them share one stamp (step * control period), so frame j and action j form transition
j -> j+1.

Exploration (:class:`Explorer`) is smooth and contact-rich: per episode, either *push*
mode (go around the block to a random side at a safe height, descend, push through it
along a random direction, repeat) or *wander* mode (move toward random waypoints around
the blocks at random heights), both with Ornstein-Uhlenbeck noise on the displacement,
and a gripper that occasionally toggles. A fraction ``expert_ratio`` of the episodes
runs the scene's scripted expert instead, when the scene has one.

Resumable: episode i is ``<root>/ep-<i:06d>``, fully determined by (seed, i) whatever
the batching or the number of workers, built in a staging directory and moved into place
when complete (:mod:`reflexarc.policies.store`); existing ones are skipped. ``root`` is a
local path or any fsspec URL.

Any other gymnasium env id (one not under ``reflexarc/``, e.g. the stock ``Reacher-v5``)
is collected through :class:`GymFrames`: made with ``render_mode="rgb_array"`` and
``env_kwargs``, frames from ``env.render()`` (centre square, resized to ``image_size``),
the env's flattened observation as ``joint_state.position``, and random play in its own
Box action space (:class:`RandomPlay`: uniform, smoothed by an Ornstein-Uhlenbeck
process) recorded on ``ee_action`` as the env's action vector. Such episodes say their
action space in their metadata (``action_space``: low, high), which ``reflexarc train``
reads (docs/world-model.md, "Any scene").

Executors: ``local`` (the vector envs above, on this machine) or ``ray``
(:mod:`reflexarc.policies.collect_ray`: simulator workers as Ray actors, on a local Ray
instance or a cluster; ``pip install reflexarc[ray]``). docs/scale.md shows both.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from reflexarc.policies.store import EpisodeStore, episode_name
from reflexarc.runtime.config import bounded, choice, register
from reflexarc.runtime.episode import EpisodeWriter
from reflexarc.runtime.errors import ConfigError
from reflexarc.runtime.msgs import EEAction, Image, JointState, SceneState, empty


@dataclass
class ExploreConfig:
    """Parameters of the exploration policy (displacements in units of ``max_delta``)."""

    push_prob: float = bounded(0.7, 0.0, 1.0)  # episodes in push mode (else wander)
    ou_theta: float = bounded(0.15, 0.0, 1.0)  # OU mean reversion per step
    ou_sigma: float = bounded(0.3, 0.0, 5.0)  # OU noise per step
    gain: float = bounded(1.0, 0.0, 10.0)  # P gain toward the current waypoint
    push_z: float = 0.015  # end-effector height while pushing (m above the table)
    hover_z: float = 0.1  # height while going around the block
    pre_push: float = 0.07  # start of a push, behind the block centre (m)
    push_through: float = 0.12  # end of a push, beyond the block centre (m)
    push_steps: list[int] = field(default_factory=lambda: [4, 14])  # steps per push, range
    wander_box: list[float] = field(default_factory=lambda: [0.3, 0.7, -0.3, 0.3, 0.0, 0.3])
    waypoint_steps: list[int] = field(default_factory=lambda: [4, 12])  # wander: steps per waypoint
    gripper_flip: float = bounded(0.03, 0.0, 1.0)  # per-step chance to toggle the gripper
    # any env (collected through GymFrames): random play, or the curious explorer
    # (reflexarc.policies.explore): actions where an ensemble fitted on `model`'s latents
    # disagrees most
    policy: str = choice("random", "random", "curious")
    model: str = ""  # curious: a world model of this env (reflexarc train on its random play)
    candidates: int = bounded(64, 2, 4096)  # curious: action sequences scored per step
    horizon: int = bounded(4, 1, 64)  # curious: steps of each candidate
    ensemble: int = bounded(5, 2, 32)  # curious: predictors in the ensemble
    fit_episodes: int = bounded(60, 1, None)  # curious: training episodes the ensemble is fitted on


@dataclass
class RayConfig:
    """``executor=ray``: where the Ray workers run and how failures are handled."""

    address: str = "local"  # local: a Ray instance of this machine; auto: the running cluster; or ray://host:port
    num_workers: int = bounded(2, 1, 100_000)  # simulator actors
    num_cpus: int = bounded(0, 0, 100_000)  # address=local: CPUs Ray may use (0: all)
    cpus_per_worker: float = bounded(1.0, 0.0, 256.0)
    max_retries: int = bounded(3, 0, 1000)  # attempts after the first, per episode
    # fault drill: after this many episodes are written, kill one busy worker (0: never);
    # its episode is retried on a fresh worker (docs/scale.md)
    kill_after: int = bounded(0, 0, None)


@dataclass
class CollectConfig:
    """``reflexarc collect`` (configs/collect.yaml)."""

    env: str = "reflexarc/PandaPush-v0"  # a reflexarc scene or any gymnasium env id with a Box action space
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to gym.make (any env, reflexarc scenes too)
    backend: str = choice("mujoco", "pybullet", "toy", "gym")  # reflexarc scenes; "gym": any other env
    image_size: int = bounded(64, 16, 512)
    camera: str = "front"
    root: str = "data/push-mujoco"  # episode directories go here: a path or an fsspec URL
    out: str = ""  # summary JSON (written by the CLI)
    episodes: int = bounded(400, 1, None)
    steps: int = bounded(60, 1, None)  # control steps per episode (env may end it sooner)
    control_hz: float = bounded(10.0, 0.1, 1000.0)  # for stamps only
    max_delta: float = bounded(0.05, 1e-4, 1.0)  # |dx| clip (m per step), as the env's
    num_envs: int = bounded(0, 0, 256)  # 0: one per CPU core
    vector: str = choice("async", "sync")
    expert_ratio: float = bounded(0.2, 0.0, 1.0)  # scripted expert episodes (reflexarc scenes only)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    executor: str = choice("local", "local", "ray")
    ray: RayConfig = field(default_factory=RayConfig)
    seed: int = 0
    progress: bool = True


register("collect_schema", CollectConfig)


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def episode_seed(seed: int, index: int) -> int:
    """The env reset seed of episode ``index`` (independent of batching)."""
    return int(np.random.SeedSequence([seed, index, 7]).generate_state(1)[0])


class Explorer:
    """Smooth, contact-seeking random motions for one env, from privileged positions.

    ``act(ee (3,), block (3,)) -> (4,)`` action; state is kept between calls. Waypoints are
    chased with a clipped P law, plus Ornstein-Uhlenbeck noise (temporally correlated,
    so motions are smooth rather than jittery).
    """

    def __init__(self, cfg: ExploreConfig, max_delta: float, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.max_delta = max_delta
        self.rng = rng
        self.mode = "push" if rng.random() < cfg.push_prob else "wander"
        self.noise = np.zeros(3)
        self.gripper = float(rng.choice([-1.0, 1.0]))
        self.phase = "approach"
        self.angle = 0.0
        self.count = 0
        self.waypoint = np.zeros(3)
        self._new_push()
        self._new_waypoint()

    def _new_push(self) -> None:
        self.angle = float(self.rng.uniform(0, 2 * np.pi))
        self.phase = "approach"
        lo, hi = self.cfg.push_steps
        self.count = int(self.rng.integers(lo, hi + 1))

    def _new_waypoint(self) -> None:
        b = self.cfg.wander_box
        self.waypoint = self.rng.uniform([b[0], b[2], b[4]], [b[1], b[3], b[5]])
        lo, hi = self.cfg.waypoint_steps
        self.count = int(self.rng.integers(lo, hi + 1))

    def act(self, ee: np.ndarray, block: np.ndarray | None) -> np.ndarray:
        c = self.cfg
        target = self._target(np.asarray(ee, np.float64), block)
        move = np.clip(c.gain * (target - ee), -self.max_delta, self.max_delta)
        self.noise += -c.ou_theta * self.noise + c.ou_sigma * self.rng.standard_normal(3)
        move = np.clip(move + self.max_delta * self.noise, -self.max_delta, self.max_delta)
        if self.rng.random() < c.gripper_flip:
            self.gripper = -self.gripper
        return np.array([*move, self.gripper], dtype=np.float32)

    def _target(self, ee: np.ndarray, block: np.ndarray | None) -> np.ndarray:
        c = self.cfg
        if self.mode == "wander" or block is None:
            self.count -= 1
            if self.count <= 0:
                self._new_waypoint()
            return self.waypoint
        d = np.array([np.cos(self.angle), np.sin(self.angle)])
        b = np.asarray(block, np.float64)[:2]
        if self.phase == "approach":
            pre = b - c.pre_push * d
            far = np.linalg.norm(ee[:2] - pre) > 0.02
            if not far and ee[2] < c.push_z + 0.02:
                self.phase = "push"
            z = c.hover_z if np.linalg.norm(ee[:2] - pre) > 0.03 else c.push_z
            # keep clear of the block while going around it: hover until behind it
            return np.array([*pre, z])
        self.count -= 1
        if self.count <= 0:
            self._new_push()
        return np.array([*(b + c.push_through * d), c.push_z])


def is_generic(cfg: CollectConfig) -> bool:
    """True for an env that is not one of the project's scenes (collected via GymFrames)."""
    return cfg.backend == "gym" or not (cfg.env.startswith("reflexarc/") or cfg.backend == "toy")


class RandomPlay:
    """Random play in any Box action space: ``a = mid + half * clip(n, -1, 1)`` where ``n``
    is an Ornstein-Uhlenbeck process (``ou_theta``, ``ou_sigma`` of :class:`ExploreConfig`),
    so consecutive actions are correlated rather than white noise."""

    mode = "random"

    def __init__(self, cfg: ExploreConfig, low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.mid = (np.asarray(high, np.float64) + np.asarray(low, np.float64)) / 2
        self.half = (np.asarray(high, np.float64) - np.asarray(low, np.float64)) / 2
        self.rng = rng
        self.noise = rng.uniform(-1.0, 1.0, self.mid.shape)

    def act(self) -> np.ndarray:
        c = self.cfg
        self.noise += -c.ou_theta * self.noise + c.ou_sigma * self.rng.standard_normal(self.mid.shape)
        self.noise = np.clip(self.noise, -1.0, 1.0)
        return (self.mid + self.half * self.noise).astype(np.float32)


class GymFrames(gym.Wrapper):
    """Any gymnasium env with a Box action space, seen as the collector sees a scene:
    observation ``{"image": (S, S, 3) uint8}`` from ``env.render()`` and info ``joint_pos``
    = the env's flattened observation (recorded on ``joint_state``)."""

    def __init__(self, env: gym.Env, image_size: int) -> None:
        if not isinstance(env.action_space, gym.spaces.Box):
            raise ConfigError("env", f"{env.spec.id if env.spec else env}: action space "
                              f"{env.action_space} is not a Box; allowed: envs with Box actions")
        super().__init__(env)
        self.size = image_size
        self.plain = False
        self.observation_space = gym.spaces.Dict(
            {"image": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)})

    def _frame(self) -> np.ndarray:
        import cv2

        frame = np.asarray(self.env.render())
        if not self.plain:  # no shadows/reflections, as the graph's sim node renders
            from reflexarc.sim.gym_node import plain_render

            self.plain = True
            if plain_render(self.env):
                frame = np.asarray(self.env.render())
        h, w = frame.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        square = np.ascontiguousarray(frame[top : top + s, left : left + s, :3])
        if s != self.size:
            square = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return square.astype(np.uint8, copy=False)

    def _wrap(self, obs: Any, info: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        flat = gym.spaces.flatten(self.env.observation_space, obs) if not isinstance(
            self.env.observation_space, gym.spaces.Box) else np.asarray(obs).reshape(-1)
        return {"image": self._frame()}, {**info, "joint_pos": np.asarray(flat, np.float64)}

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._wrap(obs, info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.env.step(action)
        o, i = self._wrap(obs, info)
        return o, reward, term, trunc, i


def make_generic(cfg: CollectConfig) -> GymFrames:
    """``gym.make(cfg.env, render_mode="rgb_array", **cfg.env_kwargs)`` as :class:`GymFrames`."""
    try:
        env = gym.make(cfg.env, render_mode="rgb_array", **cfg.env_kwargs)
    except gym.error.Error as e:
        raise ConfigError("env", f"gymnasium cannot make {cfg.env!r}: {e}") from None
    return GymFrames(env, cfg.image_size)


class _ExpertAgent:
    """The scene's scripted expert (reflexarc.sim.experts) behind the explorer's interface."""

    mode = "expert"

    def __init__(self, expert: Any) -> None:
        self.expert = expert
        self.started = False

    def act(self, info: dict[str, Any]) -> np.ndarray:
        if not self.started:
            self.expert.reset(info)
            self.started = True
        return np.asarray(self.expert.act(info), np.float32)


def _load_expert(env_id: str) -> Any:
    """``factory(max_delta) -> _ExpertAgent`` for the scene's task, or None if it has none."""
    try:
        from reflexarc import sim
        from reflexarc.sim.experts import make_expert
    except ImportError:
        return None
    tasks = {v: k for k, v in getattr(sim, "ENV_IDS", {}).items()}
    if env_id not in tasks:
        return None
    return lambda max_delta: _ExpertAgent(make_expert(tasks[env_id], max_delta=max_delta))


def _make_env(cfg: CollectConfig) -> Any:
    def thunk() -> gym.Env:
        if is_generic(cfg):
            return make_generic(cfg)
        if cfg.backend == "toy" or cfg.env.startswith("reflexarc/Toy"):
            import reflexarc.policies.toy  # noqa: F401  (registers the toy scene)
        else:
            from reflexarc import sim  # noqa: F401  (registers the scenes)
        # the scene's own arguments too (``objects=[red,green,blue]``: the three-block table)
        return gym.make(cfg.env, backend=cfg.backend, image_size=cfg.image_size, **cfg.env_kwargs)

    return thunk


def _field(info: dict[str, Any], key: str, i: int) -> Any:
    v = info.get(key)
    if v is None:
        return None
    mask = info.get(f"_{key}")
    if mask is not None and not mask[i]:
        return None
    return v[i]


class _EpisodeBuffer:
    """Messages of one episode, written in one go when it is complete."""

    def __init__(self, index: int, camera: str, dt_ns: int, meta: dict[str, Any]) -> None:
        self.index = index
        self.camera = camera
        self.dt_ns = dt_ns
        self.meta = meta
        self.rows: list[tuple[str, Any]] = []
        self.t = 0
        self.done = False

    def observe(self, obs: dict[str, np.ndarray], info: dict[str, Any], i: int) -> None:
        stamp = self.t * self.dt_ns
        seq = self.t
        self.rows.append((f"camera/{self.camera}", Image(
            seq=seq, stamp_ns=stamp, camera=self.camera, rgb=np.ascontiguousarray(obs["image"][i]),
            depth=empty("f4", 0, 0))))
        proprio = np.asarray(obs["proprio"][i], np.float64) if "proprio" in obs else np.zeros(0)
        joints = _field(info, "joint_pos", i)
        if joints is None:
            joints = proprio[4:] if len(proprio) > 4 else np.zeros(0)
        jv = _field(info, "joint_vel", i)
        grip = float(proprio[3]) if len(proprio) > 3 else 0.0
        self.rows.append(("joint_state", JointState(
            seq=seq, stamp_ns=stamp, position=np.asarray(joints, np.float64),
            velocity=np.asarray(jv if jv is not None else np.zeros_like(joints), np.float64),
            effort=np.zeros(len(joints)), gripper=grip)))
        ee = _field(info, "ee_pos", i)
        objs = _field(info, "object_pos", i)
        names = _field(info, "object_names", i)
        quats = _field(info, "object_quat", i)
        objs = np.zeros((0, 3)) if objs is None else np.asarray(objs, np.float64).reshape(-1, 3)
        q = np.tile([1.0, 0, 0, 0], (len(objs), 1)) if quats is None else np.asarray(quats).reshape(-1, 4)
        target = _field(info, "target", i)
        ee_quat = _field(info, "ee_quat", i)
        self.rows.append(("scene_state", SceneState(
            seq=seq, stamp_ns=stamp,
            ee_pos=np.asarray(ee if ee is not None else np.full(3, np.nan), np.float64),
            ee_quat=np.asarray(ee_quat if ee_quat is not None else [1.0, 0, 0, 0], np.float64),
            objects=np.concatenate([objs, q], axis=1),
            names=",".join(map(str, names)) if names is not None else "",
            target=np.asarray(target if target is not None else np.zeros(3), np.float64),
            success=bool(_field(info, "is_success", i) or False), episode=self.index)))

    def act(self, action: np.ndarray) -> None:
        self.rows.append(("ee_action", EEAction(seq=self.t, stamp_ns=self.t * self.dt_ns,
                                                action=np.asarray(action, np.float32))))
        self.t += 1

    def write(self, store: EpisodeStore) -> bool:
        """Write the episode into ``store`` (False: it was there already)."""
        name = episode_name(self.index)
        staging = store.staging(name)
        with EpisodeWriter(staging, self.meta, part_seconds=1e9) as w:
            for topic, msg in self.rows:
                w.write(topic, msg, recv_ns=msg.stamp_ns)
        return store.commit(staging, name)


def collect(cfg: CollectConfig) -> dict[str, Any]:
    """Collect ``cfg.episodes`` episodes into ``cfg.root``, skipping those already there."""
    t0 = time.perf_counter()
    store = EpisodeStore(cfg.root)
    have = set(store.names())
    todo = [i for i in range(cfg.episodes) if episode_name(i) not in have]
    skipped = cfg.episodes - len(todo)
    generic = is_generic(cfg)
    expert_factory = _load_expert(cfg.env) if cfg.expert_ratio > 0 and not generic else None
    if cfg.expert_ratio > 0 and expert_factory is None and not generic:
        raise ConfigError("expert_ratio", f"no scripted expert for {cfg.env} (reflexarc.sim.experts.make_expert); use 0")
    if cfg.explore.policy == "curious" and (not generic or cfg.executor == "ray" or not cfg.explore.model):
        raise ConfigError("explore.policy", "curious exploration needs an env collected through the "
                          "gymnasium adapter, executor=local and explore.model (a checkpoint of the env)")
    if cfg.executor == "ray":
        from reflexarc.policies.collect_ray import collect_on_ray

        extra = collect_on_ray(cfg, store, todo)
    else:
        extra = _collect_local(cfg, store, todo, expert_factory)
    store.clean_staging()
    wall = time.perf_counter() - t0
    steps_done = extra.pop("steps")
    return {
        "root": cfg.root, "env": cfg.env, "backend": "gym" if generic else cfg.backend,
        "executor": cfg.executor,
        "written": extra.pop("written"), "skipped": skipped, "steps": steps_done, **extra,
        "wall_s": round(wall, 1), "steps_per_s": round(steps_done / wall, 1) if wall > 0 else 0.0,
    }


def _collect_local(cfg: CollectConfig, store: EpisodeStore, todo: list[int], expert_factory: Any) -> dict[str, Any]:
    """The episodes ``todo`` on this machine, ``num_envs`` vector envs at a time."""
    n_envs = cfg.num_envs or os.cpu_count() or 1
    n_envs = max(1, min(n_envs, len(todo))) if todo else 1
    steps_done = 0
    written = 0
    curiosity = None
    if todo and cfg.explore.policy == "curious":
        from reflexarc.policies.explore import load_curiosity

        curiosity = load_curiosity(cfg.explore.model, cfg.explore.fit_episodes, cfg.explore.ensemble, cfg.seed)
    if todo:
        vec_cls = gym.vector.AsyncVectorEnv if cfg.vector == "async" else gym.vector.SyncVectorEnv
        envs = vec_cls([_make_env(cfg) for _ in range(n_envs)])
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="collect", unit="ep", dynamic_ncols=True)
        try:
            for b in range(0, len(todo), n_envs):
                batch = todo[b : b + n_envs]
                steps, new = _run_batch(cfg, envs, batch, n_envs, store, expert_factory, curiosity)
                steps_done += steps
                written += new
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
            envs.close()
    return {"written": written, "steps": steps_done, "num_envs": n_envs}


def episode_meta(cfg: CollectConfig) -> dict[str, Any]:
    """What every collected episode says about itself, as a recorded one does (docs/data.md):
    task, robot, the project's version, the whole config, the camera's calibration and each
    topic's rate (all at ``control_hz``)."""
    from reflexarc import __version__
    from reflexarc.sim import ENV_IDS
    from reflexarc.sim.assets import SceneError
    from reflexarc.sim.calibration import camera_calibration

    task = {v: k for k, v in ENV_IDS.items()}.get(cfg.env, "")
    if is_generic(cfg):
        task = ""
    meta: dict[str, Any] = {
        "task": task, "robot": "panda" if task else "", "version": __version__,
        "config": asdict(cfg),
        "topics": {t: {"hz": cfg.control_hz} for t in (
            f"camera/{cfg.camera}", "joint_state", "ee_action", "scene_state")},
    }
    with contextlib.suppress(SceneError):  # a camera riding on a link has no fixed pose
        if task:
            meta["cameras"] = {cfg.camera: camera_calibration(cfg.camera, cfg.backend,
                                                              cfg.image_size)}
    return meta


def _run_batch(
    cfg: CollectConfig, envs: Any, batch: list[int], n_envs: int, store: EpisodeStore, expert_factory: Any,
    curiosity: Any = None,
) -> tuple[int, int]:
    """Run one episode per env for the indices in ``batch`` (extra envs run unrecorded).

    Returns (steps, episodes newly written)."""
    dt_ns = int(round(1e9 / cfg.control_hz))
    common = episode_meta(cfg)
    indices = batch + [batch[-1]] * (n_envs - len(batch))  # padding envs repeat the last one
    seeds = [episode_seed(cfg.seed, i) for i in indices]
    obs, info = envs.reset(seed=seeds)
    bufs: list[_EpisodeBuffer] = []
    agents: list[Any] = []
    space = envs.single_action_space
    generic = is_generic(cfg)
    for k, i in enumerate(indices):
        pick = _rng(cfg.seed, i, 1)
        expert = expert_factory is not None and pick.random() < cfg.expert_ratio
        rng = _rng(cfg.seed, i, 2)
        if generic and curiosity is not None:
            from reflexarc.policies.explore import CuriousPlay

            agent: Any = CuriousPlay(curiosity, cfg.explore, space.low.reshape(-1), space.high.reshape(-1), rng)
        elif generic:
            agent = RandomPlay(cfg.explore, space.low.reshape(-1), space.high.reshape(-1), rng)
        elif expert:
            agent = expert_factory(cfg.max_delta)
        else:
            agent = Explorer(cfg.explore, cfg.max_delta, rng)
        agents.append(agent)
        meta = {"env": cfg.env, "backend": "gym" if generic else cfg.backend, "seed": cfg.seed, "index": i,
                "reset_seed": seeds[k], "policy": f"explore-{agent.mode}" if not expert or generic else "expert",
                "control_hz": cfg.control_hz, "max_delta": cfg.max_delta, **common}
        if generic:  # what reflexarc train scales the actions by (docs/world-model.md)
            meta["action_space"] = {"low": space.low.reshape(-1).tolist(),
                                    "high": space.high.reshape(-1).tolist()}
        bufs.append(_EpisodeBuffer(i, cfg.camera, dt_ns, meta))
        bufs[-1].observe(obs, info, k)
    steps = 0
    for _ in range(cfg.steps):
        actions = np.zeros((n_envs, int(np.prod(space.shape))), np.float32)
        for k, agent in enumerate(agents):
            if bufs[k].done:
                continue
            if isinstance(agent, RandomPlay):
                actions[k] = agent.act()
            elif getattr(agent, "mode", "") == "curious":
                actions[k] = agent.act(obs["image"][k])
            elif isinstance(agent, Explorer):
                objs = _field(info, "object_pos", k)
                block = None if objs is None or len(objs) == 0 else np.asarray(objs).reshape(-1, 3)[0]
                actions[k] = agent.act(np.asarray(_field(info, "ee_pos", k)), block)
            else:
                actions[k] = agent.act({key: _field(info, key, k) for key in info if not key.startswith("_")})
        obs, _, term, trunc, info = envs.step(actions.reshape((n_envs, *space.shape)))
        for k in range(n_envs):
            if bufs[k].done:
                continue
            bufs[k].act(actions[k])
            bufs[k].observe(obs, info, k)
            steps += 1
            if term[k] or trunc[k]:
                bufs[k].done = True
        if all(b.done for b in bufs):
            break
    written = sum(bufs[k].write(store) for k in range(len(batch)))
    return steps, written


def collect_verb(cfg: CollectConfig) -> dict[str, Any]:
    """``reflexarc collect [key=value ...]``."""
    return collect(cfg)
