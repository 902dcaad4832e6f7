"""The self-supervised latent world model (JEPA-style): encoder, EMA target, predictor.

An encoder maps a 64x64 RGB frame (optionally with proprioception) to a latent ``z`` (D,).
A predictor maps ``(z, a)`` to the next latent, where ``a`` = (dx, dy, dz, gripper) is an
end-effector displacement, so the model does not depend on the robot's kinematics.
Training (:mod:`reflexarc.policies.train`) rolls the predictor H steps from the encoder's latent of
the first frame and regresses the EMA target encoder's latents of the next H frames, with
VICReg variance/covariance terms against collapse. No pixels are reconstructed, and no
reward or label is used.

Verbs (the planner protocol): :meth:`WorldModel.encode`, :meth:`WorldModel.predict`,
:meth:`WorldModel.rollout`. Pure ``torch.nn.Module``: no I/O, no device hard-coded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reflexarc.runtime.config import bounded, choice
from reflexarc.runtime.errors import ConfigError


@dataclass
class ModelConfig:
    """Architecture of the world model (saved with every checkpoint)."""

    image_size: int = choice(64, 32, 64, 96, 128)
    channels: list[int] = field(default_factory=lambda: [32, 64, 64, 64])  # stride-2 convs
    latent_dim: int = bounded(64, 8, 1024)
    hidden_dim: int = bounded(256, 16, 4096)  # encoder head and predictor MLP width
    predictor_layers: int = bounded(2, 1, 8)  # hidden layers of the predictor MLP
    action_dim: int = bounded(4, 1, 32)
    action_scale: float = bounded(0.05, 1e-6, None)  # |dx| that maps to 1 (env's clip)
    # any action space: per-dimension scales, action_dim of them (train fills them from the
    # episodes); empty: the Panda's hand action, dims 0-2 divided by action_scale
    action_scales: list[float] = field(default_factory=list)
    proprio_dim: int = bounded(0, 0, 256)  # 0: image only
    # frame history: the encoder sees the last `frames` frames stacked along channels
    # (oldest first), so velocity is observable; 1: one frame (checkpoints saved before
    # this load unchanged)
    frames: int = bounded(1, 1, 8)
    # the robot's own state (named entries of an env's observation, ``state.parts``) that a
    # linear head reads from the latent, trained beside the JEPA loss: proprioception shapes
    # the image latent, and the encoder still takes images only, so a goal image (which has
    # no joint state) encodes like any frame; 0: no head (train fills it from state.parts)
    state_dim: int = bounded(0, 0, 256)

    def validate(self) -> None:
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ConfigError("channels", f"got {self.channels!r}; need a non-empty list of >= 1")
        if self.image_size // 2 ** len(self.channels) < 1:
            raise ConfigError(
                "channels",
                f"{len(self.channels)} stride-2 layers shrink a {self.image_size} px image below 1 px",
            )
        if self.action_scales and (len(self.action_scales) != self.action_dim
                                   or any(not float(v) > 0 for v in self.action_scales)):
            raise ConfigError("action_scales", f"got {list(self.action_scales)!r}; need action_dim "
                              f"({self.action_dim}) positive values, or none")


def preprocess(images: Tensor, channels: int = 3) -> Tensor:
    """uint8 images (..., H, W, C) or (..., C, H, W) -> float (..., C, H, W) in [-0.5, 0.5].

    C = ``channels`` (3, or 3 x frames for a stacked history). A channels-last input (last
    dim C) is permuted to channels-first.
    """
    if images.shape[-1] == channels and images.shape[-3] != channels:
        images = images.movedim(-1, -3)
    if images.dtype == torch.uint8:
        return images.float().div_(255.0).sub_(0.5)
    return images.float()


class Encoder(nn.Module):
    """Conv encoder: (B, 3F, S, S) float image(s) [+ (B, P) proprio] -> (B, D) latent
    (F = ``frames``: the last F frames stacked along channels, oldest first).

    Stride-2 4x4 convolutions with GroupNorm and SiLU down to (S / 2^L) px, then an MLP
    head. The head keeps the spatial layout (flatten, not pooling): positions of the arm
    and blocks matter.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3 * cfg.frames
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(1, c), nn.SiLU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.channels)
        flat = c_in * side * side + cfg.proprio_dim
        self.head = nn.Sequential(
            nn.Linear(flat, cfg.hidden_dim), nn.LayerNorm(cfg.hidden_dim), nn.SiLU(),
            nn.Linear(cfg.hidden_dim, cfg.latent_dim),
        )
        self.proprio_dim = cfg.proprio_dim

    def forward(self, image: Tensor, proprio: Tensor | None = None) -> Tensor:
        h = self.conv(image).flatten(1)  # (B, C * s * s)
        if self.proprio_dim:
            if proprio is None:
                raise ValueError(f"this encoder needs proprio (B, {self.proprio_dim})")
            h = torch.cat([h, proprio.float()], dim=-1)
        return self.head(h)


class Predictor(nn.Module):
    """Residual action-conditioned dynamics: z' = z + MLP([z, a / scale]), scale per
    dimension (``action_scales``) or, for the hand action, ``action_scale`` on dims 0-2."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dims = [cfg.latent_dim + cfg.action_dim] + [cfg.hidden_dim] * cfg.predictor_layers
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.SiLU()]
        layers.append(nn.Linear(dims[-1], cfg.latent_dim))
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(self.net[-1].weight)  # start as the identity (copy-last) model
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("action_scale", torch.tensor(float(cfg.action_scale)))
        self.action_scale: Tensor
        # from the config (saved in config.json), so not part of the weights: checkpoints
        # saved before it existed load unchanged
        scales = torch.tensor([float(v) for v in cfg.action_scales], dtype=torch.float32)
        self.register_buffer("action_scales", scales, persistent=False)
        self.action_scales: Tensor

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        a = a.to(z.dtype)
        if self.action_scales.numel():
            a = a / self.action_scales.to(z.dtype)
        else:
            a = torch.cat([a[..., :3] / self.action_scale, a[..., 3:]], dim=-1)
        return z + self.net(torch.cat([z, a], dim=-1))


class WorldModel(nn.Module):
    """Encoder, EMA target encoder and predictor, with the planner's verbs.

    Shapes: images (B, S, S, 3) uint8 (or (B, 3, S, S), or float already preprocessed);
    with a frame history (``cfg.frames`` = F > 1) (B, 3F, S, S) or (B, S, S, 3F), the last
    F frames stacked along channels, oldest first (:func:`stack_frames`);
    latents (B, D), actions (B, A) or (B, H, A): for the Panda A = 4, (dx, dy, dz) in metres
    per control step and gripper in [-1, 1]; for any other env, its own action vector.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_encoder.requires_grad_(False)
        self.predictor = Predictor(cfg)
        # only with state_dim > 0, so checkpoints saved before it load unchanged
        self.state_head = nn.Linear(cfg.latent_dim, cfg.state_dim) if cfg.state_dim else None

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def action_dim(self) -> int:
        return self.cfg.action_dim

    @property
    def in_channels(self) -> int:
        """Image channels the encoder takes: 3 per frame of history."""
        return 3 * self.cfg.frames

    def _inputs(self, obs: Tensor | dict[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        if isinstance(obs, dict):
            return obs["image"], obs.get("proprio")
        return obs, None

    def encode(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        """Online encoder: images (B, S, S, 3) uint8, or {"image", "proprio"} -> z (B, D)."""
        image, proprio = self._inputs(obs)
        p = next(self.encoder.parameters())
        return self.encoder(preprocess(image.to(p.device), self.in_channels),
                            None if proprio is None else proprio.to(p.device))

    @torch.no_grad()
    def encode_target(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        """EMA target encoder (no gradient): same shapes as :meth:`encode`."""
        image, proprio = self._inputs(obs)
        p = next(self.target_encoder.parameters())
        return self.target_encoder(
            preprocess(image.to(p.device), self.in_channels),
            None if proprio is None else proprio.to(p.device),
        )

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        """One step: z (B, D), a (B, A) -> z' (B, D)."""
        return self.predictor(z, a)

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """Open-loop latents: z0 (B, D), actions (B, H, A) -> (B, H, D), z_1..z_H."""
        out = []
        z = z0
        for k in range(actions.shape[1]):
            z = self.predictor(z, actions[:, k])
            out.append(z)
        return torch.stack(out, dim=1)

    def decode_state(self, z: Tensor) -> Tensor:
        """The robot's state (normalised, ``state_dim``) read from latents z (..., D)."""
        if self.state_head is None:
            raise ValueError("this model has no state head (model.state_dim is 0)")
        return self.state_head(z)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """EMA step: target <- (1 - tau) * target + tau * online (parameters and buffers)."""
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        online = list(self.encoder.parameters()) + list(self.encoder.buffers())
        target = list(self.target_encoder.parameters()) + list(self.target_encoder.buffers())
        torch._foreach_lerp_(target, online, tau)


def stack_frames(history: list[Tensor] | Tensor, frames: int) -> Tensor:
    """The encoder's input from a frame history: the last ``frames`` of ``history``
    ((T, S, S, 3) or a list of (S, S, 3) / (3, S, S), oldest first), the oldest repeated when
    fewer are there (an episode's start) -> (3F, S, S), channels-first, oldest first."""
    hist = list(history)
    if not hist:
        raise ValueError("stack_frames needs at least one frame")
    hist = hist[-frames:]
    hist = [hist[0]] * (frames - len(hist)) + hist
    chw = [h if h.shape[0] == 3 and h.shape[-1] != 3 else h.movedim(-1, 0) for h in hist]
    return torch.cat(chw, dim=0)


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Losses:
    """Named loss terms of one batch (scalars); ``total`` is what is minimised."""

    total: Tensor
    pred: Tensor  # mean over k of the squared error per latent dimension
    var: Tensor  # VICReg variance hinge
    cov: Tensor  # VICReg off-diagonal covariance


def variance_loss(z: Tensor, target_std: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg variance hinge: mean over dims of relu(target_std - std). z (N, D)."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(target_std - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """VICReg covariance term: sum of squared off-diagonal covariances / D. z (N, D)."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = (zc.T @ zc) / max(n - 1, 1)  # (D, D)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def jepa_latents(
    model: WorldModel, images: Tensor, actions: Tensor, proprio: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """What the JEPA loss compares, on a batch of windows.

    images (B, H+1, S, S, 3) or (B, H+1, 3, S, S) uint8; actions (B, H, A); proprio
    (B, H+1, P) or None. Returns z0 (B, D) (online encoder, frame 0), preds (B, H, D)
    (the predictor's H-step rollout from z0) and targets (B, H, D) (EMA target encoder,
    frames 1..H, no gradient).
    """
    b, h1 = images.shape[:2]
    horizon = h1 - 1
    obs0: Tensor | dict[str, Tensor] = images[:, 0]
    obs_next: Tensor | dict[str, Tensor] = images[:, 1:].flatten(0, 1)
    if proprio is not None:
        obs0 = {"image": images[:, 0], "proprio": proprio[:, 0]}
        obs_next = {"image": images[:, 1:].flatten(0, 1), "proprio": proprio[:, 1:].flatten(0, 1)}
    z0 = model.encode(obs0)  # (B, D)
    with torch.no_grad():
        targets = model.encode_target(obs_next).view(b, horizon, -1)  # (B, H, D)
    preds = model.rollout(z0, actions.to(z0.device))  # (B, H, D)
    return z0, preds, targets


def jepa_loss(
    z0: Tensor,
    preds: Tensor,
    targets: Tensor,
    *,
    var_coef: float = 1.0,
    cov_coef: float = 0.04,
    target_std: float = 1.0,
    discount: float = 1.0,
) -> Losses:
    """The loss terms from :func:`jepa_latents`' outputs (a whole batch: the VICReg terms
    are batch statistics, so data-parallel training gathers every rank's latents first)."""
    horizon = preds.shape[1]
    w = discount ** torch.arange(horizon, device=z0.device, dtype=z0.dtype)
    w = w / w.sum()
    per_step = (preds - targets).pow(2).mean(dim=(0, 2))  # (H,)
    pred = (per_step * w).sum()
    var = variance_loss(z0, target_std)
    cov = covariance_loss(z0)
    total = pred + var_coef * var + cov_coef * cov
    return Losses(total=total, pred=pred, var=var, cov=cov)


def world_model_loss(
    model: WorldModel,
    images: Tensor,
    actions: Tensor,
    proprio: Tensor | None = None,
    *,
    var_coef: float = 1.0,
    cov_coef: float = 0.04,
    target_std: float = 1.0,
    discount: float = 1.0,
) -> Losses:
    """JEPA loss on a batch of windows.

    images (B, H+1, S, S, 3) or (B, H+1, 3, S, S) uint8; actions (B, H, A);
    proprio (B, H+1, P) or None. The online encoder embeds frame 0, the predictor rolls
    H steps, the EMA target encoder embeds frames 1..H (stop-gradient). ``discount``
    weighs step k by discount^(k-1) (normalised). VICReg terms on the online latents.
    """
    z0, preds, targets = jepa_latents(model, images, actions, proprio)
    return jepa_loss(z0, preds, targets, var_coef=var_coef, cov_coef=cov_coef,
                     target_std=target_std, discount=discount)


def state_loss(model: WorldModel, z0: Tensor, preds: Tensor, state: Tensor) -> Tensor:
    """The state head's mean squared error on the encoded frame 0 and on the predictor's
    H-step rollout: z0 (B, D), preds (B, H, D), state (B, H+1, P) normalised. Reading the
    state from predicted latents makes the predictor carry the robot's dynamics."""
    z = torch.cat([z0[:, None], preds], dim=1)  # (B, H+1, D)
    return (model.decode_state(z) - state.to(z.dtype)).pow(2).mean()


def latent_std(z: Tensor) -> Tensor:
    """Per-dimension standard deviation of latents z (N, D) -> (D,)."""
    return z.float().std(dim=0)


def is_collapsed(z: Tensor, threshold: float = 1e-2) -> bool:
    """Collapse check: some latent dimension is (almost) constant over the samples z (N, D).

    VICReg keeps every dimension's std near ``target_std`` (1), so a std below
    ``threshold`` means that dimension carries nothing; non-finite latents count too.
    """
    std = latent_std(z)
    return not bool(torch.isfinite(std).all()) or float(std.min()) < threshold
