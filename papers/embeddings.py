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
import logging
import os
import threading
from pathlib import Path

import numpy as np
from django.conf import settings

MODEL_DIR = Path(__file__).resolve().parent / "embedding_model"
STORED_DTYPE = np.float16
# Query vectors kept per process: a run scores every topic and reader interest against each pool.
QUERY_CACHE_SIZE = 4096

_load_lock = threading.Lock()
logger = logging.getLogger(__name__)


class StaticEmbedder:
    name = "static"

    @functools.cached_property
    def model(self):
        with _load_lock:
            # The tokenizer's own threads are of no use for short texts, and would not survive a fork
            # (senddigests --processes): the library warns and turns them off in each child.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            # Imported here: a process that never matches (the web server's other pages) does not load it.
            from model2vec import StaticModel

            return StaticModel.from_pretrained(str(MODEL_DIR), force_download=False)

    @functools.cached_property
    def version(self):
        # The checksums of the model, its tokenizer and its configuration: any of them changed is another model.
        digest = hashlib.sha256((MODEL_DIR / "SHA256SUMS").read_bytes()).hexdigest()
        return f"static-{digest[:8]}"

    def encode(self, texts):
        return self.model.encode(list(texts), show_progress_bar=False)


class TransformerEmbedder:
    name = "transformer"
    version = "minilm-l6-v2"

    def encode(self, texts):
        from papers import semantic  # the optional extra; settings refuse "transformer" without it

        return semantic.encode(texts)


def embedder(name=None):
    """The model `name` names ("static" or "transformer"; settings.MATCH_EMBEDDINGS when None), one per process."""
    return _embedder(name or settings.MATCH_EMBEDDINGS)


@functools.cache
def _embedder(name):
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


def query_vector(value, name=None):
    """A query text's normalised vector, computed once per process and model."""
    return _query_vector(value, name or settings.MATCH_EMBEDDINGS)


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _query_vector(value, name):
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
            _store(changed)
    return normalise(np.stack(rows))


def _store(papers):
    """Keep computed vectors on their rows, for the next run or page. They are a cache: a write that fails (a locked
    SQLite file, a lock timeout) is logged, and the caller goes on with the vectors it has."""
    from django.db import DatabaseError, transaction

    from papers.models import Paper

    try:
        with transaction.atomic():
            # Only these two columns: a concurrent edit of anything else is not overwritten.
            Paper.objects.bulk_update(papers, ["embedding", "embedding_key"], batch_size=500)
    except DatabaseError:
        logger.warning("Could not store %d papers' embeddings; they will be computed again", len(papers), exc_info=True)
