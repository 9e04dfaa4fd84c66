#!/usr/bin/env python3
"""Writes the comparison's workload: a fixed, seeded set of rerank requests (query + documents) that
every contender reads, as JSON:

  {"seed": S, "pairs": N, "requests": [{"query": "...", "documents": ["...", ...]}, ...],
   "fidelity_groups": [...same shape...], "stats": {...}}

Lengths follow a long tail, as real retrieval candidates do: most documents are 20-80 words, some
80-200, a few 200-400 (each pair capped so that [CLS] query [SEP] document [SEP] fits 512 tokens of
the given tokenizer). Requests hold 16-32 documents; the last one is cut so that the requests hold
exactly N pairs. The text is English-like: every query group has a topic, and each document mixes
words of that topic (from none to half of its words) with words of other topics and function words,
so real models give graded, spread scores (which the bf16 vs fp32 ranking check needs).

`fidelity_groups` are the first G query groups of the same generator (more than the speed set when
G requests hold more than N pairs), each cut to at most D documents.

Usage (any python with `tokenizers`, e.g. the project venv):
  workload.py --tokenizer TOKENIZER.json --pairs 512 --seed 0 --fidelity-groups 48 \
      --fidelity-docs 16 --out workload.json
"""
import argparse
import json
import random
import statistics
import sys

FUNCTION_WORDS = (
    "the of and a to in is was for on that with as by it at from this be are or an which has have "
    "not their its were been also more than other into after when can about one two all most there "
    "these they some new first may only over such many would between where both during while each "
    "under through because however often later very well still against known since used within"
).split()

TOPICS = {
    "volcano": "volcano lava magma eruption crater ash basalt caldera tectonic plume pyroclastic vent "
    "island arc subduction dome lahar geothermal summit cone seismic mantle rift obsidian sulfur",
    "finance": "market stock bond interest rate inflation investor earnings dividend equity portfolio "
    "bank credit loan currency yield treasury recession valuation hedge fund asset liquidity index",
    "medicine": "patient disease vaccine infection antibody therapy clinical trial dose symptom "
    "diagnosis hospital surgery virus bacteria immune chronic treatment drug physician tissue organ",
    "football": "football goal striker midfielder league season match referee penalty stadium coach "
    "tournament cup defender keeper transfer club fans tactics pitch championship squad",
    "cooking": "recipe flour butter oven bake dough sugar salt garlic onion simmer sauce pan roast "
    "spice olive oil pepper boil knife kitchen flavour broth pastry",
    "astronomy": "galaxy star planet orbit telescope nebula comet asteroid supernova gravity light "
    "cosmic universe moon solar eclipse dwarf cluster redshift spectrum radiation pulsar",
    "programming": "compiler function variable memory thread pointer runtime library interface "
    "algorithm recursion database query server client cache kernel bytecode syntax module type",
    "history": "empire dynasty treaty war revolution king queen parliament colony army century "
    "ancient medieval reform republic constitution siege monarchy rebellion alliance crown",
    "climate": "climate carbon emissions warming temperature glacier sea level drought rainfall "
    "greenhouse methane ocean ice atmosphere weather heatwave forest renewable policy",
    "music": "symphony orchestra melody harmony rhythm piano violin composer album guitar concert "
    "chord tempo opera jazz song lyrics band recording tune sonata",
    "biology": "cell protein gene dna enzyme membrane mitochondria photosynthesis chlorophyll "
    "species evolution organism metabolism chromosome mutation ribosome nucleus plant leaf",
    "law": "court judge jury verdict appeal statute contract lawsuit plaintiff defendant evidence "
    "attorney ruling liability testimony trial precedent regulation tribunal rights",
    "travel": "airport flight hotel passport luggage beach tourist itinerary train ticket museum "
    "guide journey destination resort visa cruise map booking hostel sightseeing",
    "energy": "solar wind turbine battery grid electricity nuclear reactor coal hydrogen fuel "
    "voltage power plant storage transmission efficiency panel charge demand megawatt",
    "agriculture": "farm crop wheat harvest soil irrigation fertilizer cattle seed tractor yield "
    "maize rice orchard pasture livestock drought greenhouse organic barley",
    "architecture": "building facade column arch dome cathedral concrete steel tower design brick "
    "bridge roof vault gothic baroque skyscraper window foundation beam",
}
TOPIC_NAMES = sorted(TOPICS)
TOPIC_WORDS = {t: TOPICS[t].split() for t in TOPIC_NAMES}
ALL_TOPIC_WORDS = [w for t in TOPIC_NAMES for w in TOPIC_WORDS[t]]
QUESTION_STARTS = ["what is", "how does", "why do", "when did", "who", "where is", "how to", "which"]


def doc_words(rng):
    """Word count with a long tail: ~75% 20-80, ~18% 80-200, ~7% 200-400."""
    r = rng.random()
    if r < 0.75:
        return rng.randint(20, 80)
    if r < 0.93:
        return rng.randint(80, 200)
    return rng.randint(200, 400)


def sentence_text(words, rng):
    out, since = [], 0
    for i, w in enumerate(words):
        if since == 0:
            w = w.capitalize()
        since += 1
        if since >= rng.randint(8, 18) and i < len(words) - 1:
            w += "."
            since = 0
        out.append(w)
    return " ".join(out) + "."


def make_document(rng, topic, on_topic):
    n = doc_words(rng)
    words = []
    for _ in range(n):
        r = rng.random()
        if r < on_topic:
            words.append(rng.choice(TOPIC_WORDS[topic]))
        elif r < on_topic + 0.45:
            words.append(rng.choice(FUNCTION_WORDS))
        else:
            words.append(rng.choice(ALL_TOPIC_WORDS))
    return sentence_text(words, rng)


def make_query(rng, topic):
    k = rng.randint(2, 6)
    return f"{rng.choice(QUESTION_STARTS)} " + " ".join(rng.choice(TOPIC_WORDS[topic]) for _ in range(k))


def cap_pair(tok, query, doc, max_len):
    """Cuts the document (whole words) until the pair fits max_len tokens."""
    n = len(tok.encode(query, doc).ids)
    if n <= max_len:
        return doc, n
    words = doc.split()
    lo, hi = 1, len(words)
    while lo < hi:  # longest prefix that fits
        mid = (lo + hi + 1) // 2
        if len(tok.encode(query, " ".join(words[:mid])).ids) <= max_len:
            lo = mid
        else:
            hi = mid - 1
    doc = " ".join(words[:lo])
    return doc, len(tok.encode(query, doc).ids)


def generate(tok, seed, max_len):
    rng = random.Random(seed)
    while True:
        topic = rng.choice(TOPIC_NAMES)
        query = make_query(rng, topic)
        docs, lens = [], []
        for _ in range(rng.randint(16, 32)):
            on_topic = rng.choice([0.0, 0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
            d, n = cap_pair(tok, query, make_document(rng, topic, on_topic), max_len)
            docs.append(d)
            lens.append(n)
        yield {"query": query, "documents": docs}, lens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json used to cap pairs at --max-length")
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--fidelity-groups", type=int, default=48)
    ap.add_argument("--fidelity-docs", type=int, default=16)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    tok.no_truncation()
    tok.no_padding()

    gen = generate(tok, args.seed, args.max_length)
    requests, lengths, fidelity = [], [], []
    total = 0
    while total < args.pairs or len(fidelity) < args.fidelity_groups:
        req, lens = next(gen)
        if len(fidelity) < args.fidelity_groups:
            fidelity.append({"query": req["query"], "documents": req["documents"][: args.fidelity_docs]})
        if total < args.pairs:
            take = min(len(req["documents"]), args.pairs - total)
            requests.append({"query": req["query"], "documents": req["documents"][:take]})
            lengths.extend(lens[:take])
            total += take

    lengths_sorted = sorted(lengths)
    stats = {
        "requests": len(requests),
        "pairs": total,
        "tokens_total": sum(lengths),
        "tokens_mean": round(statistics.mean(lengths), 1),
        "tokens_p50": lengths_sorted[len(lengths) // 2],
        "tokens_p90": lengths_sorted[int(len(lengths) * 0.9)],
        "tokens_max": lengths_sorted[-1],
        "pairs_over_256_tokens": sum(1 for n in lengths if n > 256),
        "pairs_at_max_length": sum(1 for n in lengths if n >= args.max_length),
        # What padding each request alone would cost: real / (docs x longest pair) per request.
        "request_padding_efficiency": round(
            sum(lengths)
            / sum(
                len(r["documents"]) * max(lengths[i : i + len(r["documents"])])
                for r, i in zip(requests, _offsets(requests), strict=True)
            ),
            3,
        ),
        "fidelity_groups": len(fidelity),
        "fidelity_pairs": sum(len(g["documents"]) for g in fidelity),
    }
    with open(args.out, "w") as f:
        json.dump(
            {"seed": args.seed, "max_length": args.max_length, "pairs": total, "stats": stats,
             "requests": requests, "fidelity_groups": fidelity},
            f,
        )
    print(json.dumps(stats), file=sys.stderr)


def _offsets(requests):
    off = 0
    for r in requests:
        yield off
        off += len(r["documents"])


if __name__ == "__main__":
    main()
