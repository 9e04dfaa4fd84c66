//! Build script: compiles the public protos with protox (no system `protoc`)
//! and tonic-prost-build, and makes the binary find libtorch at run time.
//!
//! It must never download anything: libtorch comes from the project's
//! virtualenv (see scripts/setup-venv.sh) through torch-sys.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    compile_protos()?;
    link_libtorch();
    Ok(())
}

fn compile_protos() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/rerank/v1/rerank.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let file_descriptors = protox::compile(protos, ["proto"])?;
    // Kept for gRPC reflection; `compile_fds` does not write it itself.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rerank_descriptor.bin"),
        prost::Message::encode_to_vec(&file_descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(file_descriptors)?;
    Ok(())
}

/// torch-sys links libtorch but gives the final binary no rpath, and rustc's
/// `--as-needed` drops `libtorch_cuda.so` because no symbol of it is referenced,
/// so CUDA kernels would never register (../shared/TOOLCHAIN.md). Both are
/// fixed here for every binary and test of this package.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    match env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib_dir) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
            if PathBuf::from(&lib_dir).join("libtorch_cuda.so").exists() {
                println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
            }
        }
        Err(_) => println!(
            "cargo:warning=torch-sys did not report its libtorch directory; \
             the binary needs LD_LIBRARY_PATH to find libtorch"
        ),
    }
}
