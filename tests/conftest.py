"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def local_llm():
    """The packaged gemma GGUF, once a child process has shown that llama.cpp decodes with it on this CPU.

    Tests that load llama.cpp in the test process request this first: a build that cannot run here (SIGILL) then
    fails each of them with the cause and the rebuild command, instead of killing the whole test run.
    """
    from workbook.config import default_config
    from workbook.llmbuild import LLMBuildError, smoke_check
    from workbook.synth import gemma_path

    path = gemma_path(default_config())
    try:
        smoke_check(path)
    except LLMBuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    return path
