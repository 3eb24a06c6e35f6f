"""Ship a new embedding model safely: model versions, a resumable re-embedding job, blue/green collections in
Qdrant, a shadow test, a promotion gate, an atomic alias cut-over and rollback.

A new embedding model means a new vector space: every document must be re-embedded, and a query must be encoded by
the very model that built the collection it searches. A :class:`Deployment` (one folder, ``root``) holds:

- ``models/``: the **model registry**, one saved folder per version with its card (``workbook_card.json``, the one
  card format of :mod:`workbook.cards`: base model, training-data hash, metrics, created, weights fingerprint) and
  ``registry.json`` listing the versions, which one is promoted and the promotion history (every write atomic);
- the **vector store**: one Qdrant collection per model version (``docs-<version>``); each point's payload carries
  its doc id and the model version, and the collection's own *metadata* (Qdrant collection metadata, which
  qdrant-client 1.20 supports in local mode and sends to a server) records the model version, its weights fingerprint
  (:func:`workbook.retrieval.model_fingerprint`), the corpus hash and the build status (``building``/``complete``).
  Traffic goes through the ``production`` alias, switched atomically;
- ``jobs/``: the re-embedding job's checkpoints (and logs of jobs run as separate processes).

**Local or server.** By default the store is Qdrant's embedded local mode, a folder (``root/qdrant``): no server to
run, every vector in memory and exact (brute-force) search, one process at a time (it locks the folder). That is
fine for the case study's 74,714 codes (tens of milliseconds a search) and slow well beyond it. Pass a URL instead,
``Deployment(root, url="http://qdrant.internal:6333", api_key=...)``, and the same code talks to a Qdrant server or
cluster (HNSW search, concurrent readers and writers, replication): that is how a team outgrows one machine. The
server must be recent enough to store collection metadata. The registry and the checkpoints stay in ``root`` either
way (put it on shared storage for a team).

Run the re-embedding job headless (the module's command line)::

    python -m workbook.deploy reembed ROOT VERSION DATASET_DIR [--url URL] [--batch-size 256] [--processes 1]
    python -m workbook.deploy status ROOT [--url URL]

The package, by module (every name below is importable from ``workbook.deploy`` itself):

- ``errors``: :class:`DeployError` and its subclasses, one per fault; :func:`refusal` shows one in a notebook;
- ``registry``: :class:`ModelCard`, :class:`ModelRegistry` (saved versions, ``registry.json``);
- ``store``: :class:`QdrantStore`, the Qdrant connection, collections, aliases and their deploy metadata;
- ``jobs``: the re-embedding job (:class:`JobReport`; batched, checkpointed, resumable);
- ``ray_job``: the same job on a Ray Data actor pool (the ``scale`` extra; imported only when used);
- ``search``: :class:`GuardedSearch`, search with the guard against a model the collection was not built with;
- ``shadow``: :class:`ShadowReport`, :func:`shadow_test`, :func:`sample_queries`, :func:`overlap_at_k`;
- ``gate``: :class:`GateDecision`, :func:`promotion_gate`;
- ``deployment``: :class:`Deployment` (registry + store + jobs under one folder; promote, rollback);
- ``processes``: :func:`reembed_command`, :func:`kill_job_after`, :func:`compare_encoding` (jobs as processes);
- ``cli`` (and ``__main__``): the command line above; ``_common``: constants, hashes and helpers they share.
"""

from workbook.deploy._common import CARD_FILE, COLLECTION_PREFIX, PRODUCTION_ALIAS, REGISTRY_FILE, corpus_hash, point_id
from workbook.deploy.cli import main
from workbook.deploy.deployment import Deployment
from workbook.deploy.errors import (
    AliasError,
    CheckpointError,
    DeployError,
    IncompleteCollectionError,
    ModelMismatchError,
    PromotionRefused,
    UnknownVersionError,
    refusal,
)
from workbook.deploy.gate import GateDecision, promotion_gate
from workbook.deploy.jobs import JobReport
from workbook.deploy.processes import compare_encoding, kill_job_after, reembed_command
from workbook.deploy.registry import ModelCard, ModelRegistry
from workbook.deploy.search import GuardedSearch
from workbook.deploy.shadow import ShadowReport, overlap_at_k, sample_queries, shadow_test
from workbook.deploy.store import QdrantStore
from workbook.retrieval import encode, model_fingerprint  # re-exported: the old module's callers use dp.encode

__all__ = [
    "CARD_FILE",
    "COLLECTION_PREFIX",
    "PRODUCTION_ALIAS",
    "REGISTRY_FILE",
    "AliasError",
    "CheckpointError",
    "DeployError",
    "Deployment",
    "GateDecision",
    "GuardedSearch",
    "IncompleteCollectionError",
    "JobReport",
    "ModelCard",
    "ModelMismatchError",
    "ModelRegistry",
    "PromotionRefused",
    "QdrantStore",
    "ShadowReport",
    "UnknownVersionError",
    "compare_encoding",
    "corpus_hash",
    "encode",
    "kill_job_after",
    "main",
    "model_fingerprint",
    "overlap_at_k",
    "point_id",
    "promotion_gate",
    "reembed_command",
    "refusal",
    "sample_queries",
    "shadow_test",
]
