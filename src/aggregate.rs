//! `Aggregate` and `Gather`: one score per input from the scores of its
//! windows, when long documents are split into windows (chunking).
//!
//! Owns: the aggregates (max, mean of raw scores) and collecting window
//! scores that arrive in any order, batch by batch, into input scores as
//! each input's last window is scored. Must never: tokenize or split text
//! (`tokenize` does), normalise scores (aggregates work on raw scores, the
//! caller normalises after), or report an input before all its windows are
//! in.

/// How an input's window scores become its score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Aggregate {
    /// The best window: a document is as relevant as its most relevant part.
    #[default]
    Max,
    /// The mean over windows.
    Mean,
}

/// Window scores in, input scores out as inputs complete.
#[derive(Debug)]
pub struct Gather {
    aggregate: Aggregate,
    /// The input of each window.
    owners: Vec<usize>,
    /// Per input: windows not yet scored, and the running max or sum.
    remaining: Vec<usize>,
    windows: Vec<usize>,
    folded: Vec<f32>,
}

impl Gather {
    /// `owners[w]` is window `w`'s input, for `inputs` inputs that each have
    /// at least one window.
    pub fn new(owners: Vec<usize>, inputs: usize, aggregate: Aggregate) -> Self {
        let mut windows = vec![0; inputs];
        for &owner in &owners {
            windows[owner] += 1;
        }
        debug_assert!(windows.iter().all(|&w| w > 0), "an input without a window");
        let start = match aggregate {
            Aggregate::Max => f32::NEG_INFINITY,
            Aggregate::Mean => 0.0,
        };
        Gather {
            aggregate,
            owners,
            remaining: windows.clone(),
            windows,
            folded: vec![start; inputs],
        }
    }

    /// Takes (window, raw score) pairs, each window once; returns (input,
    /// aggregated raw score) for every input whose last window this was.
    pub fn add(&mut self, scored: impl IntoIterator<Item = (usize, f32)>) -> Vec<(usize, f32)> {
        let mut done = Vec::new();
        for (window, score) in scored {
            let input = self.owners[window];
            let folded = &mut self.folded[input];
            match self.aggregate {
                Aggregate::Max => *folded = folded.max(score),
                Aggregate::Mean => *folded += score,
            }
            self.remaining[input] -= 1;
            if self.remaining[input] == 0 {
                let score = match self.aggregate {
                    Aggregate::Max => *folded,
                    Aggregate::Mean => *folded / self.windows[input] as f32,
                };
                done.push((input, score));
            }
        }
        done
    }

    /// Aggregates every window's score at once: `raw[w]` is window `w`'s.
    pub fn all(owners: Vec<usize>, inputs: usize, aggregate: Aggregate, raw: &[f32]) -> Vec<f32> {
        let mut gather = Gather::new(owners, inputs, aggregate);
        let mut scores = vec![f32::NAN; inputs];
        for (input, score) in gather.add(raw.iter().copied().enumerate()) {
            scores[input] = score;
        }
        scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_and_mean_over_each_inputs_windows() {
        // Input 0 has one window, input 1 three, input 2 two.
        let owners = vec![0, 1, 1, 1, 2, 2];
        let raw = [0.5, -1.0, 3.0, 1.0, -2.0, -4.0];
        assert_eq!(
            Gather::all(owners.clone(), 3, Aggregate::Max, &raw),
            [0.5, 3.0, -2.0]
        );
        assert_eq!(
            Gather::all(owners, 3, Aggregate::Mean, &raw),
            [0.5, 1.0, -3.0]
        );
    }

    #[test]
    fn an_input_is_reported_once_its_last_window_arrives_in_any_order() {
        let mut gather = Gather::new(vec![0, 0, 1, 1, 1], 2, Aggregate::Max);
        assert_eq!(gather.add([(4, 1.0), (0, 2.0)]), []);
        assert_eq!(gather.add([(2, 7.0), (1, -1.0)]), [(0, 2.0)]);
        assert_eq!(gather.add([(3, 0.0)]), [(1, 7.0)]);
    }
}
