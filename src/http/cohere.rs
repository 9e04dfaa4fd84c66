//! The Cohere and Jina shapes: `POST /v1/rerank` (Cohere v1, which Jina's
//! API shares) and `POST /v2/rerank` (Cohere v2), their request and
//! response types as the official Cohere Python SDK reads them
//! (`RerankResponse`, `V2RerankResponse`, `ApiMeta`), and their conversion
//! to and from `infer`'s types.
//!
//! Owns: field names, defaults (`return_documents` false, as Cohere's; no
//! `top_n` = all) and which options become which of rerankd's
//! (`max_chunks_per_doc` -> chunking with the max aggregate, keeping a
//! document's first N windows; `max_tokens_per_doc` -> the per-request
//! document token limit). A field not asked for is left out of the answer,
//! never sent as null. Must never: call `Infer`, rank or normalise (results
//! arrive ranked and normalised, as gRPC's), or answer an error itself.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::Error;
use crate::infer::{self, Chunking, LongDocuments, RerankQuery, Reranked};

/// A document as Cohere v1 and Jina take it: a string, or an object whose
/// `text` is ranked (its other fields are ignored).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    fn into_text(self) -> String {
        match self {
            Document::Text(text) | Document::Object { text } => text,
        }
    }
}

/// `POST /v1/rerank`: Cohere v1 and Jina.
#[derive(Debug, Deserialize)]
pub(crate) struct V1Request {
    #[serde(default)]
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<Document>,
    #[serde(default)]
    pub top_n: Option<usize>,
    #[serde(default)]
    pub return_documents: Option<bool>,
    #[serde(default)]
    pub max_chunks_per_doc: Option<usize>,
    /// Only `["text"]` (or none): rerankd ranks a document's `text`.
    #[serde(default)]
    pub rank_fields: Option<Vec<String>>,
}

/// `POST /v2/rerank`: Cohere v2.
#[derive(Debug, Deserialize)]
pub(crate) struct V2Request {
    pub model: String,
    pub query: String,
    pub documents: Vec<Document>,
    #[serde(default)]
    pub top_n: Option<usize>,
    #[serde(default)]
    pub max_tokens_per_doc: Option<usize>,
    /// The v2 API's first version had it; today's SDK no longer sends it.
    #[serde(default)]
    pub return_documents: Option<bool>,
    /// Cohere's scheduling priority: lower is more urgent (0 by default).
    #[serde(default)]
    pub priority: Option<i64>,
}

/// `top_n` as `infer` takes it (0 = all); Cohere refuses 0.
fn top_n(top_n: Option<usize>) -> Result<usize, Error> {
    match top_n {
        Some(0) => Err(Error::InvalidArgument(
            "top_n is 0; send at least 1, or leave it out for every document".into(),
        )),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}

/// The query v1 and v2 make alike: Cohere's scores are normalised, so
/// `raw_scores` is off.
fn query(
    query: String,
    documents: Vec<Document>,
    top_n_field: Option<usize>,
    return_documents: Option<bool>,
    long: LongDocuments,
    (deadline, priority): (Option<Instant>, i32),
) -> Result<RerankQuery, Error> {
    Ok(RerankQuery {
        query,
        documents: documents.into_iter().map(Document::into_text).collect(),
        top_n: top_n(top_n_field)?,
        return_documents: return_documents.unwrap_or(false),
        raw_scores: false,
        long,
        deadline,
        priority,
    })
}

impl V1Request {
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    pub fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error> {
        if let Some(fields) = &self.rank_fields {
            if fields.iter().any(|field| field != "text") {
                return Err(Error::InvalidArgument(format!(
                    "rank_fields {fields:?} is not supported: rerankd ranks each document's \
                     `text`; leave rank_fields out or send [\"text\"]"
                )));
            }
        }
        let chunking = match self.max_chunks_per_doc {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "max_chunks_per_doc is 0; send at least 1, or leave it out to truncate \
                     long documents"
                        .into(),
                ))
            }
            Some(max_chunks) => Some(Chunking {
                overlap: None,
                aggregate: Aggregate::Max,
                max_chunks: Some(max_chunks),
            }),
            None => None,
        };
        let long = LongDocuments {
            chunking,
            ..LongDocuments::default()
        };
        query(
            self.query,
            self.documents,
            self.top_n,
            self.return_documents,
            long,
            (deadline, 0),
        )
    }
}

impl V2Request {
    pub fn model(&self) -> Option<&str> {
        Some(&self.model)
    }

    pub fn into_query(self, deadline: Option<Instant>) -> Result<RerankQuery, Error> {
        if self.max_tokens_per_doc == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tokens_per_doc is 0; send at least 1, or leave it out for the model's \
                 window"
                    .into(),
            ));
        }
        let long = LongDocuments {
            max_document_tokens: self.max_tokens_per_doc,
            ..LongDocuments::default()
        };
        let priority = infer::priority(self.priority.unwrap_or(0))?;
        query(
            self.query,
            self.documents,
            self.top_n,
            self.return_documents,
            long,
            (deadline, priority),
        )
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct DocumentText {
    pub text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct RerankResult {
    pub index: usize,
    pub relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentText>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ApiVersion {
    pub version: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct BilledUnits {
    /// Cohere's unit: a query with up to 100 documents (each window of a
    /// chunked one counting), so pairs / 100, rounded up.
    pub search_units: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Tokens {
    pub input_tokens: u64,
}

/// Cohere's `ApiMeta`.
#[derive(Debug, Serialize)]
pub(crate) struct Meta {
    pub api_version: ApiVersion,
    pub billed_units: BilledUnits,
    pub tokens: Tokens,
}

/// Jina's `usage`.
#[derive(Debug, Serialize)]
pub(crate) struct Usage {
    pub total_tokens: u64,
}

/// `/v1/rerank`'s answer: Cohere v1's `RerankResponse` with Jina's
/// `model` and `usage`.
#[derive(Debug, Serialize)]
pub(crate) struct V1Response {
    pub id: String,
    pub model: String,
    pub results: Vec<RerankResult>,
    pub meta: Meta,
    pub usage: Usage,
}

/// `/v2/rerank`'s answer: Cohere v2's `V2RerankResponse`.
#[derive(Debug, Serialize)]
pub(crate) struct V2Response {
    pub id: String,
    pub results: Vec<RerankResult>,
    pub meta: Meta,
}

fn results(reranked: &mut Reranked) -> Vec<RerankResult> {
    reranked
        .results
        .iter_mut()
        .map(|result| RerankResult {
            index: result.index,
            relevance_score: result.score,
            document: result.document.take().map(|text| DocumentText { text }),
        })
        .collect()
}

fn meta(version: &'static str, reranked: &Reranked) -> Meta {
    Meta {
        api_version: ApiVersion { version },
        billed_units: BilledUnits {
            search_units: reranked.usage.pairs.div_ceil(100) as u64,
        },
        tokens: Tokens {
            input_tokens: reranked.usage.tokens as u64,
        },
    }
}

pub(crate) fn v1_response(mut reranked: Reranked, id: String, model: String) -> V1Response {
    V1Response {
        id,
        model,
        results: results(&mut reranked),
        meta: meta("1", &reranked),
        usage: Usage {
            total_tokens: reranked.usage.tokens as u64,
        },
    }
}

pub(crate) fn v2_response(mut reranked: Reranked, id: String) -> V2Response {
    V2Response {
        id,
        results: results(&mut reranked),
        meta: meta("2", &reranked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::parse;
    use crate::infer::{RankedDocument, Timings};

    fn reranked(with_documents: bool) -> Reranked {
        Reranked {
            results: vec![
                RankedDocument {
                    index: 1,
                    score: 0.75,
                    document: with_documents.then(|| "b".to_string()),
                },
                RankedDocument {
                    index: 0,
                    score: 0.25,
                    document: with_documents.then(|| "a".to_string()),
                },
            ],
            usage: crate::infer::Usage {
                pairs: 2,
                tokens: 17,
                truncated: 0,
                chunks: 0,
            },
            timings: Timings::default(),
        }
    }

    #[test]
    fn v1_takes_strings_and_objects_and_defaults_like_cohere() {
        let request: V1Request = parse(
            br#"{"query": "q", "documents": ["a", {"text": "b", "title": "t"}], "top_n": 1}"#,
        )
        .unwrap();
        let query = request.into_query(None).unwrap();
        assert_eq!(query.documents, ["a", "b"]);
        assert_eq!(query.top_n, 1);
        assert!(!query.return_documents);
        assert_eq!(query.long, LongDocuments::default());

        let request: V1Request = parse(
            br#"{"model": "m", "query": "q", "documents": ["a"], "return_documents": true,
                 "max_chunks_per_doc": 3}"#,
        )
        .unwrap();
        assert_eq!(request.model(), Some("m"));
        let query = request.into_query(None).unwrap();
        assert!(query.return_documents);
        let chunking = query.long.chunking.unwrap();
        assert_eq!(
            (chunking.max_chunks, chunking.aggregate),
            (Some(3), Aggregate::Max)
        );
    }

    #[test]
    fn v1_and_v2_refuse_what_they_cannot_do_naming_the_field() {
        let v1 = |json: &str| {
            parse::<V1Request>(json.as_bytes())
                .and_then(|r| r.into_query(None))
                .unwrap_err()
                .to_string()
        };
        assert!(v1(r#"{"query": "q", "documents": ["a"], "top_n": 0}"#).contains("top_n is 0"));
        assert!(v1(r#"{"query": "q", "documents": [{"title": "x"}]}"#).contains("documents[0]"));
        assert!(
            v1(r#"{"query": "q", "documents": ["a"], "rank_fields": ["title"]}"#)
                .contains("rank_fields")
        );
        assert!(
            v1(r#"{"query": "q", "documents": ["a"], "max_chunks_per_doc": 0}"#)
                .contains("max_chunks_per_doc is 0")
        );
        let v2 = |json: &str| {
            parse::<V2Request>(json.as_bytes())
                .and_then(|r| r.into_query(None))
                .unwrap_err()
                .to_string()
        };
        assert!(v2(r#"{"query": "q", "documents": ["a"]}"#).contains("missing field `model`"));
        assert!(
            v2(r#"{"model": "m", "query": "q", "documents": ["a"], "max_tokens_per_doc": 0}"#)
                .contains("max_tokens_per_doc is 0")
        );
        let request: V2Request = parse(
            br#"{"model": "m", "query": "q", "documents": ["a"], "max_tokens_per_doc": 7,
                 "priority": 3}"#,
        )
        .unwrap();
        assert_eq!(
            request.into_query(None).unwrap().long.max_document_tokens,
            Some(7)
        );
    }

    #[test]
    fn answers_leave_out_what_was_not_asked_for() {
        let json =
            serde_json::to_value(v1_response(reranked(false), "id".into(), "m".into())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "id",
                "model": "m",
                "results": [
                    {"index": 1, "relevance_score": 0.75},
                    {"index": 0, "relevance_score": 0.25}
                ],
                "meta": {
                    "api_version": {"version": "1"},
                    "billed_units": {"search_units": 1},
                    "tokens": {"input_tokens": 17}
                },
                "usage": {"total_tokens": 17}
            })
        );
        let json = serde_json::to_value(v2_response(reranked(true), "id".into())).unwrap();
        assert_eq!(json["results"][0]["document"]["text"], "b");
        assert_eq!(json["meta"]["api_version"]["version"], "2");
        assert!(json.get("usage").is_none());
    }
}
