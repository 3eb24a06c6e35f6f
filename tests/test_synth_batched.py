"""Batched decoding with the real local model (workbook.synth.batched): the same text for a document in any batch,
stop sequences and the token limit as create_completion has them, a resumed run that reproduces an uninterrupted one."""

from __future__ import annotations

import pytest

from workbook import synth
from workbook.config import get_config
from workbook.icd10cm import load_icd10cm
from workbook.synth.batched import MAX_PARALLEL

MAX_TOKENS = 24


@pytest.fixture(scope="module")
def cfg():
    return get_config()


@pytest.fixture(scope="module")
def ds(cfg):
    return load_icd10cm(cfg)


@pytest.fixture(scope="module")
def template(ds):
    return synth.few_shot_template(ds, n_shots=3, seed=7)


@pytest.fixture(scope="module")
def batched(cfg, local_llm):
    gen = synth.LocalGenerator(local_llm, cfg=cfg, max_tokens=MAX_TOKENS, parallel=4, n_threads=1)
    yield gen
    gen.close()


def _docs(ds, prefix: str, n: int) -> dict[str, str]:
    ids = sorted(d for d in ds.corpus if d.startswith(prefix))[:n]
    return {d: ds.doc_text(d) for d in ids}


def test_a_document_gets_the_same_text_in_any_batch(ds, template, batched):
    passages = list(_docs(ds, "E11.", 6).values())
    prompts, seeds = [template.render(p) for p in passages], [11, 12, 13, 14, 15, 16]
    together = batched.complete(prompts, seeds, template.stop)  # a batch of 4 (the most), then one of 2
    alone = [batched.complete([p], [s], template.stop)[0] for p, s in zip(prompts, seeds, strict=True)]
    shuffled = batched.complete(prompts[::-1], seeds[::-1], template.stop)[::-1]  # other batch-mates, other slots
    assert [c.text for c in together] == [c.text for c in alone] == [c.text for c in shuffled]
    assert all(c.text.strip() and any(ch.isalpha() for ch in c.text) for c in together)  # real text
    assert len({c.text for c in together}) == len(together)
    for c in together:  # create_completion's semantics: the stop sequence is cut off, the limit says "length"
        assert not any(s in c.text for s in template.stop) and c.finish_reason in {"stop", "length"}
    other_seed = batched.complete(prompts[:1], [99], template.stop)[0]
    assert other_seed.text != together[0].text  # the seed is each sequence's own


def test_the_token_limit_ends_a_sequence_with_length(cfg, local_llm, template, ds):
    short = synth.LocalGenerator(local_llm, cfg=cfg, max_tokens=3, parallel=2, n_threads=1)
    try:
        out = short.complete([template.render(p) for p in _docs(ds, "I21.", 2).values()], [1, 2], template.stop)
        lengths = [len(short.llm.tokenize(c.text.encode("utf-8"), add_bos=False)) for c in out]
    finally:
        short.close()
    assert [c.finish_reason for c in out] == ["length", "length"] and all(c.text for c in out)
    assert max(lengths) <= 4  # 3 tokens (re-tokenising the text may split one differently)


def test_settings_say_batched_and_not_how_many(cfg, local_llm, batched):
    single = synth.LocalGenerator(local_llm, cfg=cfg, max_tokens=MAX_TOKENS, n_threads=1)
    wider = synth.LocalGenerator(local_llm, cfg=cfg, max_tokens=MAX_TOKENS, parallel=2, n_threads=1)
    try:
        assert wider.settings() == batched.settings() != single.settings()
        assert (single.batch_size, wider.batch_size, batched.batch_size) == (1, 2, 4)
    finally:
        single.close()
        wider.close()
    for wrong in (0, MAX_PARALLEL + 1):
        with pytest.raises(ValueError, match="parallel must be between 1 and"):
            synth.LocalGenerator(local_llm, cfg=cfg, parallel=wrong)


def test_a_resumed_batched_run_reproduces_an_uninterrupted_one(tmp_path, cfg, local_llm, ds, template, batched):
    passages = _docs(ds, "E10.", 5)
    whole = synth.generate_queries(batched, template, passages, synth.GenerationCache(tmp_path / "a"), seed=3,
                                   show_progress=False)  # fmt: skip
    first_two = dict(list(passages.items())[:2])
    other = synth.LocalGenerator(local_llm, cfg=cfg, max_tokens=MAX_TOKENS, parallel=2, n_threads=1)
    try:
        synth.generate_queries(other, template, first_two, synth.GenerationCache(tmp_path / "b"), seed=3,
                               show_progress=False)  # an "interrupted" run: 2 of 5 docs, in other batches  # fmt: skip
        resumed = synth.generate_queries(other, template, passages, synth.GenerationCache(tmp_path / "b"), seed=3,
                                         show_progress=False)  # fmt: skip
    finally:
        other.close()
    assert (resumed.new, resumed.reused) == (3, 2)
    assert [r["text"] for r in resumed.records] == [r["text"] for r in whole.records]
    assert [r["key"] for r in resumed.records] == [r["key"] for r in whole.records]
