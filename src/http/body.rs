//! Reading an HTTP request's JSON body: within the body size limit, charged
//! on the in-flight byte budget while it arrives and while it is parsed,
//! and parsed into a route's request type with errors that name the field.
//!
//! Owns: the body limit (413 past `--http-max-body-bytes`, from the
//! `Content-Length` before a byte is read, or as a chunked body passes it),
//! the body's charge (the declared length up front, as `grpc::receive`
//! charges a message at its length prefix, then whatever arrives beyond
//! it), and the JSON errors (400, `{"message"}` naming the path of the
//! field and what was wrong with it; axum's plain-text rejections are never
//! used). Must never: hold a body's bytes uncharged, read past the limit,
//! or care which API the body is for.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::inflight::InflightBytes;

/// Reads `body` whole (at most `limit` bytes, charged on `budget` while
/// held) and parses it as JSON into `T`. The charge ends when this returns:
/// `Infer` charges the request's text itself.
pub(crate) async fn read_json<T: DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: Body,
    budget: &Arc<InflightBytes>,
    limit: usize,
) -> Result<T, Error> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(declared) = declared {
        if declared > limit {
            return Err(too_large(declared, limit));
        }
    }
    let mut charge = budget.charge(declared.unwrap_or(0))?;
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Error::InvalidArgument(format!("the request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let received = bytes.len() + data.len();
        if received > limit {
            return Err(too_large(received, limit));
        }
        if received > charge.bytes() {
            charge.grow(received - charge.bytes())?;
        }
        bytes.extend_from_slice(&data);
    }
    parse(&bytes)
}

/// A body over the limit, naming the limit's flag.
fn too_large(bytes: usize, limit: usize) -> Error {
    Error::TooLarge(format!(
        "the request body is {bytes} bytes or more, over this server's limit of {limit} \
         (--http-max-body-bytes); send fewer or shorter documents"
    ))
}

/// JSON into `T`; an error names the field's path (`documents[2]`,
/// `top_n`) and what was wrong, as serde says it.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." || path.is_empty() {
            Error::InvalidArgument(format!("the request body is not valid: {inner}"))
        } else {
            Error::InvalidArgument(format!("the request body's `{path}` is not valid: {inner}"))
        }
    })?;
    json.end().map_err(|error| {
        Error::InvalidArgument(format!("the request body is not valid: {error}"))
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Request {
        query: String,
        documents: Vec<String>,
        #[serde(default)]
        top_n: Option<usize>,
    }

    fn message(json: &str) -> String {
        parse::<Request>(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn json_errors_name_the_field() {
        let error = message(r#"{"documents": ["a"]}"#);
        assert!(error.contains("missing field `query`"), "{error}");
        let error = message(r#"{"query": "q", "documents": ["a"], "top_n": "3"}"#);
        assert!(
            error.contains("`top_n` is not valid: invalid type"),
            "{error}"
        );
        let error = message(r#"{"query": "q", "documents": ["a", 7]}"#);
        assert!(error.contains("`documents[1]` is not valid"), "{error}");
        let error = message(r#"{"query": "q", "documents": ["a"], "top_n": -1}"#);
        assert!(error.contains("`top_n`"), "{error}");
        let error = message(r#"{"query": "q", "#);
        assert!(error.contains("EOF"), "{error}");
        let error = message(r#"{"query": "q", "documents": []} trailing"#);
        assert!(error.contains("trailing"), "{error}");
        assert!(parse::<Request>(br#"{"query": "q", "documents": [], "extra": 1}"#).is_ok());
    }

    #[tokio::test]
    async fn a_body_is_charged_while_read_and_refused_past_the_limit() {
        let budget = InflightBytes::new(1 << 20);
        let json = r#"{"query": "q", "documents": ["a", "b"]}"#;
        let mut headers = axum::http::HeaderMap::new();
        let request: Request = read_json(&headers, Body::from(json), &budget, 1000)
            .await
            .unwrap();
        assert_eq!(request.documents.len(), 2);
        assert_eq!(budget.used(), 0, "the charge ends once the body is parsed");
        let error = read_json::<Request>(&headers, Body::from(json), &budget, 10)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::TooLarge(_)), "{error:?}");
        assert!(error.to_string().contains("--http-max-body-bytes"));
        headers.insert(header::CONTENT_LENGTH, "5000".parse().unwrap());
        let error = read_json::<Request>(&headers, Body::from(json), &budget, 1000)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("5000 bytes"), "{error}");
        // A declared length past the in-flight budget is refused before reading.
        headers.insert(header::CONTENT_LENGTH, "1000000".parse().unwrap());
        let error = read_json::<Request>(&headers, Body::from(json), &budget, 1 << 21)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::TooLarge(_)), "{error:?}");
    }
}
