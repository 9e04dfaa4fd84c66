#!/usr/bin/env python3
"""Train a small XLM-RoBERTa-style test tokenizer (no network, no downloads).

    python scripts/export/make_test_tokenizer.py OUT_DIR [--vocab-size 800]

Writes into OUT_DIR:
  tokenizer.json           the `tokenizers` file (the Rust server and export_model.py read this)
  tokenizer_config.json    what transformers' AutoTokenizer / PreTrainedTokenizerFast needs
  special_tokens_map.json  (same information, for older loaders)

The tokenizer mimics XLM-RoBERTa's (Metaspace "▁" word boundaries, NFKC; a BPE model instead of
sentencepiece Unigram, because BPE reaches the requested vocabulary size on a tiny corpus):
  special tokens  <s>=0  <pad>=1  </s>=2  <unk>=3  <mask>=4
  single          <s> A </s>
  pair            <s> A </s></s> B </s>       (type ids all 0)
It is trained on a few dozen built-in English sentences, so the result is deterministic and the
vocabulary is small (the script asserts the exact size so that configs/tiny-xlmr.json beside it,
whose vocab_size must match, cannot silently drift). No truncation or padding is stored.
"""
import argparse
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
DEFAULT_VOCAB_SIZE = 800

CORPUS = [
    "Paris is the capital and largest city of France.",
    "Berlin is the capital of Germany and its most populous city.",
    "Photosynthesis is the process by which green plants turn sunlight into chemical energy.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Basketball was invented in 1891 by James Naismith, a physical education teacher.",
    "The river flows through the old town before it reaches the sea.",
    "A cross-encoder reads the query and the document together and returns one relevance score.",
    "Search engines rank documents by how well they answer the question that was asked.",
    "The quick brown fox jumps over the lazy dog.",
    "She bought fresh bread, cheese and apples at the market on Saturday morning.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The telescope revealed thousands of distant galaxies that nobody had seen before.",
    "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
    "He learned to play the piano when he was seven years old.",
    "The library opens at nine in the morning and closes at eight in the evening.",
    "Electric cars are becoming cheaper as battery prices continue to drop.",
    "The committee will publish its final report next month.",
    "Coffee is one of the most traded agricultural products in the world.",
    "Rain is expected in the north, while the south will stay warm and dry.",
    "The museum has a large collection of paintings from the nineteenth century.",
    "Children should drink water and eat vegetables every day.",
    "The train to London leaves from platform four at half past ten.",
    "Machine learning models need good data to make good predictions.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Our team won the championship after a difficult season.",
    "The Amazon rainforest produces a large share of the oxygen on Earth.",
    "Please send the documents to the office before Friday afternoon.",
    "The doctor recommended rest, fluids and a short walk every day.",
    "Ancient Rome built roads, bridges and aqueducts across Europe.",
    "The new phone has a faster processor and a brighter screen.",
    "Shakespeare wrote plays, poems and sonnets that are still read today.",
    "The volcano erupted for three days and covered the village in ash.",
    "Students gathered in the hall to listen to the guest speaker.",
    "Tea was first grown in China thousands of years ago.",
    "The bridge was closed for repairs during the summer holidays.",
    "Birds migrate south in the autumn to find food and warmer weather.",
    "What is the capital of France? Where is the Eiffel Tower?",
    "How do plants make their food, and why do leaves change colour?",
    "Which team scored the most points in the final game of the season?",
    "Numbers such as 2024, 3.14 and 100% also appear in ordinary text.",
    "Questions, answers, passages, queries and rankings are part of retrieval.",
    "Tokenizers split words into smaller pieces so rare words can still be encoded.",
]


def build(vocab_size: int) -> Tokenizer:
    # BPE rather than Unigram: on a corpus this small the Unigram trainer stops at ~390 pieces,
    # while BPE reaches the requested size exactly (and deterministically).
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        min_frequency=1,
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    expected = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    if ids != expected:
        raise SystemExit(f"make_test_tokenizer: special token ids {ids}, expected {expected}")
    # RoBERTa pair template: <s> A </s></s> B </s>, every type id 0.
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0 </s>:0",
        pair="<s>:0 $A:0 </s>:0 </s>:0 $B:0 </s>:0",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.no_truncation()
    tok.no_padding()
    return tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", help="folder to write tokenizer.json (+ transformers configs) into")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    ap.add_argument("--model-max-length", type=int, default=512)
    args = ap.parse_args()

    tok = build(args.vocab_size)
    size = tok.get_vocab_size(with_added_tokens=True)
    if args.vocab_size == DEFAULT_VOCAB_SIZE and size != DEFAULT_VOCAB_SIZE:
        raise SystemExit(
            f"make_test_tokenizer: trained vocabulary has {size} entries, expected {DEFAULT_VOCAB_SIZE} "
            "(scripts/export/configs/tiny-xlmr.json depends on it)"
        )

    enc = tok.encode("what is the capital of France", "Paris is the capital of France.")
    toks = enc.tokens
    if toks[0] != "<s>" or toks[-1] != "</s>" or "</s></s>" not in "".join(toks) or any(enc.type_ids):
        raise SystemExit(f"make_test_tokenizer: unexpected pair encoding {toks} {enc.type_ids}")

    os.makedirs(args.out_dir, exist_ok=True)
    tok.save(os.path.join(args.out_dir, "tokenizer.json"))
    special = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    config = dict(special)
    config.update(
        {
            # The generic tokenizers-backed class: loads tokenizer.json as is (template included).
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": args.model_max_length,
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "attention_mask"],
        }
    )
    with open(os.path.join(args.out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
        f.write("\n")
    print(f"make_test_tokenizer: wrote {args.out_dir}/tokenizer.json (vocab {size}); pair -> {' '.join(toks)}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
