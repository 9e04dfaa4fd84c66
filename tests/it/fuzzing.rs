//! The fuzz targets' stable side, run by `cargo test`: the request path
//! with generated and mangled requests through the real tokenizers, and a
//! replay of every input committed under `fuzz/seeds/` (the minimised
//! corpora the coverage-guided runs grew, and each input that found a
//! bug) through the same entry points the targets call. The queue and
//! controller scripts' own property tests live beside their code, in
//! `src/fuzzing/`.
//!
//! Owns: these replays and the request path's property test. Must never:
//! check a promise of its own (the entry points in `rerankd::fuzzing` do),
//! or need the nightly toolchain.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rerankd::fuzzing::request::{generated, Outcome, RequestPath};
use rerankd::fuzzing::{cases, controller, queue, seeded_bytes};

use crate::common::models_dir;

fn request_path() -> &'static RequestPath {
    static PATH: OnceLock<RequestPath> = OnceLock::new();
    PATH.get_or_init(|| RequestPath::load(&models_dir()).unwrap())
}

/// Counts of how inputs ended, by kind.
#[derive(Debug, Default)]
struct Tally {
    not_protobuf: usize,
    refused: usize,
    batched: usize,
    truncated: usize,
    chunked: usize,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::NotProtobuf => self.not_protobuf += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Batched {
                truncated, chunked, ..
            } => {
                self.batched += 1;
                self.truncated += usize::from(truncated > 0);
                self.chunked += usize::from(chunked);
            }
        }
    }
}

/// `RERANKD_FUZZ_SEEDS_OUT`, when set, also receives each generated input
/// (how fuzz/seeds/request_path was first seeded).
fn keep_seed(seed: u64, input: &[u8]) {
    if let Some(dir) = std::env::var_os("RERANKD_FUZZ_SEEDS_OUT") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("generated-{seed}")), input).unwrap();
    }
}

#[test]
fn generated_requests_are_refused_or_batched_within_the_promises() {
    let path = request_path();
    let mut tally = Tally::default();
    for seed in 0..cases(600) {
        let input = generated(seed);
        keep_seed(seed, &input);
        tally.add(path.run(&input));
    }
    eprintln!("request path, generated: {tally:?}");
    // Every way through is taken: refused, truncated, chunked.
    assert_eq!(tally.not_protobuf, 0, "{tally:?}");
    assert!(tally.refused > 20, "{tally:?}");
    assert!(tally.truncated > 20, "{tally:?}");
    assert!(tally.chunked > 20, "{tally:?}");
}

#[test]
fn mangled_requests_never_panic() {
    let path = request_path();
    let mut tally = Tally::default();
    for seed in 0..cases(600) {
        let mut input = generated(seed);
        // Flip, drop or overwrite bytes of a well-formed request.
        let noise = seeded_bytes(seed ^ 0x5eed, 64);
        for pair in noise.chunks(3) {
            if input.is_empty() {
                break;
            }
            let at = usize::from(pair[0]) * 7 % input.len();
            match pair.get(1).copied().unwrap_or(0) % 3 {
                0 => input[at] ^= pair.get(2).copied().unwrap_or(1),
                1 => input.truncate(at.max(1)),
                _ => input[at] = 0xff,
            }
        }
        tally.add(path.run(&input));
    }
    eprintln!("request path, mangled: {tally:?}");
    assert!(tally.not_protobuf > 0 && tally.batched > 0, "{tally:?}");
}

/// The inputs committed for `target`, by name.
fn seeds(target: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let inputs: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    assert!(!inputs.is_empty(), "{} holds no inputs", dir.display());
    inputs
}

/// Runs every committed input of `target`; a panic names the input.
fn replay(target: &str, run: impl Fn(&[u8])) {
    for (name, input) in seeds(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&input)));
        assert!(
            outcome.is_ok(),
            "fuzz/seeds/{target}/{name} broke a promise"
        );
    }
}

#[test]
fn the_committed_request_path_inputs_replay() {
    let path = request_path();
    replay("request_path", |input| {
        path.run(input);
    });
}

#[test]
fn the_committed_queue_inputs_replay() {
    replay("queue", |input| {
        queue::run(input);
    });
}

#[test]
fn the_committed_controller_inputs_replay() {
    replay("controller", |input| {
        controller::run(input);
    });
}
