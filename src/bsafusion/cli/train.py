"""``bsafusion train``: train BSAFusion for one modality pair (architecture.md §5)."""

from __future__ import annotations

import argparse
import logging

from bsafusion.cli.common import (
    add_device_argument,
    add_out_argument,
    add_pair_argument,
    multiple_of_16,
    resolve_device,
)
from bsafusion.config import EPE_REGIONS, FREEZABLE, FUSION_TARGETS, TrainConfig
from bsafusion.recipes import RECIPES


def _by_recipe(text: str, field: str) -> str:
    """``text`` and each recipe's value of ``field`` (the flag's default is the recipe's)."""
    values = [RECIPES[name].get(field, getattr(TrainConfig, field)) for name in RECIPES]
    shown = " | ".join("data's" if v is None else str(v) for v in values)
    return f"{text} (default by recipe, {' | '.join(RECIPES)}: {shown})"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model for one pair (published recipe by default)",
        description="Train BSAFusion on DATA's train split with synthetic deformations; "
        "validate on val every K epochs. Writes OUT/last.pt, OUT/best.pt (lowest val "
        "end-point error), OUT/log.csv and OUT/loss.png. Multi-GPU: run under torchrun.",
    )
    add_pair_argument(p, required=True)
    p.add_argument("--data", help="pair folder or its parent (default: $BSAFUSION_DATA, "
                   ".cache/aanlib or ../shared/data/aanlib)")
    add_out_argument(p, "run folder")
    p.add_argument("--resume", action="store_true", help="continue OUT/last.pt bit-exactly")
    p.add_argument("--recipe", choices=tuple(RECIPES), default="paper",
                   help="a named set of the settings below (each one's help shows its "
                        "value per recipe); a flag given overrides it. paper: the published "
                        "recipe; fast: registers MRI->CT on a 2-core CPU in hours")
    p.add_argument("--init", metavar="WEIGHTS", help="start the network from a run folder, "
                   "checkpoint, weights file or bundled name (its own network config); a "
                   "new schedule, e.g. to go on at 256 px after a 128 px run")
    p.add_argument("--num-epochs", type=int, help=_by_recipe("length of the cosine schedule",
                                                             "num_epochs"))
    p.add_argument("--batch-size", type=int, help=_by_recipe("global batch", "batch_size"))
    p.add_argument("--lr", type=float, help=_by_recipe("Adam learning rate", "lr"))
    p.add_argument("--flow-head-lr-scale", type=float, help=_by_recipe(
        "flow heads' learning rate relative to --lr (see TrainConfig)", "flow_head_lr_scale"))
    p.add_argument("--val-every", type=int, help=_by_recipe("validate every K epochs",
                                                            "val_every"))
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="write last.pt every K epochs; 0: with each validation")
    p.add_argument("--stop-after", type=int, help="stop after N epochs of this invocation")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="shorten --num-epochs so the run (with its cosine schedule) fits in "
                        "this wall-clock budget, measured after a few epochs")
    p.add_argument("--fusion-target", choices=FUSION_TARGETS, help=_by_recipe(
        "L_fus against the network's aligned image (the paper) or the undeformed one "
        "(label)", "fusion_target"))
    p.add_argument("--epe-weight", type=float, help=_by_recipe(
        "weight of a supervised end-point-error term (0: the paper)", "epe_weight"))
    p.add_argument("--epe-region", choices=EPE_REGIONS, help=_by_recipe(
        "where the end-point-error term counts: all pixels, or the head only (where the "
        "images show the displacement, as evaluate scores it)", "epe_region"))
    p.add_argument("--affine-weight", type=float, help=_by_recipe(
        "weight of a supervised term on the affine part (global shift, scale, shear) of the "
        "flow's error, same region as --epe-region (0: none)", "affine_weight"))
    p.add_argument("--reg-first-epochs", type=int, help=_by_recipe(
        "train registration only for the first K epochs", "reg_first_epochs"))
    p.add_argument("--freeze", nargs="+", choices=FREEZABLE, metavar="PART", help=_by_recipe(
        f"keep these parts of the network fixed ({', '.join(FREEZABLE)}); e.g. 'encoder "
        "classifier decoder' with registration-only epochs trains the registration path "
        "alone", "freeze"))
    p.add_argument("--synth-fixed-epochs", type=int, help=_by_recipe(
        "modality curriculum over the first K epochs: the fixed image is a random contrast "
        "of the moving one with a probability falling to 0", "synth_fixed_epochs"))
    p.add_argument("--warmup-epochs", type=int, help=_by_recipe(
        "linear lr warm-up (epochs)", "warmup_epochs"))
    p.add_argument("--seed", type=int, default=0, help="seed of the run")
    p.add_argument("--image-size", type=multiple_of_16, help=_by_recipe(
        "resize the data to this square size, a multiple of 16", "image_size"))
    p.add_argument("--max-train-pairs", type=int, help="use only the first N train pairs "
                   "(default: all)")
    p.add_argument("--elastic-px", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   default=(2.0, 14.0), help="training range of the elastic amplitude (2 14)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random paired flips and 90-degree rotations (default: augment)")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="no bf16 autocast on CUDA (default: autocast)")
    p.add_argument("--model-config", help="JSON (text or file) overriding ModelConfig fields "
                   "(default: the recipe's network; with --init, the weights')")
    add_device_argument(p)
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress line per epoch (default: k/N and ETA per epoch)")
    p.set_defaults(handler=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from bsafusion.config import DeformConfig, ModelConfig
    from bsafusion.data.pairs import default_data_dir, resolve_pair_dir
    from bsafusion.errors import BsafusionError, ConfigError
    from bsafusion.io.atomic import check_out_dir
    from bsafusion.recipes import recipe_config
    from bsafusion.train import train
    from bsafusion.train.checkpoint import load_network_state

    device = resolve_device(args.device)
    check_out_dir(args.out)
    model = None
    if args.init:  # the network is the weights' own
        model = load_network_state(args.init)[1]
    if args.model_config:  # a partial JSON object over the recipe's or the weights' network
        text = args.model_config
        try:
            model = ModelConfig.from_json(Path(text).read_text() if Path(text).is_file()
                                          else text, model or RECIPES[args.recipe].get("model"))
        except BsafusionError as exc:  # name the flag, not the field
            raise ConfigError("model_config", f"{exc.where}: {exc.problem}") from None
    config = recipe_config(
        args.recipe, model=model, pair=args.pair, data_dir=str(args.data or default_data_dir()),
        out_dir=args.out, num_epochs=args.num_epochs, batch_size=args.batch_size, lr=args.lr,
        flow_head_lr_scale=args.flow_head_lr_scale, fusion_target=args.fusion_target,
        epe_weight=args.epe_weight, epe_region=args.epe_region,
        affine_weight=args.affine_weight,
        reg_first_epochs=args.reg_first_epochs, freeze=args.freeze,
        synth_fixed_epochs=args.synth_fixed_epochs, warmup_epochs=args.warmup_epochs,
        val_every=args.val_every, checkpoint_every=args.checkpoint_every,
        stop_after=args.stop_after, time_budget_s=args.time_budget, seed=args.seed,
        image_size=args.image_size, max_train_pairs=args.max_train_pairs,
        augment=args.augment, amp=args.amp, init_weights=args.init,
        train_deform=DeformConfig(elastic_px=tuple(args.elastic_px)))
    if not args.resume:  # the data, before the network is built (seconds)
        resolve_pair_dir(config.data_dir, config.modality)
    try:
        result = train(config, resume=args.resume, device=device, progress=args.progress)
    except KeyboardInterrupt:  # one line, instead of the CLI's generic one
        last = Path(args.out) / "last.pt"
        hint = (f"; {last} holds the last checkpoint (continue with --resume)"
                if last.exists() else "")
        print(f"bsafusion: train: interrupted{hint}", file=sys.stderr)
        return 130
    if result.is_main and result.last_row:
        print(f"{result.out_dir}: epoch {result.epoch}, best val EPE {result.best_metric:.3f} px "
              f"(epoch {result.best_epoch}), last train loss "
              f"{result.last_row.get('train_total', float('nan')):.4f}")
    return 0
