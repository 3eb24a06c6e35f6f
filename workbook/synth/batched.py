"""Batched decoding with llama.cpp: several prompts that share a head, sampled side by side in one context.

llama-cpp-python's high-level ``Llama`` decodes one sequence at a time. Its low-level bindings (llama.cpp's C API)
decode several: each prompt is a sequence of one context, the shared head (instruction and shots) is evaluated once
and shared by every sequence's cache, and each step decodes the next token of every unfinished sequence in one
batch. A small model on a few cores reads its weights once per step for all sequences instead of once per
sequence, which is where the throughput comes from (``bench/synth_speed.py`` measures it).

Up to :data:`MAX_PARALLEL` sequences, each row of a step is computed on its own, so a sequence's tokens do not depend
on which other prompts share its batch (``tests/test_synth_batched.py`` checks this against the same prompt decoded
alone): resuming a run in other batches reproduces it. Measured on an AVX2 CPU: the same text for every document at
2 to 7 sequences, different text at 8 (llama.cpp multiplies a step of 8 rows with another kernel), so the cap keeps
a margin. Two more choices keep the rows independent: a prompt's own tokens are decoded in a batch of their own
(several sequences' prompt tokens in one batch are split by llama.cpp in ways that change the numbers), and the
weights are loaded without llama.cpp's repacked layouts (whose batch kernels differ from their one-row kernels).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
from collections.abc import Sequence
from dataclasses import dataclass

#: The most sequences decoded side by side (see the module's docstring for why not more).
MAX_PARALLEL = 4


def check_parallel(value: int, name: str = "parallel") -> int:
    """``value`` when it is a number of sequences the decoder keeps apart (1 to :data:`MAX_PARALLEL`).

    Raises:
        ValueError: outside that range (``name`` is the setting's name in the message).
    """
    if not 1 <= value <= MAX_PARALLEL:
        raise ValueError(f"{name} must be between 1 and {MAX_PARALLEL} (a document's text stays the same in any batch "
                         f"only up to there), got {value}")
    return value


#: The sampling chain of llama-cpp-python's ``create_completion`` (its defaults for what the generator leaves unset).
TOP_K, MIN_P, PENALTY_LAST_N = 40, 0.05, 64


@dataclass
class _Seq:
    """One prompt being decoded."""

    seq: int
    sampler: ctypes.c_void_p
    pos: int
    prompt: list[int]
    tokens: list[int]
    finish: str | None = None
    text: str = ""


class BatchedDecoder:
    """Decode up to ``parallel`` prompts at once in a llama.cpp context of the ``llm``'s model.

    Args:
        llm: a ``llama_cpp.Llama`` of the same model (its tokenizer is used; its context is left alone).
        path: the GGUF file.
        parallel: sequences decoded side by side.
        n_ctx: context per sequence (the shared head counts once).
        n_threads: CPU threads.
        temperature, top_p, repeat_penalty, max_tokens: sampling settings.
    """

    def __init__(self, llm, path, parallel: int, n_ctx: int, n_threads: int, temperature: float, top_p: float,
                 repeat_penalty: float, max_tokens: int):  # fmt: skip
        import llama_cpp

        self.lib, self.llm, self.parallel = llama_cpp, llm, check_parallel(parallel)
        self.temperature, self.top_p, self.repeat_penalty = temperature, top_p, repeat_penalty
        self.max_tokens = max_tokens
        # Its own copy of the weights (memory-mapped: the file's pages are shared) without llama.cpp's repacked
        # layouts, whose batch kernels differ from their one-row kernels (see the module's docstring).
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = False
        with contextlib.redirect_stderr(io.StringIO()):  # llama.cpp's loading notes (see LocalGenerator)
            self.model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * (parallel + 1)
        params.n_batch = params.n_ctx
        params.n_seq_max = parallel + 1  # sequence 0 holds the shared head
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = False  # a cache per sequence: its layout, so its arithmetic, does not depend on the others
        params.no_perf = True
        with contextlib.redirect_stderr(io.StringIO()):
            self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not make a context for {parallel} sequences of {n_ctx} tokens")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        self.head: str | None = None
        self.head_tokens: list[int] = []

    def close(self) -> None:
        """Free the batch, the context and this decoder's copy of the model."""
        if self.ctx:
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.lib.llama_model_free(self.model)
            self.ctx = None

    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode ``(token, position, sequence, wants logits)`` items in one llama.cpp batch."""
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, int(logits)
            b.seq_id[i][0] = seq
        b.n_tokens = len(items)
        if rc := self.lib.llama_decode(self.ctx, b):
            raise RuntimeError(f"llama_decode failed with code {rc} for {len(items)} tokens")

    def _set_head(self, head: str) -> None:
        if head == self.head:
            return
        self.lib.llama_memory_clear(self.mem, True)
        self.head_tokens = self.llm.tokenize(head.encode("utf-8"), add_bos=True) if head else []
        if self.head_tokens:
            self._decode([(t, i, 0, False) for i, t in enumerate(self.head_tokens)])
        self.head = head

    def _sampler(self, seed: int):
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        # The same chain (and the same call) as llama-cpp-python's create_completion.
        for s in (lib.llama_sampler_init_penalties(self.n_vocab, PENALTY_LAST_N, self.repeat_penalty, 0.0, 0.0),
                  lib.llama_sampler_init_top_k(TOP_K), lib.llama_sampler_init_top_p(self.top_p, 1),
                  lib.llama_sampler_init_min_p(MIN_P, 1), lib.llama_sampler_init_temp(self.temperature),
                  lib.llama_sampler_init_dist(seed)):  # fmt: skip
            lib.llama_sampler_chain_add(chain, s)
        return chain

    def complete(self, head: str, prompts: Sequence[str], seeds: Sequence[int], stop: Sequence[str]):
        """Complete prompts that all start with ``head``; ``(text, finish_reason)`` per prompt, in order."""
        if len(prompts) > self.parallel:
            raise ValueError(f"{len(prompts)} prompts for a decoder of {self.parallel} sequences")
        self._set_head(head)
        n_head = len(self.head_tokens)
        seqs: list[_Seq] = []
        try:
            for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True)):
                tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True)
                if tokens[:n_head] != self.head_tokens or len(tokens) == n_head:
                    raise ValueError("a prompt must tokenize to the shared head's tokens followed by its own")
                s = _Seq(i + 1, self._sampler(int(seed)), len(tokens), tokens, [])
                seqs.append(s)
                self.lib.llama_memory_seq_rm(self.mem, s.seq, -1, -1)
                self.lib.llama_memory_seq_cp(self.mem, 0, s.seq, -1, -1)
                # The prompt's own tokens in a batch of their own (see the module's docstring)
                tail = tokens[n_head:]
                self._decode([(t, n_head + j, s.seq, j == len(tail) - 1) for j, t in enumerate(tail)])
                self._accept(s, self.lib.llama_sampler_sample(s.sampler, self.ctx, len(tail) - 1), stop)
            while active := [s for s in seqs if s.finish is None]:
                step = []
                for s in active:
                    step.append((s.tokens[-1], s.pos, s.seq, True))
                    s.pos += 1
                self._decode(step)
                for j, s in enumerate(active):
                    self._accept(s, self.lib.llama_sampler_sample(s.sampler, self.ctx, j), stop)
        finally:
            for s in seqs:
                self.lib.llama_sampler_free(s.sampler)
                self.lib.llama_memory_seq_rm(self.mem, s.seq, -1, -1)
        return [(s.text, s.finish) for s in seqs]

    def _accept(self, s: _Seq, tok: int, stop: Sequence[str]) -> None:
        """Add a sampled token to its sequence and decide whether the sequence is done (and why)."""
        if self.lib.llama_vocab_is_eog(self.vocab, tok):
            s.finish = "stop"
        else:
            s.tokens.append(tok)
        # Detokenized as create_completion does: the whole completion, after the prompt's tokens.
        text = self.llm.detokenize(s.tokens, prev_tokens=s.prompt).decode("utf-8", errors="ignore")
        cuts = [text.find(x) for x in stop if x and x in text]
        if cuts:
            text, s.finish = text[: min(cuts)], "stop"
        elif s.finish is None and len(s.tokens) >= self.max_tokens:
            s.finish = "length"
        s.text = text
