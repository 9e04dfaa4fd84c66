//! API keys: the keys the server accepts (`--api-key`, `RERANKD_API_KEY`,
//! `--api-key-file`), and the one check of a call's
//! `authorization: Bearer <key>` against them, for gRPC (an interceptor
//! that wraps any service: `ApiKeys::guard`) and for HTTP (an axum
//! middleware on the routes given to `ApiKeys::guard_routes`).
//!
//! The comparison is constant-time in the keys: the presented token is
//! hashed with SHA-256 and its digest compared, with `subtle`'s
//! constant-time equality, against the digest of every configured key, all
//! of them, the results OR-ed together with no early exit. What a call's
//! timing can depend on is the length of the token it sent (which its
//! sender knows) and how many keys are configured; never on how many bytes
//! of a key it got right, nor on a key's length (every digest is 32 bytes,
//! where a byte-wise comparison would stop at a length mismatch). Only the
//! digests are kept: the server holds no key after start-up.
//!
//! With no key configured, every call passes, as before keys existed.
//!
//! Owns: the key set, reading it, parsing `Bearer`, the comparison, and
//! refusing a call (`Error::Unauthenticated`, UNAUTHENTICATED / 401 through
//! the one mapping). Must never: log, format or return a key or a presented
//! token (`ApiKey` and `KeySource` print as `<redacted>`, a refusal names
//! the header, never its value), compare with an early exit, or guard
//! grpc.health.v1 (health stays open: orchestrators probe without a key;
//! `serving` decides which services are guarded).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;

use crate::error::Error;

/// The header a key travels in, as gRPC metadata and as an HTTP header.
pub const HEADER: &str = "authorization";

/// One API key as configured: never printed (its `Debug` says
/// `<redacted>`). Parsing refuses a key that could not travel in a header:
/// empty, or holding anything but visible ASCII (no spaces).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = KeyError;

    fn from_str(key: &str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::NotVisibleAscii);
        }
        Ok(ApiKey(key.to_string()))
    }
}

/// Why a configured key was refused. Never carries the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    // clap hands an empty RERANKD_API_KEY to the parser as one empty key:
    // a deployment whose secret did not arrive stops here rather than
    // serving with no key.
    #[error(
        "an API key may not be empty (is RERANKD_API_KEY set but empty, or does it hold a \
         doubled or trailing comma?)"
    )]
    Empty,
    #[error(
        "an API key may hold only visible ASCII characters (no spaces or control characters), \
         since it travels in an HTTP header"
    )]
    NotVisibleAscii,
}

/// Where the keys come from, as the flags give them: the keys themselves
/// and a file of more. `ApiKeys::load` reads the file (start-up, before a
/// model is taken in, as TLS files are read). Prints as `<redacted>` when
/// it holds keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeySource {
    pub keys: Vec<ApiKey>,
    /// One key a line; blank lines and lines starting with `#` skipped.
    pub file: Option<PathBuf>,
}

impl KeySource {
    /// A source of these keys and no file (tests, embedding).
    pub fn keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<KeySource, KeyError> {
        Ok(KeySource {
            keys: keys.into_iter().map(str::parse).collect::<Result<_, _>>()?,
            file: None,
        })
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field("keys", &self.keys.len())
            .field("file", &self.file)
            .finish()
    }
}

/// The keys a server accepts, as SHA-256 digests. Cheap to clone (one
/// `Arc`); empty means open.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Arc<[[u8; 32]]>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

/// Why a call was refused; what the client reads, so it names the header
/// and never what the header held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this server requires an API key: send the header `authorization: Bearer <key>`")]
    Missing,
    #[error("the `authorization` header must read `Bearer <key>`")]
    Malformed,
    #[error("the API key in the `authorization` header is not one this server accepts")]
    Unknown,
}

impl ApiKeys {
    /// Reads `source`: its keys, then its file's. A file that cannot be
    /// read, holds a bad key, or holds no key at all fails start-up
    /// (`Error::Config`, naming the file and the line, never the key).
    pub fn load(source: &KeySource) -> Result<ApiKeys, Error> {
        let mut keys = source.keys.clone();
        if let Some(path) = &source.file {
            keys.extend(read_key_file(path)?);
        }
        Ok(ApiKeys::from_keys(&keys))
    }

    fn from_keys(keys: &[ApiKey]) -> ApiKeys {
        let mut digests: Vec<[u8; 32]> = keys.iter().map(|k| digest(k.0.as_bytes())).collect();
        // The same key given twice (a flag and the file) is one key.
        digests.sort_unstable();
        digests.dedup();
        ApiKeys {
            digests: digests.into(),
        }
    }

    /// How many distinct keys are accepted; 0 means every call passes.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Whether a call whose `authorization` header holds `header` (or
    /// none) may pass. Always passes when no key is configured.
    pub fn check(&self, header: Option<&[u8]>) -> Result<(), Refusal> {
        if self.digests.is_empty() {
            return Ok(());
        }
        let token = bearer_token(header.ok_or(Refusal::Missing)?).ok_or(Refusal::Malformed)?;
        let presented = digest(token);
        // Every key is compared, whatever the earlier ones gave: no early
        // exit, and `Choice` keeps the compiler from adding one.
        let mut matched = Choice::from(0u8);
        for key in self.digests.iter() {
            matched |= key.ct_eq(&presented);
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Refusal::Unknown)
        }
    }

    /// `service` behind this key set: a call without an accepted key gets
    /// UNAUTHENTICATED before its message is read. One line per service in
    /// `serving`; any tonic service fits.
    pub fn guard<S: NamedService>(&self, service: S) -> InterceptedService<S, RequireKey> {
        InterceptedService::new(
            service,
            RequireKey {
                keys: self.clone(),
                service: S::NAME,
            },
        )
    }

    /// `routes` behind this key set: a request without an accepted key
    /// gets 401 with a JSON `{"message"}` body and `WWW-Authenticate:
    /// Bearer`. Only the routes given are guarded (a `route_layer`, so an
    /// unknown path is still 404); merge the open ones (health, metrics)
    /// after.
    pub fn guard_routes<S>(&self, routes: axum::Router<S>) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        routes.route_layer(axum::middleware::from_fn_with_state(
            self.clone(),
            require_key_http,
        ))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of `Bearer <token>`: the scheme in any case, one or more
/// spaces, a token with no spaces in it. `None` for anything else.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let space = header.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = header.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty() && !token.contains(&b' ')).then_some(token)
}

/// The keys of a key file: one a line, surrounding whitespace trimmed
/// (so CRLF files work), blank lines and `#` comments skipped.
fn read_key_file(path: &Path) -> Result<Vec<ApiKey>, Error> {
    let config_error =
        |what: String| Error::Config(format!("--api-key-file {}: {what}", path.display()));
    let text =
        std::fs::read_to_string(path).map_err(|e| config_error(format!("cannot be read: {e}")))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line
            .parse::<ApiKey>()
            .map_err(|e| config_error(format!("line {}: {e}", number + 1)))?;
        keys.push(key);
    }
    if keys.is_empty() {
        // An empty file would otherwise leave the server open, which is
        // surely not what naming a key file meant.
        return Err(config_error("holds no key".into()));
    }
    Ok(keys)
}

/// The gRPC interceptor `ApiKeys::guard` installs. On a pass it removes
/// the `authorization` entry, so the handlers never see a key.
#[derive(Clone)]
pub struct RequireKey {
    keys: ApiKeys,
    /// The guarded service, for the refusal's log line.
    service: &'static str,
}

impl tonic::service::Interceptor for RequireKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if self.keys.is_empty() {
            return Ok(request);
        }
        let header = request.metadata().get(HEADER).map(|v| v.as_bytes());
        match self.keys.check(header) {
            Ok(()) => {
                request.metadata_mut().remove(HEADER);
                Ok(request)
            }
            Err(refusal) => {
                tracing::info!(service = self.service, reason = ?refusal, "refused a call without an accepted API key");
                Err(tonic::Status::from(Error::Unauthenticated(refusal)))
            }
        }
    }
}

/// The HTTP middleware of `ApiKeys::guard_routes`. On a pass it removes the
/// `Authorization` header, so the handlers never see a key.
async fn require_key_http(
    axum::extract::State(keys): axum::extract::State<ApiKeys>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match keys.check(header) {
        Ok(()) => {
            request
                .headers_mut()
                .remove(axum::http::header::AUTHORIZATION);
            next.run(request).await
        }
        Err(refusal) => {
            tracing::info!(path = request.uri().path(), reason = ?refusal, "refused a call without an accepted API key");
            unauthorized(Error::Unauthenticated(refusal))
        }
    }
}

/// 401 with `{"message"}` and `WWW-Authenticate: Bearer`, through the
/// HTTP port's one mapping of `Error`.
fn unauthorized(error: Error) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::http::error::ApiError {
        error,
        shape: crate::http::error::Shape::Message,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> ApiKeys {
        ApiKeys::load(&KeySource::keys(list.iter().copied()).unwrap()).unwrap()
    }

    /// One table of headers and what `check` makes of them.
    fn check(keys: &ApiKeys, header: Option<&str>, expected: Result<(), Refusal>) {
        assert_eq!(
            keys.check(header.map(str::as_bytes)),
            expected,
            "header {header:?}"
        );
    }

    #[test]
    fn bearer_tokens_are_checked_against_every_key() {
        let two = keys(&["first-key", "second-key"]);
        assert_eq!(two.len(), 2);
        check(&two, Some("Bearer first-key"), Ok(()));
        check(&two, Some("Bearer second-key"), Ok(()));
        check(&two, Some("bearer second-key"), Ok(()));
        check(&two, Some("BEARER  first-key "), Ok(()));
        check(&two, None, Err(Refusal::Missing));
        check(&two, Some("Bearer third-key"), Err(Refusal::Unknown));
        check(&two, Some("Bearer first-ke"), Err(Refusal::Unknown));
        check(&two, Some("Bearer first-key2"), Err(Refusal::Unknown));
        check(&two, Some("first-key"), Err(Refusal::Malformed));
        check(&two, Some("Basic first-key"), Err(Refusal::Malformed));
        check(&two, Some("Bearer "), Err(Refusal::Malformed));
        check(&two, Some("Bearer first-key x"), Err(Refusal::Malformed));
        check(&two, Some(""), Err(Refusal::Malformed));
    }

    #[test]
    fn no_key_configured_is_open() {
        let open = ApiKeys::load(&KeySource::default()).unwrap();
        assert!(open.is_empty());
        check(&open, None, Ok(()));
        check(&open, Some("Bearer anything"), Ok(()));
    }

    #[test]
    fn bad_keys_are_refused_and_keys_never_print() {
        assert_eq!("".parse::<ApiKey>(), Err(KeyError::Empty));
        assert_eq!("a b".parse::<ApiKey>(), Err(KeyError::NotVisibleAscii));
        assert_eq!("clé".parse::<ApiKey>(), Err(KeyError::NotVisibleAscii));
        let source = KeySource::keys(["secret-one", "secret-two"]).unwrap();
        let printed = format!(
            "{source:?} {:?} {:?}",
            source.keys,
            ApiKeys::load(&source).unwrap()
        );
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("keys: 2"), "{printed}");
        for refusal in [Refusal::Missing, Refusal::Malformed, Refusal::Unknown] {
            assert!(refusal.to_string().contains("authorization"), "{refusal}");
        }
    }

    #[test]
    fn key_files_skip_blanks_and_comments_and_refuse_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            KeySource {
                keys: vec!["from-flag".parse().unwrap()],
                file: Some(path),
            }
        };
        let loaded = ApiKeys::load(&file(
            "keys",
            "# team A\nkey-a\r\n\n   \n  key-b  \n#key-c\nfrom-flag\n",
        ))
        .unwrap();
        assert_eq!(loaded.len(), 3, "the flag's key and a and b, once each");
        check(&loaded, Some("Bearer key-a"), Ok(()));
        check(&loaded, Some("Bearer key-b"), Ok(()));
        check(&loaded, Some("Bearer from-flag"), Ok(()));
        check(&loaded, Some("Bearer #key-c"), Err(Refusal::Unknown));

        let refused = |source: KeySource, fragment: &str| {
            let error = ApiKeys::load(&source).unwrap_err().to_string();
            assert!(error.contains(fragment), "{error}");
            assert!(error.contains("--api-key-file"), "{error}");
            assert!(
                !error.contains("inner space"),
                "the key was echoed: {error}"
            );
        };
        refused(file("empty", "# nothing here\n\n"), "holds no key");
        refused(file("spaced", "good\nan inner space\n"), "line 2");
        refused(
            KeySource {
                keys: vec![],
                file: Some(dir.path().join("absent")),
            },
            "cannot be read",
        );
    }

    #[test]
    fn the_grpc_interceptor_refuses_with_unauthenticated_and_strips_the_key() {
        use tonic::service::Interceptor;
        let mut guard = RequireKey {
            keys: keys(&["right-key"]),
            service: "test.Service",
        };
        let call = |value: Option<&str>| {
            let mut request = tonic::Request::new(());
            if let Some(value) = value {
                request
                    .metadata_mut()
                    .insert(HEADER, value.parse().unwrap());
            }
            request
        };
        let passed = guard.call(call(Some("Bearer right-key"))).unwrap();
        assert!(passed.metadata().get(HEADER).is_none());
        for (value, fragment) in [
            (None, "requires an API key"),
            (Some("Bearer wrong-key"), "not one this server accepts"),
        ] {
            let status = guard.call(call(value)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert!(status.message().contains(fragment), "{status:?}");
            assert!(!status.message().contains("wrong-key"), "{status:?}");
        }
    }

    #[tokio::test]
    async fn the_http_middleware_answers_401_json_on_guarded_routes_only() {
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;
        let keys = keys(&["right-key"]);
        let app = keys
            .guard_routes(
                axum::Router::new().route("/v1/rerank", axum::routing::post(|| async { "ranked" })),
            )
            .route("/health", axum::routing::get(|| async { "ok" }));
        let send = |path: &str, key: Option<&str>| {
            let mut request = Request::post(path);
            if path == "/health" {
                request = Request::get(path);
            }
            if let Some(key) = key {
                request = request.header("Authorization", key);
            }
            app.clone()
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
        };
        let body = |response: axum::response::Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        };

        let ok = send("/v1/rerank", Some("Bearer right-key")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await, "ranked");
        for key in [None, Some("Bearer wrong-key"), Some("right-key")] {
            let refused = send("/v1/rerank", key).await.unwrap();
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{key:?}");
            assert_eq!(refused.headers()["www-authenticate"], "Bearer");
            assert_eq!(refused.headers()["content-type"], "application/json");
            let text = body(refused).await;
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(
                json["message"].as_str().unwrap().contains("authorization"),
                "{text}"
            );
            assert!(
                !text.contains("wrong-key") && !text.contains("right-key"),
                "{text}"
            );
        }
        let health = send("/health", None).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let unknown = send("/nowhere", None).await.unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }
}
