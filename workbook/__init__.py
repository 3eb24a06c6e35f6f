"""Helper package of the embedding fine-tuning workbook."""

from __future__ import annotations

__version__ = "0.1.0"
