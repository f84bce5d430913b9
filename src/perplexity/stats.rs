//! Perplexity and KL-divergence statistics, following `llama-perplexity`'s
//! arithmetic (f32 where it uses `float`, f64 accumulators) and its output.

use super::logits_file::LogProbRow;
use super::{cfmt, max_and_sum_exp};

/// Column header printed before the per-chunk KLD lines.
pub const KLD_CHUNK_HEADER: &str = "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p";

/// Perplexity over scored tokens: `exp(mean nll)` with llama.cpp's error
/// estimate `ppl * sqrt(var(nll) / (count - 1))`.
#[derive(Clone, Debug, Default)]
pub struct PplAccumulator {
    nll: f64,
    nll2: f64,
    count: usize,
}

impl PplAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scores one position: adds `-log softmax(logits)[target]` (computed as
    /// llama.cpp's plain perplexity path does) and returns it.
    pub fn add_token(&mut self, logits: &[f32], target: u32) -> f64 {
        let (max, sum_exp) = max_and_sum_exp(logits);
        let log_softmax = f64::from(logits[target as usize] - max) - sum_exp.ln();
        let v = -log_softmax;
        self.add_nll(v);
        v
    }

    /// Adds an already computed negative log-likelihood (e.g. the value
    /// returned by `LogitsWriter::write_row`).
    pub fn add_nll(&mut self, v: f64) {
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// `(ppl, ppl_err)`. The error is NaN when it cannot be estimated
    /// (fewer than 2 tokens or non-positive variance; llama.cpp prints
    /// "Unexpected negative standard deviation of log(prob)" then).
    pub fn ppl(&self) -> (f64, f64) {
        let n = self.count as f64;
        let mean = self.nll / n;
        let ppl = mean.exp();
        let var = self.nll2 / n - mean * mean;
        if var > 0.0 && self.count > 1 {
            (ppl, (var / (n - 1.0)).sqrt() * ppl)
        } else {
            (ppl, f64::NAN)
        }
    }

    /// Running value printed after each chunk: `[N]PPL,` (1-based chunk).
    pub fn chunk_line(&self, chunk: usize) -> String {
        format!("[{}]{:.4},", chunk, (self.nll / self.count as f64).exp())
    }

    /// The closing line, as llama.cpp logs it.
    pub fn final_line(&self) -> String {
        match self.ppl() {
            (p, e) if !e.is_nan() => format!("Final estimate: PPL = {p:.4} +/- {e:.5}"),
            _ => "Unexpected negative standard deviation of log(prob)".to_string(),
        }
    }
}

/// Mean and its standard error (llama.cpp's `mean_and_uncertainty`).
fn mean_and_uncertainty(sum: f64, sum2: f64, count: usize) -> (f64, f64) {
    if count < 1 {
        return (0.0, 0.0);
    }
    let n = count as f64;
    let f = sum / n;
    let df = sum2 / n - f * f;
    let df = if df > 0.0 && count > 10 {
        (df / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (f, df)
}

/// Covariance of the means (llama.cpp's `covariance`).
fn covariance(suma: f64, sumb: f64, sumab: f64, count: usize) -> f64 {
    if count < 10 {
        return 0.0;
    }
    let n = count as f64;
    (sumab / n - (suma / n) * (sumb / n)) / (n - 1.0)
}

/// Linear-interpolated percentile of sorted values, in f32 like llama.cpp.
fn percentile(values: &[f32], fraction: f32) -> f32 {
    if fraction <= 0.0 {
        return values[0];
    }
    if fraction >= 1.0 {
        return values[values.len() - 1];
    }
    let mut p = fraction * (values.len() - 1) as f32;
    let ip = p as usize;
    p -= ip as f32;
    (1.0 - p) * values[ip] + p * values[(ip + 1).min(values.len() - 1)]
}

fn median(values: &[f32]) -> f32 {
    let n = values.len();
    if n.is_multiple_of(2) {
        0.5 * (values[n / 2] + values[n / 2 - 1])
    } else {
        values[n / 2]
    }
}

/// Fractions reported for KLD (max and min are listed separately).
pub const KLD_FRACTIONS: [f32; 8] = [0.999, 0.990, 0.950, 0.900, 0.100, 0.050, 0.010, 0.001];
/// Fractions reported for Δp.
pub const DP_FRACTIONS: [f32; 10] = [
    0.999, 0.990, 0.950, 0.900, 0.750, 0.250, 0.100, 0.050, 0.010, 0.001,
];

/// Everything llama-perplexity prints at the end of a KL-divergence run.
/// Percentile arrays follow [`KLD_FRACTIONS`] / [`DP_FRACTIONS`]; order
/// statistics are 0 when no token was scored. Δp values are fractions
/// (multiply by 100 for %), as are `same_top` and `rms_dp`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KldSummary {
    pub count: usize,
    pub ppl: f64,
    pub ppl_err: f64,
    pub ppl_base: f64,
    pub ppl_base_err: f64,
    /// Correlation of ln PPL(Q) and ln PPL(base) (fraction).
    pub ln_ppl_cor: f64,
    pub ln_ppl_ratio: f64,
    pub ln_ppl_ratio_err: f64,
    pub ppl_ratio: f64,
    pub ppl_ratio_err: f64,
    pub ppl_diff: f64,
    pub ppl_diff_err: f64,
    pub kld_mean: f64,
    pub kld_err: f64,
    pub kld_max: f32,
    pub kld_median: f32,
    pub kld_min: f32,
    pub kld_percentiles: [f32; 8],
    pub dp_mean: f64,
    pub dp_err: f64,
    pub dp_max: f32,
    pub dp_median: f32,
    pub dp_min: f32,
    pub dp_percentiles: [f32; 10],
    /// Largest |Δp| seen.
    pub dp_max_abs: f32,
    pub rms_dp: f64,
    pub rms_dp_err: f64,
    /// Fraction of positions where both models' top token agree.
    pub same_top: f64,
    pub same_top_err: f64,
}

impl KldSummary {
    /// Same-top-token percentage.
    pub fn same_top_pct(&self) -> f64 {
        100.0 * self.same_top
    }

    /// Its error, in percentage points.
    pub fn same_top_err_pct(&self) -> f64 {
        100.0 * self.same_top_err
    }

    /// The final three statistics blocks, formatted exactly like
    /// llama-perplexity (which prints them only with >= 100 tokens: `None`
    /// below that).
    pub fn report(&self) -> Option<String> {
        if self.count < 100 {
            return None;
        }
        let f = |x: f64| cfmt(x, 10, 6);
        let p = |x: f32| cfmt(100.0 * f64::from(x), 6, 3);
        let mut s = String::new();
        s += "====== Perplexity statistics ======\n";
        s += &format!(
            "Mean PPL(Q)                   : {} ± {}\n",
            f(self.ppl),
            f(self.ppl_err)
        );
        s += &format!(
            "Mean PPL(base)                : {} ± {}\n",
            f(self.ppl_base),
            f(self.ppl_base_err)
        );
        s += &format!(
            "Cor(ln(PPL(Q)), ln(PPL(base))): {}%\n",
            cfmt(100.0 * self.ln_ppl_cor, 6, 2)
        );
        s += &format!(
            "Mean ln(PPL(Q)/PPL(base))     : {} ± {}\n",
            f(self.ln_ppl_ratio),
            f(self.ln_ppl_ratio_err)
        );
        s += &format!(
            "Mean PPL(Q)/PPL(base)         : {} ± {}\n",
            f(self.ppl_ratio),
            f(self.ppl_ratio_err)
        );
        s += &format!(
            "Mean PPL(Q)-PPL(base)         : {} ± {}\n",
            f(self.ppl_diff),
            f(self.ppl_diff_err)
        );
        s += "\n====== KL divergence statistics ======\n";
        s += &format!("Mean    KLD: {} ± {}\n", f(self.kld_mean), f(self.kld_err));
        let k = |x: f32| f(f64::from(x));
        let kp = &self.kld_percentiles;
        s += &format!("Maximum KLD: {}\n", k(self.kld_max));
        for (label, v) in ["99.9%", "99.0%", "95.0%", "90.0%"].iter().zip(&kp[..4]) {
            s += &format!("{label}   KLD: {}\n", k(*v));
        }
        s += &format!("Median  KLD: {}\n", k(self.kld_median));
        for (label, v) in ["10.0%", " 5.0%", " 1.0%", " 0.1%"].iter().zip(&kp[4..]) {
            s += &format!("{label}   KLD: {}\n", k(*v));
        }
        s += &format!("Minimum KLD: {}\n", k(self.kld_min));
        s += "\n====== Token probability statistics ======\n";
        s += &format!(
            "Mean    Δp: {} ± {} %\n",
            cfmt(100.0 * self.dp_mean, 6, 3),
            cfmt(100.0 * self.dp_err, 5, 3)
        );
        let dp = &self.dp_percentiles;
        s += &format!("Maximum Δp: {}%\n", p(self.dp_max));
        for (label, v) in ["99.9%", "99.0%", "95.0%", "90.0%", "75.0%"]
            .iter()
            .zip(&dp[..5])
        {
            s += &format!("{label}   Δp: {}%\n", p(*v));
        }
        s += &format!("Median  Δp: {}%\n", p(self.dp_median));
        for (label, v) in ["25.0%", "10.0%", " 5.0%", " 1.0%", " 0.1%"]
            .iter()
            .zip(&dp[5..])
        {
            s += &format!("{label}   Δp: {}%\n", p(*v));
        }
        s += &format!("Minimum Δp: {}%\n", p(self.dp_min));
        s += &format!(
            "RMS Δp    : {} ± {} %\n",
            cfmt(100.0 * self.rms_dp, 6, 3),
            cfmt(100.0 * self.rms_dp_err, 5, 3)
        );
        s += &format!(
            "Same top p: {} ± {} %\n",
            cfmt(100.0 * self.same_top, 6, 3),
            cfmt(100.0 * self.same_top_err, 5, 3)
        );
        Some(s)
    }
}

/// Accumulates llama.cpp's `kl_divergence_result` over scored positions,
/// comparing the current model's logits against the base model's stored
/// log-probs. Keeps every per-token KLD and Δp for the percentiles.
#[derive(Clone, Debug, Default)]
pub struct KldAccumulator {
    sum_nll: f64,
    sum_nll2: f64,
    sum_nll_base: f64,
    sum_nll_base2: f64,
    sum_nll_nll_base: f64,
    sum_kld: f64,
    sum_kld2: f64,
    sum_p_diff: f64,
    sum_p_diff2: f64,
    sum_p_diff4: f64,
    max_p_diff: f32,
    n_same_top: usize,
    count: usize,
    kld_values: Vec<f32>,
    p_diff_values: Vec<f32>,
}

impl KldAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds one position: `logits` of the model under test, the base row for
    /// the same position, and the token it predicts. Returns `(KLD, Δp)`.
    /// Panics if the row lengths differ or `target` is out of range.
    pub fn add(&mut self, logits: &[f32], base: &LogProbRow<'_>, target: u32) -> (f64, f32) {
        assert_eq!(logits.len(), base.q.len(), "KLD: logits vs base n_vocab");
        let tok = target as usize;
        let mut max_logit = logits[0];
        let mut imax = 0usize;
        for (i, &l) in logits.iter().enumerate().skip(1) {
            if l > max_logit {
                max_logit = l;
                imax = i;
            }
        }
        let mut sum_exp = 0.0f64;
        for &l in logits {
            sum_exp += f64::from((l - max_logit).exp());
        }
        let log_sum_exp = sum_exp.ln() as f32;

        let nll = max_logit + log_sum_exp - logits[tok];
        self.sum_nll += f64::from(nll);
        self.sum_nll2 += f64::from(nll * nll);

        let nll_base = -base.log_prob(tok);
        self.sum_nll_base += f64::from(nll_base);
        self.sum_nll_base2 += f64::from(nll_base * nll_base);
        self.sum_nll_nll_base += f64::from(nll * nll_base);

        let log_norm = max_logit + log_sum_exp;
        let mut kld = 0.0f64;
        let mut imax_base = 0usize;
        let mut p_log_base_max = 0.0f32;
        for (i, &l) in logits.iter().enumerate() {
            let p_log_base = base.log_prob(i);
            if i == 0 || p_log_base > p_log_base_max {
                p_log_base_max = p_log_base;
                imax_base = i;
            }
            if p_log_base > -16.0 {
                let p_base = p_log_base.exp();
                kld += f64::from(p_base * (p_log_base - l + log_norm));
            }
        }
        self.sum_kld += kld;
        self.sum_kld2 += kld * kld;
        self.count += 1;
        if imax == imax_base {
            self.n_same_top += 1;
        }

        let p_base = (-nll_base).exp();
        let p = (-nll).exp();
        let p_diff = p - p_base;
        self.sum_p_diff += f64::from(p_diff);
        let p_diff2 = f64::from(p_diff * p_diff);
        self.sum_p_diff2 += p_diff2;
        self.sum_p_diff4 += p_diff2 * p_diff2;
        self.max_p_diff = self.max_p_diff.max(p_diff.abs());

        self.kld_values.push(kld as f32);
        self.p_diff_values.push(p_diff);
        (kld, p_diff)
    }

    /// The running per-chunk line llama-perplexity prints (1-based chunk):
    /// PPL, ln(PPL ratio), KLD, Δp RMS, same top — each with its error.
    pub fn chunk_line(&self, chunk: usize) -> String {
        let s = self.summary_means();
        format!(
            "{:4}    {} ± {}    {} ± {}    {} ± {}    {} ± {} %    {} ± {} %",
            chunk,
            cfmt(s.ppl, 9, 4),
            cfmt(s.ppl_err, 9, 4),
            cfmt(s.ln_ppl_ratio, 10, 5),
            cfmt(s.ln_ppl_ratio_err, 10, 5),
            cfmt(s.kld_mean, 10, 5),
            cfmt(s.kld_err, 10, 5),
            cfmt(100.0 * s.rms_dp, 6, 3),
            cfmt(100.0 * s.rms_dp_err, 6, 3),
            cfmt(100.0 * s.same_top, 6, 3),
            cfmt(100.0 * s.same_top_err, 6, 3),
        )
    }

    /// Means and errors only (no sorting).
    fn summary_means(&self) -> KldSummary {
        let n = self.count;
        let log_ppl = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n);
        let ppl = log_ppl.0.exp();
        let ppl_err = ppl * log_ppl.1;
        let log_base = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n);
        let ppl_base = log_base.0.exp();
        let ppl_base_err = ppl_base * log_base.1;
        let cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n);
        let ln_ratio = log_ppl.0 - log_base.0;
        let ln_ratio_err = (log_ppl.1 * log_ppl.1 + log_base.1 * log_base.1 - 2.0 * cov).sqrt();
        let ppl_ratio = ln_ratio.exp();
        let ppl_cov = ppl * ppl_base * cov;
        let kld = mean_and_uncertainty(self.sum_kld, self.sum_kld2, n);
        let dp = mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n);
        let mse = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n);
        let rms_dp = mse.0.sqrt();
        let same_top = self.n_same_top as f64 / n as f64;
        KldSummary {
            count: n,
            ppl,
            ppl_err,
            ppl_base,
            ppl_base_err,
            ln_ppl_cor: cov / (log_ppl.1 * log_base.1),
            ln_ppl_ratio: ln_ratio,
            ln_ppl_ratio_err: ln_ratio_err,
            ppl_ratio,
            ppl_ratio_err: ppl_ratio * ln_ratio_err,
            ppl_diff: ppl - ppl_base,
            ppl_diff_err: (ppl_err * ppl_err + ppl_base_err * ppl_base_err - 2.0 * ppl_cov).sqrt(),
            kld_mean: kld.0,
            kld_err: kld.1,
            dp_mean: dp.0,
            dp_err: dp.1,
            dp_max_abs: self.max_p_diff,
            rms_dp,
            rms_dp_err: 0.5 / rms_dp * mse.1,
            same_top,
            same_top_err: (same_top * (1.0 - same_top) / (n as f64 - 1.0)).sqrt(),
            ..KldSummary::default()
        }
    }

    /// Full statistics, including medians and percentiles (sorts copies of
    /// the per-token values).
    pub fn summary(&self) -> KldSummary {
        let mut s = self.summary_means();
        if self.count == 0 {
            return s;
        }
        let mut kld = self.kld_values.clone();
        let mut dp = self.p_diff_values.clone();
        kld.sort_unstable_by(f32::total_cmp);
        dp.sort_unstable_by(f32::total_cmp);
        s.kld_max = kld[kld.len() - 1];
        s.kld_min = kld[0];
        s.kld_median = median(&kld);
        for (o, &fr) in s.kld_percentiles.iter_mut().zip(&KLD_FRACTIONS) {
            *o = percentile(&kld, fr);
        }
        s.dp_max = dp[dp.len() - 1];
        s.dp_min = dp[0];
        s.dp_median = median(&dp);
        for (o, &fr) in s.dp_percentiles.iter_mut().zip(&DP_FRACTIONS) {
            *o = percentile(&dp, fr);
        }
        s
    }

    /// Per-token KLD values in input order.
    pub fn kld_values(&self) -> &[f32] {
        &self.kld_values
    }

    /// Per-token Δp values in input order.
    pub fn p_diff_values(&self) -> &[f32] {
        &self.p_diff_values
    }
}

#[cfg(test)]
mod tests {
    use super::super::logits_file::quantize_log_probs;
    use super::*;

    fn quantized(logits: &[f32]) -> (f32, f32, Vec<u16>) {
        let mut q = vec![0u16; logits.len()];
        let rq = quantize_log_probs(logits, &mut q);
        (rq.scale, rq.min_log_prob, q)
    }

    fn pseudo_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 40) as f32 / 16_777_216.0 * 12.0 - 6.0
            })
            .collect()
    }

    #[test]
    fn ppl_of_three_known_tokens() {
        let mut acc = PplAccumulator::new();
        // p = 1/2, 3/4, 1/4
        let v1 = acc.add_token(&[0.0, 0.0], 0);
        let v2 = acc.add_token(&[0.0, 3f32.ln()], 1);
        let v3 = acc.add_token(&[1.0, 1.0, 1.0, 1.0], 2);
        assert!((v1 - 2f64.ln()).abs() < 1e-6);
        assert!((v2 - (4.0f64 / 3.0).ln()).abs() < 1e-6);
        assert!((v3 - 4f64.ln()).abs() < 1e-6);
        assert_eq!(acc.count(), 3);
        let (ppl, err) = acc.ppl();
        let want = (2.0f64 * 4.0 / 3.0 * 4.0).powf(1.0 / 3.0);
        assert!((ppl - want).abs() < 1e-5, "{ppl} vs {want}");
        let nll = [2f64.ln(), (4.0f64 / 3.0).ln(), 4f64.ln()];
        let mean = nll.iter().sum::<f64>() / 3.0;
        let var = nll.iter().map(|v| v * v).sum::<f64>() / 3.0 - mean * mean;
        let want_err = (var / 2.0).sqrt() * want;
        assert!((err - want_err).abs() < 1e-5, "{err} vs {want_err}");
        assert_eq!(acc.chunk_line(1), format!("[1]{:.4},", ppl));
        assert!(acc
            .final_line()
            .starts_with("Final estimate: PPL = 2.2013 +/- "));

        // a single token has no error estimate
        let mut one = PplAccumulator::new();
        one.add_nll(1.0);
        assert!(one.ppl().1.is_nan());
        assert!(one.final_line().starts_with("Unexpected"));
    }

    #[test]
    fn kld_of_identical_logits_is_zero() {
        let mut acc = KldAccumulator::new();
        for r in 0..150u64 {
            let logits = pseudo_logits(64, r + 1);
            let (scale, min, q) = quantized(&logits);
            let base = LogProbRow { scale, min, q: &q };
            let target = (r % 64) as u32;
            let (kld, dp) = acc.add(&logits, &base, target);
            assert!(kld.abs() < 1e-4, "row {r}: {kld}");
            assert!(dp.abs() < 1e-3);
        }
        let s = acc.summary();
        assert_eq!(s.count, 150);
        assert!(s.kld_mean.abs() < 1e-5);
        assert_eq!(s.same_top, 1.0);
        assert_eq!(s.same_top_pct(), 100.0);
        assert_eq!(s.same_top_err, 0.0);
        assert!((s.ppl / s.ppl_base - 1.0).abs() < 1e-3);
        assert!(s.ln_ppl_ratio.abs() < 1e-3);
        assert!(s.rms_dp < 1e-3);
        assert!(s.kld_max >= s.kld_percentiles[0] && s.kld_percentiles[7] >= s.kld_min);
        let report = s.report().unwrap();
        assert!(report.contains("====== KL divergence statistics ======"));
        assert!(report.contains("Same top p: 100.000 ± 0.000 %"));
        assert!(acc.chunk_line(3).starts_with("   3    "));
        assert_eq!(acc.kld_values().len(), 150);
    }

    #[test]
    fn kld_matches_analytic_value() {
        let base_logits = [0.0f32, 1.0, 2.0];
        let test_logits = [0.5f32, 0.5, 1.0];
        let lsm = |l: &[f32]| {
            let z: f64 = l.iter().map(|&x| f64::from(x).exp()).sum();
            l.iter().map(|&x| f64::from(x) - z.ln()).collect::<Vec<_>>()
        };
        let (pb, pt) = (lsm(&base_logits), lsm(&test_logits));
        let want: f64 = pb.iter().zip(&pt).map(|(b, t)| b.exp() * (b - t)).sum();
        let (scale, min, q) = quantized(&base_logits);
        let mut acc = KldAccumulator::new();
        let (kld, dp) = acc.add(&test_logits, &LogProbRow { scale, min, q: &q }, 0);
        assert!((kld - want).abs() < 1e-4, "{kld} vs {want}");
        assert!((f64::from(dp) - (pt[0].exp() - pb[0].exp())).abs() < 1e-4);
        let s = acc.summary();
        assert_eq!(s.same_top, 1.0); // both put token 2 on top
        assert!(s.report().is_none()); // fewer than 100 tokens
        let (_, _, q2) = quantized(&[3.0, 1.0, 2.0]);
        acc.add(&test_logits, &LogProbRow { scale, min, q: &q2 }, 0);
        assert_eq!(acc.summary().same_top, 0.5);
    }

    #[test]
    fn helpers_follow_llama_cpp() {
        let v = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.9), 4.6);
        assert_eq!(median(&v), 3.0);
        assert_eq!(median(&v[..4]), 2.5);
        assert_eq!(mean_and_uncertainty(10.0, 30.0, 5), (2.0, 0.0)); // count <= 10
        let (m, e) = mean_and_uncertainty(22.0, 50.0, 11);
        assert!((m - 2.0).abs() < 1e-12);
        assert!((e - ((50.0 / 11.0 - 4.0) / 10.0f64).sqrt()).abs() < 1e-12);
        assert_eq!(covariance(1.0, 1.0, 1.0, 9), 0.0);
        assert_eq!(mean_and_uncertainty(1.0, 1.0, 0), (0.0, 0.0));
    }

    /// Sums from llama.cpp's own KLD `log_softmax` (tools/perplexity,
    /// built with g++ -O3, x86-64) over the same LCG-generated rows.
    #[test]
    fn kld_sums_match_llama_cpp() {
        let mut st = 4242u64;
        let mut gen = || {
            st = st
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((st >> 40) as f32 / 16_777_216.0 * 30.0 - 20.0, st)
        };
        let n_vocab = 1001;
        let mut acc = KldAccumulator::new();
        let (mut a, mut b) = (vec![0f32; n_vocab], vec![0f32; n_vocab]);
        for r in 0..40 {
            let mut last = 0;
            for i in 0..n_vocab {
                a[i] = gen().0;
                let (g, s) = gen();
                b[i] = a[i] + g * 0.05;
                last = s;
            }
            if r % 7 == 3 {
                b[0] = 100.0;
            }
            let tok = ((last >> 33) % n_vocab as u64) as u32;
            let (scale, min, q) = quantized(&a);
            acc.add(&b, &LogProbRow { scale, min, q: &q }, tok);
        }
        assert_eq!(acc.sum_kld, 522.671_372_505_031_6);
        assert_eq!(acc.sum_kld2, 45_001.711_042_516_39);
        assert_eq!(acc.sum_nll, 1_217.931_543_827_056_9);
        assert_eq!(acc.sum_nll2, 73_974.023_667_335_51);
        assert_eq!(acc.sum_nll_base, 574.062_139_511_108_4);
        assert_eq!(acc.sum_nll_nll_base, 18_155.633_662_223_816);
        assert_eq!(acc.sum_p_diff2, 3.206_931_329_715_044e-5);
        assert_eq!(acc.sum_p_diff4, 6.918_407_362_368_418e-10);
        assert_eq!(acc.n_same_top, 8);
        assert_eq!(acc.max_p_diff, 0.005_061_836);
    }
}
