"""``bsafusion fuse``: register and fuse an MRI with a CT / PET / SPECT image (or folders).

Everything that can be checked is checked before the network loads (a few seconds): the
arguments, the device, the weights' pair, the output folder, and for one pair both images
(values, size, memory at the working size).
"""

from __future__ import annotations

import argparse
import sys

from bsafusion.cli.common import (
    Progress,
    add_device_argument,
    add_out_argument,
    add_pair_argument,
    resolve_device,
    work_size,
)


def add_io_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``fuse`` and ``register``."""
    p.add_argument("fixed", nargs="?", help="MRI image (PNG/JPEG/BMP/TIFF, DICOM, NIfTI)")
    p.add_argument("moving", nargs="?", help="CT / PET / SPECT image (PET, SPECT in colour)")
    add_pair_argument(p, default="ct")
    p.add_argument("--fixed-dir", help="batch: folder of MRI images")
    p.add_argument("--moving-dir", help="batch: folder of moving images, paired by file stem")
    p.add_argument("--demo", action="store_true", help="use the bundled sample pair of --pair, "
                   "deformed by a fixed smooth field (offline)")
    add_out_argument(p, "output folder (created when the first output is written)")
    p.add_argument("--weights", help="weights file (.safetensors, or a release .pt) of --pair; "
                   "default: the bundled weights of --pair")
    p.add_argument("--work-size", type=work_size, default=None, help="working resolution of "
                   "the network: longer side in pixels, a multiple of 16; 0 = native "
                   "(default: the size the weights were trained at, else 256)")
    p.add_argument("--prealign", choices=("rigid", "affine"), help="first estimate a global "
                   "transform by mutual information (needs the [prealign] extra, SimpleITK)")
    p.add_argument("--format", choices=("png", "tif", "nii"), help="image output format "
                   "(default: nii for NIfTI inputs, else png; bit depth follows the inputs)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=2,
                   help="slicing axis of NIfTI volumes")
    add_device_argument(p)
    p.add_argument("--amp", action="store_true", help="GPU: bf16 autocast (faster; outputs "
                   "differ from fp32 by ~2e-3 on average, up to ~0.2 at single pixels)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="arithmetic of "
                   "the network: fp32 (default) or bf16 autocast (GPU, or CPUs with "
                   "AVX512-BF16 / AMX; outside issue 19's accuracy bounds, see README)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default="torch",
                   help="CPU: run the network by ONNX Runtime or OpenVINO (fp32; needs the "
                   "[onnx] / [openvino] extra)")
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="GPU: run the network directly instead of replaying CUDA graphs "
                   "(default: replay them)")
    p.add_argument("--no-panel", action="store_true", help="do not write OUT/panel/<stem>.png "
                   "('register' writes none anyway)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true", help="skip pairs whose outputs all "
                   "exist (resume an interrupted batch) instead of refusing them")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuse", help="align and fuse an image pair, two folders, or the bundled demo pair",
        description="Align MOVING (CT, PET or SPECT) to FIXED (MRI) and fuse them. Writes "
        "OUT/fused/<stem>.png, OUT/aligned/<stem>.png, OUT/flow/<stem>.npy (2xHxW float32, "
        "pixels, channel 0 = x; samples the moving image) and OUT/panel/<stem>.png, all or "
        "none. Batch: --fixed-dir A --moving-dir B pairs files by stem, goes on past bad "
        "pairs, ends with 'N fused, M failed' and exits 1 if any failed. --demo twice in the "
        "same OUT finds its outputs there and does nothing.",
    )
    add_io_arguments(p)
    p.set_defaults(handler=run, register_only=False)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from bsafusion.infer import outputs
    from bsafusion.infer.fuser import check_images

    mode = _mode(args)
    device = resolve_device(args.device)
    weights = check_weights(args, args.pair)
    if args.work_size is None:  # the weights' own training size
        args.work_size = (weights.work_size if weights is not None else None) or 256
    if args.prealign:  # its optional dependency, before anything is read
        from bsafusion.infer.prealign import require_simpleitk

        require_simpleitk()
    opts = {"register_only": args.register_only, "overwrite": args.overwrite,
            "panel": not args.no_panel}
    verb = "registered" if args.register_only else "fused"
    outputs.prepare_out_dir(args.out)
    if mode == "demo":
        return _demo(args, device, weights, opts)
    check = partial(check_images, work_size=args.work_size or None, axis=args.axis,
                    device=device)
    if mode == "batch":
        outputs.match_pairs(args.fixed_dir, args.moving_dir)  # missing folders: before loading
        fuser = load_fuser(args, args.pair, device, weights)
        summary = fuser.fuse_folder(args.fixed_dir, args.moving_dir, args.out, fmt=args.format,
                                    axis=args.axis, progress=Progress(verb), check=check,
                                    skip_existing=args.skip_existing, **opts)
        return _report(summary, verb)
    job = outputs.prepare_pair(args.fixed, args.moving, args.out, fmt=args.format, check=check,
                               skip_existing=args.skip_existing, **opts)
    if job is None:
        print(f"skipped: the outputs of {args.moving} exist in {args.out} (--skip-existing)")
        return 0
    fuser = load_fuser(args, args.pair, device, weights)
    paths = outputs.run_pair(fuser.image_runner(register_only=args.register_only,
                                                axis=args.axis), job, **opts)
    print(f"{verb} -> {', '.join(str(p) for p in paths)}")
    return 0


def _mode(args: argparse.Namespace) -> str:
    """``single``, ``batch`` or ``demo``; an InputError naming what is missing or extra."""
    from bsafusion.errors import InputError

    batch = args.fixed_dir or args.moving_dir
    if sum(map(bool, (args.demo, batch, args.fixed or args.moving))) != 1:
        raise InputError(args.command, "give FIXED MOVING, or --fixed-dir and --moving-dir, or "
                                       "--demo (one of them)")
    if batch and not (args.fixed_dir and args.moving_dir):
        raise InputError("--fixed-dir" if not args.fixed_dir else "--moving-dir", "missing")
    if not (args.demo or batch or (args.fixed and args.moving)):
        raise InputError(args.command, "give both FIXED and MOVING")
    return "demo" if args.demo else "batch" if batch else "single"


def _demo(args: argparse.Namespace, device: str, weights, opts: dict) -> int:
    from bsafusion.infer import outputs
    from bsafusion.infer.demo import demo_pair, run_demo
    from bsafusion.infer.fuser import check_images
    from bsafusion.samples import sample_pairs

    stem = sample_pairs(args.pair)[0].name
    panel = opts["panel"] and not args.register_only
    state = outputs.existing_outputs(args.out, stem, register_only=args.register_only,
                                     panel=panel)
    if state == "all" and not args.overwrite:  # the README's first command, run again
        print(f"{args.out} holds the demo's outputs of {stem} already (--overwrite recomputes "
              "them)")
        return 0
    outputs.check_outputs_free(args.out, stem, register_only=args.register_only, panel=panel,
                               overwrite=args.overwrite)
    check_images(*demo_pair(args.pair)[1:], work_size=args.work_size or None, device=device)
    fuser = load_fuser(args, args.pair, device, weights)
    paths = run_demo(fuser.register if args.register_only else fuser.fuse, args.pair, args.out,
                     **opts)
    print(f"{'registered' if args.register_only else 'fused'} -> "
          f"{', '.join(str(p) for p in paths)}")
    return 0


def _report(summary, verb: str) -> int:
    for where, problem in summary.failed:
        print(f"bsafusion: error: {where}: {problem}", file=sys.stderr)
    line = f"{len(summary.fused)} {verb}, {len(summary.failed)} failed"
    if summary.skipped:
        line += f", {len(summary.skipped)} skipped (outputs exist)"
    if summary.not_tried:
        line += f", {len(summary.not_tried)} not tried (the disk is full: free space and rerun " \
                "with --skip-existing)"
    print(line)
    return 1 if summary.failed or summary.not_tried else 0


def check_weights(args: argparse.Namespace, pair: str):
    """The :class:`~bsafusion.weights.WeightsInfo` of ``--weights`` (else of the bundled
    weights of ``pair``, else None), refusing weights of another pair."""
    from pathlib import Path

    from bsafusion.errors import WeightsError
    from bsafusion.weights import available_weights, bundled_name, check_weights_pair, weights_info

    if args.weights is not None and not args.weights.strip():
        raise WeightsError("weights", "is empty; give a weights file")
    name = args.weights or (bundled_name(pair) if bundled_name(pair) in available_weights()
                            else None)
    if name is None:
        if not args.demo:
            raise WeightsError(pair, "no trained weights are bundled for this pair yet; pass "
                                     "--weights FILE (e.g. a converted release checkpoint)")
        return None
    info = weights_info(name)
    if args.weights and args.weights != bundled_name(pair):  # the table's own are the pair's
        given_file = Path(args.weights).is_file()
        check_weights_pair(info, pair, args.weights if given_file else "weights")
    return info


def load_fuser(args: argparse.Namespace, pair: str, device: str | None = None, info=None):
    """The --weights file, else the bundled weights of ``pair``; for --demo without bundled
    weights, an untrained network. Warns about interim or untrained weights."""
    import torch

    from bsafusion.infer import Fuser
    from bsafusion.infer.fast import tune_cpu_allocator
    from bsafusion.model import BSAFusion

    device = device or resolve_device(args.device)
    info = info if info is not None else check_weights(args, pair)
    tune_cpu_allocator()  # our own process: keep freed memory for the next pair
    kwargs = {"work_size": args.work_size or None, "prealign": args.prealign,
              "amp": args.amp, "cuda_graphs": args.cuda_graphs, "precision": args.precision,
              "backend": args.backend}
    if info is not None:
        if info.status in ("interim", "untrained"):
            what = f"bundled {pair}" if not args.weights else str(args.weights)
            print(f"bsafusion: warning: {what} weights are {info.note}", file=sys.stderr)
        return Fuser.from_pretrained(args.weights or pair, device=device, **kwargs)
    print(f"bsafusion: warning: no trained {pair} weights are bundled yet; the demo runs an "
          "untrained network (it shows the pipeline, not fusion quality)", file=sys.stderr)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BSAFusion()
    return Fuser(model, device=device, **kwargs)
