"""Root pytest configuration: fast mode and offline variables for the unit tests and the nbval kernels.

Set here (before any kernel starts) so notebooks executed by nbval inherit them.
"""

from __future__ import annotations

import os

os.environ.setdefault("WORKBOOK_FAST", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TQDM_MININTERVAL", "5")
# Fixes string hashing in the nbval kernels and child processes (this process's own is fixed by the Makefile).
os.environ.setdefault("PYTHONHASHSEED", "0")
