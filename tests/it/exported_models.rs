//! Every model the tests export runs on any device: no TorchScript code file
//! inside its `model.pt` pins a device (issue 13 §1). A model traced with
//! transformers' own mask builder holds `torch.device("cpu")` constants, and
//! on CUDA its first batch fails; scripts/export/export_model.py refuses to
//! write such a model, and this test keeps the exported test models honest.
//!
//! Owns: reading `model.pt` as the zip archive it is and scanning the
//! serialized code (`<archive>/code/**/*.py`) line by line.
//! Must never: load a model through libtorch (tests/rerank.rs does that), need
//! a GPU, or shell out to `unzip`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::common::models_dir;

/// Device names that can appear as a string literal in serialized code.
const DEVICE_NAMES: [&str; 7] = ["cpu", "cuda", "meta", "mps", "xpu", "hip", "privateuseone"];

/// Why `line` pins a device, or `None` when it does not. The forms: a
/// `torch.device(..)` constant (what a trace prints for `arange(device=..)`,
/// `.to(device)`, `.cpu()`, `.cuda()`), a `device="..."` keyword, a quoted
/// device name (`"cuda:0"`), and `.cpu()` / `.cuda()` calls.
/// `device=None` (what `zeros_like` and friends print) is not a pin.
fn device_pin(line: &str) -> Option<&'static str> {
    if line.contains("torch.device(") {
        return Some("torch.device(..) constant");
    }
    if line.contains(".cpu(") || line.contains(".cuda(") {
        return Some(".cpu() / .cuda() call");
    }
    let mut rest = line;
    while let Some(at) = rest.find("device") {
        let after = rest[at + "device".len()..].trim_start();
        if let Some(value) = after.strip_prefix('=') {
            if value.trim_start().starts_with(['"', '\'']) {
                return Some("device=\"..\" keyword");
            }
        }
        rest = &rest[at + "device".len()..];
    }
    if quoted_literals(line).any(is_device_name) {
        return Some("device name string");
    }
    None
}

/// The contents of the '..' and ".." literals on one line of code.
fn quoted_literals(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = line;
    std::iter::from_fn(move || {
        let open = rest.find(['"', '\''])?;
        let quote = char::from(rest.as_bytes()[open]);
        let body = &rest[open + 1..];
        let close = body.find(quote)?;
        rest = &body[close + 1..];
        Some(&body[..close])
    })
}

/// `cpu`, `cuda`, `cuda:1`, ...
fn is_device_name(literal: &str) -> bool {
    let (name, index) = literal.split_once(':').unwrap_or((literal, ""));
    DEVICE_NAMES.contains(&name) && index.chars().all(|c| c.is_ascii_digit())
}

/// Every `archive/code/**/*.py:line: text` of `model_pt` that pins a device,
/// and how many code files were read.
fn pinned_lines(model_pt: &Path) -> (Vec<String>, usize) {
    let file =
        File::open(model_pt).unwrap_or_else(|e| panic!("cannot open {}: {e}", model_pt.display()));
    let mut archive = zip::ZipArchive::new(file)
        .unwrap_or_else(|e| panic!("{} is not a zip archive: {e}", model_pt.display()));
    let mut found = Vec::new();
    let mut code_files = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).unwrap();
        let name = entry.name().to_owned();
        if !name.contains("/code/") || !name.ends_with(".py") {
            continue;
        }
        code_files += 1;
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .unwrap_or_else(|e| panic!("{name} in {}: {e}", model_pt.display()));
        for (number, line) in text.lines().enumerate() {
            if let Some(why) = device_pin(line) {
                found.push(format!("{name}:{}: {why}: {}", number + 1, line.trim()));
            }
        }
    }
    (found, code_files)
}

/// The model directories under $RERANKD_TEST_MODELS (each holds a model.pt).
fn exported_models() -> Vec<PathBuf> {
    let root = models_dir();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("model.pt").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn no_exported_model_pins_a_device() {
    let models = exported_models();
    let names: Vec<String> = models
        .iter()
        .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["minilm-pair", "tiny-bert", "tiny-xlmr"] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} is missing among the exported models {names:?}"
        );
    }
    let mut report = Vec::new();
    for dir in &models {
        let (pinned, code_files) = pinned_lines(&dir.join("model.pt"));
        assert!(
            code_files > 0,
            "{}: model.pt holds no code/*.py: not a TorchScript archive?",
            dir.display()
        );
        if !pinned.is_empty() {
            report.push(format!("{}:\n    {}", dir.display(), pinned.join("\n    ")));
        }
    }
    assert!(
        report.is_empty(),
        "exported models pin a device (they would fail on any other device; re-export them \
         with scripts/setup-models.sh):\n{}",
        report.join("\n")
    );
}

/// The detector on the real lines of a model traced with transformers' mask
/// builder (pinned), and on lines every exported model holds (not pinned).
#[test]
fn device_pins_are_told_from_device_free_code() {
    let pinned = [
        r#"attention_mask0 = torch.to(attention_mask, torch.device("cpu"), 11)"#,
        r#"_8 = torch.arange(_4, dtype=None, layout=None, device=torch.device("cpu"), pin_memory=False)"#,
        r#"_15 = torch.to(torch.ge(q_idx, 0), dtype=11, layout=0, device=torch.device("cuda:0"))"#,
        r#"x = torch.zeros([2], device="cuda")"#,
        r#"x = torch.zeros([2], device = 'cpu')"#,
        r#"_0 = torch.to(x, "cuda:1")"#,
        "y = x.cuda()",
        "y = x.cpu()",
    ];
    for line in pinned {
        assert!(device_pin(line).is_some(), "not flagged: {line}");
    }
    let device_free = [
        "input = torch.zeros_like(input_ids, dtype=None, layout=None, device=None, pin_memory=False)",
        "_3 = torch.expand(_2, [-1, 1, _0, -1])",
        "attention_mask = torch.expand(_3, [-1, 1, _0, -1])",
        "incremental_indices = torch.mul(torch.add(_6, CONSTANTS.c0), mask)",
        r#"_1 = ops.prim.device(input_ids)"#,
        r#"name = "cpus""#,
        r#"raise Exception("cuda out of memory")"#,
    ];
    for line in device_free {
        assert_eq!(device_pin(line), None, "flagged: {line}");
    }
}
