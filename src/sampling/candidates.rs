//! The candidate list and the truncation / temperature / draw steps, mirroring
//! llama.cpp's `llama_token_data_array` samplers (top-k, top-p, min-p, temp,
//! dist) including their float arithmetic and the "sorted" bookkeeping that
//! decides in which order the final draw walks the candidates.

use std::cmp::Ordering;

use super::rng::Mt19937;

/// One candidate token: id, (possibly modified) logit and a probability slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// Descending logit; ties broken by ascending id (deterministic; llama.cpp's
/// `std::partial_sort` leaves tie order unspecified).
#[inline]
fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Integer key whose order is `f32::total_cmp`'s order.
#[inline]
fn total_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

/// Heap order for top-k selection: the worst candidate at the root.
#[inline]
fn worse(a: &Candidate, b: &Candidate) -> bool {
    by_logit_desc(a, b) == Ordering::Greater
}

fn sift_down(h: &mut [Candidate], mut i: usize) {
    let n = h.len();
    loop {
        let l = 2 * i + 1;
        if l >= n {
            return;
        }
        let w = if l + 1 < n && worse(&h[l + 1], &h[l]) {
            l + 1
        } else {
            l
        };
        if !worse(&h[w], &h[i]) {
            return;
        }
        h.swap(w, i);
        i = w;
    }
}

/// `std::max(a, b)` semantics: `a < b ? b : a`.
#[inline]
fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// Candidate list plus reusable scratch; no allocation once warmed up.
#[derive(Clone, Debug, Default)]
pub struct Candidates {
    pub data: Vec<Candidate>,
    pub sorted: bool,
    buf: Vec<Candidate>,
}

impl Candidates {
    /// Loads a full logits row (ids 0..n) in id order.
    pub fn load(&mut self, logits: &[f32]) {
        self.data.clear();
        self.data
            .extend(logits.iter().enumerate().map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
                p: 0.0,
            }));
        self.sorted = false;
    }

    /// Loads a row and applies top-k in one step. For small `k` this keeps
    /// a k-element heap while scanning (one comparison per token in the
    /// common case) instead of materialising all candidates; the kept set and
    /// its order are the same as `load` followed by [`top_k`](Self::top_k).
    pub fn load_top_k(&mut self, logits: &[f32], k: i32) {
        let n = logits.len();
        if k <= 0 || (k as usize).saturating_mul(4) >= n {
            self.load(logits);
            self.top_k(k);
            return;
        }
        let k = k as usize;
        let h = &mut self.data;
        h.clear();
        h.extend(logits[..k].iter().enumerate().map(|(i, &logit)| Candidate {
            id: i as u32,
            logit,
            p: 0.0,
        }));
        for i in (0..k / 2).rev() {
            sift_down(h, i);
        }
        // The root is the worst kept candidate and has a lower id, so a
        // newcomer beats it only with a strictly greater logit (in
        // `total_cmp` order). Chunks without such a value are skipped with
        // a branch-free (vectorisable) test.
        let mut thr = total_key(h[0].logit);
        const CHUNK: usize = 16;
        for (ci, chunk) in logits[k..].chunks(CHUNK).enumerate() {
            if !chunk
                .iter()
                .fold(false, |any, &x| any | (total_key(x) > thr))
            {
                continue;
            }
            for (j, &logit) in chunk.iter().enumerate() {
                if total_key(logit) > thr {
                    h[0] = Candidate {
                        id: (k + ci * CHUNK + j) as u32,
                        logit,
                        p: 0.0,
                    };
                    sift_down(h, 0);
                    thr = total_key(h[0].logit);
                }
            }
        }
        h.sort_unstable_by(by_logit_desc);
        self.sorted = true;
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Sorts the best `k` candidates to the front (descending) and drops the rest.
    fn keep_top_sorted(&mut self, k: usize) {
        let k = k.min(self.data.len());
        if k == 0 {
            self.data.clear();
            return;
        }
        if k < self.data.len() {
            self.data.select_nth_unstable_by(k - 1, by_logit_desc);
            self.data.truncate(k);
        }
        self.data.sort_unstable_by(by_logit_desc);
        self.sorted = true;
    }

    /// top-k: `k <= 0` disables it.
    pub fn top_k(&mut self, k: i32) {
        if k <= 0 {
            return;
        }
        let k = (k as usize).min(self.data.len());
        if !self.sorted {
            self.keep_top_sorted(k);
        }
        self.data.truncate(k);
    }

    /// Fills `p` with the softmax of the logits (f32 sum, like llama.cpp).
    fn softmax(&mut self) {
        let Some(first) = self.data.first() else {
            return;
        };
        let mut max_l = first.logit;
        if !self.sorted {
            for c in &self.data[1..] {
                max_l = cmax(max_l, c.logit);
            }
        }
        let mut cum = 0.0f32;
        for c in &mut self.data {
            let p = (c.logit - max_l).exp();
            c.p = p;
            cum += p;
        }
        for c in &mut self.data {
            c.p /= cum;
        }
    }

    /// top-p (nucleus): keep the smallest prefix (by descending probability)
    /// whose cumulative probability reaches `p`. `p >= 1` disables it.
    pub fn top_p(&mut self, p: f32, min_keep: usize) {
        if p >= 1.0 || self.data.is_empty() {
            return;
        }
        self.softmax();
        let n = self.data.len();
        // Unsorted and large: look at the best 256 first and only sort
        // everything if they do not reach `p` (llama.cpp's adaptive path).
        let use_buf = !self.sorted && n > 1024;
        let mut k = n;
        if use_buf {
            k = 256.min(n);
            self.buf.clear();
            self.buf.extend_from_slice(&self.data);
            self.buf.select_nth_unstable_by(k - 1, by_logit_desc);
            self.buf[..k].sort_unstable_by(by_logit_desc);
        } else if !self.sorted {
            self.data.sort_unstable_by(by_logit_desc);
            self.sorted = true;
        }

        let mut cum = 0.0f32;
        let mut last = n;
        let mut fully_sorted_buf = false;
        for i in 0..n {
            let pi = if use_buf {
                self.buf[i].p
            } else {
                self.data[i].p
            };
            cum += pi;
            if cum >= p && i + 1 >= min_keep {
                last = i + 1;
                break;
            }
            if use_buf && !fully_sorted_buf && i == k - 1 {
                // The first k (already in place) are the global top k, so
                // sorting the remainder completes the full descending order.
                self.buf[k..].sort_unstable_by(by_logit_desc);
                fully_sorted_buf = true;
            }
        }

        if use_buf {
            self.data.clear();
            self.data.extend_from_slice(&self.buf[..last]);
            self.sorted = true;
        } else {
            self.data.truncate(last);
        }
    }

    /// min-p: keep tokens with `prob >= p * max_prob`, i.e.
    /// `logit >= max_logit + ln(p)`. `p <= 0` disables it.
    pub fn min_p(&mut self, p: f32, min_keep: usize) {
        if p <= 0.0 || self.data.is_empty() {
            return;
        }
        let mut applied = false;
        if !self.sorted {
            let mut max_logit = -f32::MAX;
            for c in &self.data {
                max_logit = cmax(max_logit, c.logit);
            }
            let min_logit = max_logit + p.ln();
            let kept = self.data.iter().filter(|c| c.logit >= min_logit).count();
            if kept > 0 && kept >= min_keep {
                self.data.retain(|c| c.logit >= min_logit);
                applied = true;
            }
        }
        if !applied {
            if !self.sorted {
                self.data.sort_unstable_by(by_logit_desc);
                self.sorted = true;
            }
            let min_logit = self.data[0].logit + p.ln();
            let mut i = 1;
            while i < self.data.len() {
                if self.data[i].logit < min_logit && i >= min_keep {
                    break;
                }
                i += 1;
            }
            self.data.truncate(i);
        }
    }

    /// Temperature: divide logits by `t`; `t <= 0` keeps only the first
    /// maximum (all others become -inf).
    pub fn temperature(&mut self, t: f32) {
        if self.data.is_empty() {
            return;
        }
        if t <= 0.0 {
            let mut max_i = 0;
            let mut max_l = self.data[0].logit;
            for i in 1..self.data.len() {
                if self.data[i].logit > max_l {
                    self.data[max_i].logit = f32::NEG_INFINITY;
                    max_i = i;
                    max_l = self.data[i].logit;
                } else {
                    self.data[i].logit = f32::NEG_INFINITY;
                }
            }
            return;
        }
        for c in &mut self.data {
            c.logit /= t;
        }
    }

    /// llama.cpp's `dist` sampler: one `uniform_real_distribution<double>`
    /// draw, then a walk over the candidates in their current order until the
    /// running (unnormalised) sum reaches `rnd * total`. Returns the token id.
    /// Panics on an empty candidate list.
    pub fn draw(&mut self, rng: &mut Mt19937) -> u32 {
        assert!(
            !self.data.is_empty(),
            "sampling from an empty candidate list"
        );
        if self.data.len() == 1 {
            // llama.cpp still consumes one draw here.
            let _ = rng.next_f64();
            self.data[0].p = 1.0;
            return self.data[0].id;
        }
        let mut max_l = self.data[0].logit;
        if !self.sorted {
            for c in &self.data[1..] {
                max_l = cmax(max_l, c.logit);
            }
        }
        let mut sum = 0.0f64;
        for c in &mut self.data {
            let p = (c.logit - max_l).exp();
            c.p = p;
            sum += f64::from(p);
        }
        let target = sum * rng.next_f64();
        let mut run = 0.0f64;
        for c in &self.data {
            run += f64::from(c.p);
            if run >= target {
                return c.id;
            }
        }
        self.data[self.data.len() - 1].id
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests for the candidate-list steps.

    use super::*;

    fn ids(c: &Candidates) -> Vec<u32> {
        let mut v: Vec<u32> = c.data.iter().map(|c| c.id).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn top_k_keeps_best_sorted() {
        let mut c = Candidates::default();
        c.load(&[0.1, 3.0, -1.0, 2.0, 3.0, 0.5]);
        c.top_k(3);
        let order: Vec<u32> = c.data.iter().map(|c| c.id).collect();
        assert_eq!(order, vec![1, 4, 3]);
        assert!(c.sorted);
        c.load(&[1.0, 2.0]);
        c.top_k(0);
        assert_eq!(c.len(), 2);
        assert!(!c.sorted);
    }

    #[test]
    fn heap_top_k_matches_select() {
        let mut rows: Vec<Vec<f32>> = vec![
            (0..5000)
                .map(|i| ((i * 7919) % 5003) as f32 * 1e-3)
                .collect(),
            (0..5000).map(|i| i as f32).collect(), // ascending: worst case
            (0..5000).map(|i| -(i as f32)).collect(),
            vec![1.0; 5000],
            (0..5000).map(|i| ((i % 7) as f32).floor()).collect(),
        ];
        let mut signed = vec![0.0f32; 1000];
        for (i, v) in signed.iter_mut().enumerate() {
            *v = match i % 3 {
                0 => -0.0,
                1 => 0.0,
                _ => f32::NAN,
            };
        }
        rows.push(signed);
        for row in &rows {
            for k in [1, 2, 40, 100, 249] {
                let mut a = Candidates::default();
                a.load_top_k(row, k);
                let mut b = Candidates::default();
                b.load(row);
                b.top_k(k);
                assert_eq!(a.data.len(), k as usize);
                let ida: Vec<u32> = a.data.iter().map(|c| c.id).collect();
                let idb: Vec<u32> = b.data.iter().map(|c| c.id).collect();
                assert_eq!(ida, idb, "k = {k}");
                assert!(a.sorted && b.sorted);
            }
        }
        let mut c = Candidates::default();
        c.load_top_k(&[1.0, 2.0, 3.0], 0);
        assert_eq!(c.len(), 3);
        assert!(!c.sorted);
    }

    #[test]
    fn top_p_large_vocab_matches_small_path() {
        // > 1024 candidates exercise the adaptive (buffered) path, including
        // the fallback to a full sort when 256 tokens are not enough.
        let logits: Vec<f32> = (0..3000)
            .map(|i| ((i * 7919) % 3001) as f32 * 1e-4)
            .collect();
        for p in [0.05f32, 0.5, 0.95] {
            let mut big = Candidates::default();
            big.load(&logits);
            big.top_p(p, 0);
            let mut reference = Candidates::default();
            reference.load(&logits);
            reference.data.sort_unstable_by(by_logit_desc);
            reference.sorted = true;
            reference.top_p(p, 0);
            assert_eq!(ids(&big), ids(&reference), "p = {p}");
            assert!(big.sorted);
        }
    }

    #[test]
    fn min_p_unsorted_and_sorted_agree() {
        let logits = [0.0f32, 1.0, 2.0, -3.0, 1.9];
        let mut a = Candidates::default();
        a.load(&logits);
        a.min_p(0.5, 0);
        let mut b = Candidates::default();
        b.load(&logits);
        b.top_k(5);
        b.min_p(0.5, 0);
        assert_eq!(ids(&a), ids(&b));
        // exp(1.9-2) = 0.905 >= 0.5; exp(1-2) = 0.37 < 0.5
        assert_eq!(ids(&a), vec![2, 4]);
    }

    #[test]
    fn temperature_zero_keeps_first_max() {
        let mut c = Candidates::default();
        c.load(&[1.0, 5.0, 5.0, 2.0]);
        c.temperature(0.0);
        let l: Vec<f32> = c.data.iter().map(|c| c.logit).collect();
        assert_eq!(l[1], 5.0);
        assert!(l[0].is_infinite() && l[2].is_infinite() && l[3].is_infinite());
        let mut rng = Mt19937::new(1);
        assert_eq!(c.draw(&mut rng), 1);
    }
}
