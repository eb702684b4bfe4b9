"""Deterministic stand-in embedders for memory tests: hashed bag of words and lookup tables."""

from __future__ import annotations

import hashlib
import re

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """Texts sharing words get similar vectors; same text, same vector, every run.

    Each word maps to a fixed pseudo-random unit vector seeded by its hash; a text
    is the normalised sum of its words, so overlap in vocabulary is overlap in
    direction - enough semantics to test ranking without a model.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self._cache: dict[str, np.ndarray] = {}
        self.calls = 0

    def _word(self, word: str) -> np.ndarray:
        vec = self._cache.get(word)
        if vec is None:
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            vec /= np.linalg.norm(vec)
            self._cache[word] = vec
        return vec

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = _WORD.findall(text.lower()) or ["<empty>"]
            v = np.sum([self._word(w) for w in words], axis=0)
            out[i] = v / np.linalg.norm(v)
        return out


class LookupEmbedder:
    """Returns preassigned vectors for known texts (synthetic recall sets), hashing the rest."""

    def __init__(self, table: dict[str, np.ndarray], dim: int) -> None:
        self.table = table
        self.fallback = HashingEmbedder(dim)

    def __call__(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] if t in self.table else self.fallback([t])[0] for t in texts])


def clustered_vectors(n: int, dim: int, *, clusters: int, seed: int = 0, spread: float = 0.6) -> np.ndarray:
    """Unit vectors scattered around ``clusters`` random centres (like topic-grouped embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    x = centres[rng.integers(0, clusters, n)] + spread * noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)
