//! The end-to-end tests, one module per area, in one test binary: each
//! integration-test binary links libtorch, so one binary instead of a dozen
//! saves most of a clean build's link time. Servers that `common` shares
//! (one per model and precision) are shared by every area.
//!
//! Owns: the list of areas. Must never: hold tests itself (each area is its
//! own module, with its own `//!` header).

mod common;

mod auth;
mod batcher;
mod bench;
mod binary;
mod cache;
mod clients;
mod contention;
mod exported_models;
mod fuzzing;
mod http;
mod layers;
mod limits;
mod long_documents;
mod progressive;
mod rapid_reset;
mod rerank;
mod score_pairs;
mod serving;
mod status_page;
mod stream;
mod tei;
mod tokenize;
