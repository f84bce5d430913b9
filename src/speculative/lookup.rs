//! Prompt-lookup drafting: the last n tokens of the text so far are looked up among earlier
//! n-grams of the same text (prompt and generated), and what followed the latest match is the
//! draft. Free to compute; good where the output repeats its input (quoting, editing, RAG).

use std::collections::HashMap;

use crate::generate::EvalError;

use super::drafter::{Draft, Drafter};

/// N-gram index over a growing token history.
#[derive(Clone, Debug)]
pub struct Lookup {
    /// Longest n-gram tried first; shorter ones down to `min_n` after it.
    max_n: usize,
    min_n: usize,
    history: Vec<u32>,
    /// For each n (index n - min_n): n-gram → the latest position whose token followed it.
    index: Vec<HashMap<Vec<u32>, usize>>,
}

impl Lookup {
    pub fn new(max_n: usize) -> Self {
        let max_n = max_n.max(1);
        let min_n = max_n.min(2);
        Lookup {
            max_n,
            min_n,
            history: Vec::new(),
            index: vec![HashMap::new(); max_n - min_n + 1],
        }
    }

    /// Appends tokens to the history.
    pub fn extend(&mut self, tokens: &[u32]) {
        for &t in tokens {
            let i = self.history.len();
            for n in self.min_n..=self.max_n {
                if i >= n {
                    let key = self.history[i - n..i].to_vec();
                    self.index[n - self.min_n].insert(key, i);
                }
            }
            self.history.push(t);
        }
    }

    /// Forgets the whole history.
    pub fn clear(&mut self) {
        self.history.clear();
        for index in &mut self.index {
            index.clear();
        }
    }

    /// Forgets the history from position `len` on (it must be re-extended in order). Indexed
    /// n-grams pointing past `len` are dropped lazily by [`draft`](Self::draft).
    pub fn truncate(&mut self, len: usize) {
        self.history.truncate(len);
    }

    pub fn len(&self) -> usize {
        self.history.len()
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Up to `k` tokens that followed the latest earlier occurrence of the longest matching
    /// suffix n-gram; empty when nothing matches.
    pub fn draft(&self, k: usize) -> Vec<u32> {
        let len = self.history.len();
        for n in (self.min_n..=self.max_n).rev() {
            if len < n {
                continue;
            }
            let key = &self.history[len - n..];
            if let Some(&pos) = self.index[n - self.min_n].get(key) {
                // a stale entry (after truncation) or the suffix itself has no continuation
                if pos < len && self.history[pos - n..pos] == *key {
                    let end = (pos + k).min(len);
                    return self.history[pos..end].to_vec();
                }
            }
        }
        Vec::new()
    }
}

/// Drafts cost no model evaluation: the text is indexed as it grows.
impl Drafter for Lookup {
    fn start(&mut self, prompt: &[u32]) -> Result<Option<f64>, EvalError> {
        self.clear();
        self.extend(prompt);
        Ok(Some(0.0))
    }

    fn token_cost(&mut self, _probe: u32) -> Result<f64, EvalError> {
        Ok(0.0)
    }

    fn propose(&mut self, k: usize, n_vocab: usize) -> Result<Draft, EvalError> {
        let tokens = self
            .draft(k)
            .into_iter()
            .take_while(|&t| (t as usize) < n_vocab)
            .collect();
        Ok(Draft::point_masses(tokens))
    }

    fn accept(&mut self, tokens: &[u32]) {
        self.extend(tokens);
    }

    fn rollback(&mut self, len: usize) {
        self.truncate(len);
    }

    fn is_free(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_followed_the_latest_match() {
        let mut l = Lookup::new(3);
        l.extend(&[1, 2, 3, 4, 5, 6, 9, 2, 3, 4, 7, 8, 0, 2, 3, 4]);
        // "2 3 4" was last followed by 7 8 0 …
        assert_eq!(l.draft(3), vec![7, 8, 0]);
        assert_eq!(l.draft(10), vec![7, 8, 0, 2, 3, 4]);
    }

    #[test]
    fn falls_back_to_shorter_ngrams_and_to_nothing() {
        let mut l = Lookup::new(3);
        l.extend(&[5, 6, 7, 1, 6, 7]);
        assert_eq!(l.draft(2), vec![1, 6]);
        let mut l = Lookup::new(3);
        l.extend(&[1, 2, 3, 4]);
        assert!(l.draft(4).is_empty());
    }

    #[test]
    fn truncation_forgets_the_tail() {
        let mut l = Lookup::new(2);
        l.extend(&[1, 2, 3, 1, 2]);
        assert_eq!(l.draft(1), vec![3]);
        l.truncate(3);
        l.extend(&[4, 1, 2]);
        assert_eq!(l.draft(2), vec![3, 4]);
        l.truncate(1);
        assert!(l.draft(3).is_empty());
    }
}
