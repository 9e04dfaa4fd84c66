//! The model directory: `rerankd.json`, `model.pt`, `tokenizer.json` and the
//! optional `golden.json`, as written by `scripts/export/export_model.py`.
//!
//! Owns: reading and validating those files' metadata. Must never: load
//! libtorch or the tokenizer (they have their own modules), or guess a value
//! that the directory does not state.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// The directory format version this server understands.
pub const FORMAT_VERSION: u32 = 1;

/// How the model's raw score becomes a normalised score in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Cross-encoders: the raw score is a logit.
    Sigmoid,
    /// Pair-cosine models: the raw score is a cosine, mapped to (cos + 1) / 2.
    Cosine01,
}

impl Activation {
    pub fn apply(self, raw: f32) -> f32 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-raw).exp()),
            Activation::Cosine01 => (raw + 1.0) / 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Cosine01 => "cosine01",
        }
    }
}

/// `rerankd.json`: what the exporter knew about the model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub format_version: u32,
    pub name: String,
    /// "bert" or "xlm-roberta"; informational.
    pub architecture: String,
    /// "cross-encoder" or "pair-cosine"; informational.
    pub mode: String,
    /// Longest pair, in tokens, the model accepts.
    pub max_length: usize,
    /// Whether `forward` takes a third input, `token_type_ids`.
    pub uses_token_type_ids: bool,
    pub activation: Activation,
    /// The dtype the weights were saved in.
    pub dtype: String,
    pub pad_token_id: i64,
    #[serde(default)]
    pub torch_version: String,
}

/// A model directory whose files exist and whose metadata is sane.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub path: PathBuf,
    pub spec: ModelSpec,
}

impl ModelDir {
    pub fn open(path: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::ModelDir {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_dir() {
            return Err(fail(
                "is not a readable directory (export one with scripts/export/export_model.py)"
                    .into(),
            ));
        }
        for file in ["rerankd.json", "model.pt", "tokenizer.json"] {
            if !path.join(file).is_file() {
                return Err(fail(format!("has no {file}")));
            }
        }
        let text = std::fs::read_to_string(path.join("rerankd.json"))
            .map_err(|e| fail(format!("cannot read rerankd.json: {e}")))?;
        let spec: ModelSpec = serde_json::from_str(&text)
            .map_err(|e| fail(format!("rerankd.json is not valid: {e}")))?;
        if spec.format_version != FORMAT_VERSION {
            return Err(fail(format!(
                "rerankd.json has format_version {}, this server reads {FORMAT_VERSION}",
                spec.format_version
            )));
        }
        if spec.max_length < 4 {
            return Err(fail(format!(
                "rerankd.json has max_length {}, too small for a pair",
                spec.max_length
            )));
        }
        Ok(ModelDir {
            path: path.to_path_buf(),
            spec,
        })
    }

    pub fn model_file(&self) -> PathBuf {
        self.path.join("model.pt")
    }

    pub fn tokenizer_file(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }

    pub fn golden_file(&self) -> PathBuf {
        self.path.join("golden.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_keep_order_and_land_in_unit_interval() {
        for activation in [Activation::Sigmoid, Activation::Cosine01] {
            let raws = [-1.0f32, -0.5, 0.0, 0.25, 1.0];
            let scores: Vec<f32> = raws.iter().map(|r| activation.apply(*r)).collect();
            assert!(scores.windows(2).all(|w| w[0] < w[1]), "{scores:?}");
            assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
        }
        assert_eq!(Activation::Sigmoid.apply(0.0), 0.5);
        assert_eq!(Activation::Cosine01.apply(1.0), 1.0);
    }

    fn write_dir(spec: &str, files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rerankd.json"), spec).unwrap();
        for file in files {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        dir
    }

    const SPEC: &str = r#"{"format_version": 1, "name": "t", "architecture": "bert",
        "mode": "cross-encoder", "max_length": 512, "uses_token_type_ids": true,
        "activation": "sigmoid", "dtype": "float32", "pad_token_id": 0}"#;

    #[test]
    fn open_reads_a_complete_directory() {
        let dir = write_dir(SPEC, &["model.pt", "tokenizer.json"]);
        let model = ModelDir::open(dir.path()).unwrap();
        assert_eq!(model.spec.max_length, 512);
        assert_eq!(model.spec.activation, Activation::Sigmoid);
    }

    #[test]
    fn open_names_what_is_wrong() {
        let check = |spec: &str, files: &[&str], fragment: &str| {
            let dir = write_dir(spec, files);
            let error = ModelDir::open(dir.path()).unwrap_err().to_string();
            assert!(error.contains(fragment), "{error:?} lacks {fragment:?}");
        };
        check(SPEC, &["tokenizer.json"], "has no model.pt");
        check(SPEC, &["model.pt"], "has no tokenizer.json");
        check(
            "{",
            &["model.pt", "tokenizer.json"],
            "rerankd.json is not valid",
        );
        check(
            &SPEC.replace("\"format_version\": 1", "\"format_version\": 9"),
            &["model.pt", "tokenizer.json"],
            "format_version 9",
        );
        let error = ModelDir::open(Path::new("/no/such/dir")).unwrap_err();
        assert!(error.to_string().contains("not a readable directory"));
    }
}
