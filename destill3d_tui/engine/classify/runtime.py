"""onnxruntime sessions: which execution provider, and whether CUDA really loaded.

Shared by the registry (``models import`` checks a graph against its card) and inference, so
neither imports the other for it. onnxruntime itself is imported on first use: listing or
verifying models costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelIntegrityError

_CUDA_STATE: dict[str, bool] = {}  # whether the CUDA provider really loaded, learned on first use


def cuda_listed() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def wants_cuda(device: str) -> bool:
    """Whether a session for ``device`` will ask for the CUDA provider (auto: listed and not seen failing)."""
    return device == "cuda" or (device == "auto" and cuda_listed() and _CUDA_STATE.get("ok", True))


def open_session(path: Path, device: str = "auto", threads: int = 1) -> Any:
    """onnxruntime session: CUDA when asked or available (auto), else CPU; ``threads`` intra-op."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # CUDA provider missing on CPU hosts is expected, not a warning
    providers = ["CPUExecutionProvider"]
    want_cuda = wants_cuda(device)
    if want_cuda:
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        # a GPU wheel lists CUDA even where its libraries are missing; it then falls back to CPU,
        # which is the expected outcome on CPU hosts, so its load error is not printed
        opts.log_severity_level = 4
        ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for unparsable graphs
        raise ModelIntegrityError(f"{path.name} is not a loadable ONNX model: {exc}", reason="model_corrupt") from exc
    finally:
        if want_cuda:
            ort.set_default_logger_severity(2)
    if want_cuda:
        _CUDA_STATE["ok"] = "CUDAExecutionProvider" in session.get_providers()
    return session
