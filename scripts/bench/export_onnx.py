#!/usr/bin/env python3
"""Exports the comparison's Hugging Face folder to ONNX for Infinity's optimum engine (which only
loads a folder that already holds a *.onnx file; it does not export local folders itself).

First tries optimum's own exporter (ORTModelForSequenceClassification.from_pretrained(export=True));
if that fails (e.g. newer torch.onnx defaults), falls back to torch.onnx.export(dynamo=False) of the
same model. Either way it checks onnxruntime against eager PyTorch on a padded batch (max |diff| of
the logits) and copies config + tokenizer files next to model.onnx.

Usage (the Infinity venv's python): export_onnx.py HF_DIR OUT_DIR
Prints one JSON line: {"method", "max_abs_diff", "seconds"}.
"""
import json
import os
import shutil
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main():
    hf, out = sys.argv[1], sys.argv[2]
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    t0 = time.time()
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    method, first_error = None, None
    try:
        from optimum.onnxruntime import ORTModelForSequenceClassification

        m = ORTModelForSequenceClassification.from_pretrained(hf, export=True, provider="CPUExecutionProvider")
        m.save_pretrained(tmp)
        method = "optimum ORTModelForSequenceClassification.from_pretrained(export=True)"
    except Exception as e:  # noqa: BLE001
        first_error = f"{type(e).__name__}: {e}"[:400]
        print(f"export_onnx: optimum export failed ({first_error}); trying torch.onnx.export(dynamo=False)",
              file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        model = AutoModelForSequenceClassification.from_pretrained(hf, attn_implementation="eager").eval()
        ids = torch.randint(1000, 2000, (2, 16))
        mask = torch.ones_like(ids)
        mask[1, 10:] = 0
        tt = torch.zeros_like(ids)
        torch.onnx.export(
            model, (ids, mask, tt), os.path.join(tmp, "model.onnx"),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
            dynamic_axes={
                n: {0: "batch_size", 1: "sequence_length"} for n in ["input_ids", "attention_mask", "token_type_ids"]
            }
            | {"logits": {0: "batch_size"}},
            opset_version=17, do_constant_folding=True, dynamo=False,
        )
        method = "torch.onnx.export(dynamo=False, opset 17)"
    for f in os.listdir(hf):
        if f.endswith(".json") or f == "vocab.txt":
            tokenizer_file = f.startswith("tokenizer") or f in ("vocab.txt", "special_tokens_map.json")
            if not os.path.exists(os.path.join(tmp, f)) or tokenizer_file:
                shutil.copy(os.path.join(hf, f), os.path.join(tmp, f))

    # Parity: onnxruntime vs eager torch on a padded batch of real text.
    import onnxruntime as ort

    tok = AutoTokenizer.from_pretrained(hf)
    q = ["what is the capital of france"] * 3
    d = ["Paris is the capital of France.", "Berlin " * 60, "The Eiffel Tower was completed in 1889."]
    enc = tok(q, d, padding=True, truncation=True, return_tensors="np")
    sess = ort.InferenceSession(os.path.join(tmp, "model.onnx"), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    feeds = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
    got = sess.run(None, feeds)[0].reshape(-1)
    model = AutoModelForSequenceClassification.from_pretrained(hf).eval()
    with torch.no_grad():
        want = model(**{k: torch.from_numpy(v.astype(np.int64)) for k, v in enc.items()}).logits.reshape(-1).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-3:
        raise SystemExit(f"export_onnx: onnxruntime differs from torch by {diff}")
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(json.dumps({"method": method, "max_abs_diff": diff, "seconds": round(time.time() - t0, 1),
                      "optimum_error": first_error}))


if __name__ == "__main__":
    main()
