"""The controller's tick kernel: the numba one gives the numpy one's results (random states,
every limit made to clip), and a controller gives the same commands with either."""

from __future__ import annotations

import numpy as np
import pytest

from reflexarc.robot import control_kernel as ck
from reflexarc.robot.controller import ControllerNode
from reflexarc.robot.kinematics import ArmKinematics
from reflexarc.robot.panda import PANDA
from reflexarc.robot.rotations import mat_to_quat
from reflexarc.runtime.config import from_mapping
from reflexarc.runtime.msgs import JointState, Plan
from reflexarc.runtime.node import Inbox, NodeContext

pytest.importorskip("numba")
MS = 1_000_000


def _case(rng: np.random.Generator, arm: ArmKinematics, ctrl: ControllerNode) -> tuple:
    """Random inputs of one tick (the controller's constants, some of them tightened so that
    the limits clip)."""
    n = arm.n
    q = PANDA.home_q + rng.normal(0, 0.3, n)
    dq = rng.normal(0, 0.5, n)
    q_r = q + rng.normal(0, 0.05, n)
    arm.update(q_r, q, dq, 0.04)
    pos = arm.ref_pos.copy()
    tgt = np.zeros(13)
    tgt[ck.T_POS] = pos + rng.normal(0, 0.05, 3) * rng.choice([0.01, 1.0, 30.0])  # far: workspace
    quat = rng.normal(size=4)
    tgt[ck.T_QUAT] = quat / np.linalg.norm(quat)
    tgt[ck.T_LAST] = tgt[ck.T_POS] - rng.normal(0, 1e-3, 3) * rng.choice([0.1, 10.0])
    sh = np.zeros(13)
    sh[ck.SH_POS] = pos + rng.normal(0, 0.01, 3)
    sh[ck.SH_VEL] = rng.normal(0, 0.2, 3)
    sh[ck.SH_TARGET] = sh[ck.SH_POS] + rng.normal(0, 1e-3, 3)
    sq = mat_to_quat(arm.ref_rot.reshape(3, 3)) + rng.normal(0, 0.1, 4) * rng.choice([0.0, 1.0, 10.0])
    sh[ck.SH_QUAT] = sq / np.linalg.norm(sq)
    js = np.zeros((4, n))
    js[ck.J_QR], js[ck.J_DQR] = q_r, rng.normal(0, 0.3, n)
    js[ck.J_TAU], js[ck.J_DDQR] = rng.normal(0, 5.0, n), rng.normal(0, 1.0, n)
    lim = ctrl._lim.copy()
    par = ctrl._par.copy()
    par[ck.P_DT] = rng.choice([1e-3, 2.5e-4, 4e-3])
    par[ck.P_RUNNING] = rng.integers(0, 2)
    par[ck.P_INERTIA] = rng.integers(0, 2)
    par[ck.P_HAS_TAU] = rng.integers(0, 2)
    par[ck.P_AMAX] = rng.choice([2.0, 8.0])
    par[ck.P_TORQUE_RATE] = rng.choice([0.0, 1000.0])
    if rng.random() < 0.5:  # tight limits: the reference's acceleration, speed, position
        lim[ck.L_DDQMAX] *= 0.01
        lim[ck.L_DQMAX] *= 0.05
        lim[ck.L_QHI] = np.minimum(lim[ck.L_QHI], q_r + 1e-4)
        lim[ck.L_TAUMAX] *= 0.1
        lim[ck.L_AGUARD] *= rng.choice([0.01, 1.0])
    info = np.zeros(ck.I_MASKS + 2 * n)
    bufs = (arm.ref_pos.copy(), arm.ref_rot.copy(), arm._jac.copy(), arm._bias.copy(),
            arm._mass.copy(), arm.meas_pos.copy())
    return q, dq, tgt, sh, bufs, js, lim, par, info


def test_the_numba_kernel_gives_the_numpy_kernels_results_on_random_states() -> None:
    rng = np.random.default_rng(7)
    arm = ArmKinematics()
    ctrl = ControllerNode(NodeContext(name="c", rate_hz=1000.0),
                          from_mapping(ControllerNode.Config, {"kernel": "numpy"}))
    compiled = ck.numba_tick()
    clipped = np.zeros(5)
    for _ in range(300):
        q, dq, tgt, sh, (rp, rr, jac, bias, mass, ee), js, lim, par, info = _case(rng, arm, ctrl)
        outs, flags = [], []
        for fn in (ck.tick_numpy, compiled):
            t, s, j, i = tgt.copy(), sh.copy(), js.copy(), info.copy()
            flags.append(fn(q, dq, t, s, rp, rr, jac, bias, mass, ee, j, lim, par, i))
            outs.append((t, s, j, i))
        (t0, s0, j0, i0), (t1, s1, j1, i1) = outs
        np.testing.assert_allclose(t1, t0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(j1, j0, rtol=0, atol=1e-9)
        np.testing.assert_allclose(i1, i0, rtol=1e-12, atol=1e-9)  # ratios up to 1e7
        assert np.all(np.isfinite(j1))
        assert flags[0] == flags[1] == bool(i0[ck.I_WS] or i0[ck.I_ACC] > 1 or i0[ck.I_SPEED] > 1
                                            or i0[ck.I_JOINT] or i0[ck.I_TORQUE])
        clipped += [i0[ck.I_WS], i0[ck.I_ACC] > 1, i0[ck.I_SPEED] > 1, i0[ck.I_JOINT], i0[ck.I_TORQUE]]
    assert np.all(clipped >= 10), clipped  # every limit clipped in some of the cases


def _closed_loop(kernel: str) -> tuple[list, dict]:
    """A controller tracking a moving plan on the Panda's rigid-body model (integrated here):
    its commands and its safety events."""
    ctrl = ControllerNode(NodeContext(name="c", rate_hz=1000.0, clock="lockstep"),
                          from_mapping(ControllerNode.Config, {"kernel": kernel}))
    import mujoco

    model = ctrl.arm.model
    data = mujoco.MjData(model)
    data.qpos[:7] = PANDA.home_q
    mujoco.mj_forward(model, data)
    p0 = data.site_xpos[ctrl.arm.site].copy()
    inbox, cmds = Inbox(), []
    for k in range(600):
        now = k * MS
        inbox.put("joint_state", JointState(seq=k, stamp_ns=now, position=data.qpos[:7].copy(),
                                            velocity=data.qvel[:7].copy(), effort=np.zeros(7),
                                            gripper=0.08), now)
        if k % 50 == 0:  # 0.3 m/s along y, then a jump the workspace and the shaper cut
            t = np.arange(11) * 0.01 + k * 1e-3
            traj = p0 + np.outer(t, [0.0, 0.3, 0.0]) + (np.array([0, 0, 5.0]) if k == 400 else 0)
            inbox.put("plan", Plan(stamp_ns=now, t0_ns=now, dt_ns=10 * MS, ee_pos=traj,
                                   ee_quat=np.zeros((0, 4)), gripper=np.zeros(0, np.float32)), now)
        for topic, msg in ctrl.step(now, inbox):
            if topic == "joint_command":
                cmds.append(msg)
                data.qfrc_applied[:7] = msg.effort
        inbox.clear_new()
        mujoco.mj_step(model, data)
    return cmds, dict(ctrl.events.events)


def test_a_controller_sends_the_same_commands_with_either_kernel() -> None:
    a, ev_a = _closed_loop("numpy")
    b, ev_b = _closed_loop("numba")
    assert len(a) == len(b) == 600 and ev_a == ev_b and ev_a.get("workspace")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(y.effort, x.effort, rtol=0, atol=1e-6)
        np.testing.assert_allclose(y.position, x.position, rtol=0, atol=1e-9)
        assert x.stamp_ns == y.stamp_ns and x.gripper == y.gripper


def test_the_compiled_plan_sampler_samples_as_the_numpy_one() -> None:
    from reflexarc.robot.plan import PlanSampler, Setpoint

    rng = np.random.default_rng(3)
    for _ in range(200):
        s = PlanSampler(rng.choice([0.0, 0.05]))
        t = int(rng.integers(1, 12))
        quats = rng.normal(size=(t, 4)) if rng.random() < 0.7 else np.zeros((0, 4))
        plan = Plan(stamp_ns=0, t0_ns=int(rng.integers(0, 50)) * MS, dt_ns=int(rng.choice([0, 10])) * MS,
                    ee_pos=rng.normal(size=(t, 3)), ee_quat=quats,
                    gripper=rng.uniform(-1, 1, t if rng.random() < 0.5 else 0))
        q0 = rng.normal(size=4)
        start = Setpoint(rng.normal(size=3), q0 / np.linalg.norm(q0), 0.5)
        t_set = int(rng.integers(0, 100)) * MS
        s.set_plan(plan, t_set, start, rng.normal(size=3))
        out = np.zeros(7)
        for now in t_set + rng.integers(0, 200, 5) * MS // 2:  # during the blend and after
            ref = s.sample(int(now))
            grip = s.sample_into(int(now), out)
            np.testing.assert_allclose(out[:3], ref.pos, rtol=0, atol=1e-12)
            np.testing.assert_allclose(out[3:], ref.quat, rtol=0, atol=1e-12)
            assert grip == ref.gripper


def test_the_state_checks_agree() -> None:
    rng = np.random.default_rng(5)
    for _ in range(100):
        new, prev = rng.normal(size=(2, 7)), rng.normal(size=7)
        if rng.random() < 0.3:
            new[rng.integers(0, 2), rng.integers(0, 7)] = rng.choice([np.nan, np.inf, -np.inf])
        first = bool(rng.random() < 0.2)
        a = ck.state_check_numpy(new, prev, first)
        b = ck.state_check_numba(new, prev, first)
        assert a == b and (a < 0) == (not np.isfinite(new).all())
        lo, hi, lim = -np.ones(7), np.ones(7), np.full(7, 1.5)
        assert ck.within_limits_numpy(new[0], new[1], lo, hi, lim) == \
            ck.within_limits_numba(new[0], new[1], lo, hi, lim)
