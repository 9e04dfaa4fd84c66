//! The golden set: fixed query groups with the exporter's eager-PyTorch fp32
//! scores, and the faithfulness check that decides whether a lower precision
//! may serve.
//!
//! Owns: reading `golden.json`, and the pure comparisons (largest score
//! difference, ranking inversions beyond ties). Must never: run the model
//! (the model thread feeds it scores) or decide anything on a timing.

use std::cmp::Ordering;
use std::path::Path;

use serde::Deserialize;

use crate::error::Error;

/// Two fp32 scores closer than this are a tie: a lower precision may order
/// them either way. In raw-score units (a logit, or a cosine).
pub const TIE_TOLERANCE: f32 = 1e-2;

#[derive(Debug, Clone, Deserialize)]
pub struct GoldenSet {
    /// The window the golden pairs were truncated to.
    pub max_length: usize,
    pub groups: Vec<GoldenGroup>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GoldenGroup {
    pub query: String,
    pub documents: Vec<String>,
    /// Raw fp32 scores from eager PyTorch, one per document.
    pub scores: Vec<f32>,
}

impl GoldenSet {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::ModelDir {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("unreadable: {e}")))?;
        let set: GoldenSet =
            serde_json::from_str(&text).map_err(|e| fail(format!("not valid: {e}")))?;
        for (index, group) in set.groups.iter().enumerate() {
            if group.documents.len() != group.scores.len() || group.documents.is_empty() {
                return Err(fail(format!(
                    "group {index} has {} documents and {} scores",
                    group.documents.len(),
                    group.scores.len()
                )));
            }
        }
        Ok(set)
    }
}

/// The largest absolute difference between two score lists of one length;
/// infinite when either holds a non-finite score.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let diff = (x - y).abs();
            if diff.is_finite() {
                diff
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0, f32::max)
}

/// The first pair of documents `(i, j)` that `reference` orders `i` above `j`
/// by more than `tie_tolerance` but `candidate` does not (it orders `j` above
/// or level with `i`, or either score is not a number).
pub fn first_inversion(
    reference: &[f32],
    candidate: &[f32],
    tie_tolerance: f32,
) -> Option<(usize, usize)> {
    for i in 0..reference.len() {
        for j in 0..reference.len() {
            let candidate_agrees =
                candidate[i].partial_cmp(&candidate[j]) == Some(Ordering::Greater);
            if reference[i] - reference[j] > tie_tolerance && !candidate_agrees {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_inversions() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 1.0]), 1.0);
        assert_eq!(max_abs_diff(&[], &[]), 0.0);
        let check = |reference: &[f32], candidate: &[f32], expected: Option<(usize, usize)>| {
            assert_eq!(
                first_inversion(reference, candidate, 0.01),
                expected,
                "{reference:?} vs {candidate:?}"
            );
        };
        check(&[0.9, 0.5, 0.1], &[0.8, 0.6, 0.0], None);
        check(&[0.9, 0.5, 0.1], &[0.4, 0.6, 0.0], Some((0, 1)));
        // Within the tie tolerance either order is fine.
        check(&[0.500, 0.505], &[0.51, 0.50], None);
        check(&[0.1, 0.9], &[0.2, 0.1], Some((1, 0)));
        // A tie the reference does not have, and NaN, are inversions too.
        check(&[0.9, 0.1], &[0.5, 0.5], Some((0, 1)));
        check(&[0.9, 0.1], &[f32::NAN, 0.5], Some((0, 1)));
        assert_eq!(max_abs_diff(&[1.0], &[f32::NAN]), f32::INFINITY);
    }

    #[test]
    fn load_rejects_mismatched_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("golden.json");
        std::fs::write(
            &path,
            r#"{"max_length": 512, "groups": [{"query": "q", "documents": ["a", "b"], "scores": [1.0]}]}"#,
        )
        .unwrap();
        let error = GoldenSet::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("group 0 has 2 documents and 1 scores"),
            "{error}"
        );
    }
}
