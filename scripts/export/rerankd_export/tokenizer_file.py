"""The tokenizer.json the server gets, and what the export learns from it.

Truncation and padding are stripped (the server does its own); the pair template must be the one the
server assumes ([CLS] q [SEP] d [SEP] with type ids 0/1 for BERT, <s> q </s></s> d </s> for XLM-R);
the pad token id must agree between the tokenizer and the model's config.
Owns: reading and cleaning tokenizer.json. Must never: touch the model or torch (tokenizers only).
"""

import json
import os

from tokenizers import Tokenizer

from .common import ExportError, log, read_json
from .golden_set import SAMPLE_DOC, SAMPLE_QUERY


def resolve_tokenizer_file(path):
    if os.path.isdir(path):
        f = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(f):
            raise ExportError(f"{path} has no tokenizer.json")
        return f
    if not os.path.isfile(path):
        raise ExportError(f"tokenizer {path} not found")
    return path


def tokenizer_model_max_length(tokenizer_file):
    cfg = os.path.join(os.path.dirname(tokenizer_file), "tokenizer_config.json")
    if os.path.isfile(cfg):
        v = read_json(cfg).get("model_max_length")
        if isinstance(v, (int, float)) and 0 < v < 100_000:
            return int(v)
    return None


def clean_tokenizer_json(tokenizer_file):
    """Returns (json text with truncation/padding stripped, its Tokenizer, the parsed json, notes)."""
    data = read_json(tokenizer_file)
    notes = []
    if data.get("truncation") is not None:
        notes.append(f"tokenizer.json carried truncation {json.dumps(data['truncation'])}: removed")
    if data.get("padding") is not None:
        notes.append(f"tokenizer.json carried padding {json.dumps(data['padding'])}: removed")
    data["truncation"] = None
    data["padding"] = None
    text = json.dumps(data, ensure_ascii=False, indent=2)
    tok = Tokenizer.from_str(text)
    return text, tok, data, notes


def find_pad_id(tok, data, config):
    candidates = {}
    pad_cfg = getattr(config, "pad_token_id", None)
    if pad_cfg is not None:
        candidates["config.pad_token_id"] = int(pad_cfg)
    for name in ("[PAD]", "<pad>"):
        i = tok.token_to_id(name)
        if i is not None:
            candidates[f"tokenizer {name}"] = int(i)
            break
    if not candidates:
        raise ExportError("cannot tell the pad token id (no config.pad_token_id, no [PAD]/<pad> token)")
    values = set(candidates.values())
    if len(values) != 1:
        raise ExportError(f"pad token ids disagree: {candidates}")
    return values.pop()


def check_pair_template(tok, architecture):
    """Verifies the tokenizer's pair template; returns (cls_id, sep_id)."""
    enc = tok.encode(SAMPLE_QUERY, SAMPLE_DOC)
    a = tok.encode(SAMPLE_QUERY, add_special_tokens=False).ids
    b = tok.encode(SAMPLE_DOC, add_special_tokens=False).ids
    ids, types = enc.ids, enc.type_ids
    c, s = ids[0], ids[-1]
    if architecture == "bert":
        want_ids = [c] + a + [s] + b + [s]
        want_types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        what = "[CLS] q [SEP] d [SEP] with type ids 0/1"
    else:
        want_ids = [c] + a + [s, s] + b + [s]
        want_types = [0] * len(want_ids)
        what = "<s> q </s></s> d </s> with type ids 0"
    # XLM-R models get no token_type_ids, so only BERT's type ids matter.
    if c == s or ids != want_ids or (architecture == "bert" and types != want_types):
        raise ExportError(
            f"tokenizer.json's post-processor does not produce {what}: got {enc.tokens} types {types}"
        )
    if types != want_types:
        log(f"note: the tokenizer's pair type ids are {types}; unused (the model takes no token_type_ids)")
    return c, s
