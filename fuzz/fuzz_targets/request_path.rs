//! Fuzz target: protobuf bytes through the server's conversion, validation,
//! tokenizing and queue (`rerankd::fuzzing::request`, which says what it
//! checks), with the real tokenizers of the test models in
//! `RERANKD_TEST_MODELS`. Must never hold checks of its own: the stable
//! tests replay the same entry point.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rerankd::fuzzing::request::RequestPath;

fn path() -> &'static RequestPath {
    static PATH: OnceLock<RequestPath> = OnceLock::new();
    PATH.get_or_init(|| {
        let models = std::env::var_os("RERANKD_TEST_MODELS")
            .map(PathBuf::from)
            .expect("set RERANKD_TEST_MODELS to the folder scripts/setup-models.sh prints");
        RequestPath::load(&models).expect("the test models' tokenizers load")
    })
}

fuzz_target!(|data: &[u8]| {
    path().run(data);
});
