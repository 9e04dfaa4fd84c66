"""The model directory: model.pt (saved by trace.py), tokenizer.json, rerankd.json, golden.json.

Everything is written into a staging folder beside OUT and moved into place file by file only after
every check passed, so a failed export leaves OUT as it was. --save-hf (random-init models) also
writes the model and its tokenizer as a Hugging Face folder.
Owns: the files' contents and format_version. Must never: write a file before the checks passed, or
leave the staging folder behind.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile

import torch

from .common import ExportError
from .golden_set import GOLDEN_GROUPS, SAMPLE_DOC, SAMPLE_QUERY

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What rerankd.json tells the server about the model (besides the versions it was made with)."""

    name: str
    architecture: str  # bert | xlm-roberta
    mode: str  # cross-encoder | pair-cosine
    max_length: int
    uses_token_type_ids: bool
    activation: str  # sigmoid | cosine01
    pad_token_id: int
    source: str


@contextlib.contextmanager
def staging_dir(out_dir):
    """A fresh folder beside out_dir (same file system, so moving out of it is a rename); removed after."""
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def golden_json(max_length, golden_batches, golden_scores):
    """golden.json: each golden group with its eager fp32 scores and token counts."""
    return {
        "max_length": max_length,
        "truncation": "only_second",
        "groups": [
            {
                "query": g["query"],
                "documents": list(g["documents"]),
                "scores": [float(x) for x in scores.tolist()],
                "token_counts": [len(e.ids) for e in encs],
            }
            for g, (encs, *_r), scores in zip(GOLDEN_GROUPS, golden_batches, golden_scores, strict=True)
        ],
    }


def rerankd_json(d):
    """rerankd.json for a ModelDescription (the server reads it: src/model/spec.rs)."""
    import transformers

    return {
        "format_version": FORMAT_VERSION,
        "name": d.name,
        "architecture": d.architecture,
        "mode": d.mode,
        "max_length": d.max_length,
        "uses_token_type_ids": d.uses_token_type_ids,
        "activation": d.activation,
        "dtype": "float32",
        "pad_token_id": d.pad_token_id,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "source": d.source,
    }


def write_directory(tmp, out_dir, tok_text, meta, golden):
    """Writes the three text files into tmp (model.pt is there already), then moves all four into out_dir."""
    with open(os.path.join(tmp, "tokenizer.json"), "w") as f:
        f.write(tok_text)
    with open(os.path.join(tmp, "rerankd.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    with open(os.path.join(tmp, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.makedirs(out_dir, exist_ok=True)
    for fname in ("model.pt", "tokenizer.json", "rerankd.json", "golden.json"):
        os.replace(os.path.join(tmp, fname), os.path.join(out_dir, fname))


def save_hf(out, info, model, tok):
    """--save-hf OUT: a random-init model and its tokenizer as a Hugging Face folder, checked to load back."""
    if not info.get("random"):
        raise ExportError("--save-hf is meant for --random-init models (an --hf-dir is already a HF folder)")
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    src_dir = os.path.dirname(info["tokenizer_file"])
    if os.path.isfile(os.path.join(src_dir, "tokenizer_config.json")):
        hf_tok = AutoTokenizer.from_pretrained(src_dir)
    else:
        hf_tok = PreTrainedTokenizerFast(tokenizer_file=info["tokenizer_file"])
    hf_tok.save_pretrained(out)
    # verify: the saved folder loads and tokenizes a pair exactly like tokenizer.json
    reloaded = AutoTokenizer.from_pretrained(out)
    got = reloaded(SAMPLE_QUERY, SAMPLE_DOC)["input_ids"]
    want = tok.encode(SAMPLE_QUERY, SAMPLE_DOC).ids
    if list(got) != list(want):
        raise ExportError(f"--save-hf: AutoTokenizer({out}) gives {got}, tokenizer.json gives {want}")
    print(f"  saved Hugging Face folder (model + tokenizer) -> {os.path.abspath(out)}")
