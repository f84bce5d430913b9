//! Timing one of Ember's kernels against ggml's matmul on a model's own weights, for the
//! route tuner (`crate::model::tune`): both give the same bits, so which is faster is the only
//! question, and its answer depends on the machine (its ratio of memory bandwidth to compute)
//! and the weight's shape.
//!
//! A pass multiplies each of the given weights (all of one type and shape) once by the same
//! activation columns, in one graph on a CPU backend with the thread count in use. Decoding
//! reads every weight from memory, so a *cold* timing first evicts the caches (reading a
//! buffer larger than the last-level cache) and takes weights whose bytes together exceed the
//! caches; a prompt's product is compute-bound and is timed warm on one weight. The two
//! kernels' passes alternate; each keeps its best.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::super::{Backend, BufferType, Context, GgmlError, Tensor, Type};
use super::Kernel;

/// The best pass of each kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub ember: Duration,
    pub ggml: Duration,
    /// Each kernel's two best passes agree within [`STEADY`] (a busy machine's do not: such
    /// a timing is used, not kept).
    pub steady: bool,
}

/// How much a kernel's second-best pass may exceed its best in a steady timing.
pub const STEADY: f64 = 1.15;

/// Weight bytes a cold timing multiplies per pass (fewer where the weights alike hold less).
pub const COLD_BYTES: usize = 16 << 20;

/// Operations a pass of many columns is cut to (a few milliseconds).
const PROBE_OPS: i64 = 1 << 30;

/// Times `weights` × `cols` columns by kernel `k` and by ggml's matmul on `backend`,
/// alternating, best of `reps` passes each (after one warm-up pass each); `cold`: the caches
/// are evicted before every pass.
pub fn time_kernel(
    backend: &Backend,
    weights: &[Tensor<'_>],
    k: Kernel,
    cols: i64,
    cold: bool,
    reps: usize,
) -> Result<Timing, GgmlError> {
    let Some(first) = weights.first() else {
        return Ok(Timing {
            ember: Duration::ZERO,
            ggml: Duration::ZERO,
            steady: false,
        });
    };
    let ne0 = first.ne()[0];
    let x: Vec<f32> = columns(ne0 as usize * cols as usize);
    let n = weights.len();
    // Per weight at most two nodes (an Ember op may quantize the columns first).
    let (ctx_e, ctx_g) = (
        Context::new(4 * n + 16, 2 * n + 8)?,
        Context::new(4 * n + 16, 2 * n + 8)?,
    );
    let ge = pass_graph(&ctx_e, weights, k, cols, &x)?;
    let gg = pass_graph(&ctx_g, weights, Kernel::Ggml, cols, &x)?;
    let mut passes: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..=reps {
        for (i, g) in [&ge, &gg].into_iter().enumerate() {
            if cold {
                evict_caches();
            }
            let t0 = Instant::now();
            backend.compute(g)?;
            let t = t0.elapsed();
            // the first pass of each is a warm-up (work buffers, pages of the mapping)
            if rep > 0 {
                passes[i].push(t);
            }
        }
    }
    passes.iter_mut().for_each(|p| p.sort_unstable());
    let steady = passes
        .iter()
        .all(|p| p.len() < 2 || p[1].as_secs_f64() <= p[0].as_secs_f64() * STEADY);
    Ok(Timing {
        ember: passes[0].first().copied().unwrap_or_default(),
        ggml: passes[1].first().copied().unwrap_or_default(),
        steady,
    })
}

/// A graph in `ctx` multiplying each weight by `cols` columns holding `x`, by kernel `k`.
fn pass_graph<'a>(
    ctx: &'a Context,
    weights: &[Tensor<'a>],
    k: Kernel,
    cols: i64,
    x: &[f32],
) -> Result<super::super::Graph<'a>, GgmlError> {
    let ne0 = weights[0].ne()[0];
    let xt = ctx.new_tensor(Type::F32, &[ne0, cols]);
    let mut g = ctx.new_graph(2 * weights.len() + 8);
    // A product of many columns is timed on enough of the weight's first rows for about
    // PROBE_OPS operations (the kernels' speed per row does not depend on the row count).
    let rows = (PROBE_OPS / (2 * ne0 * cols).max(1) / 64 * 64).max(64);
    for w in weights {
        let w = match w.ne()[1] > rows && cols > 1 {
            true => ctx.view(*w, &[ne0, rows], &[w.nb()[1]], 0),
            false => *w,
        };
        g.expand(ctx.mul_mat_by(k, w, xt));
    }
    ctx.alloc_tensors(BufferType::cpu(), false)?;
    xt.write_f32(x)?;
    Ok(g)
}

/// Activation values of a plausible spread (a fixed sequence: timing needs no randomness).
fn columns(n: usize) -> Vec<f32> {
    let mut s = 0x9e37_79b9_u32;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Reads a buffer half again as large as the last-level cache, one word per cache line, so
/// that the weights a pass reads next come from memory.
fn evict_caches() {
    static BUF: OnceLock<Vec<u64>> = OnceLock::new();
    let buf = BUF.get_or_init(|| {
        let bytes = (last_level_cache() * 3 / 2).clamp(8 << 20, 256 << 20);
        (0..bytes as u64 / 8).collect()
    });
    let sum = buf.iter().step_by(8).fold(0u64, |a, &v| a.wrapping_add(v));
    std::hint::black_box(sum);
}

/// The largest cache's size in bytes, as Linux reports it (32 MiB where it does not).
fn last_level_cache() -> usize {
    let size = (0..8)
        .filter_map(|i| {
            let p = format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size");
            parse_cache_size(std::fs::read_to_string(p).ok()?.trim())
        })
        .max();
    size.unwrap_or(32 << 20)
}

/// "32768K" → bytes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_linux_writes_them() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("x"), None);
        assert_eq!(parse_cache_size(""), None);
    }
}
