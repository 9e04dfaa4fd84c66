"""The checks that decide whether the traced model may be written (check 0, the pinned-device guard,
is trace.py's). "Eager" is the stock Hugging Face model called with the 2-D mask (wrappers.build's
reference); every check reads the TorchScript loaded back from the saved file.

  check 1  TorchScript vs eager on random padded batches (sizes 1/3/8/17 at padded lengths 8/40/130,
           1/3 at max_length): max |diff| <= TOL; and a row scores the same alone as batched with
           longer rows (a mask frozen out of the trace would break that)
  check 2  the golden groups: TorchScript vs eager golden scores <= TOL
  check 3  pair mode: TorchScript vs cos(ST.encode(q), ST.encode(d)) <= TOL for the golden pairs whose
           halves fit sentence-transformers' max_seq_length
Owns: the parity rules and their messages. Must never: change the model or write a file.
"""

import time

import torch

from .batches import random_batch
from .common import TOL, ExportError
from .golden_set import GOLDEN_GROUPS
from .wrappers import select_inputs


def random_batches(reference, loaded, layout, max_length, seed):
    """Check 1; returns (worst eager |diff|, worst batching |diff|, batches run, seconds)."""
    t_check = time.time()
    uses_tt, vocab = layout.uses_tt, layout.vocab
    pad_id, cls_id, sep_id = layout.pad_id, layout.cls_id, layout.sep_id
    grid = [(b, n) for n in (8, 40, 130) if n < max_length for b in (1, 3, 8, 17)]
    grid += [(b, max_length) for b in (1, 3)]
    worst_eager = 0.0
    worst_batching = 0.0
    gen = torch.Generator().manual_seed(seed + 99)
    with torch.no_grad():
        for b, n in grid:
            ids, mask, types, lengths = random_batch(gen, b, n, vocab, pad_id, cls_id, sep_id)
            inputs = select_inputs(uses_tt, ids, mask, types)
            e = reference(*inputs)
            s = loaded(*inputs)
            if s.dtype != torch.float32 or tuple(s.shape) != (b,):
                raise ExportError(f"TorchScript output has dtype {s.dtype} shape {tuple(s.shape)}, want float32 [{b}]")
            if not torch.isfinite(s).all():
                raise ExportError(f"TorchScript output not finite at batch {b} length {n}: {s}")
            d = float((e - s).abs().max())
            worst_eager = max(worst_eager, d)
            if d > TOL:
                raise ExportError(f"TorchScript vs eager: max |diff| {d:.3g} > {TOL} at batch {b}, length {n}")
            if b > 1:
                short = min(range(b), key=lambda r: lengths[r])
                rows = {short, int(torch.randint(0, b, (1,), generator=gen))}
                for r in rows:
                    k = lengths[r]
                    alone = loaded(*select_inputs(uses_tt, ids[r:r + 1, :k], mask[r:r + 1, :k], types[r:r + 1, :k]))
                    db = abs(float(alone[0]) - float(s[r]))
                    worst_batching = max(worst_batching, db)
                    if db > TOL:
                        raise ExportError(
                            f"row {r} (length {k}) scores {float(alone[0]):.6f} alone but {float(s[r]):.6f} "
                            f"in a batch padded to {n}: the attention mask is not honoured by the trace"
                        )
    return worst_eager, worst_batching, len(grid), time.time() - t_check


def golden(loaded, uses_tt, golden_batches, golden_scores):
    """Check 2; returns (worst |diff|, the TorchScript scores per group)."""
    worst_golden = 0.0
    ts_golden = []
    with torch.no_grad():
        for (_encs, ids, mask, types), eager in zip(golden_batches, golden_scores, strict=True):
            s = loaded(*select_inputs(uses_tt, ids, mask, types))
            ts_golden.append(s)
            d = float((s - eager).abs().max())
            worst_golden = max(worst_golden, d)
    if worst_golden > TOL:
        raise ExportError(f"golden: TorchScript vs eager max |diff| {worst_golden:.3g} > {TOL}")
    return worst_golden, ts_golden


def check_sentence_transformers(info, golden_batches, ts_golden):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(info["st_folder"], device="cpu")
    st.eval()
    limit = int(st.max_seq_length or info.get("st_max_seq") or 512)
    queries, docs, want = [], [], []
    for g, (encs, *_tensors), ts in zip(GOLDEN_GROUPS, golden_batches, ts_golden, strict=True):
        for r, (d, e) in enumerate(zip(g["documents"], encs, strict=True)):
            q_len = sum(1 for t, m in zip(e.type_ids, e.attention_mask, strict=True) if m and t == 0)
            d_len = sum(1 for t, m in zip(e.type_ids, e.attention_mask, strict=True) if m and t == 1) + 1
            if q_len <= limit and d_len <= limit and not e.overflowing:
                queries.append(g["query"])
                docs.append(d)
                want.append(float(ts[r]))
    if len(want) < 20:
        raise ExportError(f"sentence-transformers check: only {len(want)} golden pairs fit {limit} tokens")
    with torch.no_grad():
        qe = st.encode(queries, convert_to_tensor=True, batch_size=16, show_progress_bar=False)
        de = st.encode(docs, convert_to_tensor=True, batch_size=16, show_progress_bar=False)
        cos = torch.nn.functional.cosine_similarity(qe.float(), de.float(), dim=1)
    diff = (cos - torch.tensor(want)).abs()
    worst = float(diff.max())
    if worst > TOL:
        i = int(diff.argmax())
        raise ExportError(
            f"pair scores differ from sentence-transformers by {worst:.3g} > {TOL} "
            f"(query {queries[i]!r}, document {docs[i][:60]!r}: TorchScript {want[i]:.6f}, ST {float(cos[i]):.6f})"
        )
    return (
        f"TorchScript pair cosine vs sentence-transformers (max_seq_length {limit}): "
        f"max |diff| {worst:.2e} over {len(want)} golden pairs"
    )
