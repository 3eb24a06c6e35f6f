"""The deploy errors (one class per fault, all :class:`DeployError`) and :func:`refusal`, which shows one."""

from __future__ import annotations


class DeployError(RuntimeError):
    """A deployment step cannot go on; the message says what is wrong and what to do."""


class UnknownVersionError(DeployError):
    """The model version is not in the registry (or its folder is gone)."""


class AliasError(DeployError):
    """An alias points nowhere (never created, or its collection is gone)."""


class IncompleteCollectionError(DeployError):
    """A collection's re-embedding job has not finished: it must not serve or be promoted."""


class ModelMismatchError(DeployError):
    """A collection is being queried (or written) with a model other than the one it was built with."""


class CheckpointError(DeployError):
    """A job checkpoint does not belong to this job (another corpus, model or batch size) or cannot be read."""


class PromotionRefused(DeployError):
    """The promotion gate did not pass (or was not run)."""


def refusal(action) -> str:
    """Run ``action`` (a callable) and return the :class:`DeployError` it raises as ``"ErrorClass: message"``.

    For showing faults in a notebook; raises ``AssertionError`` when the action succeeds instead.
    """
    try:
        action()
    except DeployError as exc:
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("expected a DeployError, but the action succeeded")
