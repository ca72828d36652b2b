"""Sentence embeddings for matching: what "close in meaning" is measured with.

Two models, chosen with settings.MATCH_EMBEDDINGS:

* "static" (the default install): a model2vec static model in papers/embedding_model/, distilled from the
  all-MiniLM-L6-v2 weights (papers/embedding_model/build.py, `make embedding-model`). A text's vector is the mean of
  its tokens' rows in a table: numpy, tokenizers and safetensors at run time, no torch, nothing downloaded.
* "transformer" (the optional extra, `make semantic`): all-MiniLM-L6-v2 itself, through papers.semantic; slower, and a
  little better on the labelled set (docs/matching.md).

A paper is embedded once: its vector is stored on its row (Paper.embedding, float16) with a key naming the model and
the text it was computed from, so a run, a topic page and a preview reuse it, and an edited title or abstract, or
another model, gets a new one. Vectors are normalised, so a dot product is the cosine.
"""

import functools
import hashlib
import threading
from pathlib import Path

import numpy as np
from django.conf import settings

MODEL_DIR = Path(__file__).resolve().parent / "embedding_model"
STORED_DTYPE = np.float16
# Query vectors kept per process: a run scores every topic and reader interest against each pool.
QUERY_CACHE_SIZE = 4096

_load_lock = threading.Lock()


class StaticEmbedder:
    name = "static"

    @functools.cached_property
    def model(self):
        with _load_lock:
            # Imported here: a process that never matches (the web server's other pages) does not load it.
            from model2vec import StaticModel

            return StaticModel.from_pretrained(str(MODEL_DIR), force_download=False)

    @functools.cached_property
    def version(self):
        digest = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
        return f"static-{digest[:8]}"

    def encode(self, texts):
        return self.model.encode(list(texts), show_progress_bar=False)


class TransformerEmbedder:
    name = "transformer"
    version = "minilm-l6-v2"

    def encode(self, texts):
        from papers import semantic  # the optional extra; settings refuse "transformer" without it

        return semantic.encode(texts)


@functools.cache
def embedder(name=None):
    name = name or settings.MATCH_EMBEDDINGS
    return {"static": StaticEmbedder, "transformer": TransformerEmbedder}[name]()


def normalise(vectors):
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def encode(texts, name=None):
    """Normalised float32 vectors, one row per text."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return normalise(embedder(name).encode(texts))


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def query_vector(value, name=None):
    return encode([value], name)[0]


def paper_text(paper):
    return f"{paper.title}. {paper.abstract or ''}".strip()


def paper_key(paper, name=None):
    """What a stored vector was computed from: the model's version and a hash of the paper's text."""
    digest = hashlib.sha256(paper_text(paper).encode()).hexdigest()[:16]
    return f"{embedder(name).version}:{digest}"


def paper_vectors(papers, name=None, *, save=True):
    """Normalised vectors of `papers` (a list), one row each: the stored ones where still valid, the rest computed
    (in one batch) and, for saved papers, stored for next time."""
    if not papers:
        return np.zeros((0, 0), dtype=np.float32)
    keys = [paper_key(paper, name) for paper in papers]
    rows, missing = [None] * len(papers), []
    for position, (paper, key) in enumerate(zip(papers, keys, strict=True)):
        stored = getattr(paper, "embedding", None)
        if stored and getattr(paper, "embedding_key", "") == key:
            rows[position] = np.frombuffer(stored, dtype=STORED_DTYPE)
        else:
            missing.append(position)
    if missing:
        computed = encode([paper_text(papers[position]) for position in missing], name)
        changed = []
        for position, vector in zip(missing, computed, strict=True):
            stored = vector.astype(STORED_DTYPE)
            rows[position] = stored
            paper = papers[position]
            paper.embedding, paper.embedding_key = stored.tobytes(), keys[position]
            if paper.pk is not None:
                changed.append(paper)
        if save and changed:
            from papers.models import Paper

            # Only these two columns: a concurrent edit of anything else is not overwritten.
            Paper.objects.bulk_update(changed, ["embedding", "embedding_key"], batch_size=500)
    return normalise(np.stack(rows))
