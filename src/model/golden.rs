//! The golden set: fixed query groups with the exporter's eager-PyTorch fp32
//! scores, and the faithfulness check that decides whether a lower precision
//! may serve.
//!
//! Owns: reading `golden.json`, and the pure comparisons (largest score
//! difference, ranking inversions beyond ties, non-finite scores) and the
//! gate built on them. Must never: run the model (the model thread feeds it
//! scores) or decide anything on a timing.

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

/// What the gate compared when a lower precision passed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateReport {
    /// Largest |candidate − reference| over the golden set.
    pub max_abs_diff: f32,
    /// Ordered document pairs whose reference scores differ by more than the
    /// tie tolerance: the pairs whose order the gate checked. Zero means the
    /// golden set could not discriminate (the model's scores are nearly
    /// constant on it), and only closeness was checked.
    pub compared_pairs: usize,
}

/// The faithfulness gate: may `candidate` (a lower precision's scores of the
/// golden groups) serve in place of `reference` (fp32's)? `Err` says why not:
/// a non-finite score; an order `reference` has beyond `tie_tolerance` that
/// `candidate` loses; or, when no pair of documents differs beyond the
/// tolerance (nothing to rank), scores that moved by more than it.
pub fn gate(
    reference: &[Vec<f32>],
    candidate: &[Vec<f32>],
    tie_tolerance: f32,
) -> Result<GateReport, String> {
    for (group, scores) in candidate.iter().enumerate() {
        if let Some((document, score)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(format!(
                "document {document} of golden group {group} scored {score}"
            ));
        }
    }
    let max_abs_diff = reference
        .iter()
        .zip(candidate)
        .map(|(a, b)| max_abs_diff(a, b))
        .fold(0.0, f32::max);
    for (group, (a, b)) in reference.iter().zip(candidate).enumerate() {
        if let Some((i, j)) = first_inversion(a, b, tie_tolerance) {
            return Err(format!(
                "documents {i} and {j} of golden group {group} are ordered unlike fp32 \
                 (largest score difference {max_abs_diff})"
            ));
        }
    }
    let compared_pairs = reference
        .iter()
        .map(|scores| ordered_pairs(scores, tie_tolerance))
        .sum();
    if compared_pairs == 0 && max_abs_diff > tie_tolerance {
        return Err(format!(
            "the golden set cannot discriminate (every group's fp32 scores lie within \
             {tie_tolerance}) and scores moved by {max_abs_diff}, more than that"
        ));
    }
    Ok(GateReport {
        max_abs_diff,
        compared_pairs,
    })
}

/// Ordered pairs `(i, j)` with `scores[i]` above `scores[j]` by more than
/// `tie_tolerance`.
fn ordered_pairs(scores: &[f32], tie_tolerance: f32) -> usize {
    scores
        .iter()
        .map(|a| scores.iter().filter(|b| a - *b > tie_tolerance).count())
        .sum()
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
    fn the_gate() {
        let check = |reference: &[f32], candidate: &[f32], expected: Result<usize, &str>| {
            let verdict = gate(&[reference.to_vec()], &[candidate.to_vec()], 0.01)
                .map(|report| report.compared_pairs);
            match (&verdict, &expected) {
                (Ok(pairs), Ok(expected)) => assert_eq!(pairs, expected),
                (Err(reason), Err(part)) => assert!(reason.contains(part), "{reason}"),
                _ => panic!("{reference:?} vs {candidate:?}: {verdict:?}, expected {expected:?}"),
            }
        };
        // Three documents well apart: three ordered pairs compared.
        check(&[0.9, 0.5, 0.1], &[0.89, 0.51, 0.1], Ok(3));
        check(&[0.9, 0.5, 0.1], &[0.4, 0.6, 0.0], Err("documents 0 and 1"));
        // NaN and infinities fail whatever the ties, even when nothing ranks.
        check(
            &[0.9, 0.5],
            &[f32::NAN, 0.5],
            Err("document 0 of golden group 0 scored NaN"),
        );
        check(&[0.5, 0.5], &[0.5, f32::INFINITY], Err("scored inf"));
        check(&[0.5, 0.5], &[f32::NEG_INFINITY, 0.5], Err("scored -inf"));
        // Nearly constant scores: no pair to rank, so closeness is checked.
        check(&[0.500, 0.502, 0.504], &[0.503, 0.501, 0.500], Ok(0));
        check(
            &[0.500, 0.502, 0.504],
            &[0.9, 0.1, 0.5],
            Err("cannot discriminate"),
        );
        // One discriminating pair among ties is enough to rank.
        check(&[0.500, 0.505, 0.9], &[0.505, 0.500, 0.91], Ok(2));
        let report = gate(&[vec![1.0, 0.0]], &[vec![0.75, 0.0]], 0.01).unwrap();
        assert_eq!(report.max_abs_diff, 0.25);
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
