"""The model's inputs: int64 [batch, seq] input ids, attention mask and token type ids.

  random_batch   random padded rows (one at full length), for the trace's example and check 1
  golden_batches the golden groups tokenized exactly as the server does: the tokenizers library,
                 truncation only_second at max_length, padding to the group's longest pair
Owns: how a batch is laid out and padded. Must never: run the model.
"""

import dataclasses

import torch
from tokenizers import Tokenizer

from .common import ExportError
from .golden_set import GOLDEN_GROUPS


@dataclasses.dataclass(frozen=True)
class Layout:
    """What this model's batches look like: its inputs, vocabulary size and special token ids."""

    uses_tt: bool  # whether forward takes token_type_ids
    vocab: int
    pad_id: int
    cls_id: int
    sep_id: int


def random_batch(gen, batch, length, vocab_size, pad_id, cls_id, sep_id, min_len=2, full_row=True):
    """Random padded batch: rows of random real length (one row at full length), padding = pad id."""
    ids = torch.full((batch, length), pad_id, dtype=torch.int64)
    mask = torch.zeros((batch, length), dtype=torch.int64)
    types = torch.zeros((batch, length), dtype=torch.int64)
    low = 5
    lengths = []
    for r in range(batch):
        n = length if (full_row and r == batch // 2) else int(torch.randint(min_len, length + 1, (1,), generator=gen))
        row = torch.randint(low, vocab_size, (n,), generator=gen)
        row[row == pad_id] = low if pad_id != low else low + 1
        row[0] = cls_id
        row[n - 1] = sep_id
        k = int(torch.randint(1, n, (1,), generator=gen))  # type 0 for [0, k), type 1 for [k, n)
        ids[r, :n] = row
        mask[r, :n] = 1
        types[r, k:n] = 1
        lengths.append(n)
    return ids, mask, types, lengths


def encode_group(tok, query, docs, pad_id):
    encs = [tok.encode(query, d) for d in docs]
    longest = max(len(e.ids) for e in encs)
    n = len(encs)
    ids = torch.full((n, longest), pad_id, dtype=torch.int64)
    mask = torch.zeros((n, longest), dtype=torch.int64)
    types = torch.zeros((n, longest), dtype=torch.int64)
    for r, e in enumerate(encs):
        k = len(e.ids)
        ids[r, :k] = torch.tensor(e.ids, dtype=torch.int64)
        mask[r, :k] = torch.tensor(e.attention_mask, dtype=torch.int64)
        types[r, :k] = torch.tensor(e.type_ids, dtype=torch.int64)
    return encs, ids, mask, types


def golden_batches(tok_text, max_length, pad_id):
    """[(encodings, ids, mask, types)] per golden group, and how many pairs reach max_length.

    Refuses a tokenizer and window with which no golden pair is truncated: the server's truncation
    path would go unchecked by golden.json.
    """
    gtok = Tokenizer.from_str(tok_text)
    gtok.enable_truncation(max_length, strategy="only_second")
    batches = []
    for g in GOLDEN_GROUPS:
        encs, ids, mask, types = encode_group(gtok, g["query"], g["documents"], pad_id)
        batches.append((encs, ids, mask, types))
    truncated = sum(
        1 for encs, *_tensors in batches for e in encs if len(e.overflowing) > 0 or len(e.ids) >= max_length
    )
    if truncated == 0:
        raise ExportError("no golden pair reaches max_length: the truncation path would go untested")
    return batches, truncated
