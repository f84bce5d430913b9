//! The math and file format of llama.cpp's `llama-perplexity` tool, without a
//! model: the caller evaluates chunks and feeds logits rows.
//!
//! Layout of a run (as in llama.cpp): the token stream is cut into `n_chunk`
//! chunks of `n_ctx` tokens; in each chunk the positions
//! `n_ctx/2 ..= n_ctx-2` are scored, position `j` predicting token `j+1`, so
//! every chunk contributes [`scored_per_chunk`]`(n_ctx) = n_ctx - 1 - n_ctx/2`
//! rows.
//!
//! * [`logits_file`]: the `--kl-divergence-base` file (`_logits_` header,
//!   tokens, one quantized log-prob row per scored position), bit-exact with
//!   llama.cpp's writer.
//! * [`stats`]: perplexity ± error and the KL-divergence statistics block.

pub mod logits_file;
pub mod stats;

pub use logits_file::{
    quantize_log_probs, LogProbRow, LogitsFileError, LogitsReader, LogitsWriter, RowQuant,
};
pub use stats::{KldAccumulator, KldSummary, PplAccumulator, KLD_CHUNK_HEADER};

/// First scored position in a chunk (`n_ctx / 2`).
pub fn first_scored(n_ctx: usize) -> usize {
    n_ctx / 2
}

/// Scored positions per chunk: `n_ctx - 1 - n_ctx/2` (0 for `n_ctx < 2`).
pub fn scored_per_chunk(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + n_ctx / 2)
}

/// Length in `u16` of one stored log-prob row: 4 (two `f32`: scale, min)
/// plus `n_vocab` rounded up to even.
pub fn row_len_u16(n_vocab: usize) -> usize {
    2 * n_vocab.div_ceil(2) + 4
}

/// `std::max(a, b)` for floats: `a < b ? b : a`.
#[inline]
pub(crate) fn cmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min(a, b)` for floats: `b < a ? b : a`.
#[inline]
pub(crate) fn cmin(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

/// Max logit (first maximum, llama.cpp's scan) and `sum(exp(l - max))` with
/// `f32` exponentials accumulated in `f64`.
#[inline]
pub(crate) fn max_and_sum_exp(logits: &[f32]) -> (f32, f64) {
    let mut max = logits[0];
    for &l in &logits[1..] {
        max = cmax(max, l);
    }
    let mut sum = 0.0f64;
    for &l in logits {
        sum += f64::from((l - max).exp());
    }
    (max, sum)
}

/// C `printf("%W.Pf")` for one value, including glibc's `nan`/`-nan`/`inf`.
pub(crate) fn cfmt(x: f64, width: usize, prec: usize) -> String {
    if x.is_nan() {
        let s = if x.is_sign_negative() { "-nan" } else { "nan" };
        format!("{s:>width$}")
    } else if x.is_infinite() {
        let s = if x < 0.0 { "-inf" } else { "inf" };
        format!("{s:>width$}")
    } else {
        format!("{x:>width$.prec$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_helpers() {
        assert_eq!(scored_per_chunk(512), 255);
        assert_eq!(first_scored(512), 256);
        assert_eq!(scored_per_chunk(5), 2); // positions 2, 3
        assert_eq!(scored_per_chunk(1), 0);
        assert_eq!(scored_per_chunk(0), 0);
        assert_eq!(row_len_u16(32000), 32004);
        assert_eq!(row_len_u16(32001), 32006);
    }

    #[test]
    fn c_formatting() {
        assert_eq!(cfmt(1.5, 10, 6), "  1.500000");
        assert_eq!(cfmt(-0.0, 6, 3), "-0.000");
        assert_eq!(cfmt(f64::NAN, 6, 3), "   nan");
        assert_eq!(cfmt(-f64::NAN, 6, 3), "  -nan");
        assert_eq!(cfmt(f64::INFINITY, 4, 1), " inf");
        assert_eq!(cfmt(0.125, 0, 2), "0.12"); // round-half-even on exact value
    }
}
