//! Hugging Face TEI's HTTP shape: `POST /rerank` takes `{query, texts,
//! truncate?, truncation_direction?, raw_scores?, return_text?}` and
//! answers a bare array `[{index, text?, score}]`, best first, one entry per
//! text (TEI has no `top_n`), as TEI's router
//! (`router/src/http/types.rs`, `server.rs`) defines them.
//!
//! Owns: those field names and TEI's defaults (`truncate` true, as TEI's
//! `--auto-truncate`; `truncation_direction` right, spelt `right`/`Right`
//! or `left`/`Left`; `raw_scores` and `return_text` false) and TEI's
//! refusal of empty `texts`. Must never: call `Infer`, rank (results arrive
//! ranked as gRPC's: by raw score, ties in input order), or answer an
//! error itself (its body shape is `error.rs`'s).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::infer::{LongDocuments, RerankQuery, Reranked};
use crate::tokenize::Side;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum TruncationDirection {
    #[serde(alias = "left")]
    Left,
    #[serde(alias = "right")]
    #[default]
    Right,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TeiRequest {
    pub query: String,
    pub texts: Vec<String>,
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub return_text: bool,
}

impl TeiRequest {
    pub fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error> {
        if self.texts.is_empty() {
            // TEI's own words.
            return Err(Error::InvalidArgument("`texts` cannot be empty".into()));
        }
        Ok(RerankQuery {
            query: self.query,
            documents: self.texts,
            top_n: 0,
            return_documents: self.return_text,
            raw_scores: self.raw_scores,
            long: LongDocuments {
                truncate: self.truncate.unwrap_or(true),
                side: match self.truncation_direction {
                    TruncationDirection::Left => Side::Left,
                    TruncationDirection::Right => Side::Right,
                },
                ..LongDocuments::default()
            },
            deadline,
            // TEI's API has no priority: every TEI call is at the normal
            // level.
            priority: 0,
        })
    }
}

/// TEI's `Rank`.
#[derive(Debug, Serialize)]
pub(crate) struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

pub(crate) fn response(reranked: Reranked) -> Vec<Rank> {
    reranked
        .results
        .into_iter()
        .map(|result| Rank {
            index: result.index,
            text: result.document,
            score: result.score,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::parse;

    #[test]
    fn teis_defaults_and_spellings() {
        let request: TeiRequest = parse(br#"{"query": "q", "texts": ["a", "b"]}"#).unwrap();
        let query = request.into_query(None).unwrap();
        assert_eq!(query.top_n, 0);
        assert!(!query.raw_scores && !query.return_documents);
        assert_eq!(query.long, LongDocuments::default());
        for (spelling, side) in [
            ("left", Side::Left),
            ("Left", Side::Left),
            ("right", Side::Right),
        ] {
            let json = format!(
                r#"{{"query": "q", "texts": ["a"], "truncate": false,
                    "truncation_direction": "{spelling}", "raw_scores": true, "return_text": true}}"#
            );
            let query = parse::<TeiRequest>(json.as_bytes())
                .unwrap()
                .into_query(None)
                .unwrap();
            assert_eq!(query.long.side, side);
            assert!(!query.long.truncate && query.raw_scores && query.return_documents);
        }
        let error =
            parse::<TeiRequest>(br#"{"query": "q", "texts": [], "truncation_direction": "up"}"#)
                .unwrap_err()
                .to_string();
        assert!(error.contains("`truncation_direction`"), "{error}");
        let error = parse::<TeiRequest>(br#"{"query": "q", "texts": []}"#)
            .unwrap()
            .into_query(None)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "`texts` cannot be empty");
    }

    #[test]
    fn the_answer_is_a_bare_array_with_text_only_when_asked() {
        let ranked = |text: Option<&str>| Reranked {
            results: vec![crate::infer::RankedDocument {
                index: 2,
                score: 0.5,
                document: text.map(str::to_string),
            }],
            usage: Default::default(),
            timings: Default::default(),
        };
        assert_eq!(
            serde_json::to_value(response(ranked(None))).unwrap(),
            serde_json::json!([{"index": 2, "score": 0.5}])
        );
        assert_eq!(
            serde_json::to_value(response(ranked(Some("c")))).unwrap(),
            serde_json::json!([{"index": 2, "text": "c", "score": 0.5}])
        );
    }
}
