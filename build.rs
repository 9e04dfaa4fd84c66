//! Build script: makes the binary find libtorch at run time (the protos are
//! compiled by crates/rerankd-api's build script).
//!
//! It must never download anything: libtorch comes from the project's
//! virtualenv (see scripts/setup-venv.sh) through torch-sys.

use std::env;
use std::path::PathBuf;

fn main() {
    link_libtorch();
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
