//! Split-and-retry: runs a batch on a `Scorer` and, when it runs out of
//! memory, splits it in two and retries each half, recursively, so only a
//! single pair that cannot fit on its own fails.
//!
//! Owns: the retry rule and its record (which sizes ran out of memory, how
//! many splits). Must never: fail a row for another row's out-of-memory,
//! retry a non-memory error (it fails that batch's rows as it is), run
//! anything more on a device that failed (once one part of a split batch
//! reports a broken device, the parts not yet run fail with that error
//! unscored), or run anywhere but the thread that owns the scorer.

use crate::model::{PaddedBatch, ScoreError, Scorer};

/// What happened while scoring one batch, for the controller and stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitRecord {
    /// Padded tokens of every attempt that ran out of memory, in order.
    pub out_of_memory: Vec<usize>,
    /// Padded tokens of every attempt that succeeded, in order.
    pub succeeded: Vec<usize>,
    /// How many times a batch was split in two.
    pub splits: usize,
}

/// One result per row of `batch`, in row order.
pub fn score_splitting<S: Scorer + ?Sized>(
    scorer: &mut S,
    batch: &PaddedBatch,
    record: &mut SplitRecord,
) -> Vec<Result<f32, ScoreError>> {
    match scorer.score(batch) {
        Ok(scores) => {
            record.succeeded.push(batch.padded_tokens());
            scores.into_iter().map(Ok).collect()
        }
        Err(ScoreError::OutOfMemory(message)) => {
            record.out_of_memory.push(batch.padded_tokens());
            if batch.pairs <= 1 {
                return vec![Err(ScoreError::OutOfMemory(message)); batch.pairs];
            }
            record.splits += 1;
            let middle = batch.pairs / 2;
            let mut results = score_splitting(scorer, &batch.rows(0, middle), record);
            let broken = results.iter().find_map(|result| match result {
                Err(error @ ScoreError::DeviceFailed(_)) => Some(error.clone()),
                _ => None,
            });
            match broken {
                Some(error) => results.extend(vec![Err(error); batch.pairs - middle]),
                None => results.extend(score_splitting(
                    scorer,
                    &batch.rows(middle, batch.pairs),
                    record,
                )),
            }
            results
        }
        Err(other) => vec![Err(other); batch.pairs],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::fake::{batch_of, FakeScorer};

    #[test]
    fn an_oom_at_every_size_above_one_pair_loses_nothing() {
        let lengths = [30, 7, 12, 30, 5, 22, 9, 16, 30, 3, 11];
        let batch = batch_of(&lengths);
        let expected = FakeScorer::expected_scores(&batch);
        // Any batch larger than one pair's worth runs out of memory.
        for limit in [30, 60, 100, 200, 400] {
            let mut scorer = FakeScorer::with_limit(limit);
            let mut record = SplitRecord::default();
            let results = score_splitting(&mut scorer, &batch, &mut record);
            let scores: Vec<f32> = results.into_iter().map(Result::unwrap).collect();
            assert_eq!(scores, expected, "limit {limit}");
            assert!(
                record.succeeded.iter().all(|&tokens| tokens <= limit),
                "{record:?}"
            );
            assert_eq!(record.out_of_memory.len(), record.splits, "{record:?}");
        }
    }

    #[test]
    fn only_the_pair_that_cannot_fit_fails() {
        let batch = batch_of(&[10, 50, 10, 10]);
        let mut scorer = FakeScorer::with_limit(40);
        let mut record = SplitRecord::default();
        let results = score_splitting(&mut scorer, &batch, &mut record);
        assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
        assert!(matches!(results[1], Err(ScoreError::OutOfMemory(_))));
    }

    #[test]
    fn other_errors_are_not_retried() {
        let batch = batch_of(&[10, 10]);
        let mut scorer = FakeScorer::with_limit(1000);
        scorer.fail_with = Some(ScoreError::Failed("index out of range".into()));
        let mut record = SplitRecord::default();
        let results = score_splitting(&mut scorer, &batch, &mut record);
        assert_eq!(results.len(), 2);
        assert!(results
            .iter()
            .all(|r| matches!(r, Err(ScoreError::Failed(_)))));
        assert_eq!(scorer.calls, 1);
        assert_eq!(record, SplitRecord::default());
    }

    #[test]
    fn a_broken_device_is_never_retried() {
        let batch = batch_of(&[10, 10, 10, 10]);
        let mut scorer = FakeScorer::with_limit(1000);
        scorer.fail_with = Some(ScoreError::DeviceFailed(
            "CUDA error: an illegal memory access was encountered".into(),
        ));
        let mut record = SplitRecord::default();
        let results = score_splitting(&mut scorer, &batch, &mut record);
        assert_eq!(results.len(), 4);
        assert!(results
            .iter()
            .all(|r| matches!(r, Err(ScoreError::DeviceFailed(_)))));
        assert_eq!(scorer.calls, 1);
        assert_eq!(record, SplitRecord::default());
    }

    #[test]
    fn a_device_that_breaks_mid_split_runs_nothing_more() {
        // 8 rows of 10 tokens, memory for 20: the batch splits down to pairs;
        // the device breaks on the second call that fits (rows 2 and 3).
        let batch = batch_of(&[10; 8]);
        let mut scorer = FakeScorer::with_limit(20);
        scorer.break_after = Some(1);
        let mut record = SplitRecord::default();
        let results = score_splitting(&mut scorer, &batch, &mut record);
        assert_eq!(results.len(), 8);
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert!(
            results[2..]
                .iter()
                .all(|r| matches!(r, Err(ScoreError::DeviceFailed(_)))),
            "{results:?}"
        );
        // 80 and 40 tokens ran out of memory, rows 0-1 ran, rows 2-3 broke
        // the device; rows 4-7 were never tried.
        assert_eq!(record.out_of_memory, [80, 40]);
        assert_eq!(record.succeeded, [20]);
        assert_eq!(scorer.calls, 4);
    }

    #[test]
    fn a_batch_that_fits_runs_once() {
        let batch = batch_of(&[10, 20, 30]);
        let mut scorer = FakeScorer::with_limit(90);
        let mut record = SplitRecord::default();
        let results = score_splitting(&mut scorer, &batch, &mut record);
        assert_eq!(results.len(), 3);
        assert_eq!(scorer.calls, 1);
        assert_eq!(record.succeeded, [90]);
    }
}
