"""Named recipes (``--recipe``) and starting a run from weights (``--init``)."""

from __future__ import annotations

import json

import pytest
import torch

from bsafusion.cli import main
from bsafusion.config import ModelConfig
from bsafusion.errors import ConfigError
from bsafusion.recipes import RECIPES, recipe_config
from bsafusion.train.checkpoint import load_checkpoint
from bsafusion.train.distributed import init_distributed
from bsafusion.train.trainer import Trainer

from .conftest import TINY_MODEL


def test_recipes_fields_and_overrides():
    paper, fast = recipe_config("paper"), recipe_config("fast")
    assert (paper.lr, paper.batch_size, paper.image_size, paper.model.reg_pyramid) == (
        5e-5, 32, None, "none")
    assert (fast.lr, fast.batch_size, fast.image_size, fast.epe_weight, fast.fusion_target,
            fast.reg_first_epochs, fast.model.reg_pyramid, fast.model.flow_init_std) == (
        5e-4, 8, 128, 1.0, "label", 90, "joint", 1e-4)
    mine = recipe_config("fast", lr=1e-3, image_size=None, model=TINY_MODEL)
    assert mine.lr == 1e-3 and mine.image_size == 128  # None: the flag was not given
    assert mine.model.embed_dim == 32 and mine.model.reg_pyramid == "joint"
    assert recipe_config("fast", model=ModelConfig()).model == ModelConfig()  # as is
    assert fast.epe_region == "all"
    with pytest.raises(ConfigError, match="not one of all, head"):
        recipe_config("fast", epe_region="brain")
    with pytest.raises(ConfigError, match="not one of paper, fast"):
        recipe_config("slow")
    with pytest.raises(ConfigError) as err:
        recipe_config("fast", learning_rate=1)
    assert err.value.where == "learning_rate"
    assert set(RECIPES) == {"paper", "fast"}


def test_cli_fast_recipe_then_init_at_another_size(aanlib_dir, tmp_path, capsys):
    common = ["--pair", "ct", "--data", str(aanlib_dir), "--max-train-pairs", "4",
              "--batch-size", "4", "--num-epochs", "1", "--val-every", "1", "--no-progress",
              "--device", "cpu"]
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["train", *common, "--recipe", "fast", "--image-size", "32", "-o", str(first),
                 "--model-config", json.dumps(TINY_MODEL)]) == 0
    config = json.loads((first / "config.json").read_text())
    assert (config["lr"], config["epe_weight"], config["reg_first_epochs"]) == (5e-4, 1.0, 90)
    assert config["model"]["reg_pyramid"] == "joint" and config["model"]["embed_dim"] == 32
    # --init: the network and its config are the checkpoint's; the schedule is new
    assert main(["train", *common, "--init", str(first), "--image-size", "48", "-o",
                 str(second), "--epe-region", "head", "--affine-weight", "2",
                 "--reg-first-epochs", "5",
                 "--freeze", "encoder", "classifier", "decoder"]) == 0
    config = json.loads((second / "config.json").read_text())
    assert config["model"]["embed_dim"] == 32 and config["model"]["reg_pyramid"] == "joint"
    assert config["epe_region"] == "head" and config["affine_weight"] == 2.0
    assert config["freeze"] == ["encoder", "classifier", "decoder"]
    assert config["image_size"] == 48 and config["init_weights"] == str(first)
    trainer = Trainer(recipe_config("paper", **{**config, "model": ModelConfig.from_dict(
        config["model"])}), init_distributed("cpu"), progress=False)
    start = load_checkpoint(first / "best.pt")["model"]
    assert all(torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    trained = load_checkpoint(second / "last.pt")["model"]  # --freeze: only registration moved
    moved = {k.split(".")[0] for k, v in trained.items() if not torch.equal(v, start[k])}
    assert "bsfa" in moved and not moved & {"encoder", "classifier", "decoder"}, moved
    # weights without the affine head start a network with one (head at the identity)
    third = tmp_path / "affine"
    assert main(["train", *common, "--init", str(first), "-o", str(third), "--image-size",
                 "32", "--reg-first-epochs", "5", "--model-config", '{"reg_affine": true}',
                 "--freeze", "encoder", "classifier", "transfer", "pyramid", "bsfa",
                 "decoder"]) == 0
    trained = load_checkpoint(third / "last.pt")["model"]
    assert {k.split(".")[0] for k in set(trained) - set(start)} == {"affine"}
    assert trained["affine.votes.weight"].abs().sum() > 0  # it trained, from zero
    assert all(torch.equal(v, trained[k]) for k, v in start.items())  # all else frozen
    capsys.readouterr()
    # a network that the weights do not fit: one line naming --init
    assert main(["train", *common, "--init", str(first), "-o", str(tmp_path / "c"),
                 "--model-config", '{"fusion_channels": [16, 8, 8, 4]}']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bsafusion: error: --init: ")
    assert "fusion_channels" in err[0] and "another network" in err[0]
