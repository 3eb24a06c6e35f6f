"""Peak resident memory (RSS) of this process, per stretch of work: what a learner's 8-16 GB laptop must hold; and
what a process tree holds together (notebooks side by side, :class:`TreePeak`).

Linux keeps the process's high-water mark (``VmHWM`` in ``/proc/self/status``) and lets the process reset it
(writing ``5`` to ``/proc/self/clear_refs``), so each pipeline step gets its own peak rather than the run's.
Elsewhere the peak falls back to ``getrusage``'s lifetime maximum, which is then marked as not per step.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def release_freed() -> None:
    """Hand memory that Python and torch have freed back to the OS (glibc keeps it in its heap otherwise, so the
    RSS of a long run stays at its highest point even when the data is gone). A no-op without glibc."""
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak() -> bool:
    """Release freed memory, then reset this process's peak RSS to its current RSS.

    Note: the kernel's peak is also what ``getrusage`` (and ``/usr/bin/time``) report for the whole process, so after
    a reset those show the peak since the reset only.

    Returns:
        ``False`` where the OS does not allow the reset (the peak is then the process's lifetime peak).
    """
    release_freed()
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB since the last :func:`reset_peak` (or since it started)."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match:
        return int(match.group(1)) / 1024
    return maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def maxrss_mb(ru_maxrss: int) -> float:
    """``getrusage``'s ``ru_maxrss`` in MiB (it counts KiB on Linux, bytes on macOS)."""
    return ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def tree_pss_mb(root: int) -> float | None:
    """Memory a process and all its descendants hold together (the sum of their PSS, which splits shared pages
    between the processes sharing them), in MiB; ``None`` where ``/proc`` has no ``smaps_rollup`` (not Linux)."""
    proc = Path("/proc")
    if not (proc / str(root) / "smaps_rollup").exists():
        return None
    children: dict[int, list[int]] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the name may hold spaces and parentheses
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            match = re.search(r"^Pss:\s+(\d+) kB", (proc / str(pid) / "smaps_rollup").read_text(), re.MULTILINE)
        except OSError:  # exited meanwhile
            continue
        total += int(match.group(1)) if match else 0
    return total / 1024


class TreePeak:
    """The peak of :func:`tree_pss_mb` for this process's tree, sampled every ``interval`` seconds in a thread while
    the ``with`` block runs (``peak_mb`` stays ``None`` where it cannot be read)."""

    def __init__(self, interval: float = 1.0):
        self.interval, self.peak_mb = interval, None

    def __enter__(self) -> TreePeak:
        import os
        import threading

        self._stop = threading.Event()

        def sample() -> None:
            while True:
                now = tree_pss_mb(os.getpid())
                if now is not None:
                    self.peak_mb = max(self.peak_mb or 0.0, now)
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------------ training memory

#: Bytes a transformer layer keeps for the backward pass, per token: this many per hidden unit (hidden states, the
#: feed-forward block, norms and dropout masks), plus this many per attention head and key position (scores,
#: probabilities and their dropout mask). Calibrated on all-MiniLM-L6-v2 (fp32, CPU; measured here: 319 KiB a
#: token at 130 tokens, 427 KiB at 256), which is what makes a 32-row step on 256-token documents need ~7 GiB.
BYTES_PER_HIDDEN_UNIT = 90
BYTES_PER_HEAD_KEY = 12


def training_bytes_per_sequence(n_tokens: int, hidden: int, layers: int, heads: int) -> float:
    """Estimated activation memory (bytes) one sequence of ``n_tokens`` takes in a training forward + backward."""
    return n_tokens * layers * (BYTES_PER_HIDDEN_UNIT * hidden + BYTES_PER_HEAD_KEY * heads * n_tokens)


def model_shape(model) -> tuple[int, int, int]:
    """(hidden size, layers, attention heads) of a SentenceTransformer's transformer."""
    config = model.transformers_model.config
    return config.hidden_size, config.num_hidden_layers, config.num_attention_heads


def column_tokens(model, texts: list[str], quantile: float = 0.99, sample: int = 2000, seed: int = 0) -> int:
    """Tokens of a column's long texts: the ``quantile`` of a seeded sample's lengths, capped at the model's
    ``max_seq_length`` (a batch is padded to its longest text, so the tail matters, not the mean)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    picked = [texts[i] for i in sorted(rng.choice(len(texts), size=min(sample, len(texts)), replace=False))]
    ids = model.tokenizer(picked, add_special_tokens=True, truncation=True, max_length=model.max_seq_length)
    return int(np.quantile([len(x) for x in ids["input_ids"]], quantile))


def plan_training_memory(
    model, columns: dict[str, list[str]], batch_size: int, budget_mb: float, mini_batch_size: int | None = None
) -> dict:
    """Whether one training step on these columns fits ``budget_mb`` of activations, and if not, the mini-batch
    that does (the loss then caches gradients: same gradients, bounded memory, one extra forward pass).

    Args:
        model: the SentenceTransformer being trained.
        columns: the training data's text columns (anchor, positive, negatives), each a list of texts.
        batch_size: rows per optimiser step.
        budget_mb: activation memory one step may take.
        mini_batch_size: the loss already caches gradients in mini-batches of this many sequences (one column at a
            time), so a step's activations are those of one mini-batch.

    Returns:
        ``tokens`` per column, ``step_mb`` (estimated, plain loss), ``budget_mb``, and ``mini_batch``: ``None`` when
        the step fits, else the sequences per gradient-cached mini-batch.
    """
    shape = model_shape(model)
    tokens = {name: column_tokens(model, texts) for name, texts in columns.items()}
    per_seq = {name: training_bytes_per_sequence(n, *shape) for name, n in tokens.items()}
    if mini_batch_size is None:
        step_mb = batch_size * sum(per_seq.values()) / 2**20
    else:
        step_mb = min(mini_batch_size, batch_size) * max(per_seq.values()) / 2**20
    mini = None
    if step_mb > budget_mb:
        mini = max(1, int(budget_mb * 2**20 // max(per_seq.values())))
    return {"tokens": tokens, "step_mb": round(step_mb, 1), "budget_mb": budget_mb, "mini_batch": mini}
