"""Sentence embeddings for matching: what "close in meaning" is measured with.

Two models, chosen with settings.MATCH_EMBEDDINGS:

* "static" (the default install): a model2vec static model in papers/embedding_model/, distilled from the
  all-MiniLM-L6-v2 weights (papers/embedding_model/build.py, `make embedding-model`). A text's vector is the mean of
  its tokens' rows in a table: numpy, tokenizers and safetensors at run time, no torch, nothing downloaded.
* "transformer" (the optional extra, `make semantic`): all-MiniLM-L6-v2 itself, through papers.semantic; slower, and a
  little better on the labelled set (docs/matching.md).

A paper is embedded as a whole (its title and abstract: what a reader's feedback and an editor's examples are compared
with) and in passages: its title, and its abstract in runs of PASSAGE_SENTENCES sentences. Matching compares a query
with a paper's best passages (papers.matching), because one average over a whole abstract blurs what any part of it
is about. A paper is embedded once: its rows (the whole, then the passages) are stored on its row (Paper.embedding,
float16) with a key naming the model, the layout and the text they were computed from, so a run, a topic page and a
preview reuse them, and an edited title or abstract, or another model, gets new ones. Vectors are normalised, so a dot
product is the cosine.
"""

import functools
import hashlib
import itertools
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

MODEL_DIR = Path(__file__).resolve().parent / "embedding_model"
STORED_DTYPE = np.float16
# What paper_rows reads and writes of a Paper: load these (QuerySet.only) to embed papers or read their vectors.
PAPER_FIELDS = ["id", "arxiv_id", "title", "abstract", "embedding", "embedding_key"]
# Query vectors kept per process: a run scores every topic and reader interest against each pool.
QUERY_CACHE_SIZE = 4096
# How many of an abstract's sentences make one passage; part of the stored layout (LAYOUT), so changing it re-embeds.
PASSAGE_SENTENCES = 2
LAYOUT = f"p{PASSAGE_SENTENCES}"
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+")
# Passages embedded per batch: bounds the memory of the token rows gathered at once.
_BATCH = 256

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
    def dimensions(self):
        return json.loads((MODEL_DIR / "config.json").read_text())["hidden_dim"]

    @functools.cached_property
    def version(self):
        # The checksums of the model, its tokenizer and its configuration: any of them changed is another model.
        digest = hashlib.sha256((MODEL_DIR / "SHA256SUMS").read_bytes()).hexdigest()
        return f"static-{digest[:8]}"

    def encode(self, texts):
        return self.model.encode(list(texts), show_progress_bar=False)

    def encode_papers(self, passages):
        """(whole, passage vectors) for papers given as lists of passages: one tokenisation, no text encoded twice.
        A static model's vector is the mean of its tokens' rows, so a passage's is the mean over its own tokens and the
        whole paper's the mean over all of them: the sums of the passages' rows, added up per paper."""
        model = self.model
        flat = [passage for paper in passages for passage in paper]
        sums = np.zeros((len(flat), model.dim), dtype=np.float32)
        counts = np.zeros(len(flat), dtype=np.float32)
        table = model.embedding
        for start in range(0, len(flat), _BATCH):
            ids = model.tokenize(flat[start : start + _BATCH])
            lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
            tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
            # Each distinct token's row converted once, then gathered per token.
            distinct, positions = np.unique(tokens, return_inverse=True)
            rows = table[distinct if model.token_mapping is None else model.token_mapping[distinct]].astype(np.float32)
            if model.weights is not None:
                rows *= model.weights[distinct][:, None]
            rows = rows[positions]
            filled = lengths > 0
            offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])[filled]
            if len(offsets):
                sums[start : start + len(ids)][filled] = np.add.reduceat(rows, offsets, axis=0)
            counts[start : start + len(ids)] = lengths
        owners = np.repeat(np.arange(len(passages)), [len(paper) for paper in passages])
        whole = np.zeros((len(passages), model.dim), dtype=np.float32)
        np.add.at(whole, owners, sums)
        return whole, sums / np.maximum(counts, 1)[:, None]


class TransformerEmbedder:
    name = "transformer"
    version = "minilm-l6-v2"
    dimensions = 384

    def encode(self, texts):
        from papers import semantic  # the optional extra; settings refuse "transformer" without it

        return semantic.encode(texts)

    def encode_papers(self, passages):
        """(whole, passage vectors): each passage encoded once; a paper's whole is the mean of its passages' vectors
        (encoding the whole text again would double the transformer's cost, and it reads only 256 tokens of it)."""
        flat = [passage for paper in passages for passage in paper]
        vectors = normalise(self.encode(flat))
        owners = np.repeat(np.arange(len(passages)), [len(paper) for paper in passages])
        whole = np.zeros((len(passages), vectors.shape[1]), dtype=np.float32)
        np.add.at(whole, owners, vectors)
        return whole, vectors


def embedder(name=None):
    """The model `name` names ("static" or "transformer"; settings.MATCH_EMBEDDINGS when None), one per process."""
    return _embedder(name or settings.MATCH_EMBEDDINGS)


@functools.cache
def _embedder(name):
    return {"static": StaticEmbedder, "transformer": TransformerEmbedder}[name]()


def normalise(vectors, *, copy=True):
    """Rows scaled to length 1 (a row of zeros stays zeros); in place when `copy` is False and they are float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1
    if copy:
        return vectors / norms
    vectors /= norms
    return vectors


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


def passages(paper):
    """The parts of a paper embedded on their own: its title, then its abstract in runs of PASSAGE_SENTENCES
    sentences."""
    sentences = [sentence for sentence in _SENTENCE_END_RE.split((paper.abstract or "").strip()) if sentence]
    runs = [" ".join(sentences[i : i + PASSAGE_SENTENCES]) for i in range(0, len(sentences), PASSAGE_SENTENCES)]
    return [paper.title or "", *runs]


def paper_key(paper, name=None):
    """What stored vectors were computed from: the model's version, the layout of the rows and a hash of the text."""
    digest = hashlib.sha256(paper_text(paper).encode()).hexdigest()[:16]
    return f"{embedder(name).version}:{LAYOUT}:{digest}"


def is_current(paper, key=None, name=None):
    """Whether `paper` carries stored rows made by this model, in this layout, from its present text (`key`, its
    paper_key, when already computed)."""
    return bool(getattr(paper, "embedding", None)) and getattr(paper, "embedding_key", "") == (
        key or paper_key(paper, name)
    )


@dataclass(frozen=True)
class PaperVectors:
    """Papers' normalised vectors: `whole` one row per paper; `passages` one row per passage, the passages of paper i
    being rows starts[i] to starts[i + 1] - 1."""

    whole: np.ndarray
    passages: np.ndarray
    starts: np.ndarray


def paper_vectors(papers, name=None, *, save=True):
    """Normalised whole-paper vectors of `papers` (a list), one row each (`paper_rows`)."""
    return paper_rows(papers, name, save=save).whole


def paper_rows(papers, name=None, *, save=True):
    """The PaperVectors of `papers` (a list): the stored rows where still valid, the rest computed (in one batch) and,
    for saved papers, stored for next time."""
    if not papers:
        empty = np.zeros((0, 0), dtype=np.float32)
        return PaperVectors(empty, empty, np.zeros(1, dtype=np.int64))
    keys = [paper_key(paper, name) for paper in papers]
    rows, missing = [None] * len(papers), []
    for position, (paper, key) in enumerate(zip(papers, keys, strict=True)):
        if is_current(paper, key):
            rows[position] = np.frombuffer(paper.embedding, dtype=STORED_DTYPE)
        else:
            missing.append(position)
    if missing:
        split = [passages(papers[position]) for position in missing]
        whole, parts = embedder(name).encode_papers(split)
        whole, parts = normalise(whole, copy=False), normalise(parts, copy=False)
        changed, first = [], 0
        for position, vector, count in zip(missing, whole, map(len, split), strict=True):
            paper = papers[position]
            stored = np.empty((count + 1, len(vector)), dtype=STORED_DTYPE)
            stored[0], stored[1:] = vector, parts[first : first + count]
            first += count
            paper.embedding, paper.embedding_key = stored.tobytes(), keys[position]
            rows[position] = np.frombuffer(paper.embedding, dtype=STORED_DTYPE)
            if paper.pk is not None:
                changed.append(paper)
        del whole, parts
        if save and changed:
            _store_if_possible(changed)
    # From the float16 rows, computed or stored alike: a paper ranks the same whether or not it was just embedded.
    dimensions = embedder(name).dimensions
    counts = [len(row) // dimensions - 1 for row in rows]
    starts = np.concatenate([[0], np.cumsum(counts)])
    whole = np.empty((len(rows), dimensions), dtype=np.float32)
    parts = np.empty((int(starts[-1]), dimensions), dtype=np.float32)
    for position, row in enumerate(rows):
        shaped = row.reshape(-1, dimensions)
        whole[position] = shaped[0]
        parts[starts[position] : starts[position + 1]] = shaped[1:]
    return PaperVectors(whole=normalise(whole, copy=False), passages=normalise(parts, copy=False), starts=starts)


def store(papers):
    """Write `papers`' computed rows (their `embedding` and `embedding_key`) to the database, in one transaction."""
    from django.db import transaction

    from papers.models import Paper

    with transaction.atomic():
        # Only these two columns: a concurrent edit of anything else is not overwritten.
        Paper.objects.bulk_update(papers, ["embedding", "embedding_key"], batch_size=500)


def _store_if_possible(papers):
    """Keep computed vectors on their rows, for the next run or page. They are a cache: a write that fails (a locked
    SQLite file, a lock timeout) is logged, and the caller goes on with the vectors it has."""
    from django.db import DatabaseError

    try:
        store(papers)
    except DatabaseError:
        logger.warning("Could not store %d papers' embeddings; they will be computed again", len(papers), exc_info=True)
