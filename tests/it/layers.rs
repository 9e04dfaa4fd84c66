//! The import direction ARCHITECTURE.md states, checked on the sources:
//! grpc -> infer -> batcher -> worker -> model / gpu, and tokenize and
//! aggregate below infer. A `use` (or path) that runs back up fails here,
//! naming the file and line.

use std::path::{Path, PathBuf};

/// The layers, highest first: a module may name only layers after its own.
const ORDER: &[&[&str]] = &[
    &["grpc"],
    &["infer"],
    &["batcher"],
    &["worker"],
    &["tokenize", "aggregate", "model", "gpu"],
];

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|layer| layer.contains(&module))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/batcher/queue.rs`
/// and `src/batcher/mod.rs` are `batcher`; `src/infer.rs` is `infer`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_string()
}

/// `crate::X` names on a line of code (comments skipped).
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn no_import_runs_back_up_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = rank(&module) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if rank(&target).is_some_and(|theirs| theirs < own) {
                    upward.push(format!(
                        "{}:{}: {module} names crate::{target}",
                        file.strip_prefix(&src).unwrap().display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run back up the layers:\n{}",
        upward.join("\n")
    );
    // The check sees what it should: a known downward import is found.
    let scheduler = std::fs::read_to_string(src.join("batcher/scheduler.rs")).unwrap();
    assert!(scheduler
        .lines()
        .any(|l| crate_paths(l).contains(&"worker".to_string())));
}

#[test]
fn the_check_catches_an_upward_path() {
    assert_eq!(crate_paths("use crate::batcher::split::X;"), ["batcher"]);
    assert_eq!(crate_paths("    // see crate::grpc"), Vec::<String>::new());
    assert!(rank("batcher").unwrap() < rank("worker").unwrap());
    assert_eq!(rank("config"), None);
}
