//! `PairTokenizer` on the real tokenizer files of the exported models: the
//! pair templates, and truncation that cuts the document side first.

mod common;

use common::model_dir;
use rerankd::tokenize::PairTokenizer;

fn tokenizer(model: &str, max_length: usize) -> PairTokenizer {
    PairTokenizer::from_file(&model_dir(model).join("tokenizer.json"), max_length).unwrap()
}

fn words(count: usize) -> String {
    vec!["paris"; count].join(" ")
}

#[test]
fn bert_pairs_read_cls_query_sep_document_sep_with_segments() {
    let pair = tokenizer("minilm-pair", 512)
        .encode_pair("capital of france", "paris", 0, true)
        .unwrap();
    // [CLS]=101, [SEP]=102 in the MiniLM (BERT uncased) vocabulary.
    assert_eq!(pair.input_ids.first(), Some(&101));
    assert_eq!(pair.input_ids.last(), Some(&102));
    assert_eq!(pair.input_ids.iter().filter(|&&id| id == 102).count(), 2);
    assert_eq!(pair.token_type_ids, [0, 0, 0, 0, 0, 1, 1]);
    assert!(!pair.truncated);
}

#[test]
fn xlmr_pairs_read_s_query_double_sep_document_sep_without_segments() {
    let pair = tokenizer("tiny-xlmr", 512)
        .encode_pair("capital", "paris", 0, true)
        .unwrap();
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
    let whole = tokenizer.encode_pair(query, "paris", 0, true).unwrap();
    let query_tokens = whole.token_type_ids.iter().filter(|&&t| t == 0).count();

    let cut = tokenizer.encode_pair(query, &words(100), 0, true).unwrap();
    assert!(cut.truncated);
    assert_eq!(cut.len(), 32);
    assert_eq!(
        cut.input_ids[..query_tokens],
        whole.input_ids[..query_tokens]
    );
    assert_eq!(cut.input_ids.last(), Some(&102));

    let error = tokenizer
        .encode_pair(query, &words(100), 7, false)
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
    let pair = tokenizer
        .encode_pair(&words(60), "a short document", 0, true)
        .unwrap();
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
        .encode_request("capital", &documents, true)
        .unwrap();
    assert_eq!(encoded.pairs.len(), 3);
    assert_eq!(encoded.truncated, 1);
    // [CLS] capital [SEP] + paris [SEP], the cut pair at the window, and an
    // empty document's [CLS] capital [SEP] [SEP].
    assert_eq!(encoded.pairs[0].len(), 5);
    assert_eq!(encoded.pairs[2].len(), 4);
    assert_eq!(encoded.tokens, 5 + 32 + 4);
}
