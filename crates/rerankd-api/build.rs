//! Build script: compiles the public protos (`../../proto`, the repository's
//! one copy) with protox (no system `protoc`) and tonic-prost-build, and
//! keeps the file descriptor set for the server's gRPC reflection.
//!
//! It must never download anything, nor know of libtorch: the crate is
//! built by clients (the bench) that have no libtorch at all.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let include = "../../proto";
    let protos = [format!("{include}/rerank/v1/rerank.proto")];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let file_descriptors = protox::compile(&protos, [include])?;
    // Kept for gRPC reflection; `compile_fds` does not write it itself.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rerank_descriptor.bin"),
        prost::Message::encode_to_vec(&file_descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(file_descriptors)?;
    Ok(())
}
