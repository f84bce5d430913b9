//! The memory-bandwidth roof of `ember bench`: the machine's read bandwidth, measured by a short
//! STREAM-like pass, and the bytes a generated token reads (weights and KV cache), so that a
//! generation rate can be put as a percentage of what memory allows.

use std::time::Instant;

use crate::gguf::GgufFile;
use crate::kv::KV_PAD;
use crate::model::tune::TuneMode;

/// Passes of the bandwidth probe after its warm-up.
const PASSES: usize = 7;

/// Read bandwidth in bytes per second with `threads` threads: each sums its share of a
/// 512 MiB buffer (far larger than the caches); the best of seven passes after a warm-up, with
/// the spread of the passes (how far the median falls below the best, as a fraction).
pub fn read_bandwidth(threads: usize) -> (f64, f64) {
    const BYTES: usize = 512 << 20;
    let threads = threads.max(1);
    let words = BYTES / 8;
    // Distinct values so that no page is shared copy-on-write zero memory.
    let buf: Vec<u64> = (0..words as u64).collect();
    let chunk = words.div_ceil(threads);
    let pass = || {
        let t0 = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf.chunks(chunk).map(|c| s.spawn(move || sum(c))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(total);
        BYTES as f64 / t0.elapsed().as_secs_f64()
    };
    pass();
    let mut all: Vec<f64> = (0..PASSES).map(|_| pass()).collect();
    all.sort_by(|a, b| b.total_cmp(a));
    let (best, median) = (all[0], all[PASSES / 2]);
    (best, 1.0 - median / best)
}

/// Read bandwidths measured so far, by thread count (each measured once per run), kept at
/// their best in the tune file (`crate::model::tune::best_kept`) unless `mode` is off.
#[derive(Default)]
pub struct Bandwidths {
    seen: Vec<(usize, f64)>,
    pub mode: TuneMode,
}

impl Bandwidths {
    pub fn new(mode: TuneMode) -> Bandwidths {
        Bandwidths {
            seen: Vec::new(),
            mode,
        }
    }

    /// The read bandwidth with `threads` threads, bytes per second (measured on first ask):
    /// the best this machine has shown, this run's probe or an earlier one's.
    pub fn get(&mut self, threads: usize) -> f64 {
        if let Some(&(_, bw)) = self.seen.iter().find(|(t, _)| *t == threads) {
            return bw;
        }
        let (now, spread) = read_bandwidth(threads);
        let bw = crate::model::tune::best_kept("read bandwidth", threads, self.mode, now);
        log::info!(
            "read bandwidth with {threads} threads: {:.1} GB/s now (best of {PASSES} passes; the median {:.1}% below), {:.1} GB/s the best kept",
            now / 1e9,
            spread * 100.0,
            bw / 1e9
        );
        if spread > 0.1 {
            log::warn!(
                "the bandwidth probe's passes spread by {:.0}%: the machine is busy, `bw %` is unreliable",
                spread * 100.0
            );
        }
        self.seen.push((threads, bw));
        bw
    }
}

/// A sum in eight independent lanes (so the loads are not serialised on one adder).
fn sum(v: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for (a, x) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*x);
        }
    }
    let rest: u64 = it.remainder().iter().fold(0, |a, &x| a.wrapping_add(x));
    acc.iter().fold(rest, |a, &x| a.wrapping_add(x))
}

/// Bytes of weights one decoded token reads: every tensor, except that of the token embedding
/// only one row is read, unless it doubles as the output matrix (no `output.weight`), and of a
/// stack of experts (`*_exps`) only the `used` of its `total` experts the router picks.
pub fn weight_bytes_per_token(f: &GgufFile, experts: Option<(u32, u32)>) -> u64 {
    let tied = f.tensor("output.weight").is_none();
    f.tensors()
        .iter()
        .map(|t| {
            if t.name == "token_embd.weight" && !tied {
                let rows = t.dims.get(1).copied().unwrap_or(1).max(1);
                t.size / rows
            } else if let Some((used, total)) = experts.filter(|_| t.name.contains("_exps.")) {
                t.size / total.max(1) as u64 * used as u64
            } else {
                t.size
            }
        })
        .sum()
}

/// Mean KV-cache bytes read per token while generating `n_gen` tokens from an empty cache:
/// each step attends to its padded cell count (`KV_PAD`), at `kv_bytes_per_cell`.
pub fn kv_bytes_per_token(n_gen: u32, n_ctx: u32, kv_bytes_per_cell: u64) -> u64 {
    if n_gen == 0 {
        return 0;
    }
    let cells: u64 = (1..=n_gen)
        .map(|used| (used.div_ceil(KV_PAD) * KV_PAD).min(n_ctx.max(1)) as u64)
        .sum();
    cells * kv_bytes_per_cell / n_gen as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_bytes_follow_the_padded_cells() {
        // 128 steps all attend to 256 cells (n_ctx 128 caps them at 128).
        assert_eq!(kv_bytes_per_token(128, 128, 10), 1280);
        assert_eq!(kv_bytes_per_token(128, 4096, 10), 2560);
        assert_eq!(
            kv_bytes_per_token(512, 4096, 1),
            (256 * 256 + 256 * 512) / 512
        );
        assert_eq!(kv_bytes_per_token(0, 4096, 10), 0);
    }

    #[test]
    fn a_token_reads_only_its_experts() {
        use crate::gguf::{GgmlType, GgufWriter};
        let mut w = GgufWriter::new();
        w.add_tensor("token_embd.weight", GgmlType::F32, &[4, 8], vec![0; 128]);
        w.add_tensor("output.weight", GgmlType::F32, &[4, 8], vec![0; 128]);
        w.add_tensor(
            "blk.0.ffn_gate_inp.weight",
            GgmlType::F32,
            &[4, 8],
            vec![0; 128],
        );
        w.add_tensor(
            "blk.0.ffn_up_exps.weight",
            GgmlType::F32,
            &[4, 2, 8],
            vec![0; 256],
        );
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        // one embedding row, the output, the router, and 2 of the 8 experts
        assert_eq!(
            weight_bytes_per_token(&f, Some((2, 8))),
            16 + 128 + 128 + 64
        );
        assert_eq!(weight_bytes_per_token(&f, None), 16 + 128 + 128 + 256);
    }

    #[test]
    fn lane_sum_is_the_sum() {
        let v: Vec<u64> = (0..1003).collect();
        assert_eq!(sum(&v), 1002 * 1003 / 2);
    }
}
