"""Arguments shared by several commands."""

from __future__ import annotations

import argparse

from bsafusion.pairs import canonical_pair, pair_names

__all__ = ["add_pair_argument", "pair_name"]


def pair_name(text: str) -> str:
    """argparse ``type`` of ``--pair``: any accepted spelling -> the canonical name."""
    return canonical_pair(text) or text.lower()


def add_pair_argument(p: argparse.ArgumentParser, **kwargs) -> None:
    """``--pair``, one of the names of :data:`bsafusion.pairs.PAIRS` (any spelling)."""
    kwargs.setdefault("help", f"modality pair: {', '.join(pair_names())}")
    p.add_argument("--pair", type=pair_name, choices=pair_names(), **kwargs)
