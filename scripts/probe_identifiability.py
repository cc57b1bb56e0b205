"""Identifiability probe for issue 14: how much of a test set's displacement can be recovered
from the images, monomodal vs cross-modal.

For each pair of a test set (``bsafusion make-testset``; use ``val`` for decisions) it
registers the deformed moving image to (a) the undeformed moving image (monomodal: the
displacement is fully visible) and (b) the MRI (the real, cross-modal task), with elastix as
``bsafusion evaluate`` sets it up and, with ``--weights``, with the network, and prints the
mean end-point error over the head against the zero field's.

    PYTHONPATH=src python scripts/probe_identifiability.py .cache/testsets/CT-val-seed0 \\
        --weights ct
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bsafusion.evaluation.baselines import ElastixSettings, elastix_register
from bsafusion.evaluation.testset import load_testset
from bsafusion.losses import head_mask
from bsafusion.metrics.registration import endpoint_error_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("testset", help="a folder written by bsafusion make-testset")
    parser.add_argument("--weights", help="also run the network (bundled name or file)")
    parser.add_argument("--no-elastix", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ts = load_testset(args.testset)
    methods = {} if args.no_elastix else {
        "elastix": lambda f, m: torch.from_numpy(elastix_register(f, m, ElastixSettings()))}
    if args.weights:
        from bsafusion.infer.fuser import Fuser

        fuser = Fuser.from_pretrained(args.weights, device="cpu")
        methods["network"] = lambda f, m: torch.as_tensor(fuser(f, m).flow)
    errors = {(name, kind): [] for name in methods for kind in ("mono", "cross")} | {
        ("zero", ""): []}
    for i, stem in enumerate(ts.names):
        head, truth = head_mask(ts.label[i:i + 1, :1]), ts.flow[i:i + 1]

        def epe(flow: torch.Tensor, truth=truth, head=head) -> float:
            return float(endpoint_error_stats(flow.reshape(truth.shape).float(), truth,
                                              head)[0][0])

        errors["zero", ""].append(epe(torch.zeros_like(truth)))
        moving = ts.moving[i, 0].numpy()
        for name, run in methods.items():
            for kind, fixed in (("mono", ts.label[i, 0]), ("cross", ts.fixed[i, 0])):
                errors[name, kind].append(epe(run(fixed.numpy(), moving)))
        print(stem, *(f"{k[0]}-{k[1]} {v[-1]:.3f}" for k, v in errors.items()), flush=True)
    zero = float(np.mean(errors["zero", ""]))
    print(f"\n{len(ts.names)} pairs; mean head EPE, zero field {zero:.3f} px")
    for (name, kind), values in errors.items():
        if name != "zero":
            mean = float(np.mean(values))
            print(f"{name:8s} {kind:5s} {mean:.3f} px ({mean / zero - 1:+.1%})")


if __name__ == "__main__":
    main()
