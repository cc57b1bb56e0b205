"""``bsafusion fuse``: register and fuse an MRI with a CT / PET / SPECT image (or folders)."""

from __future__ import annotations

import argparse
import sys

from bsafusion.pairs import get_pair, pair_names


def add_io_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``fuse`` and ``register``."""
    p.add_argument("fixed", nargs="?", help="MRI image (PNG/JPEG/BMP/TIFF, DICOM, NIfTI)")
    p.add_argument("moving", nargs="?", help="CT / PET / SPECT image (PET, SPECT in colour)")
    p.add_argument("--pair", default="ct", help=f"modality pair: {', '.join(pair_names())} "
                   "(default ct)")
    p.add_argument("--fixed-dir", help="batch: folder of MRI images")
    p.add_argument("--moving-dir", help="batch: folder of moving images, paired by file stem")
    p.add_argument("--demo", action="store_true", help="use the bundled sample pair of --pair, "
                   "deformed by a fixed smooth field (offline)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--weights", help="weights file (.safetensors, or a release .pt); "
                   "default: the bundled weights of --pair")
    p.add_argument("--work-size", type=int, default=256, help="working resolution of the "
                   "network: longer side in pixels, a multiple of 16; 0 = native (default 256)")
    p.add_argument("--prealign", choices=("rigid", "affine"), help="first estimate a global "
                   "transform by mutual information (needs the [prealign] extra, SimpleITK)")
    p.add_argument("--format", choices=("png", "tif", "nii"), help="image output format "
                   "(default: nii for NIfTI inputs, else png; bit depth follows the inputs)")
    p.add_argument("--axis", type=int, default=2, help="slicing axis of NIfTI volumes (default 2)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--amp", action="store_true", help="GPU: bf16 autocast (faster; outputs "
                   "differ from fp32 by ~2e-3 on average, up to ~0.2 at single pixels)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="arithmetic of "
                   "the network: fp32 (default) or bf16 autocast (GPU, or CPUs with "
                   "AVX512-BF16 / AMX; outside issue 19's accuracy bounds, see README)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default="torch",
                   help="CPU: run the network by ONNX Runtime or OpenVINO (fp32; needs the "
                   "[onnx] / [openvino] extra)")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="GPU: run the network directly instead of replaying CUDA graphs")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse", help="align and fuse an image pair, two folders, or the bundled demo pair",
        description="Align MOVING (CT, PET or SPECT) to FIXED (MRI) and fuse them. Writes "
        "OUT/fused/<stem>.png, OUT/aligned/<stem>.png, OUT/flow/<stem>.npy (2xHxW float32, "
        "pixels, channel 0 = x; samples the moving image) and OUT/panel/<stem>.png. "
        "Batch: --fixed-dir A --moving-dir B pairs files by stem, goes on past bad pairs, "
        "ends with 'N fused, M failed' and exits 1 if any failed.",
    )
    add_io_arguments(p)
    p.add_argument("--no-panel", action="store_true", help="do not write OUT/panel/<stem>.png")
    p.set_defaults(handler=run, register_only=False)


def run(args: argparse.Namespace) -> int:
    from bsafusion.errors import InputError
    from bsafusion.infer.demo import run_demo

    setup_logging(args.verbose)
    batch = args.fixed_dir or args.moving_dir
    if sum(map(bool, (args.demo, batch, args.fixed or args.moving))) != 1:
        raise InputError(args.command, "give FIXED MOVING, or --fixed-dir and --moving-dir, or "
                                       "--demo (one of them)")
    if batch and not (args.fixed_dir and args.moving_dir):
        raise InputError("--fixed-dir" if not args.fixed_dir else "--moving-dir", "missing")
    if not (args.demo or batch or (args.fixed and args.moving)):
        raise InputError(args.command, "give both FIXED and MOVING")
    fuser = load_fuser(args, check_pair(args.pair))
    opts = {"register_only": args.register_only, "overwrite": args.overwrite,
            "panel": not getattr(args, "no_panel", True)}
    verb = "registered" if args.register_only else "fused"
    if args.demo:
        run = fuser.register if args.register_only else fuser.fuse
        paths = run_demo(run, args.pair, args.out, **opts)
    elif batch:
        summary = fuser.fuse_folder(args.fixed_dir, args.moving_dir, args.out, fmt=args.format,
                                    axis=args.axis, progress=Progress(verb), **opts)
        for where, problem in summary.failed:
            print(f"bsafusion: error: {where}: {problem}", file=sys.stderr)
        print(f"{len(summary.fused)} {verb}, {len(summary.failed)} failed")
        return 1 if summary.failed else 0
    else:
        paths = fuser.fuse_files(args.fixed, args.moving, args.out, fmt=args.format,
                                 axis=args.axis, **opts)
    print(f"{verb} -> {', '.join(str(p) for p in paths)}")
    return 0


class Progress:
    """A one-line progress bar on a terminal; one line per pair otherwise (logs, pipes)."""

    def __init__(self, verb: str, width: int = 30) -> None:
        self.verb, self.width, self.tty = verb, width, sys.stderr.isatty()

    def __call__(self, done: int, total: int, stem: str, error) -> None:
        status = "failed" if error is not None else self.verb
        if not self.tty:
            print(f"[{done}/{total}] {stem}: {status}", file=sys.stderr, flush=True)
            return
        fill = round(self.width * done / max(total, 1))
        bar = "#" * fill + "." * (self.width - fill)
        end = "\n" if done == total else ""
        print(f"\r[{bar}] {done}/{total} {stem[:30]:<30}", end=end, file=sys.stderr, flush=True)


def setup_logging(verbose: bool = False) -> None:
    """Library log records -> stderr as ``bsafusion: warning: ...`` (the CLI owns handlers)."""
    import logging

    class _Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"bsafusion: {record.levelname.lower()}: {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    root = logging.getLogger("bsafusion")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False


def check_pair(pair: str) -> str:
    """The canonical name of ``--pair`` (one line on stderr for an unknown one)."""
    return get_pair(pair, "--pair").name


def load_fuser(args: argparse.Namespace, pair: str):
    """The --weights file, else the bundled weights of ``pair``; for --demo without bundled
    weights, an untrained network (with a warning saying so)."""
    import torch

    from bsafusion.errors import WeightsError
    from bsafusion.infer import Fuser
    from bsafusion.infer.fast import tune_cpu_allocator
    from bsafusion.model import BSAFusion
    from bsafusion.weights import available_weights

    tune_cpu_allocator()  # our own process: keep freed memory for the next pair
    kwargs = {"work_size": args.work_size or None, "prealign": args.prealign,
              "amp": args.amp, "cuda_graphs": args.cuda_graphs, "precision": args.precision,
              "backend": args.backend}
    bundled = available_weights().get(pair)
    if args.weights or bundled:
        if not args.weights and bundled.get("note"):
            print(f"bsafusion: warning: bundled {pair} weights are {bundled['note']}",
                  file=sys.stderr)
        return Fuser.from_pretrained(args.weights or pair, device=args.device, **kwargs)
    if not args.demo:
        raise WeightsError(pair, "no trained weights are bundled for this pair yet; pass "
                                 "--weights FILE (e.g. a converted release checkpoint)")
    print(f"bsafusion: warning: no trained {pair} weights are bundled yet; the demo runs an "
          "untrained network (it shows the pipeline, not fusion quality)", file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BSAFusion()
    return Fuser(model, device=args.device, **kwargs)
