"""Typed configuration of the network (architecture.md §3, §8).

``ModelConfig`` is frozen: variants come from :func:`dataclasses.replace`. Its defaults are
the clean design of the paper; the ``*_RELEASE`` enum values reproduce the authors' release
(architecture.md §8) and are set only by :mod:`bsafusion.compat` when a release checkpoint is
loaded.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bsafusion.errors import ConfigError
from bsafusion.pairs import get_pair

__all__ = [
    "EPE_REGIONS", "FUSION_TARGETS", "ColorConvention", "DeformConfig", "FeatureWarp",
    "ModelConfig", "TokenOrder", "TrainConfig",
]


class TokenOrder(str, Enum):
    """Where a transfer stack attaches its learned token (architecture.md §8.2)."""

    CLEAN = "clean"  # prepended; the N patch outputs are passed on in order
    RELEASE = "release"  # appended; outputs 1..N passed on (shifted by one place)


class FeatureWarp(str, Enum):
    """Which bilinear warp the network uses internally (architecture.md §2, §8.3)."""

    EXACT = "exact"  # align_corners=True sampling, border padding
    RELEASE = "release"  # align_corners=True coordinates, align_corners=False sampling, zeros


class ColorConvention(str, Enum):
    """Green weight of Y in RGB -> YCbCr (architecture.md §7, §8.5)."""

    BT601 = "bt601"  # Y = 0.257 R + 0.504 G + 0.098 B + 0.0625
    RELEASE = "release"  # the release's slip: 0.564 instead of 0.504


REG_PYRAMIDS = ("none", "siamese", "joint")  # ModelConfig.reg_pyramid
_ENUM_FIELDS = {"token_order": TokenOrder, "feature_warp": FeatureWarp, "color": ColorConvention}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of :class:`bsafusion.model.BSAFusion`; defaults are the paper's §3.

    Attributes:
        shallow_channels: channels of the shallow features F^s (encoder block 1).
        enc_channels: channels of Fe, the encoder output fed to the patch embedding.
        embed_dim: token width D.
        patch_size: patch-embedding stride; inputs must be multiples of ``16``.
        num_heads: attention heads of every ViT block.
        num_blocks: ViT blocks in the classifier, each transfer stack and the discriminator.
        num_classes: modality classes (MRI is class 1).
        pos_size: side of the learned positional map (resized to H x W per call).
        classifier_attn_drop: attention dropout of the classifier while training.
        reg_channels: BSFA widths c_1..c_5 (coarse to fine).
        fusion_channels: widths of the four MMFF Restormer levels.
        flow_init_std: std of the flow heads' initial weights (near-identity start, §6).
        reg_pyramid: ours, not the paper's: give BSFA's levels 2-5 image features from a
            strided-conv pyramid (:mod:`bsafusion.model.pyramid`): ``"siamese"`` over each
            image's F^s, warped by its side's flow so far; ``"joint"`` over both images' F^s
            stacked (early fusion, as a registration U-Net's encoder); ``"none"`` (the paper,
            and release checkpoints).
        reg_correlation: ours: with the siamese pyramid, the radius of a local correlation
            (cost volume) of the two sides' pyramid features fed to BSFA's levels 2-5;
            0 = none.
        reg_affine: ours: compose BSFA's flow with a global affine correction predicted from
            both images' F^s (:mod:`bsafusion.model.affine`); False for release checkpoints.
        token_order: §8.2 quirk switch.
        feature_warp: §8.3 quirk switch.
        color: §8.5 quirk switch (used by the colour path, not by the network).
    """

    shallow_channels: int = 8
    enc_channels: int = 3
    embed_dim: int = 256
    patch_size: int = 16
    num_heads: int = 4
    num_blocks: int = 2
    num_classes: int = 2
    pos_size: int = 256
    classifier_attn_drop: float = 0.1
    reg_channels: tuple[int, ...] = (256, 64, 32, 16, 8)
    fusion_channels: tuple[int, ...] = (64, 32, 16, 12)
    flow_init_std: float = 1e-5
    reg_pyramid: str = "none"
    reg_correlation: int = 0
    reg_affine: bool = False
    token_order: TokenOrder = TokenOrder.CLEAN
    feature_warp: FeatureWarp = FeatureWarp.EXACT
    color: ColorConvention = ColorConvention.BT601

    def __post_init__(self) -> None:
        for name, enum in _ENUM_FIELDS.items():
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                raise ConfigError(name, f"{value!r} is not one of {choices}") from None
        for name in ("reg_channels", "fusion_channels"):
            object.__setattr__(self, name, tuple(int(c) for c in getattr(self, name)))
        if len(self.reg_channels) != 5:
            raise ConfigError("reg_channels", "needs 5 widths (one per BSFA level)")
        if len(self.fusion_channels) != 4:
            raise ConfigError("fusion_channels", "needs 4 widths (4 decoder levels)")
        if self.reg_channels[0] != self.embed_dim:
            raise ConfigError("reg_channels", "the first width must equal embed_dim")
        if self.embed_dim % self.num_heads:
            raise ConfigError("num_heads", f"must divide embed_dim={self.embed_dim}")
        if isinstance(self.reg_pyramid, bool):  # runs of 2026-12-03 stored a bool
            object.__setattr__(self, "reg_pyramid", "siamese" if self.reg_pyramid else "none")
        _check_choice("reg_pyramid", self.reg_pyramid, REG_PYRAMIDS)
        if self.reg_correlation < 0 or (self.reg_correlation and self.reg_pyramid != "siamese"):
            raise ConfigError("reg_correlation", "needs reg_pyramid='siamese' and a radius >= 0")
        if self.patch_size != 16:
            raise ConfigError("patch_size", "BSFA's five levels need a patch size of 16")

    @property
    def is_release(self) -> bool:
        """True when any quirk of the authors' release is switched on."""
        return (
            self.token_order is TokenOrder.RELEASE
            or self.feature_warp is FeatureWarp.RELEASE
            or self.color is ColorConvention.RELEASE
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their values, tuples as lists)."""
        out = dataclasses.asdict(self)
        for name in _ENUM_FIELDS:
            out[name] = out[name].value
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown fields raise :class:`ConfigError`."""
        return cls(**_known_fields(cls, data))

    @classmethod
    def from_json(cls, text: str, base: ModelConfig | dict[str, Any] | None = None
                  ) -> ModelConfig:
        """A config from a JSON object of fields, over ``base`` (a config or fields; the
        defaults when None)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("config", f"not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ConfigError("config", "must be a JSON object")
        base = base.to_dict() if isinstance(base, ModelConfig) else dict(base or {})
        return cls.from_dict({**base, **data})


@dataclass(frozen=True)
class DeformConfig:
    """Random synthetic deformation of the moving image (architecture.md §6).

    The field is an affine part (translation, optional rotation about the centre) plus an
    elastic part (uniform noise in [-1, 1] per pixel and direction, Gaussian-blurred, scaled so
    that its largest displacement is the drawn amplitude). The defaults are the published test
    level: on the 256x256 AANLIB test splits they give a true mean foreground displacement of
    4.0 px (p95 7.9; the paper's 3.7 / 6.9 px are optical-flow estimates, which read low) and
    mean intensity changes of 15.9 (CT), 6.8 (PET) and 4.6 (SPECT) /255, against the published
    15.6, 7.3 and 4.6. :meth:`training` draws the elastic amplitude over a range covering it.

    Attributes:
        elastic_px: (low, high) range, in pixels, of the elastic part's maximum displacement;
            each sample draws its amplitude uniformly in it.
        translation: maximum |translation| per axis as a fraction of the image size.
        rotation_deg: maximum |rotation| in degrees (0 = none).
        kernel_size: taps of the Gaussian that smooths the noise (odd).
        sigma: its standard deviation in pixels.
        inverse_tol: accuracy (px) of the numerical inversion of the field.
        inverse_max_iter: fixed-point iteration cap of the inversion.
        reference_size: image side for which ``elastic_px``, ``kernel_size`` and ``sigma`` are
            given; an image of side ``n = min(H, W)`` scales them by ``n / reference_size`` (so
            a 64x64 image is deformed like a 256x256 one, relatively). None: use them as is.
    """

    elastic_px: tuple[float, float] = (10.0, 10.0)
    translation: float = 0.01
    rotation_deg: float = 0.0
    kernel_size: int = 101
    sigma: float = 16.0
    inverse_tol: float = 0.01
    inverse_max_iter: int = 100
    reference_size: int | None = 256

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.elastic_px)
        object.__setattr__(self, "elastic_px", (lo, hi))
        if not 0.0 <= lo <= hi:
            raise ConfigError("elastic_px", f"needs 0 <= low <= high, got {self.elastic_px}")
        if not 0.0 <= self.translation < 0.5:
            raise ConfigError("translation", f"needs 0 <= value < 0.5, got {self.translation}")
        if self.rotation_deg < 0:
            raise ConfigError("rotation_deg", "must be >= 0")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError("kernel_size", f"must be odd and positive, got {self.kernel_size}")
        if self.sigma <= 0 or self.inverse_tol <= 0 or self.inverse_max_iter < 1:
            raise ConfigError("sigma", "sigma, inverse_tol and inverse_max_iter must be positive")
        if self.reference_size is not None and self.reference_size < 1:
            raise ConfigError("reference_size", "must be positive or None")

    @classmethod
    def training(cls) -> DeformConfig:
        """The training default: elastic amplitude drawn in [2, 14] px (covers the test level;
        beyond ~16 px the 101-tap, sigma-16 field starts to fold and cannot be inverted)."""
        return cls(elastic_px=(2.0, 14.0))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeformConfig:
        return cls(**_known_fields(cls, data))


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` on ``field`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(field, f"{value!r} is not one of {', '.join(choices)}")


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(unknown[0], f"unknown {cls.__name__} field")
    return dict(data)


FUSION_TARGETS = ("aligned", "label")  # see bsafusion.losses.BSAFusionLoss
EPE_REGIONS = ("all", "head")  # ditto
# TrainConfig.freeze
FREEZABLE = ("encoder", "classifier", "transfer", "pyramid", "bsfa", "decoder", "affine")


@dataclass(frozen=True)
class TrainConfig:
    """The training run (architecture.md §5); defaults are the published recipe.

    Attributes:
        pair: moving modality, ``"ct"``, ``"pet"`` or ``"spect"`` (one model per pair).
        data_dir: the pair folder (``MRI/``, ``<MODALITY>/``, ``split.csv``) or its parent.
        out_dir: run folder (checkpoints, ``log.csv``, ``loss.png``).
        num_epochs: epochs of the cosine schedule (3000 in the paper).
        batch_size: global batch (split evenly across DDP processes).
        lr: Adam learning rate; cosine-annealed per epoch to ``lr * lr_min_ratio``.
        flow_head_lr_scale: learning rate of the ten flow heads relative to ``lr`` (ours,
            not the paper's). Adam moves every weight by about ``lr`` per step whatever the
            gradient's size, and the coarsest head has 2,304 inputs and its flow is scaled
            x16 to full resolution: at 1.0 the flow grows ~5 px per step from the first step
            and saturates its tanh (EPE ~46 px at 256², never recovering, on an H200 run
            with batch 32); 0.05 keeps it at the identity while the rest learns. (The
            cosine's floor, ``lr * lr_min_ratio``, is the same for both groups.)
        val_every: validate every K epochs (and after the last one).
        checkpoint_every: write ``last.pt`` every K epochs (0: with each validation).
        stop_after: stop after this many epochs in this invocation (resume later).
        time_budget_s: fit the schedule to this many seconds of wall clock: after a few
            timed epochs (and a tenth of the budget) ``num_epochs`` is lowered (never
            raised) so that training and its validations end within the budget, and the
            cosine schedule is re-targeted to the new length (``budget_fitted`` then records
            that it happened; a resumed run keeps the fitted length).
        budget_fitted: set by the trainer once ``num_epochs`` was fitted to the budget.
        fusion_target: ``"aligned"`` (the paper's L_fus) or ``"label"`` (fuse toward the
            undeformed image); see :class:`bsafusion.losses.BSAFusionLoss`.
        epe_weight: weight of a supervised end-point-error term against the exact synthetic
            field (ours, issue 14; 0 = the paper).
        epe_region: ``"all"`` pixels or the ``"head"`` only (see
            :class:`bsafusion.losses.BSAFusionLoss`).
        affine_weight: weight of a supervised term on the affine part of the flow's error
            (:func:`bsafusion.losses.affine_error_loss`, same region; ours, 0 = none).
        reg_first_epochs: the first K epochs train registration only (``L_reg + L_smooth +
            epe_weight * L_epe``, the fusion decoder skipped); then the full loss.
        freeze: parts of the network kept fixed (ours; names in :data:`FREEZABLE`,
            ``transfer`` = both transfer stacks). With ``encoder classifier decoder`` and a
            registration-only run, only the registration path (transfer stacks, pyramid,
            BSFA) learns, so the fused image changes only through the flow.
        synth_fixed_epochs: modality curriculum: over the first K epochs the fixed image of
            each sample is, with a probability falling linearly from ``synth_fixed_start``
            to 0, the undeformed moving image or a random contrast of it instead of the MRI
            (:mod:`bsafusion.data.synth`).
        synth_fixed_start: that probability at epoch 0.
        warmup_epochs: linear learning-rate warm-up over the first K epochs (per step).
        seed: seeds the model init, augmentation and deformations.
        val_seed: seed of the fixed validation deformation.
        augment: random paired flips / 90-degree rotations.
        image_size: resize the data to this square size (None: keep; quick experiments).
        max_train_pairs: use only the first N training pairs (None: all).
        amp: bf16 autocast on CUDA (ignored on CPU).
        train_deform / val_deform: deformation of the training samples / validation set.
        model: the network's hyper-parameters.
        init_weights: start the network from these weights (a run folder or checkpoint, a
            safetensors file or a bundled name); optimiser, schedule and counters start
            afresh. ``model`` must be the weights' own config (``recipe_config`` does that).
    """

    pair: str = "ct"
    data_dir: str = ""
    out_dir: str = "run"
    num_epochs: int = 3000
    batch_size: int = 32
    lr: float = 5e-5
    lr_min_ratio: float = 1e-2
    flow_head_lr_scale: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    val_every: int = 50
    checkpoint_every: int = 0
    stop_after: int | None = None
    time_budget_s: float | None = None
    budget_fitted: bool = False
    fusion_target: str = "aligned"
    epe_weight: float = 0.0
    epe_region: str = "all"
    affine_weight: float = 0.0
    reg_first_epochs: int = 0
    freeze: tuple[str, ...] = ()
    synth_fixed_epochs: int = 0
    synth_fixed_start: float = 1.0
    warmup_epochs: int = 0
    seed: int = 0
    val_seed: int = 1234
    augment: bool = True
    image_size: int | None = None
    max_train_pairs: int | None = None
    amp: bool = True
    train_deform: DeformConfig = dataclasses.field(default_factory=DeformConfig.training)
    val_deform: DeformConfig = dataclasses.field(default_factory=DeformConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    init_weights: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pair", get_pair(self.pair, "pair").name)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "freeze", tuple(self.freeze))
        for part in self.freeze:
            _check_choice("freeze", part, FREEZABLE)
        for name in ("num_epochs", "batch_size", "val_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(name, "must be >= 1")
        if self.lr <= 0 or not 0 < self.lr_min_ratio <= 1 or self.flow_head_lr_scale <= 0:
            raise ConfigError("lr", "lr and flow_head_lr_scale must be > 0 and lr_min_ratio "
                                    "in (0, 1]")
        for name in ("epe_weight", "affine_weight", "reg_first_epochs", "synth_fixed_epochs",
                     "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")
        for name in ("time_budget_s", "stop_after", "max_train_pairs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, f"must be > 0, got {value}")
        if self.checkpoint_every < 0:
            raise ConfigError("checkpoint_every", "must be >= 0")
        if not 0.0 <= self.synth_fixed_start <= 1.0:
            raise ConfigError("synth_fixed_start", "must be in [0, 1]")
        _check_choice("fusion_target", self.fusion_target, FUSION_TARGETS)
        _check_choice("epe_region", self.epe_region, EPE_REGIONS)
        if self.image_size is not None and (self.image_size < 16 or self.image_size % 16):
            raise ConfigError("image_size", "must be a positive multiple of 16")
        for name, cls in (("train_deform", DeformConfig), ("val_deform", DeformConfig),
                          ("model", ModelConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, cls.from_dict(value))

    def synth_fixed_probability(self, epoch: int) -> float:
        """The modality curriculum's probability of a synthetic fixed image at ``epoch``."""
        if epoch >= self.synth_fixed_epochs:
            return 0.0
        return self.synth_fixed_start * (1.0 - epoch / self.synth_fixed_epochs)

    @property
    def modality(self) -> str:
        """Folder name of the moving modality (the pair table's, e.g. ``CT``)."""
        return get_pair(self.pair, "pair").modality

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["betas"], out["freeze"] = list(self.betas), list(self.freeze)
        for name in ("train_deform", "val_deform", "model"):
            out[name] = out[name].to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**_known_fields(cls, data))
