//! Build script: compiles the public protos (`../../proto`, the repository's
//! one copy) and the vendored TEI API (`proto/tei/tei.proto`, unchanged from
//! text-embeddings-inference) with protox (no system `protoc`) and
//! tonic-prost-build, and keeps a file descriptor set of each for the
//! server's gRPC reflection.
//!
//! It must never download anything, nor know of libtorch: the crate is
//! built by clients (the bench) that have no libtorch at all. Nor may it
//! change what `tei.proto` says on the wire: only the reflection copy of its
//! descriptor is trimmed, to the services rerankd serves.

use std::env;
use std::path::{Path, PathBuf};

use prost::Message;

/// The TEI services rerankd serves; reflection lists only these of
/// `tei.proto`'s (Embed, Predict and Tokenize are not served).
const TEI_SERVED: [&str; 2] = ["Info", "Rerank"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let include = "../../proto";
    let protos = [format!("{include}/rerank/v1/rerank.proto")];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let file_descriptors = protox::compile(&protos, [include])?;
    // Kept for gRPC reflection; `compile_fds` does not write it itself.
    write(&out_dir.join("rerank_descriptor.bin"), &file_descriptors)?;
    tonic_prost_build::configure().compile_fds(file_descriptors)?;

    let tei_include = "proto/tei";
    let tei_proto = format!("{tei_include}/tei.proto");
    println!("cargo:rerun-if-changed={tei_proto}");
    let tei = protox::compile([&tei_proto], [tei_include])?;
    let mut served = tei.clone();
    for file in &mut served.file {
        file.service
            .retain(|service| TEI_SERVED.contains(&service.name()));
    }
    write(&out_dir.join("tei_descriptor.bin"), &served)?;
    tonic_prost_build::configure().compile_fds(tei)?;
    Ok(())
}

fn write(path: &Path, set: &impl Message) -> std::io::Result<()> {
    std::fs::write(path, set.encode_to_vec())
}
