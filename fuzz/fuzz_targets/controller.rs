//! Fuzz target: readings, successes and out-of-memory errors on the real
//! controller (`rerankd::fuzzing::controller`, which says what it checks).
//! Must never hold checks of its own: the stable tests replay the same
//! entry point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rerankd::fuzzing::controller::run(data);
});
