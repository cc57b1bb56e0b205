"""Named training recipes: ``bsafusion train --recipe paper|fast`` (issue 14).

A recipe is a set of :class:`~bsafusion.config.TrainConfig` fields (and ``ModelConfig``
fields under ``"model"``); flags given on the command line override it field by field.

- ``paper``: the published recipe (``TrainConfig``'s defaults: 256², batch 32, lr 5e-5, 3000
  epochs), the faithful network. On an H200 its flow drifted to a wrong field
  (``runs/h200-*``); it is kept as the reference.
- ``fast``: what registers MRI -> CT on a 2-core CPU within hours (``runs/ct-cpu-joint``,
  ``runs/cpu-probes-64``): 128², batch 8, lr 5e-4 with 3 warm-up epochs and a cosine over
  250 epochs; the flow heads at 0.2·lr from std 1e-4; a supervised end-point-error term
  (weight 1); the joint feature pyramid into the registration levels; a modality curriculum
  over the first 40 epochs; registration only for the first 90 epochs, then the full loss with
  ``L_fus`` against the undeformed image. Epoch ~60 s on 2 cores.
"""

from __future__ import annotations

from typing import Any

from bsafusion.config import ModelConfig, TrainConfig
from bsafusion.errors import ConfigError

__all__ = ["RECIPES", "recipe_config"]

RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "fast": {
        "image_size": 128, "batch_size": 8, "lr": 5e-4, "warmup_epochs": 3, "num_epochs": 250,
        "flow_head_lr_scale": 0.2, "epe_weight": 1.0, "synth_fixed_epochs": 40,
        "reg_first_epochs": 90, "fusion_target": "label", "val_every": 3,
        "model": {"reg_pyramid": "joint", "flow_init_std": 1e-4},
    },
}


def recipe_config(name: str = "paper", *, model: ModelConfig | dict[str, Any] | None = None,
                  **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of recipe ``name`` with ``overrides`` on top.

    Args:
        name: a key of :data:`RECIPES`.
        model: the network: a full ``ModelConfig`` (used as is, e.g. that of ``--init``
            weights) or a dict of fields applied over the recipe's.
        overrides: other ``TrainConfig`` fields; None values are ignored (flags not given).
    Raises:
        ConfigError: unknown recipe or field.
    """
    if name not in RECIPES:
        raise ConfigError("recipe", f"{name!r} is not one of {', '.join(RECIPES)}")
    recipe = dict(RECIPES[name])
    model_fields = dict(recipe.pop("model", {}))
    if isinstance(model, ModelConfig):
        network = model
    else:
        network = ModelConfig.from_dict({**model_fields, **(model or {})})
    fields = {**recipe, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = sorted(set(fields) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(unknown[0], "is not a training setting")
    return TrainConfig(**fields, model=network)
