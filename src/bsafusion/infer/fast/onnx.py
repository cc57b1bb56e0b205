"""The folded network exported to ONNX and run by ONNX Runtime or OpenVINO on a CPU (issue 19).

:class:`ExportedNetwork` stands in for :class:`~bsafusion.model.BSAFusion` inside
:func:`bsafusion.infer.procedure.align_and_fuse`: on the first call at an input shape it
exports :func:`~bsafusion.infer.fast.optimize_for_inference`'s network at that shape (fp32,
the TorchScript exporter, opset 17; the folded convs in their ones-channel form,
:meth:`~bsafusion.infer.fast.FoldedConv3x3.forward_ones_channel`) and compiles it; later
calls at that shape reuse it. Outputs agree with the torch path to ~1e-4 (tested against
issue 19's bounds). Needs ``pip install onnx onnxruntime`` (extra ``onnx``) or ``openvino``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from bsafusion.errors import InputError
from bsafusion.infer.fast.folding import optimize_for_inference

__all__ = ["BACKENDS", "ExportedNetwork", "ExportedOutput", "export_onnx"]

BACKENDS = ("torch", "onnxruntime", "openvino")
_OUTPUTS = ("flow", "aligned", "fused", "flow_a", "flow_b")


class ExportedOutput(NamedTuple):
    """The fields of :class:`~bsafusion.model.BSAFusionOutput` that inference reads."""

    flow: Tensor  # (B, 2, H, W) px, channel 0 = x; samples the moving image
    aligned: Tensor  # (B, 1, H, W)
    fused: Tensor  # (B, 1, H, W)
    flow_a: Tensor  # (B, 2, H, W)
    flow_b: Tensor  # (B, 2, H, W)


class _Outputs(nn.Module):
    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, fixed: Tensor, moving: Tensor) -> tuple[Tensor, ...]:
        out = self.network(fixed, moving)
        return tuple(getattr(out, name) for name in _OUTPUTS)


def export_onnx(network: nn.Module, path: str | Path, shape: tuple[int, int, int, int]) -> Path:
    """Write ``network`` (a :class:`BSAFusion` or its folded twin) as ONNX for (B, 1, H, W)
    inputs of ``shape``; inputs ``fixed``, ``moving``, outputs ``flow``, ``aligned``,
    ``fused``, ``flow_a``, ``flow_b``. Returns ``path``."""
    example = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it freezes: intended
        torch.onnx.export(_Outputs(network).eval(), (example, example), str(path),
                          dynamo=False, input_names=["fixed", "moving"],
                          output_names=list(_OUTPUTS), opset_version=17)
    return Path(path)


class ExportedNetwork(nn.Module):
    """The folded network run by ``runtime`` ("onnxruntime" or "openvino"), exported per
    input shape on first use; fp32, CPU, ``threads`` threads (default: torch's)."""

    def __init__(self, model: nn.Module, runtime: str, threads: int | None = None) -> None:
        super().__init__()
        if runtime not in BACKENDS[1:]:
            raise InputError("backend", f"unknown runtime {runtime!r}")
        _import(runtime)  # fail now, with the hint, not at the first pair
        self.config = model.config
        self.network = optimize_for_inference(model.cpu())
        self.runtime, self.threads = runtime, threads or torch.get_num_threads()
        self._compiled: dict[tuple[int, ...], object] = {}

    def forward(self, fixed: Tensor, moving: Tensor) -> ExportedOutput:
        """Args: fixed, moving: (B, 1, H, W) on the CPU. Returns: :class:`ExportedOutput`."""
        shape = tuple(fixed.shape)
        run = self._compiled.get(shape)
        if run is None:
            run = self._compiled[shape] = self._compile(shape)
        outs = run(fixed.float().contiguous().numpy(), moving.float().contiguous().numpy())
        return ExportedOutput(*(torch.from_numpy(np.asarray(o)) for o in outs))

    def _compile(self, shape: tuple[int, ...]):
        runtime = _import(self.runtime)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(export_onnx(self.network, Path(tmp) / "bsafusion.onnx", shape))
            if self.runtime == "onnxruntime":
                options = runtime.SessionOptions()
                options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
                session = runtime.InferenceSession(path, options,
                                                   providers=["CPUExecutionProvider"])
                return lambda f, m: session.run(list(_OUTPUTS), {"fixed": f, "moving": m})
            compiled = runtime.Core().compile_model(path, "CPU", {
                "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                "ENABLE_CPU_PINNING": False,  # pinned, its thread may share a busy core
                "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run(fixed: np.ndarray, moving: np.ndarray) -> list[np.ndarray]:
            result = request.infer([fixed, moving])
            return [result[out] for out in compiled.outputs]
        return run


def _import(runtime: str):
    import importlib

    try:
        importlib.import_module("onnx")
        return importlib.import_module(runtime)
    except ImportError:
        extra = "onnx" if runtime == "onnxruntime" else "openvino"
        raise InputError("backend", f"{runtime} needs `pip install 'bsafusion[{extra}]'`"
                         ) from None
