//! Fuzz target: scripts of push, remove, expire and cut on the real queue
//! (`rerankd::fuzzing::queue`, which says what it checks). Must never hold
//! checks of its own: the stable tests replay the same entry point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rerankd::fuzzing::queue::run(data);
});
