"""Error-parts probe for issue 14: which part of a network's end-point error is global.

For each pair of a test set (``bsafusion make-testset``; use ``val`` for decisions) it runs
the network and splits its error ``flow - flow_gt`` over the head: the mean head EPE as is,
after removing the error's mean over the head (a global shift), and after removing its
affine part (:func:`bsafusion.losses.affine_part`: shift, scale, shear);
and it fits the slope of the predicted mean displacement over the head on the true one (1 =
the global shift is recovered, 0 = not at all). The two removals are oracles (they use the
truth): they bound what a global correction of the flow could gain.

    PYTHONPATH=src python scripts/probe_error_parts.py .cache/testsets/CT-val-seed0 \\
        --weights ct
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bsafusion.evaluation.testset import load_testset
from bsafusion.infer.fuser import Fuser
from bsafusion.losses import affine_part, head_mask
from bsafusion.metrics.registration import endpoint_error_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("testset", help="a folder written by bsafusion make-testset")
    parser.add_argument("--weights", required=True, help="bundled name or weights file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ts = load_testset(args.testset)
    fuser = Fuser.from_pretrained(args.weights, device="cpu")
    rows, predicted, true = [], [], []
    for i in range(len(ts.names)):
        head, truth = head_mask(ts.label[i:i + 1, :1]), ts.flow[i:i + 1].float()
        flow = torch.as_tensor(fuser(ts.fixed[i, 0].numpy(), ts.moving[i, 0].numpy()).flow)
        flow = flow.reshape(truth.shape).float()
        keep = head.reshape(truth.shape[-2:])
        error = flow - truth
        shift = error[..., keep].mean(dim=-1).view(1, 2, 1, 1)
        rows.append([float(endpoint_error_stats(f, truth, head)[0][0]) for f in (
            torch.zeros_like(truth), flow, flow - shift, flow - affine_part(error, head))])
        predicted.append(flow[..., keep].mean(dim=-1).flatten().numpy())
        true.append(truth[..., keep].mean(dim=-1).flatten().numpy())
    zero, net, no_shift, no_affine = np.mean(rows, axis=0)
    p, t = np.concatenate(predicted), np.concatenate(true)
    print(f"{len(rows)} pairs; mean head EPE (vs the zero field's {zero:.3f} px):")
    for name, value in (("network", net), ("network, error's shift removed", no_shift),
                        ("network, error's affine part removed", no_affine)):
        print(f"  {name:38s} {value:.3f} px ({value / zero - 1:+.1%})")
    print(f"mean displacement over the head, predicted on true: slope {(p @ t) / (t @ t):.2f}, "
          f"correlation {np.corrcoef(p, t)[0, 1]:.2f}")


if __name__ == "__main__":
    main()
