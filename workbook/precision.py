"""Cheaper arithmetic for inference-only work: bf16 where the CPU computes it natively, int8 dynamic quantization.

A model's inference precision is a stamp on the model object (:func:`set_precision`), so every encode, cached
encode and rerank of that model follows it, and the on-disk caches key on it (an fp32 and a bf16 embedding of the
same text never share a file). Training never reads the stamp: it always runs in fp32.

- ``"fp32"``: the default, and what headline numbers of the base and tuned models use.
- ``"bf16"``: matrix products in bfloat16 under ``torch.autocast`` (weights stay fp32, accumulation in fp32). Taken
  only where the CPU has native bf16 instructions (AVX-512 BF16 or AMX) or on a CUDA GPU that supports it;
  elsewhere it silently stays fp32, because emulated bf16 is slower than fp32. ``bench/precision.py`` measures its
  speed and its metric change on the same queries.
- ``"int8"``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers (CPU only). Measured in the bench; off
  by default everywhere because it moved the metrics too much (bench/results/precision.json).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "int8")

#: Where :func:`set_precision` keeps a model's inference precision.
_ATTR = "_workbook_precision"


@functools.cache
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere, where nothing is assumed)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bf16 matrix products natively (so bf16 is faster than fp32 there, not emulated)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve(precision: str, device: str = "cpu") -> str:
    """The precision that will actually run: ``"bf16"`` falls back to ``"fp32"`` without native support, ``"int8"``
    to ``"fp32"`` off the CPU.

    Raises:
        ValueError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and not native_bf16(device):
        return "fp32"
    if precision == "int8" and not device.startswith("cpu"):
        return "fp32"
    return precision


def _device_of(model) -> str:
    device = getattr(model, "device", None)
    return str(device) if device is not None else "cpu"


def set_precision(model, precision: str):
    """Stamp ``model`` (a SentenceTransformer or CrossEncoder) to run inference at ``precision`` where that is
    supported (:func:`resolve`), and return it. ``"int8"`` quantizes the model's Linear layers in place: keep an fp32
    copy if you will train it.

    Returns:
        The same model object.
    """
    precision = resolve(precision, _device_of(model))
    if precision == "int8" and precision_of(model) != "int8":
        import torch

        from workbook.retrieval import model_fingerprint

        # The fp32 weights' hash is kept on the model (and on a CrossEncoder's inner model, which its score caches
        # hash): caches key on it plus "int8", since packed int8 weights cannot be rehashed.
        for part in _parts(model):
            model_fingerprint(part)
        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    for part in _parts(model):
        object.__setattr__(part, _ATTR, precision)
    return model


def _parts(model) -> list:
    """The model, and a CrossEncoder's inner transformers model (whose stamp the score caches' keys read)."""
    inner = getattr(model, "model", None)
    return [model] + ([inner] if inner is not None and hasattr(inner, "state_dict") else [])


def precision_of(model) -> str:
    """The inference precision stamped on ``model`` (``"fp32"`` when none)."""
    return getattr(model, _ATTR, "fp32")


@contextlib.contextmanager
def inference(model) -> Iterator[None]:
    """Run the enclosed inference calls of ``model`` at its stamped precision (bf16: under ``torch.autocast``)."""
    if precision_of(model) != "bf16":
        yield
        return
    import torch

    device = _device_of(model).split(":")[0]
    with torch.autocast(device, dtype=torch.bfloat16):
        yield
