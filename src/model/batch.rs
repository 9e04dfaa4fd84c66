//! `PaddedBatch`: token ids of several pairs, padded to the batch's longest,
//! laid out row-major as the model's inputs.
//!
//! Owns: the padding rule (pad to the longest pair in the batch, attention
//! mask 0 on padding). Must never: tokenize text or touch libtorch; tensors
//! are built from it on the model thread.

/// One tokenized (query, document) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    pub input_ids: Vec<i64>,
    /// Segment of each token: 0 for the query side, 1 for the document side.
    pub token_type_ids: Vec<i64>,
    /// Whether the pair was cut to fit the model's window.
    pub truncated: bool,
}

impl EncodedPair {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// Model inputs for `pairs` rows of `padded_len` tokens each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    pub pairs: usize,
    pub padded_len: usize,
    /// `pairs * padded_len` ids, row-major.
    pub input_ids: Vec<i64>,
    /// 1 on real tokens, 0 on padding.
    pub attention_mask: Vec<i64>,
    /// Present when the model takes `token_type_ids`.
    pub token_type_ids: Option<Vec<i64>>,
}

impl PaddedBatch {
    /// Pads `pairs` to the longest of them with `pad_id`.
    pub fn new(pairs: &[&EncodedPair], pad_id: i64, with_token_type_ids: bool) -> Self {
        let padded_len = pairs.iter().map(|p| p.len()).max().unwrap_or(0);
        let cells = pairs.len() * padded_len;
        let mut input_ids = Vec::with_capacity(cells);
        let mut attention_mask = Vec::with_capacity(cells);
        let mut token_type_ids = Vec::with_capacity(if with_token_type_ids { cells } else { 0 });
        for pair in pairs {
            let padding = padded_len - pair.len();
            input_ids.extend_from_slice(&pair.input_ids);
            input_ids.extend(std::iter::repeat_n(pad_id, padding));
            attention_mask.extend(std::iter::repeat_n(1, pair.len()));
            attention_mask.extend(std::iter::repeat_n(0, padding));
            if with_token_type_ids {
                token_type_ids.extend_from_slice(&pair.token_type_ids);
                token_type_ids.extend(std::iter::repeat_n(0, padding));
            }
        }
        PaddedBatch {
            pairs: pairs.len(),
            padded_len,
            input_ids,
            attention_mask,
            token_type_ids: with_token_type_ids.then_some(token_type_ids),
        }
    }

    /// Tokens the model computes on, padding included.
    pub fn padded_tokens(&self) -> usize {
        self.pairs * self.padded_len
    }

    /// The real (unpadded) length of each row.
    pub fn row_lengths(&self) -> Vec<usize> {
        self.attention_mask
            .chunks(self.padded_len.max(1))
            .take(self.pairs)
            .map(|row| row.iter().filter(|&&m| m != 0).count())
            .collect()
    }

    /// Rows `start..end` as a batch of their own, padded to their longest.
    pub fn rows(&self, start: usize, end: usize) -> PaddedBatch {
        let lengths = self.row_lengths();
        let padded_len = lengths[start..end].iter().copied().max().unwrap_or(0);
        let take = |values: &[i64]| -> Vec<i64> {
            (start..end)
                .flat_map(|row| {
                    let begin = row * self.padded_len;
                    values[begin..begin + padded_len].iter().copied()
                })
                .collect()
        };
        PaddedBatch {
            pairs: end - start,
            padded_len,
            input_ids: take(&self.input_ids),
            attention_mask: take(&self.attention_mask),
            token_type_ids: self.token_type_ids.as_deref().map(take),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ids: &[i64], types: &[i64]) -> EncodedPair {
        EncodedPair {
            input_ids: ids.to_vec(),
            token_type_ids: types.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn pads_to_the_longest_row() {
        let a = pair(&[101, 7, 102, 9, 102], &[0, 0, 0, 1, 1]);
        let b = pair(&[101, 8, 102], &[0, 0, 0]);
        let batch = PaddedBatch::new(&[&a, &b], 0, true);
        assert_eq!(
            (batch.pairs, batch.padded_len, batch.padded_tokens()),
            (2, 5, 10)
        );
        assert_eq!(batch.input_ids, [101, 7, 102, 9, 102, 101, 8, 102, 0, 0]);
        assert_eq!(batch.attention_mask, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(
            batch.token_type_ids.as_deref(),
            Some(&[0, 0, 0, 1, 1, 0, 0, 0, 0, 0][..])
        );
    }

    #[test]
    fn rows_come_out_repadded_to_their_own_longest() {
        let a = pair(&[101, 7, 102, 9, 102], &[0, 0, 0, 1, 1]);
        let b = pair(&[101, 8, 102], &[0, 0, 0]);
        let c = pair(&[101, 6, 6, 102], &[0, 0, 0, 1]);
        let batch = PaddedBatch::new(&[&a, &b, &c], 0, true);
        assert_eq!(batch.row_lengths(), [5, 3, 4]);
        assert_eq!(batch.rows(1, 3), PaddedBatch::new(&[&b, &c], 0, true));
        assert_eq!(batch.rows(0, 1), PaddedBatch::new(&[&a], 0, true));
        assert_eq!(batch.rows(0, 3), batch);
    }

    #[test]
    fn leaves_out_token_types_when_the_model_has_none() {
        let a = pair(&[0, 5, 2, 2, 6, 2], &[0; 6]);
        let batch = PaddedBatch::new(&[&a], 1, false);
        assert_eq!(batch.token_type_ids, None);
        assert_eq!(batch.attention_mask, [1; 6]);
    }
}
