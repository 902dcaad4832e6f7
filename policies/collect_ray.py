"""``reflexarc collect executor=ray``: simulator workers as Ray actors.

Each worker (:class:`CollectWorker`, one Ray actor) holds one environment and runs whole
episodes by index; it writes each finished episode straight into the episode store
(:mod:`reflexarc.policies.store`: a path every worker sees, or an fsspec URL such as
``s3://bucket/episodes``). Episode i depends only on (seed, i) (:func:`episode_seed`,
the same per-episode random streams as the local executor), so a seed gives the same
episodes whatever the number of workers, and the same as ``executor=local``.

The driver keeps every worker busy with one episode at a time and waits for results. When
a worker dies (its process crashed, its node was lost, or it was killed), its episode is
put back at the head of the queue and a fresh worker takes the dead one's place; an
episode is given up after ``ray.max_retries`` further attempts (:class:`CollectError`).
A dead worker never committed its episode (commit is the last, atomic step) and a second
commit of a name is refused, so nothing is lost or written twice. Progress is a tqdm bar
and a log line per failure; the summary lists every failure.

``ray.address``: ``local`` starts (or reuses) a Ray instance on this machine; ``auto``
joins the cluster this machine belongs to; anything else is passed to ``ray.init``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections import Counter, deque
from typing import Any

from reflexarc.policies.collect import CollectConfig, _load_expert, _make_env, _run_batch
from reflexarc.policies.store import EpisodeStore, episode_name
from reflexarc.runtime.errors import ConfigError, ReflexarcError

log = logging.getLogger(__name__)


class CollectError(ReflexarcError):
    """An episode failed on every attempt."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor", "executor=ray needs Ray: pip install 'reflexarc[ray]' (or use executor=local)"
        ) from None
    return ray


class CollectWorker:
    """One simulator: runs episodes by index and commits them to the store (a Ray actor)."""

    def __init__(self, cfg: CollectConfig) -> None:
        import gymnasium as gym

        self.cfg = cfg
        self.store = EpisodeStore(cfg.root)
        self.envs = gym.vector.SyncVectorEnv([_make_env(cfg)])
        self.expert_factory = _load_expert(cfg.env) if cfg.expert_ratio > 0 else None

    def pid(self) -> int:
        return os.getpid()

    def run(self, index: int) -> dict[str, Any]:
        """Episode ``index``: {index, steps, written (False: already in the store), pid, s}."""
        t = time.perf_counter()
        if self.store.has(episode_name(index)):
            return {"index": index, "steps": 0, "written": False, "pid": os.getpid(), "s": 0.0}
        steps, written = _run_batch(self.cfg, self.envs, [index], 1, self.store, self.expert_factory)
        return {"index": index, "steps": steps, "written": bool(written), "pid": os.getpid(),
                "s": time.perf_counter() - t}


def _check_reachable(address: str) -> None:
    """A ``host:port`` that nothing listens on fails here in seconds (Ray retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # 'auto' and ray:// addresses: Ray resolves them itself
    try:
        socket.create_connection((host, int(port)), timeout=5.0).close()
    except OSError as e:
        raise ConfigError("ray.address", f"no Ray cluster answered at {address!r} ({e}); start "
                          "one with `ray start --head`, or use ray.address=local") from None


def init_ray(cfg: CollectConfig) -> bool:
    """Connect to Ray as ``cfg.ray.address`` says; True when this call started it."""
    ray = _ray()
    if ray.is_initialized():
        return False
    rc = cfg.ray
    if rc.address == "local":
        kw: dict[str, Any] = {"num_cpus": rc.num_cpus} if rc.num_cpus else {}
        # "local" starts an instance of our own even where a cluster was started on this
        # machine before (ray.init() with no address would join the one named in
        # /tmp/ray/ray_current_cluster, and refuse num_cpus there)
        ray.init(address="local", include_dashboard=False, log_to_driver=False, **kw)
    else:
        _check_reachable(rc.address)
        try:
            ray.init(address=rc.address, log_to_driver=False)
        except ConnectionError as e:
            # a cluster started by `ray start` may require token authentication, which the
            # driver reads from RAY_AUTH_MODE=token and ~/.ray/auth_token (docs/scale.md)
            raise ConfigError("ray.address", f"no Ray cluster answered at {rc.address!r} ({e}); "
                              "allowed: 'local', 'auto' (RAY_ADDRESS or a `ray start` on this "
                              "node), host:port of a running head, or ray://host:10001; a "
                              "cluster with token authentication also needs RAY_AUTH_MODE=token "
                              "and its token") from None
    return True


def collect_on_ray(cfg: CollectConfig, store: EpisodeStore, todo: list[int]) -> dict[str, Any]:
    """Run the episodes ``todo`` on ``cfg.ray.num_workers`` actors; the executor's summary."""
    ray = _ray()
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    rc = cfg.ray
    t0 = time.perf_counter()
    started = init_ray(cfg)
    actor = ray.remote(num_cpus=rc.cpus_per_worker, max_restarts=0, max_task_retries=0)(CollectWorker)
    # workers see the store by its root; the local staging (.staging under a local root)
    # must be on a file system every worker shares with the driver
    worker_cfg = dataclasses.replace(cfg, progress=False)
    n_workers = max(1, min(rc.num_workers, len(todo))) if todo else 0
    workers = [actor.remote(worker_cfg) for _ in range(n_workers)]
    queue: deque[int] = deque(todo)
    pending: dict[Any, tuple[int, int]] = {}  # ref -> (worker slot, episode index)
    attempts: Counter[int] = Counter()
    failures: list[dict[str, Any]] = []
    steps = killed = finished = 0
    stamps: list[float] = []  # when each episode's result arrived
    again = 0  # attempts that found their episode already committed (by a worker that died after)
    bar = None
    if cfg.progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=f"collect (ray, {n_workers} workers)", unit="ep", dynamic_ncols=True)

    def submit(slot: int) -> None:
        i = queue.popleft()
        pending[workers[slot].run.remote(i)] = (slot, i)

    try:
        for slot in range(n_workers):
            if queue:
                submit(slot)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            slot, i = pending.pop(ref)
            try:
                r = ray.get(ref)
            except (RayActorError, WorkerCrashedError, RayTaskError) as e:
                attempts[i] += 1
                kind = "worker died" if isinstance(e, RayActorError | WorkerCrashedError) else "error"
                failures.append({"episode": i, "attempt": attempts[i], "kind": kind,
                                 "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
                log.warning("collect: episode %d attempt %d failed (%s); %s", i, attempts[i], kind,
                            "retrying" if attempts[i] <= rc.max_retries else "giving up")
                if attempts[i] > rc.max_retries:
                    raise CollectError(
                        f"episode {i} failed {attempts[i]} times (ray.max_retries={rc.max_retries}); "
                        f"last: {failures[-1]['error']}"
                    ) from e
                queue.appendleft(i)
                if kind == "worker died":  # a fresh worker takes the dead one's place
                    ray.kill(workers[slot])
                    workers[slot] = actor.remote(worker_cfg)
            else:
                steps += r["steps"]
                finished += 1
                stamps.append(time.perf_counter())
                again += int(not r["written"])
                if bar is not None:
                    bar.update(1)
                if rc.kill_after and not killed and finished >= rc.kill_after and pending:
                    # the fault drill: kill a worker in the middle of an episode (one
                    # whose result is not in yet)
                    _, busy = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                    victim, episode = pending[busy[0] if busy else next(iter(pending))]
                    log.warning("collect: drill: killing worker %d during episode %d", victim, episode)
                    ray.kill(workers[victim], no_restart=True)
                    killed += 1
            if queue:
                submit(slot)
    finally:
        if bar is not None:
            bar.close()
        for w in workers:
            ray.kill(w)
        if started:
            ray.shutdown()
    have = set(store.names())
    written = sum(episode_name(i) in have for i in todo)
    # start-up (Ray, the actors, their simulators) apart from the running rate
    first_s = round(stamps[0] - t0, 1) if stamps else None
    running = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    return {"written": written, "steps": steps, "num_workers": n_workers, "failures": failures,
            "retried": len(failures), "found_committed": again, "killed": killed,
            "first_episode_s": first_s,
            "episodes_per_s_running": round(running, 3) if running is not None else None}
