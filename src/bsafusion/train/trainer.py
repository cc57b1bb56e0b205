"""The training loop of architecture.md §5 (``bsafusion train``).

Per step: a batch of aligned pairs (MRI, undeformed moving image I_B*) is drawn from the
preloaded training split, flipped / rotated alike, the moving image is deformed on the
device with a random field whose exact inverse gives the ground truth (§6), and the network
is trained on ``L = L_cls + L_tr + L_smooth + L_fus + L_reg`` (§4) with Adam and a per-epoch
cosine schedule. At the end of each epoch, explicitly: the schedule steps, the frozen
discriminator is refreshed from the classifier, and p (the fusion balance) is computed from
SSIM sums all-reduced across processes. Every ``val_every`` epochs the model is scored on
``val`` under a fixed-seed deformation; ``best.pt`` (lowest mean end-point error) and
``last.pt`` hold everything needed to continue bit-exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from bsafusion.config import TrainConfig
from bsafusion.data.deform import deform
from bsafusion.data.pairs import PairTensors, load_pairs
from bsafusion.errors import ConfigError, InputError
from bsafusion.losses import BSAFusionLoss, head_mask
from bsafusion.metrics.registration import endpoint_error_stats, ncc, registration_metrics
from bsafusion.model import BSAFusion
from bsafusion.ops.filters import gradient_l1
from bsafusion.train.checkpoint import load_checkpoint, load_network_state, save_checkpoint
from bsafusion.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    init_distributed,
    teardown,
)
from bsafusion.train.monitor import RunMonitor
from bsafusion.train.step import (
    TERMS,
    bf16_autocast,
    freeze_parts,
    param_groups,
    training_step,
)

__all__ = ["TrainResult", "Trainer", "train"]

log = logging.getLogger(__name__)
# ``time_budget_s`` fits the schedule once FIT_AFTER_EPOCHS epochs have run and
# FIT_AFTER_FRACTION of the budget has passed, from the last FIT_AFTER_EPOCHS - 1 epochs (not
# the first, which autotunes; and late enough that runs sharing a GPU have all warmed up)
FIT_AFTER_EPOCHS = 4
FIT_AFTER_FRACTION = 0.1
BUDGET_SAFETY = 0.95  # fraction of the measured time left that the fitted schedule may use


class TrainResult(NamedTuple):
    """Where a run ended: epochs completed, best validation EPE (px) and its epoch; ``is_main``
    is True on the process that reports (rank 0)."""

    out_dir: Path
    epoch: int
    best_metric: float
    best_epoch: int
    last_row: dict
    is_main: bool = True


class Trainer:
    """One training run (see the module docstring); ``run()`` trains, ``validate()`` scores.

    Args:
        config: the run's :class:`TrainConfig`.
        dist: this process's :class:`DistInfo` (device included).
        resume: continue from ``out_dir/last.pt`` (its stored config is used; only
            ``stop_after`` is taken from ``config``).
        progress: show a progress bar on rank 0 (tqdm, if installed).
    """

    def __init__(self, config: TrainConfig, dist: DistInfo, *, resume: bool = False,
                 progress: bool = True) -> None:
        self.dist, self.device = dist, dist.device
        self.started = time.perf_counter()  # the clock of ``time_budget_s``
        self.out_dir = Path(config.out_dir)
        state = load_checkpoint(self.out_dir / "last.pt") if resume else None
        if state is not None:
            config = TrainConfig.from_dict({**state["train_config"],
                                            "stop_after": config.stop_after})
        self.config = cfg = config
        if cfg.batch_size % dist.world_size:
            raise ConfigError("batch_size", f"{cfg.batch_size} is not divisible by the "
                                            f"{dist.world_size} processes")
        torch.manual_seed(cfg.seed)  # model init: identical on every rank
        self.model = BSAFusion(cfg.model).to(self.device).train()
        if cfg.init_weights and state is None:
            self._init_from(cfg.init_weights)
        freeze_parts(self.model, cfg.freeze)
        self.optimizer = torch.optim.Adam(param_groups(self.model, cfg), lr=cfg.lr,
                                          betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=cfg.num_epochs, eta_min=cfg.lr * cfg.lr_min_ratio)
        self.criterion = BSAFusionLoss(fusion_target=cfg.fusion_target,
                                       epe_weight=cfg.epe_weight,
                                       epe_region=cfg.epe_region,
                                       affine_weight=cfg.affine_weight)
        self.generator = torch.Generator(device=self.device).manual_seed(
            cfg.seed * 1_000_003 + dist.rank)
        self.epoch, self.p, self.best_metric, self.best_epoch = 0, 1.0, float("inf"), 0
        self.history: list[dict] = []
        if state is not None:
            self._restore(state)
        self.train_set = load_pairs(cfg.data_dir, cfg.modality, "train",
                                    image_size=cfg.image_size, max_pairs=cfg.max_train_pairs,
                                    device=self.device)
        self.val_set = self._deformed_val_set()
        self.sampler = DistributedSampler(range(len(self.train_set.names)),
                                          num_replicas=dist.world_size, rank=dist.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=False)
        self.net = (DistributedDataParallel(self.model, device_ids=[self.device.index]
                                            if self.device.type == "cuda" else None,
                                            # registration-only epochs skip the decoder
                                            find_unused_parameters=cfg.reg_first_epochs > 0)
                    if dist.is_distributed else self.model)
        self.monitor = (RunMonitor(self.out_dir, cfg.num_epochs, self.epoch, progress)
                        if dist.is_main else None)
        if self.monitor is not None:
            self.monitor.write_config(cfg.to_dict())

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainResult:
        """Train until ``num_epochs`` (or ``stop_after`` more epochs), then write ``last.pt``."""
        cfg = self.config
        end = cfg.num_epochs if cfg.stop_after is None else min(
            cfg.num_epochs, self.epoch + cfg.stop_after)
        every = cfg.checkpoint_every or cfg.val_every
        fit_at = self.epoch + FIT_AFTER_EPOCHS
        epoch_seconds: list[float] = []
        try:
            while self.epoch < end:
                row = self.train_epoch()
                epoch_seconds.append(row["seconds"])
                if (cfg.time_budget_s and not cfg.budget_fitted and self.epoch >= fit_at
                        and self.epoch < cfg.num_epochs and self._budget_fit_due()):
                    cfg = self._fit_to_budget(epoch_seconds[-(FIT_AFTER_EPOCHS - 1):])
                    end = min(end, cfg.num_epochs)
                if self.epoch % cfg.val_every == 0 or self.epoch == cfg.num_epochs:
                    row.update(self.validate())
                    if row["val_epe_mean"] < self.best_metric:
                        self.best_metric, self.best_epoch = row["val_epe_mean"], self.epoch
                        self._save("best.pt", row)
                self.history.append(row)
                if self.dist.is_main:
                    self.monitor.epoch_done(row)
                if self.epoch % every == 0 or self.epoch == end:
                    self._save("last.pt")
        finally:
            if self.monitor is not None:
                self.monitor.close()
        last = self.history[-1] if self.history else {}
        return TrainResult(self.out_dir, self.epoch, self.best_metric, self.best_epoch, last,
                           self.dist.is_main)

    def train_epoch(self) -> dict:
        """One pass over this process's shard of ``train``; returns the epoch's log row."""
        cfg, data = self.config, self.train_set
        self.sampler.set_epoch(self.epoch)
        order = torch.tensor(list(self.sampler), device=self.device)
        per_rank = cfg.batch_size // self.dist.world_size
        sums = torch.zeros(len(TERMS) + 1, device=self.device, dtype=torch.float64)
        start = time.perf_counter()
        self.model.train()
        batches = order.split(per_rank)
        for i, batch in enumerate(batches):
            warm = (min(1.0, (self.epoch + (i + 1) / len(batches)) / cfg.warmup_epochs)
                    if cfg.warmup_epochs else 1.0)
            scheduled = [group["lr"] for group in self.optimizer.param_groups]
            for group, lr in zip(self.optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr * warm
            sums += self.train_step(data.fixed[batch], data.moving[batch])
            for group, lr in zip(self.optimizer.param_groups, scheduled, strict=True):
                group["lr"] = lr  # the epoch-level schedule never sees the warm-up
        # end of epoch, explicitly (§3.3, §4, §5)
        self.scheduler.step()
        self.model.refresh_discriminator()
        all_reduce_sum(sums)
        n = float(sums[-1])
        means = {t: float(sums[i]) / n for i, t in enumerate(TERMS)}
        self.p = means["ssim_b"] / means["ssim_a"] if means["ssim_a"] > 0 else 1.0
        self.epoch += 1
        seconds = time.perf_counter() - start
        row = {"epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"], "p": self.p,
               **{f"train_{t}": v for t, v in means.items()}, "pairs_per_s": n / seconds,
               "seconds": seconds}
        return row

    def train_step(self, fixed: Tensor, label: Tensor) -> Tensor:
        """One optimisation step on a batch of aligned pairs (B, 1, H, W) each.

        Returns:
            (len(TERMS) + 1,) float64: each term times the batch size, then the batch size.
        """
        cfg = self.config
        return training_step(self.net, self.criterion, self.optimizer, fixed, label,
                             config=cfg, generator=self.generator, p=self.p,
                             synth_probability=cfg.synth_fixed_probability(self.epoch),
                             with_fusion=self.epoch >= cfg.reg_first_epochs)

    @torch.no_grad()
    def validate(self) -> dict:
        """Score ``val`` under the fixed-seed deformation (means over pairs)."""
        fixed, label, moving, flow_gt, edges, head = self.val_set
        self.model.eval()
        sums: dict[str, Tensor] = {}
        for idx in torch.arange(fixed.shape[0], device=self.device).split(
                max(1, self.config.batch_size // self.dist.world_size)):
            with bf16_autocast(self.device, self.config):
                out = self.model(fixed[idx], moving[idx])
            flow = out.flow.float()
            metrics = registration_metrics(out.aligned.float(), label[idx], flow, flow_gt[idx])
            metrics["flow_mag"] = flow.norm(dim=1).flatten(1).mean(dim=1)
            metrics["epe_edge"] = endpoint_error_stats(flow, flow_gt[idx], edges[idx])[0]
            metrics["epe_head"] = endpoint_error_stats(flow, flow_gt[idx], head[idx])[0]
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0) + value.double().sum()
        self.model.train()
        n = fixed.shape[0]
        row = {f"val_{k}": float(v) / n for k, v in sums.items()}
        row["val_epe_identity"] = self.identity_epe
        row["val_epe_edge_identity"] = self.identity_epe_edge
        row["val_epe_head_identity"] = self.identity_epe_head
        row["val_ncc_identity"] = self.identity_ncc
        return row

    # --------------------------------------------------------------- helpers
    def _budget_fit_due(self) -> bool:
        """Has FIT_AFTER_FRACTION of the time budget passed on every rank (same answer on all)?"""
        due = time.perf_counter() - self.started >= FIT_AFTER_FRACTION * self.config.time_budget_s
        votes = torch.tensor([float(due)], device=self.device, dtype=torch.float64)
        all_reduce_sum(votes)
        return int(votes.item()) == self.dist.world_size

    def _fit_to_budget(self, epoch_seconds: list[float]) -> TrainConfig:
        """Lower ``num_epochs`` so the run ends within ``time_budget_s`` (see TrainConfig).

        Costs are measured here: the mean of ``epoch_seconds`` (recent warm epochs), one
        validation and one ``last.pt`` write, spread over their intervals; ranks agree on the
        mean of their measurements. The cosine schedule is re-targeted to the new length:
        the learning rate stays continuous and the schedule then follows the cosine of the
        new length down to its floor at the last epoch. Returns the new config.
        """
        cfg = self.config
        start = time.perf_counter()
        self.validate()
        val_s = time.perf_counter() - start
        start = time.perf_counter()
        self._save("last.pt")
        save_s = time.perf_counter() - start
        costs = torch.tensor([sum(epoch_seconds) / len(epoch_seconds), val_s, save_s],
                             device=self.device, dtype=torch.float64)
        all_reduce_sum(costs)
        epoch_s, val_s, save_s = (costs / self.dist.world_size).tolist()
        per_epoch = (epoch_s + val_s / cfg.val_every
                     + save_s / (cfg.checkpoint_every or cfg.val_every))
        left = cfg.time_budget_s - (time.perf_counter() - self.started) - val_s - save_s
        more = max(1, math.floor(BUDGET_SAFETY * left / per_epoch))
        epochs = min(cfg.num_epochs, self.epoch + more)
        log.info("time budget %.0f s: %.2f s per epoch (with validation and checkpoints), "
                 "%d epochs instead of %d", cfg.time_budget_s, per_epoch, epochs,
                 cfg.num_epochs)
        self.config = cfg = dataclasses.replace(cfg, num_epochs=epochs, budget_fitted=True)
        self.scheduler.T_max = epochs
        if self.monitor is not None:
            self.monitor.set_total(epochs)
            self.monitor.write_config(cfg.to_dict())
        return cfg

    def _deformed_val_set(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The validation pairs deformed once with ``val_seed`` (same set at every check),
        and their edge masks (B, H, W): the 10 % of pixels with the strongest gradient of the
        undeformed moving image, where displacement is visible (CT's flat interior hides it).
        """
        cfg = self.config
        val: PairTensors = load_pairs(cfg.data_dir, cfg.modality, "val",
                                      image_size=cfg.image_size, device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(cfg.val_seed)
        moving, flow_gt, _ = deform(val.moving, cfg.val_deform, generator=gen)
        grad = gradient_l1(val.moving)[:, 0]
        edges = grad >= grad.flatten(1).quantile(0.9, dim=1).view(-1, 1, 1)
        self.identity_epe = float(flow_gt.norm(dim=1).mean())
        head = head_mask(val.moving)[:, 0]  # where evaluate scores the end-point error
        zero = torch.zeros_like(flow_gt)
        self.identity_epe_edge = float(endpoint_error_stats(zero, flow_gt, edges)[0].mean())
        self.identity_epe_head = float(endpoint_error_stats(zero, flow_gt, head)[0].mean())
        self.identity_ncc = float(ncc(moving, val.moving).mean())
        return val.fixed, val.moving, moving, flow_gt, edges, head

    def _rng_state(self) -> dict:
        state = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _save(self, name: str, row: dict | None = None) -> None:
        rng = self._rng_state()
        if name == "last.pt" and self.dist.is_distributed:  # every rank's RNG, for resume
            states: list = [None] * self.dist.world_size
            torch.distributed.all_gather_object(states, rng)
            rng = {"ranks": states}
        if not self.dist.is_main:
            return
        history = self.history if row is None else [*self.history, row]
        save_checkpoint(self.out_dir / name, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "p": self.p,
            "best_metric": self.best_metric, "best_epoch": self.best_epoch,
            "history": history, "rng": rng,
            "train_config": self.config.to_dict(), "model_config": self.config.model.to_dict(),
            "world_size": self.dist.world_size,
        })
        self.monitor.write_history(history)
        if name == "last.pt":
            self.monitor.plot(history)

    def _init_from(self, source: str) -> None:
        """Load the network of ``source`` (``init_weights``) into the new model, strictly;
        weights without the affine head (``reg_affine``) may start a network with one, whose
        head then starts at the identity."""
        weights, config = load_network_state(source)
        ours = self.config.model.to_dict()
        adding_affine = ours["reg_affine"] and not config.reg_affine
        differ = [f"{k}: {v!r} vs {ours.get(k)!r}" for k, v in config.to_dict().items()
                  if k != "flow_init_std" and ours.get(k) != v  # init only: irrelevant here
                  and not (k == "reg_affine" and adding_affine)]
        if differ:
            raise ConfigError("init_weights", f"{source} holds another network "
                                              f"({'; '.join(differ[:3])})")
        if adding_affine:  # the head's own keys only, from the new model
            weights = {**{f"affine.{k}": v for k, v in self.model.affine.state_dict().items()},
                       **weights}
        self.model.load_state_dict(weights, strict=True)
        log.info("network initialised from %s%s", source,
                 " (affine head added at the identity)" if adding_affine else "")

    def _restore(self, state: dict) -> None:
        """Load model, optimiser, schedule, counters and RNG states from ``state``."""
        if state.get("world_size", 1) != self.dist.world_size:
            raise InputError(self.out_dir / "last.pt", f"was written by "
                             f"{state.get('world_size')} processes; resume with as many")
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.p = int(state["epoch"]), float(state["p"])
        self.best_metric, self.best_epoch = float(state["best_metric"]), int(state["best_epoch"])
        self.history = list(state["history"])
        rng = state["rng"]
        rng = rng["ranks"][self.dist.rank] if "ranks" in rng else rng
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"].to(self.generator.get_state().device))
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        log.info("resumed %s at epoch %d", self.out_dir, self.epoch)


def train(config: TrainConfig, *, resume: bool = False, device: str | None = None,
          progress: bool = True) -> TrainResult:
    """Run (or resume) training; the entry point of ``bsafusion train``.

    Sets the process-wide flags a training run wants (TF32 matmuls and cuDNN autotuning on
    CUDA), starts the process group under torchrun and tears it down at the end.

    Args:
        config: the run.
        resume: continue from ``config.out_dir/last.pt``.
        device: ``"cpu"`` / ``"cuda"`` / None (CUDA when available).
        progress: progress bar on rank 0.
    Returns:
        :class:`TrainResult`.
    """
    dist = init_distributed(device)
    if dist.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    try:
        if not resume and (Path(config.out_dir) / "last.pt").exists():
            raise InputError(Path(config.out_dir) / "last.pt",
                             "a run exists here (pass --resume to continue it)")
        result = Trainer(config, dist, resume=resume, progress=progress).run()
        barrier()
        return result
    finally:
        teardown()
