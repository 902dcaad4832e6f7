"""The controller's tick as one numeric kernel: setpoint shaping, differential IK, joint
reference limits, joint impedance and torque limits (the steps of
:mod:`reflexarc.robot.controller`, after the plan is sampled and MuJoCo has filled the
kinematics and dynamics buffers).

Two implementations with one signature and the same results (``tests/robot/
test_control_kernel.py`` compares them on random states to 1e-9):

- :func:`tick_numpy`: vectorised numpy, the reference;
- :func:`tick_numba`: the same arithmetic as scalar loops, compiled by numba (cached on
  disk, ``cache=True``, so a process loads it instead of compiling it). Python's cost per
  numpy call on 7-vectors (a few microseconds each, dozens per tick) is what made the
  step cost hundreds of microseconds (docs/benchmarks.md, "Controller step and SCHED_FIFO").

:func:`kernel` picks one: ``numba`` where it is installed (``auto``), else numpy.

Every array is float64 and preallocated by the caller; the kernel writes its results in
place and allocates nothing:

- ``q``, ``dq`` (n,): the measured joint state;
- ``tgt`` (13,): the sampled target (``[T_POS]`` position, ``[T_QUAT]`` quaternion wxyz),
  the previous tick's target position (``[T_LAST]``, overwritten with this one) and the
  target's velocity (``[T_VEL]``, written: finite differences, at most ``P_MAX_SPEED``);
- ``sh`` (13,): the shaped setpoint (:data:`SH_POS`, :data:`SH_VEL`, :data:`SH_TARGET`,
  :data:`SH_QUAT`), advanced one tick;
- ``ref_pos`` (3,), ``ref_rot`` (9,), ``jac`` (6, nv): the EE pose and Jacobian at the joint
  reference (MuJoCo); ``bias`` (nv,), ``mass`` (nv, nv), ``ee`` (3,): the bias torques,
  the inertia and the EE position at the measured state;
- ``js`` (4, n): rows :data:`J_QR`, :data:`J_DQR`, :data:`J_TAU`, :data:`J_DDQR` -- the joint
  reference, its velocity, the torque command (the previous one on entry) and the filtered
  reference acceleration -- updated;
- ``lim`` (10, n): per-joint constants (rows ``L_*``); ``par`` (:data:`NPAR`,): scalars
  (``P_*``);
- ``info`` (:data:`I_MASKS` + 2 n,): what the limits did, for the safety events: the
  workspace clip, the reference's acceleration and speed ratios (> 1: scaled down), the
  joints whose reference or torque was clipped, and the tracking error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

try:
    import numba
except ImportError:  # the numpy kernel serves (kernel() warns)
    numba = None

log = logging.getLogger(__name__)


def _jit(fn: Callable[..., object]) -> Callable[..., object]:
    """numba's njit (cached on disk, no bounds checks), or ``fn`` as it is without numba."""
    if numba is None:
        return fn
    return numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)(fn)  # type: ignore[no-any-return]

# tgt
T_POS, T_QUAT, T_LAST, T_VEL = slice(0, 3), slice(3, 7), slice(7, 10), slice(10, 13)
# sh: the setpoint shaper's state
SH_POS, SH_VEL, SH_TARGET, SH_QUAT = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 13)
# js rows
J_QR, J_DQR, J_TAU, J_DDQR = 0, 1, 2, 3
# lim rows
L_QLO, L_QHI, L_DQMAX, L_DDQMAX, L_TAUMAX, L_VGUARD, L_REST, L_KP, L_KD, L_AGUARD = range(10)
NLIM = 10
# par
(P_DT, P_DT_NOM, P_RUNNING, P_INERTIA, P_HAS_TAU, P_IK_GAIN, P_DAMP2, P_NULL_GAIN, P_TRACK,
 P_ACCEL_FF, P_OMEGA, P_ZETA, P_HORIZON, P_TORQUE_RATE, P_MAX_SPEED, P_VMAX, P_AMAX,
 P_WMAX) = range(18)
P_WS_LO, P_WS_HI, P_W = 18, 21, 24  # 3, 3 and 6 values
NPAR = 30
# info
I_WS, I_ACC, I_SPEED, I_JOINT, I_TORQUE, I_ERR = range(6)
I_MASKS = 8  # then the reference-clipped joints (n), then the torque-clipped joints (n)


# --------------------------------------------------------------------------------------
# numpy: the reference
# --------------------------------------------------------------------------------------


def _clip3(x: float, y: float, z: float, limit: float) -> tuple[float, float, float]:
    """(x, y, z) scaled down to norm ``limit`` if longer."""
    n = math.sqrt(x * x + y * y + z * z)
    if n <= limit:
        return x, y, z
    s = limit / n
    return x * s, y * s, z * s


def shape_numpy(sh: np.ndarray, tpos: np.ndarray, tquat: np.ndarray, vmax: float, amax: float,
                wmax: float, lo: np.ndarray, hi: np.ndarray, dt: float) -> None:
    """One tick of the setpoint shaper (:class:`reflexarc.robot.controller.SetpointShaper`)
    toward ``tpos`` (3,), ``tquat`` (4,): ``sh`` (13,) advanced in place."""
    # 3-vectors as Python floats: a dozen numpy calls on (3,) arrays cost more than the math
    tx, ty, tz = tpos.tolist()
    px, py, pz, vx, vy, vz, ox, oy, oz = sh[:9].tolist()
    ux, uy, uz = _clip3((tx - ox) / dt, (ty - oy) / dt, (tz - oz) / dt, vmax)  # target's velocity
    sh[SH_TARGET] = tpos
    ex, ey, ez = tx - (px + ux * dt), ty - (py + uy * dt), tz - (pz + uz * dt)
    dist = math.sqrt(ex * ex + ey * ey + ez * ez)  # error left after the target's own motion
    h = 0.5 * amax * dt  # discrete braking: v^2 / 2a + v dt / 2 <= dist
    cap = min(vmax, math.sqrt(h * h + 2.0 * amax * dist) - h)
    k = 1.0 / dt if dist / dt <= cap else cap / dist
    gx, gy, gz = _clip3(ux + ex * k, uy + ey * k, uz + ez * k, vmax)
    dx, dy, dz = _clip3(gx - vx, gy - vy, gz - vz, amax * dt)
    vx, vy, vz = vx + dx, vy + dy, vz + dz
    sh[SH_VEL] = (vx, vy, vz)
    pos = np.array((px + vx * dt, py + vy * dt, pz + vz * dt))
    out = (pos < lo) | (pos > hi)  # braking past a target on a face of the box: stop on it
    if out.any():
        np.clip(pos, lo, hi, out=pos)
        sh[3:6][out] = 0.0
    sh[SH_POS] = pos
    # orientation: at most wmax * dt per tick toward the target
    quat = sh[SH_QUAT]
    dot = float(tquat @ quat)
    q = tquat if dot >= 0.0 else -tquat
    angle = 2.0 * math.acos(min(1.0, abs(dot)))
    step = wmax * dt
    if angle <= step:
        quat[:] = q
    else:
        w = step / angle
        b = q if float(quat @ q) >= 0.0 else -q
        m = (1.0 - w) * quat + w * b
        quat[:] = m / math.sqrt(float(m @ m))


def _quat_mat(quat: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) of a quaternion (4,) wxyz (mju_quat2Mat's formula)."""
    w, x, y, z = quat.tolist()
    return np.array([
        [w * w + x * x - y * y - z * z, 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), w * w - x * x + y * y - z * z, 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ])


def tick_numpy(q: np.ndarray, dq: np.ndarray, tgt: np.ndarray, sh: np.ndarray,
               ref_pos: np.ndarray, ref_rot: np.ndarray, jac: np.ndarray, bias: np.ndarray,
               mass: np.ndarray, ee: np.ndarray, js: np.ndarray, lim: np.ndarray,
               par: np.ndarray, info: np.ndarray) -> bool:
    """One controller tick after sampling, in numpy (module docstring). True when a limit
    clipped (``info`` says which)."""
    n = q.shape[0]
    dt = par[P_DT]
    info[:] = 0.0
    # the target's velocity (blends start from it)
    v = (tgt[T_POS] - tgt[T_LAST]) / dt
    speed = math.sqrt(float(v @ v))
    tgt[T_VEL] = v if speed <= par[P_MAX_SPEED] else v * (par[P_MAX_SPEED] / speed)
    tgt[T_LAST] = tgt[T_POS]
    # the workspace box, then the shaper
    lo, hi = par[P_WS_LO:P_WS_LO + 3], par[P_WS_HI:P_WS_HI + 3]
    pos = np.clip(tgt[T_POS], lo, hi)
    info[I_WS] = float((pos != tgt[T_POS]).any())
    shape_numpy(sh, pos, tgt[T_QUAT], par[P_VMAX], par[P_AMAX], par[P_WMAX], lo, hi, dt)
    # differential IK: (6, 2) right-hand sides, one solve
    qr, dqr, ddqr = js[J_QR], js[J_DQR], js[J_DDQR]
    w6 = par[P_W:P_W + 6]
    g = par[P_IK_GAIN]
    move = sh[SH_VEL] * dt
    rhs = np.zeros((6, 2))
    rhs[:3, 0] = move + g * (sh[SH_POS] - ref_pos - move)
    e = _quat_mat(sh[SH_QUAT]) @ ref_rot.reshape(3, 3).T
    rhs[3:, 0] = g * 0.5 * np.array([e[2, 1] - e[1, 2], e[0, 2] - e[2, 0], e[1, 0] - e[0, 1]])
    rhs[:, 0] *= w6
    jw = jac[:, :n] * w6[:, None]
    a = jw @ jw.T + np.eye(6) * par[P_DAMP2]
    if par[P_RUNNING] > 0.0 and par[P_NULL_GAIN] > 0.0:
        nv = (par[P_NULL_GAIN] * par[P_DT_NOM]) * (lim[L_REST] - qr)
        rhs[:, 1] = jw @ nv
        y = np.linalg.solve(a, rhs)
        q_next = qr + jw.T @ (y[:, 0] - y[:, 1]) + nv
    else:
        q_next = qr + jw.T @ np.linalg.solve(a, rhs[:, 0])
    # the reference step: acceleration, then speed (each scaling the whole step), then position
    step = (q_next - qr) / dt
    acc = (step - dqr) / dt
    ratio = float(np.max(np.abs(acc) / lim[L_DDQMAX]))
    info[I_ACC] = ratio
    if ratio > 1.0:
        step = dqr + (acc / ratio) * dt
    ratio = float(np.max(np.abs(step) / lim[L_DQMAX]))
    info[I_SPEED] = ratio
    if ratio > 1.0:
        step = step / ratio
    qn = qr + step * dt
    out = np.clip(qn, np.minimum(lim[L_QLO], qr), np.maximum(lim[L_QHI], qr))
    clipped = out != qn
    info[I_JOINT] = float(clipped.any())
    info[I_MASKS:I_MASKS + n] = clipped
    np.clip(out, q - par[P_TRACK], q + par[P_TRACK], out=out)  # near the measured pose
    dq_next = (out - qr) / dt
    if par[P_ACCEL_FF] > 0.0:  # low-passed: finite differences of IK steps are noisy
        alpha = dt / (par[P_ACCEL_FF] + dt)
        ddqr += alpha * ((dq_next - dqr) / dt - ddqr)
    dqr[:] = dq_next
    qr[:] = out
    # joint impedance
    if par[P_INERTIA] > 0.0:
        w = par[P_OMEGA]
        acc = (w * w) * (qr - q) + (2.0 * par[P_ZETA] * w) * (dqr - dq) + ddqr
        h = par[P_HORIZON]
        vg = lim[L_VGUARD]
        np.clip(acc, (-vg - dq) / h, (vg - dq) / h, out=acc)  # the speed barrier
        # every commanded joint acceleration within accel_guard of the limits, running or
        # stopping (a contact may still push the measured one past them)
        np.clip(acc, -lim[L_AGUARD], lim[L_AGUARD], out=acc)
        tau = mass[:n, :n] @ acc + bias[:n]
    else:
        tau = lim[L_KP] * (qr - q) + lim[L_KD] * (dqr - dq) + bias[:n]
    tmax = lim[L_TAUMAX]
    out = np.clip(tau, -tmax, tmax)
    if par[P_HAS_TAU] > 0.0 and par[P_TORQUE_RATE] > 0.0:
        s = par[P_TORQUE_RATE] * dt
        prev = js[J_TAU]
        out = np.clip(out, prev - s, prev + s)
    clipped = out != tau
    info[I_TORQUE] = float(clipped.any())
    info[I_MASKS + n:I_MASKS + 2 * n] = clipped
    js[J_TAU] = out
    d = ee - sh[SH_POS]
    info[I_ERR] = 1e3 * math.sqrt(float(d @ d))
    return bool(info[I_WS] or info[I_ACC] > 1.0 or info[I_SPEED] > 1.0 or info[I_JOINT]
                or info[I_TORQUE])


# --------------------------------------------------------------------------------------
# numba: the same arithmetic, compiled
# --------------------------------------------------------------------------------------


@_jit
def _nb_clip3(x: float, y: float, z: float, limit: float):  # type: ignore[no-untyped-def]
    n = math.sqrt(x * x + y * y + z * z)
    if n <= limit:
        return x, y, z
    s = limit / n
    return x * s, y * s, z * s

@_jit
def _nb_clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)  # as np.clip

@_jit
def _nb_shape(sh, tx, ty, tz, tquat, vmax, amax, wmax, lo, hi, dt):  # type: ignore[no-untyped-def]
    px, py, pz, vx, vy, vz, ox, oy, oz = sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], sh[7], sh[8]
    ux, uy, uz = _nb_clip3((tx - ox) / dt, (ty - oy) / dt, (tz - oz) / dt, vmax)
    sh[6], sh[7], sh[8] = tx, ty, tz
    ex, ey, ez = tx - (px + ux * dt), ty - (py + uy * dt), tz - (pz + uz * dt)
    dist = math.sqrt(ex * ex + ey * ey + ez * ez)
    h = 0.5 * amax * dt
    cap = min(vmax, math.sqrt(h * h + 2.0 * amax * dist) - h)
    k = 1.0 / dt if dist / dt <= cap else cap / dist
    gx, gy, gz = _nb_clip3(ux + ex * k, uy + ey * k, uz + ez * k, vmax)
    dx, dy, dz = _nb_clip3(gx - vx, gy - vy, gz - vz, amax * dt)
    sh[3], sh[4], sh[5] = vx + dx, vy + dy, vz + dz
    for i in range(3):
        p = sh[i] + sh[3 + i] * dt
        if p < lo[i] or p > hi[i]:
            p = _nb_clip(p, lo[i], hi[i])
            sh[3 + i] = 0.0
        sh[i] = p
    dot = 0.0
    for i in range(4):
        dot += tquat[i] * sh[9 + i]
    sgn = 1.0 if dot >= 0.0 else -1.0
    angle = 2.0 * math.acos(min(1.0, abs(dot)))
    step = wmax * dt
    if angle <= step:
        for i in range(4):
            sh[9 + i] = sgn * tquat[i]
    else:
        w = step / angle
        d2 = 0.0
        for i in range(4):
            d2 += sh[9 + i] * (sgn * tquat[i])
        sb = 1.0 if d2 >= 0.0 else -1.0
        m = np.empty(4)
        nn = 0.0
        for i in range(4):
            m[i] = (1.0 - w) * sh[9 + i] + w * (sb * sgn * tquat[i])
            nn += m[i] * m[i]
        nn = math.sqrt(nn)
        for i in range(4):
            sh[9 + i] = m[i] / nn

@_jit
def tick_numba(q, dq, tgt, sh, ref_pos, ref_rot, jac, bias, mass, ee, js, lim, par, info):  # type: ignore[no-untyped-def]
    n = q.shape[0]
    dt = par[P_DT]
    for i in range(info.shape[0]):
        info[i] = 0.0
    # the target's velocity
    vx, vy, vz = (tgt[0] - tgt[7]) / dt, (tgt[1] - tgt[8]) / dt, (tgt[2] - tgt[9]) / dt
    speed = math.sqrt(vx * vx + vy * vy + vz * vz)
    ms = par[P_MAX_SPEED]
    if speed <= ms:
        tgt[10], tgt[11], tgt[12] = vx, vy, vz
    else:
        sc = ms / speed
        tgt[10], tgt[11], tgt[12] = vx * sc, vy * sc, vz * sc
    tgt[7], tgt[8], tgt[9] = tgt[0], tgt[1], tgt[2]
    # workspace, shaper
    lo = par[P_WS_LO:P_WS_LO + 3]
    hi = par[P_WS_HI:P_WS_HI + 3]
    px, py, pz = _nb_clip(tgt[0], lo[0], hi[0]), _nb_clip(tgt[1], lo[1], hi[1]), _nb_clip(tgt[2], lo[2], hi[2])
    if px != tgt[0] or py != tgt[1] or pz != tgt[2]:
        info[I_WS] = 1.0
    _nb_shape(sh, px, py, pz, tgt[3:7], par[P_VMAX], par[P_AMAX], par[P_WMAX], lo, hi, dt)
    # differential IK
    g = par[P_IK_GAIN]
    w6 = par[P_W:P_W + 6]
    rhs = np.empty((6, 2))
    for i in range(3):
        mv = sh[3 + i] * dt
        rhs[i, 0] = mv + g * (sh[i] - ref_pos[i] - mv)
    qw, qx, qy, qz = sh[9], sh[10], sh[11], sh[12]
    t = np.empty((3, 3))
    t[0, 0] = qw * qw + qx * qx - qy * qy - qz * qz
    t[0, 1] = 2.0 * (qx * qy - qw * qz)
    t[0, 2] = 2.0 * (qx * qz + qw * qy)
    t[1, 0] = 2.0 * (qx * qy + qw * qz)
    t[1, 1] = qw * qw - qx * qx + qy * qy - qz * qz
    t[1, 2] = 2.0 * (qy * qz - qw * qx)
    t[2, 0] = 2.0 * (qx * qz - qw * qy)
    t[2, 1] = 2.0 * (qy * qz + qw * qx)
    t[2, 2] = qw * qw - qx * qx - qy * qy + qz * qz
    e = np.empty((3, 3))  # target @ rot^T
    for r in range(3):
        for c in range(3):
            e[r, c] = t[r, 0] * ref_rot[3 * c] + t[r, 1] * ref_rot[3 * c + 1] + t[r, 2] * ref_rot[3 * c + 2]
    rhs[3, 0] = g * 0.5 * (e[2, 1] - e[1, 2])
    rhs[4, 0] = g * 0.5 * (e[0, 2] - e[2, 0])
    rhs[5, 0] = g * 0.5 * (e[1, 0] - e[0, 1])
    jw = np.empty((6, n))
    for r in range(6):
        rhs[r, 0] *= w6[r]
        for c in range(n):
            jw[r, c] = jac[r, c] * w6[r]
    a = np.empty((6, 6))
    for r in range(6):
        for c in range(r + 1):
            s = 0.0
            for k in range(n):
                s += jw[r, k] * jw[c, k]
            a[r, c] = s
            a[c, r] = s
        a[r, r] += par[P_DAMP2]
    qr = js[J_QR]
    dqr = js[J_DQR]
    ddqr = js[J_DDQR]
    null = par[P_RUNNING] > 0.0 and par[P_NULL_GAIN] > 0.0
    nv = np.zeros(n)
    if null:
        kn = par[P_NULL_GAIN] * par[P_DT_NOM]
        for k in range(n):
            nv[k] = kn * (lim[L_REST, k] - qr[k])
        for r in range(6):
            s = 0.0
            for k in range(n):
                s += jw[r, k] * nv[k]
            rhs[r, 1] = s
    else:
        for r in range(6):
            rhs[r, 1] = 0.0
    # Cholesky of the (symmetric positive definite) a, both right-hand sides
    lch = np.zeros((6, 6))
    for r in range(6):
        for c in range(r + 1):
            s = a[r, c]
            for k in range(c):
                s -= lch[r, k] * lch[c, k]
            if r == c:
                lch[r, r] = math.sqrt(s)
            else:
                lch[r, c] = s / lch[c, c]
    y = np.empty(6)
    for col in range(2):
        for r in range(6):
            s = rhs[r, col]
            for k in range(r):
                s -= lch[r, k] * rhs[k, col]
            rhs[r, col] = s / lch[r, r]
        for r in range(5, -1, -1):
            s = rhs[r, col]
            for k in range(r + 1, 6):
                s -= lch[k, r] * rhs[k, col]
            rhs[r, col] = s / lch[r, r]
    for r in range(6):
        y[r] = rhs[r, 0] - rhs[r, 1]
    # the reference step
    stp = np.empty(n)
    ratio = 0.0
    for k in range(n):
        s = 0.0
        for r in range(6):
            s += jw[r, k] * y[r]
        qn = qr[k] + s + nv[k]
        stp[k] = (qn - qr[k]) / dt
        acc = (stp[k] - dqr[k]) / dt
        ratio = max(ratio, abs(acc) / lim[L_DDQMAX, k])
    info[I_ACC] = ratio
    if ratio > 1.0:
        for k in range(n):
            stp[k] = dqr[k] + (((stp[k] - dqr[k]) / dt) / ratio) * dt
    ratio = 0.0
    for k in range(n):
        ratio = max(ratio, abs(stp[k]) / lim[L_DQMAX, k])
    info[I_SPEED] = ratio
    alpha = dt / (par[P_ACCEL_FF] + dt)
    for k in range(n):
        s = stp[k] / ratio if ratio > 1.0 else stp[k]
        qn = qr[k] + s * dt
        o = _nb_clip(qn, min(lim[L_QLO, k], qr[k]), max(lim[L_QHI, k], qr[k]))
        if o != qn:
            info[I_JOINT] = 1.0
            info[I_MASKS + k] = 1.0
        o = _nb_clip(o, q[k] - par[P_TRACK], q[k] + par[P_TRACK])
        dn = (o - qr[k]) / dt
        if par[P_ACCEL_FF] > 0.0:
            ddqr[k] += alpha * ((dn - dqr[k]) / dt - ddqr[k])
        dqr[k] = dn
        qr[k] = o
    # joint impedance
    tau = np.empty(n)
    if par[P_INERTIA] > 0.0:
        w = par[P_OMEGA]
        kp = w * w
        kd = 2.0 * par[P_ZETA] * w
        h = par[P_HORIZON]
        acc = np.empty(n)
        for k in range(n):
            a_k = kp * (qr[k] - q[k]) + kd * (dqr[k] - dq[k]) + ddqr[k]
            vg = lim[L_VGUARD, k]
            a_k = _nb_clip(a_k, (-vg - dq[k]) / h, (vg - dq[k]) / h)
            acc[k] = _nb_clip(a_k, -lim[L_AGUARD, k], lim[L_AGUARD, k])
        for r in range(n):
            s = 0.0
            for k in range(n):
                s += mass[r, k] * acc[k]
            tau[r] = s + bias[r]
    else:
        for k in range(n):
            tau[k] = lim[L_KP, k] * (qr[k] - q[k]) + lim[L_KD, k] * (dqr[k] - dq[k]) + bias[k]
    rate = par[P_HAS_TAU] > 0.0 and par[P_TORQUE_RATE] > 0.0
    s_rate = par[P_TORQUE_RATE] * dt
    for k in range(n):
        tm = lim[L_TAUMAX, k]
        o = _nb_clip(tau[k], -tm, tm)
        if rate:
            o = _nb_clip(o, js[J_TAU, k] - s_rate, js[J_TAU, k] + s_rate)
        if o != tau[k]:
            info[I_TORQUE] = 1.0
            info[I_MASKS + n + k] = 1.0
        js[J_TAU, k] = o
    d0, d1, d2 = ee[0] - sh[0], ee[1] - sh[1], ee[2] - sh[2]
    info[I_ERR] = 1e3 * math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
    return (info[I_WS] > 0.0 or info[I_ACC] > 1.0 or info[I_SPEED] > 1.0 or info[I_JOINT] > 0.0
            or info[I_TORQUE] > 0.0)


@_jit
def within_limits_numba(q, dq, q_min, q_max, dq_lim):  # type: ignore[no-untyped-def]
    """True when the measured ``q``, ``dq`` (n,) are inside the limits (as
    :func:`within_limits_numpy`)."""
    for k in range(q.shape[0]):
        if q[k] < q_min[k] or q[k] > q_max[k] or abs(dq[k]) > dq_lim[k]:
            return False
    return True


@_jit
def sample_numba(pos, quats, t0_ns, dt_ns, now_ns, start, start_ns, blend_ns, hold_quat, out):  # type: ignore[no-untyped-def]
    """:meth:`reflexarc.robot.plan.PlanSampler.sample` of a plan with setpoints ``pos``
    (T, 3), orientations ``quats`` (T, 4, normalised; (0, 4): ``hold_quat``) from ``t0_ns``
    every ``dt_ns``, blending from ``start`` (10,: position, quaternion, velocity) since
    ``start_ns`` over ``blend_ns``: position and quaternion into ``out`` (7,). Returns the
    segment (i, j, f) (:func:`reflexarc.robot.plan.plan_segment`)."""
    n = pos.shape[0]
    i, j, f = 0, 0, 0.0
    if n > 1 and dt_ns > 0:
        u = min(max((now_ns - t0_ns) / dt_ns, 0.0), n - 1.0)
        i = min(int(u), n - 2)
        j = i + 1
        f = u - i
    for k in range(3):
        out[k] = (1.0 - f) * pos[i, k] + f * pos[j, k]
    if quats.shape[0] == 0:
        for k in range(4):
            out[3 + k] = hold_quat[k]
    else:
        _nb_nlerp(quats[i], quats[j], f, out[3:7])
    dt = now_ns - start_ns
    if dt >= blend_ns:
        return i, j, f
    s = max(dt, 0) / blend_ns
    w = s * s * (3.0 - 2.0 * s)
    for k in range(3):
        old = start[k] + start[7 + k] * (dt / 1e9)
        out[k] = (1.0 - w) * old + w * out[k]
    _nb_nlerp(start[3:7], out[3:7], w, out[3:7])
    return i, j, f


@_jit
def _nb_nlerp(a, b, w, out):  # type: ignore[no-untyped-def]
    """reflexarc.robot.rotations.nlerp into ``out`` (4,), which may be ``b``."""
    d = 0.0
    for k in range(4):
        d += a[k] * b[k]
    sb = -1.0 if d < 0.0 else 1.0
    nn = 0.0
    for k in range(4):
        out[k] = (1.0 - w) * a[k] + w * (sb * b[k])
        nn += out[k] * out[k]
    nn = math.sqrt(nn)
    for k in range(4):
        out[k] = out[k] / nn


@_jit
def state_check_numba(new, prev, first):  # type: ignore[no-untyped-def]
    """As :func:`state_check_numpy`."""
    jump = 0.0
    for r in range(2):
        for k in range(new.shape[1]):
            if not math.isfinite(new[r, k]):
                return -1.0
    if not first:
        for k in range(new.shape[1]):
            jump = max(jump, abs(new[0, k] - prev[k]))
    return jump


def state_check_numpy(new: np.ndarray, prev: np.ndarray, first: bool) -> float:
    """A new joint state ``new`` (2, n: positions, velocities): -1 if a value is not finite,
    else how far (rad) its positions jumped from ``prev`` (n,) (0 when ``first``)."""
    if not np.isfinite(new).all():
        return -1.0
    return 0.0 if first else float(np.abs(new[0] - prev).max())


def within_limits_numpy(q: np.ndarray, dq: np.ndarray, q_min: np.ndarray, q_max: np.ndarray,
                        dq_lim: np.ndarray) -> bool:
    """True when the measured ``q``, ``dq`` (n,) are inside the position and speed limits."""
    return not bool(((q < q_min) | (q > q_max) | (np.abs(dq) > dq_lim)).any())


def numba_tick() -> Callable[..., None]:
    """The compiled kernel (loaded from numba's cache, or compiled once); ImportError where
    numba is not installed."""
    if numba is None:
        raise ImportError("numba is not installed (pip install numba)")
    return tick_numba  # type: ignore[no-any-return]


def kernel(which: str = "auto") -> tuple[str, Callable[..., None]]:
    """``(name, function)`` of the tick kernel: ``numba``, ``numpy``, or ``auto`` (numba
    where it is installed, else numpy, with a warning)."""
    if which == "numpy":
        return "numpy", tick_numpy
    try:
        return "numba", numba_tick()
    except ImportError as e:
        if which == "numba":
            raise
        log.warning("numba is not installed (%s): the controller runs its numpy kernel", e)
        return "numpy", tick_numpy
