//! The import direction ARCHITECTURE.md states, checked on the sources:
//! grpc, http and status -> infer -> batcher -> worker -> model / gpu, and tokenize and
//! aggregate below infer. A `use` (or path) that runs back up fails here,
//! naming the file and line. Across the workspace's crates: only
//! `main.rs` and `config` name the bench crate, and neither the bench nor
//! the API crate declares a dependency on the server or libtorch
//! (scripts/test.sh also checks their whole dependency tree and builds the
//! bench without the venv).

use std::path::{Path, PathBuf};

/// The layers, highest first: a module may name only layers after its own.
const ORDER: &[&[&str]] = &[
    &["grpc", "http", "status"],
    &["infer"],
    &["batcher"],
    &["worker"],
    &["tokenize", "aggregate", "model", "gpu", "inflight"],
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

/// The files of `src/` that may name the bench crate: the binary that runs
/// it and the flags that wrap its own.
const BENCH_USERS: &[&str] = &["main.rs", "config.rs"];

#[test]
fn only_main_and_config_name_the_bench_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut users = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("rerankd_bench") && !BENCH_USERS.contains(&relative.as_str()) {
                users.push(format!("{relative}:{}", number + 1));
            }
        }
    }
    assert!(
        users.is_empty(),
        "only {BENCH_USERS:?} may name rerankd_bench:\n{}",
        users.join("\n")
    );
    // The check sees what it should: main.rs does run the bench crate.
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap();
    assert!(main.contains("rerankd_bench::run"));
}

/// The dependency names a Cargo.toml declares, in every `*dependencies`
/// table (dev and build included).
fn declared_dependencies(manifest: &str) -> Vec<String> {
    let mut in_dependencies = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line
                .trim_matches(|c| c == '[' || c == ']')
                .ends_with("dependencies");
        } else if in_dependencies && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

#[test]
fn the_bench_and_api_crates_never_depend_on_the_server_or_libtorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["rerankd-api", "rerankd-bench"] {
        let manifest =
            std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml")).unwrap();
        let declared = declared_dependencies(&manifest);
        assert!(
            declared.contains(&"tonic".to_string()),
            "{krate}: {declared:?}"
        );
        for forbidden in ["rerankd", "tch", "torch-sys"] {
            assert!(
                !declared.iter().any(|name| name == forbidden),
                "{krate} depends on {forbidden}: {declared:?}"
            );
        }
    }
    // The parser sees what it should: the server's own manifest declares tch.
    let server = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(declared_dependencies(&server).contains(&"tch".to_string()));
}

#[test]
fn the_http_api_names_nothing_of_grpc_tonic_protobuf_or_libtorch() {
    let http = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files = Vec::new();
    sources(&http, &mut files);
    assert!(files.len() >= 5, "src/http has {} files", files.len());
    let mut named = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for name in ["crate::grpc", "tonic", "prost", "tch::", "nvml"] {
                // A name, not the end of another (`watch::` is no `tch::`).
                let named_here = code.match_indices(name).any(|(at, _)| {
                    !code[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if named_here {
                    named.push(format!("{}:{}: {name}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        named.is_empty(),
        "src/http must stay beside gRPC:\n{}",
        named.join("\n")
    );
}
