//! `PairTokenizer` on the real tokenizer files of the exported models: the
//! pair templates, truncation that cuts the document side first on either
//! side (as the Hugging Face tokenizer's own truncation does), and long
//! documents split into overlapping windows.

use crate::common::{model_dir, models_dir};
use rerankd::model::EncodedPair;
use rerankd::tokenize::{Abandon, ChunkPlan, Fit, Overflow, PairTokenizer, Side};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

fn tokenizer(model: &str, max_length: usize) -> PairTokenizer {
    PairTokenizer::from_file(&model_dir(model).join("tokenizer.json"), max_length).unwrap()
}

const RIGHT: Overflow = Overflow::Truncate(Side::Right);

/// Encodes one pair that must come out as one.
fn one(tokenizer: &PairTokenizer, query: &str, document: &str, overflow: Overflow) -> EncodedPair {
    let mut pairs = tokenizer
        .encode_pair(query, document, 0, tokenizer.fit(overflow))
        .unwrap();
    assert_eq!(pairs.len(), 1);
    pairs.remove(0)
}

fn words(count: usize) -> String {
    vec!["paris"; count].join(" ")
}

#[test]
fn bert_pairs_read_cls_query_sep_document_sep_with_segments() {
    let pair = one(
        &tokenizer("minilm-pair", 512),
        "capital of france",
        "paris",
        RIGHT,
    );
    // [CLS]=101, [SEP]=102 in the MiniLM (BERT uncased) vocabulary.
    assert_eq!(pair.input_ids.first(), Some(&101));
    assert_eq!(pair.input_ids.last(), Some(&102));
    assert_eq!(pair.input_ids.iter().filter(|&&id| id == 102).count(), 2);
    assert_eq!(pair.token_type_ids, [0, 0, 0, 0, 0, 1, 1]);
    assert!(!pair.truncated);
}

#[test]
fn xlmr_pairs_read_s_query_double_sep_document_sep_without_segments() {
    let pair = one(&tokenizer("tiny-xlmr", 512), "capital", "paris", RIGHT);
    // <s>=0, </s>=2 in the test tokenizer, as in XLM-RoBERTa.
    let ids = &pair.input_ids;
    assert_eq!(ids.first(), Some(&0));
    assert_eq!(ids.last(), Some(&2));
    let separators: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == 2).collect();
    assert_eq!(separators.len(), 3, "{ids:?}");
    assert_eq!(
        separators[1],
        separators[0] + 1,
        "</s></s> between the texts: {ids:?}"
    );
    assert!(pair.token_type_ids.iter().all(|&t| t == 0));
}

#[test]
fn truncation_cuts_the_document_and_keeps_the_query() {
    let tokenizer = tokenizer("minilm-pair", 32);
    let query = "what is the capital of france";
    let whole = one(&tokenizer, query, "paris", RIGHT);
    let query_tokens = whole.token_type_ids.iter().filter(|&&t| t == 0).count();

    let cut = one(&tokenizer, query, &words(100), RIGHT);
    assert!(cut.truncated);
    assert_eq!(cut.len(), 32);
    assert_eq!(
        cut.input_ids[..query_tokens],
        whole.input_ids[..query_tokens]
    );
    assert_eq!(cut.input_ids.last(), Some(&102));

    let error = tokenizer
        .encode_pair(query, &words(100), 7, tokenizer.fit(Overflow::Refuse))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("document 7 makes a pair of 109 tokens"),
        "{error}"
    );
}

#[test]
fn a_query_that_fills_the_window_alone_is_cut_too() {
    let tokenizer = tokenizer("minilm-pair", 32);
    let pair = one(&tokenizer, &words(60), "a short document", RIGHT);
    assert!(pair.truncated);
    assert_eq!(pair.len(), 32);
    // The document keeps at least one token besides its closing [SEP].
    let document_tokens = pair.token_type_ids.iter().filter(|&&t| t == 1).count();
    assert!(document_tokens >= 2, "{pair:?}");
    let query_tokens = pair.len() - document_tokens;
    assert!(query_tokens < 32 && query_tokens > 16, "{pair:?}");
}

#[test]
fn a_request_counts_tokens_and_truncations() {
    let tokenizer = tokenizer("minilm-pair", 32);
    let documents = vec!["paris".to_string(), words(100), String::new()];
    let encoded = tokenizer
        .encode_request(
            "capital",
            &documents,
            tokenizer.fit(RIGHT),
            &Abandon::default(),
        )
        .unwrap();
    assert_eq!(encoded.pairs.len(), 3);
    assert_eq!(encoded.truncated, 1);
    // [CLS] capital [SEP] + paris [SEP], the cut pair at the window, and an
    // empty document's [CLS] capital [SEP] [SEP].
    assert_eq!(encoded.pairs[0].len(), 5);
    assert_eq!(encoded.pairs[2].len(), 4);
    assert_eq!(encoded.tokens, 5 + 32 + 4);
}

/// What the Hugging Face tokenizer itself makes of a pair with truncation
/// on: only the document cut, on `side`.
fn hugging_face_truncation(
    model: &str,
    max_length: usize,
    side: Side,
    q: &str,
    d: &str,
) -> Vec<i64> {
    let mut reference = Tokenizer::from_file(model_dir(model).join("tokenizer.json")).unwrap();
    reference.with_padding(None);
    reference
        .with_truncation(Some(TruncationParams {
            max_length,
            strategy: TruncationStrategy::OnlySecond,
            stride: 0,
            direction: match side {
                Side::Right => TruncationDirection::Right,
                Side::Left => TruncationDirection::Left,
            },
        }))
        .unwrap();
    let encoding = reference.encode((q, d), true).unwrap();
    encoding.get_ids().iter().map(|&id| i64::from(id)).collect()
}

#[test]
fn truncation_on_either_side_matches_the_hugging_face_tokenizer() {
    let document = "the river flows through the old town before it reaches the sea, \
                    and the market opens at nine in the morning on saturday";
    for model in ["minilm-pair", "tiny-xlmr"] {
        let tokenizer = tokenizer(model, 16);
        for side in [Side::Right, Side::Left] {
            let ours = one(
                &tokenizer,
                "where is the market",
                document,
                Overflow::Truncate(side),
            );
            assert!(ours.truncated);
            assert_eq!(
                ours.input_ids,
                hugging_face_truncation(model, 16, side, "where is the market", document),
                "{model} {side:?}"
            );
        }
        // The two sides keep different ends of the document.
        let right = one(
            &tokenizer,
            "where is the market",
            document,
            Overflow::Truncate(Side::Right),
        );
        let left = one(
            &tokenizer,
            "where is the market",
            document,
            Overflow::Truncate(Side::Left),
        );
        assert_ne!(right.input_ids, left.input_ids, "{model}");
    }
}

#[test]
fn pairs_that_fit_are_the_same_whatever_the_overflow_rule() {
    let tokenizer = tokenizer("minilm-pair", 512);
    let plan = Overflow::Chunk(ChunkPlan {
        overlap: None,
        max_chunks: 4,
        keep_first: false,
    });
    for overflow in [
        RIGHT,
        Overflow::Truncate(Side::Left),
        Overflow::Refuse,
        plan,
    ] {
        let pair = one(
            &tokenizer,
            "capital of france",
            "paris is its capital",
            overflow,
        );
        assert!(!pair.truncated);
        assert_eq!(
            pair,
            one(
                &tokenizer,
                "capital of france",
                "paris is its capital",
                RIGHT
            )
        );
    }
}

/// The document's tokens in a BERT pair: between the first [SEP] and the last.
fn document_ids(pair: &EncodedPair) -> Vec<i64> {
    pair.input_ids
        .iter()
        .zip(&pair.token_type_ids)
        .filter(|(_, &segment)| segment == 1)
        .map(|(&id, _)| id)
        .collect::<Vec<_>>()
        .split_last()
        .map(|(_sep, ids)| ids.to_vec())
        .unwrap()
}

#[test]
fn chunking_covers_the_document_in_overlapping_windows_with_the_whole_query() {
    let tokenizer = tokenizer("minilm-pair", 32);
    // "paris" is one token; the query is 3 tokens and the template adds 3,
    // so each window has 26 tokens of document.
    let query = "capital of france";
    let document: Vec<String> = (0..100)
        .map(|i| ["paris", "river", "city"][i % 3].to_string())
        .collect();
    let document = document.join(" ");
    let whole = tokenizer
        .encode_pair(
            query,
            &document,
            0,
            Fit {
                max_length: 1000,
                overflow: Overflow::Refuse,
                max_document_tokens: None,
            },
        )
        .unwrap()
        .remove(0);
    let all = document_ids(&whole);
    assert_eq!(all.len(), 100);
    let plan = |overlap| {
        Overflow::Chunk(ChunkPlan {
            overlap,
            max_chunks: 64,
            keep_first: false,
        })
    };
    for (overlap, expected_windows) in [(Some(6), 5), (Some(0), 4), (None, 5)] {
        let windows = tokenizer
            .encode_pair(query, &document, 3, tokenizer.fit(plan(overlap)))
            .unwrap();
        assert_eq!(windows.len(), expected_windows, "overlap {overlap:?}");
        let overlap = overlap.unwrap_or(26 / 4);
        let mut start = 0;
        for (w, window) in windows.iter().enumerate() {
            assert!(window.len() <= 32);
            assert!(!window.truncated);
            // Each window starts with the whole query, as the pair does.
            assert_eq!(window.input_ids[..5], whole.input_ids[..5]);
            let ids = document_ids(window);
            let end = (start + 26).min(100);
            assert_eq!(ids, all[start..end], "window {w} overlap {overlap}");
            start += 26 - overlap;
        }
    }
}

#[test]
fn chunking_refuses_what_it_cannot_window() {
    let tokenizer = tokenizer("minilm-pair", 32);
    let document = words(100);
    let chunk = |query: &str, overlap, max_chunks| {
        tokenizer
            .encode_pair(
                query,
                &document,
                4,
                tokenizer.fit(Overflow::Chunk(ChunkPlan {
                    overlap,
                    max_chunks,
                    keep_first: false,
                })),
            )
            .unwrap_err()
            .to_string()
    };
    let error = chunk("capital of france", Some(26), 64);
    assert!(error.contains("document 4 cannot be chunked"), "{error}");
    assert!(error.contains("leaving 26 per window"), "{error}");
    let error = chunk(&words(40), None, 64);
    assert!(error.contains("cannot be chunked"), "{error}");
    let error = chunk("capital of france", Some(0), 3);
    assert!(error.contains("needs 4 windows"), "{error}");
    assert!(error.contains("--max-chunks-per-document"), "{error}");
}

#[test]
fn a_request_counts_the_windows_of_its_chunked_documents() {
    let tokenizer = tokenizer("minilm-pair", 32);
    let documents = vec!["paris".to_string(), words(100), words(10)];
    let fit = tokenizer.fit(Overflow::Chunk(ChunkPlan {
        overlap: Some(0),
        max_chunks: 8,
        keep_first: false,
    }));
    let encoded = tokenizer
        .encode_request("capital", &documents, fit, &Abandon::default())
        .unwrap();
    // words(100) is 100 tokens; with a 1-token query each window holds 28.
    assert_eq!(encoded.inputs, 3);
    assert_eq!(encoded.pairs.len(), 1 + 4 + 1);
    assert_eq!(encoded.owners, [0, 1, 1, 1, 1, 2]);
    assert_eq!(encoded.chunks, 4);
    assert_eq!(encoded.truncated, 0);
    assert!(encoded.is_chunked());
}

/// Texts that stress where a cut may fall: accents, CJK, emoji, digits,
/// punctuation glued to words, runs of spaces, tabs, newlines, no-break
/// spaces, and words over 100 characters (WordPiece makes one [UNK] of
/// them, so a cut inside one would change its tokens).
fn hostile_text(seed: u64, bytes: usize) -> String {
    const PIECES: &[&str] = &[
        "the",
        "market",
        "river",
        "Paris",
        "café",
        "naïve",
        "東京",
        "タワー",
        "🎉",
        "2026",
        "3.14",
        "don't",
        "(see",
        "below)",
        "e-mail",
        "mix,",
        "end.",
        "Über",
        "straße",
        "\u{a0}",
        "  ",
        "\t",
        "\n",
        "—",
        "ﬁne",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut text = String::new();
    while text.len() < bytes {
        match next() % 40 {
            0 => text.push_str(&"x".repeat(90 + next() % 40)),
            1 => text.push_str(&"ab".repeat(60)),
            _ => text.push_str(PIECES[next() % PIECES.len()]),
        }
        if next() % 6 != 0 {
            text.push(' ');
        }
    }
    text
}

#[test]
fn a_long_document_cut_on_either_side_matches_the_whole_documents_truncation() {
    // The tokenizer reads only a prefix (a suffix, cut on the left) of such
    // a document; the result must be what cutting the whole document's
    // tokens gives.
    let query = "where is the market in the old town";
    for (side, overflow) in [
        (Side::Right, RIGHT),
        (Side::Left, Overflow::Truncate(Side::Left)),
    ] {
        for model in ["minilm-pair", "tiny-bert", "tiny-xlmr"] {
            for max_length in [16, 64, 512] {
                let tokenizer = tokenizer(model, max_length);
                for seed in 0..25 {
                    let bytes = [200, 3_000, 9_000, 40_000][seed as usize % 4];
                    let document = hostile_text(seed, bytes);
                    let ours = one(&tokenizer, query, &document, overflow);
                    let reference =
                        hugging_face_truncation(model, max_length, side, query, &document);
                    assert_eq!(
                        ours.input_ids, reference,
                        "{side:?}, {model}, window {max_length}, seed {seed}: {document:?}"
                    );
                    let fits = tokenizer
                        .encode_pair(query, &document, 0, tokenizer.fit(Overflow::Refuse))
                        .is_ok();
                    assert_eq!(
                        ours.truncated, !fits,
                        "{side:?}, {model}, window {max_length}, seed {seed}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_abandoned_request_stops_before_its_next_document() {
    let tokenizer = tokenizer("minilm-pair", 32);
    let documents = vec![words(10); 3];
    let fit = tokenizer.fit(RIGHT);
    // The request's future was dropped (client gone): nothing more is
    // tokenized.
    let (abandon, on_drop) = Abandon::new(None);
    assert!(tokenizer
        .encode_request("capital", &documents, fit, &abandon)
        .is_ok());
    drop(on_drop);
    let gone = tokenizer.encode_request("capital", &documents, fit, &abandon);
    assert!(matches!(gone, Err(rerankd::Error::Cancelled)), "{gone:?}");
    let pairs = vec![("capital".to_string(), words(10))];
    assert!(matches!(
        tokenizer.encode_pairs(&pairs, fit, &abandon),
        Err(rerankd::Error::Cancelled)
    ));
    // Its deadline has passed.
    let (late, _on_drop) = Abandon::new(Some(std::time::Instant::now()));
    assert!(matches!(
        tokenizer.encode_request("capital", &documents, fit, &late),
        Err(rerankd::Error::DeadlineExceeded)
    ));
}

/// `rerankd::token_bound` (admission's estimate before tokenizing) is a
/// lower bound for every test model's tokenizer, on texts that tokenize
/// short: long words, punctuation runs, CJK without spaces, a huge word
/// WordPiece turns into one [UNK].
#[test]
fn the_token_bound_never_exceeds_what_real_tokenizers_make() {
    let dir = models_dir();
    let texts = [
        "internationalization antidisestablishmentarianism".to_string(),
        "!!! ??? ... ,,, ;;;".to_string(),
        "東京は日本の首都です。大阪は大きな都市です。".to_string(),
        "x".repeat(5000),
        "the quick brown fox jumps over the lazy dog ".repeat(50),
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("the test models directory") {
        let file = entry
            .expect("a directory entry")
            .path()
            .join("tokenizer.json");
        if !file.is_file() {
            continue;
        }
        let mut tokenizer = Tokenizer::from_file(&file).expect("a tokenizer");
        tokenizer.with_truncation(None).expect("truncation off");
        for query in &texts {
            for document in &texts {
                let encoding = tokenizer
                    .encode((query.as_str(), document.as_str()), true)
                    .expect("encodes");
                let real = encoding.get_ids().len();
                let bound = rerankd::token_bound::rerank_tokens_at_least(
                    query,
                    [document],
                    usize::MAX,
                    None,
                );
                assert!(
                    bound <= real,
                    "{}: bound {bound} over {real} tokens for {query:.20?} / {document:.20?}",
                    file.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no tokenizer.json under RERANKD_TEST_MODELS");
}
