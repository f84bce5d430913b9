//! The decode attention op against ggml's flash attention, one sequence at a time: equal bit
//! for bit, for head sizes, grouped heads, masked cells, soft-capping, split rows (512 cells or
//! more) and thread counts.

use super::attn::{self, SeqAttn, SEQS_PER_OP};
use super::tests::Rng;
use crate::ggml::{Backend, BufferType, Context, Type};

/// f32 to f16 bits (round to nearest even), for test data.
pub(super) fn f16_bits(x: f32) -> u16 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: test data on a CPU the tests below ran `attn::available` on (F16C).
        unsafe { _mm_extract_epi16::<0>(_mm_cvtps_ph::<0>(_mm_set1_ps(x))) as u16 }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = x;
        unreachable!("the op is x86-64 only")
    }
}

/// ggml's values `a` and the op's `b` are equal bit for bit; else a panic at the first that
/// is not, naming `what`.
pub(super) fn assert_bits(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    if let Some(j) = a
        .iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
    {
        panic!(
            "{what}: value {j} of {}: ggml {} vs op {}",
            a.len(),
            a[j],
            b[j]
        );
    }
}

/// One case: head sizes, heads, cache cells, attended cells per sequence.
struct Case {
    hd: i64,
    n_head: i64,
    n_head_kv: i64,
    /// Cells each sequence's view covers (n_kv) and how many of them are visible.
    seqs: Vec<(i64, i64)>,
    softcap: f32,
}

/// ggml's flash attention per sequence and the op, for `case`, at `threads`.
fn both(case: &Case, threads: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let (a, b, _, _) = run(case, threads, seed, 0);
    (a, b)
}

/// [`both`], then each side computed `reps` more times: the seconds per computation.
fn timed(case: &Case, threads: usize, reps: usize) -> (Vec<f32>, Vec<f32>, f64, f64) {
    run(case, threads, 1, reps)
}

fn run(case: &Case, threads: usize, seed: u64, reps: usize) -> (Vec<f32>, Vec<f32>, f64, f64) {
    let mut rng = Rng(seed);
    let (hd, nh, nkv) = (case.hd, case.n_head, case.n_head_kv);
    let n_seq = case.seqs.len() as i64;
    let size = case.seqs.iter().map(|s| s.0).max().unwrap() + 64;
    let data = Context::new(4 + 3 * n_seq as usize, 0).unwrap();
    let q = data.new_tensor(Type::F32, &[hd, nh, n_seq]);
    let caches: Vec<_> = case
        .seqs
        .iter()
        .map(|&(n_kv, _)| {
            (
                data.new_tensor(Type::F16, &[hd * nkv, size]),
                data.new_tensor(Type::F16, &[hd * nkv, size]),
                data.new_tensor(Type::F16, &[n_kv, 1]),
            )
        })
        .collect();
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    let qs: Vec<f32> = (0..hd * nh * n_seq).map(|_| rng.float()).collect();
    q.write_f32(&qs).unwrap();
    for (&(n_kv, used), (k, v, m)) in case.seqs.iter().zip(&caches) {
        for t in [k, v] {
            let bytes: Vec<u8> = (0..hd * nkv * size)
                .flat_map(|_| f16_bits(rng.float()).to_le_bytes())
                .collect();
            t.write_bytes(0, &bytes).unwrap();
        }
        // visible: the first `used` cells but a few holes (as a window or other sequences
        // leave), the rest -inf
        let mask: Vec<u8> = (0..n_kv)
            .flat_map(|c| {
                let visible = c < used && (c % 37 != 5 || c == 0);
                let x = if visible { 0.0 } else { f32::NEG_INFINITY };
                f16_bits(x).to_le_bytes()
            })
            .collect();
        m.write_bytes(0, &mask).unwrap();
    }

    // (three graphs: room for the two beyond the one reserved)
    let ctx = Context::new(64 * n_seq as usize + 300, 256).unwrap();
    let mut g = ctx.new_graph(256);
    let mut g_ref = ctx.new_graph(256);
    let mut g_op = ctx.new_graph(256);
    let scale = 1.0 / (hd as f32).sqrt();
    let views: Vec<SeqAttn<'_>> = case
        .seqs
        .iter()
        .zip(&caches)
        .map(|(&(n_kv, _), &(k, v, m))| {
            let row = Type::F16.row_size(hd * nkv);
            let nb = [Type::F16.row_size(hd), row, row * size as usize];
            SeqAttn {
                k: ctx.view(k, &[hd, nkv, n_kv, 1], &nb, 0),
                v: ctx.view(v, &[hd, nkv, n_kv, 1], &nb, 0),
                mask: m,
            }
        })
        .collect();
    let mut reference = Vec::new();
    for (i, s) in views.iter().enumerate() {
        let qi = ctx.view(
            q,
            &[hd, nh, 1, 1],
            &[q.nb()[1], q.nb()[2], q.nb()[2]],
            i * q.nb()[2],
        );
        let qi = ctx.permute(qi, [0, 2, 1, 3]);
        let k = ctx.permute(s.k, [0, 2, 1, 3]);
        let v = ctx.permute(s.v, [0, 2, 1, 3]);
        let fa = ctx.flash_attn_ext(qi, k, v, Some(s.mask), scale, case.softcap);
        let fa = ctx.reshape(fa, &[hd * nh, 1]);
        g.expand(fa);
        g_ref.expand(fa);
        reference.push(fa);
    }
    let mut ours = Vec::new();
    for (c, chunk) in views.chunks(SEQS_PER_OP).enumerate() {
        let first = c * SEQS_PER_OP;
        let qc = ctx.view(
            q,
            &[hd, nh, chunk.len() as i64],
            &[q.nb()[1], q.nb()[2]],
            first * q.nb()[2],
        );
        assert!(attn::takes(qc, chunk), "the op takes the case");
        if chunk.len() >= 2 && nkv > 1 {
            // (the op reads every sequence's heads as the first one's)
            let mut odd = chunk.to_vec();
            let second = &mut odd[1];
            for t in [&mut second.k, &mut second.v] {
                let nb = t.nb();
                *t = ctx.view(*t, &[hd, 1, t.ne()[2], 1], &[nb[1], nb[2], nb[3]], 0);
            }
            assert!(
                !attn::takes(qc, &odd),
                "K/V head counts differ between sequences"
            );
        }
        let o = ctx.attn_decode(qc, chunk, scale, case.softcap);
        g.expand(o);
        g_op.expand(o);
        ours.push(o);
    }
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    let (ta, tb) = compute_and_time(threads, &g, &g_ref, &g_op, reps);
    let row = (hd * nh) as usize;
    let mut a = vec![0.0; row * n_seq as usize];
    let mut b = vec![0.0; row * n_seq as usize];
    for (i, r) in reference.iter().enumerate() {
        r.read_f32(0, &mut a[i * row..(i + 1) * row]).unwrap();
    }
    for (c, o) in ours.iter().enumerate() {
        let first = c * SEQS_PER_OP * row;
        let n = o.ne()[1] as usize * row;
        o.read_f32(0, &mut b[first..first + n]).unwrap();
    }
    (a, b, ta, tb)
}

#[test]
#[cfg_attr(
    not(ggml_attn),
    ignore = "needs AVX2, FMA, F16C and a GCC-built ggml whose f16 vectors hold f32 lanes"
)]
fn the_attention_op_gives_ggml_results_bit_for_bit() {
    assert!(attn::available(), "this build runs the attention op");
    let cases = [
        // SmolLM2's heads, eleven sequences (two ops), short and padded caches
        Case {
            hd: 64,
            n_head: 9,
            n_head_kv: 3,
            seqs: [(256, 200), (256, 1), (512 - 256, 256), (256, 77)]
                .into_iter()
                .cycle()
                .take(11)
                .collect(),
            softcap: 0.0,
        },
        // SmolLM2's heads, four sequences (one op)
        Case {
            hd: 64,
            n_head: 9,
            n_head_kv: 3,
            seqs: vec![(256, 200), (256, 1), (512 - 256, 256), (256, 77)],
            softcap: 0.0,
        },
        // Qwen 1.5B's heads; split rows (512 cells and more) next to a short one
        Case {
            hd: 128,
            n_head: 12,
            n_head_kv: 2,
            seqs: vec![(768, 600), (256, 100), (512, 512)],
            softcap: 0.0,
        },
        // Qwen 0.5B's heads, long rows
        Case {
            hd: 64,
            n_head: 14,
            n_head_kv: 2,
            seqs: vec![(1024, 1000), (1280, 700)],
            softcap: 0.0,
        },
        // one K/V head for all, 256-wide heads, soft-capping
        Case {
            hd: 256,
            n_head: 4,
            n_head_kv: 1,
            seqs: vec![(256, 130), (768, 769)],
            softcap: 30.0,
        },
        // more query heads per K/V head than taken at once
        Case {
            hd: 32,
            n_head: 20,
            n_head_kv: 2,
            seqs: vec![(512, 300)],
            softcap: 0.0,
        },
    ];
    let mut seed = 7;
    for (i, case) in cases.iter().enumerate() {
        for threads in [1, 2, 3, 4] {
            seed += 1;
            let (a, b) = both(case, threads, seed);
            assert_bits(&a, &b, &format!("case {i}, {threads} threads"));
        }
    }
}

/// Times the op against ggml's flash attention (one op per sequence) for a decode step of
/// eight sequences with SmolLM2's heads: `cargo test --release --lib attn_timing --
/// --ignored --nocapture` (`ATTN_THREADS`, default 2; `ATTN_CELLS`, default 256 cells of
/// which three quarters visible; `ATTN_HEADS`, `ATTN_KV` and `ATTN_HD`, default 9, 3 and 64 —
/// Qwen2.5 0.5B has 14, 2 and 64, Qwen2.5 1.5B 12, 2 and 128).
#[test]
#[ignore = "a timing, not a test: run it by name"]
fn attn_timing() {
    let var = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (threads, cells) = (var("ATTN_THREADS", 2), var("ATTN_CELLS", 256) as i64);
    let (n_head, n_head_kv) = (var("ATTN_HEADS", 9) as i64, var("ATTN_KV", 3) as i64);
    let case = Case {
        hd: var("ATTN_HD", 64) as i64,
        n_head,
        n_head_kv,
        seqs: vec![(cells, cells * 3 / 4); 8],
        softcap: 0.0,
    };
    let (a, b, ta, tb) = timed(&case, threads, 200);
    assert_eq!(a, b);
    let head_cells = 8.0 * n_head as f64 * (cells as f64 * 0.75);
    println!(
        "{threads} threads, 8 x {cells} cells: ggml {:.1} us, op {:.1} us per layer ({:.1} vs {:.1} ns per head-cell)",
        ta * 1e6,
        tb * 1e6,
        ta * 1e9 / head_cells,
        tb * 1e9 / head_cells
    );
}

/// ggml's flash attention over a prompt micro-batch of `n` rows of one sequence, and the
/// rows op: `hd`, heads, K/V heads, cells, soft-cap.
fn rows_both(
    (hd, nh, nkv, n_kv, n): (i64, i64, i64, i64, i64),
    softcap: f32,
    threads: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng(seed);
    let data = Context::new(8, 0).unwrap();
    let q = data.new_tensor(Type::F32, &[hd, nh, n]);
    let k = data.new_tensor(Type::F16, &[hd * nkv, n_kv]);
    let v = data.new_tensor(Type::F16, &[hd * nkv, n_kv]);
    let m = data.new_tensor(Type::F16, &[n_kv, n]);
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    let qs: Vec<f32> = (0..hd * nh * n).map(|_| rng.float()).collect();
    q.write_f32(&qs).unwrap();
    for t in [k, v] {
        let bytes: Vec<u8> = (0..hd * nkv * n_kv)
            .flat_map(|_| f16_bits(rng.float()).to_le_bytes())
            .collect();
        t.write_bytes(0, &bytes).unwrap();
    }
    m.write_bytes(0, &prompt_mask(n, n_kv)).unwrap();

    let ctx = Context::new(32, 64).unwrap();
    let mut g = ctx.new_graph(64);
    let scale = 1.0 / (hd as f32).sqrt();
    let nb = [Type::F16.row_size(hd), Type::F16.row_size(hd * nkv)];
    let seq = SeqAttn {
        k: ctx.view(
            k,
            &[hd, nkv, n_kv, 1],
            &[nb[0], nb[1], nb[1] * n_kv as usize],
            0,
        ),
        v: ctx.view(
            v,
            &[hd, nkv, n_kv, 1],
            &[nb[0], nb[1], nb[1] * n_kv as usize],
            0,
        ),
        mask: m,
    };
    let fa = ggml_rows(&ctx, q, &seq, scale, softcap);
    assert!(attn::takes_rows(q, &seq), "the rows op takes the case");
    let ours = ctx.attn_rows(q, &seq, scale, softcap);
    g.expand(fa);
    g.expand(ours);
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    Backend::cpu(threads).unwrap().compute(&g).unwrap();
    let mut a = vec![0.0; (hd * nh * n) as usize];
    let mut b = a.clone();
    fa.read_f32(0, &mut a).unwrap();
    ours.read_f32(0, &mut b).unwrap();
    (a, b)
}

/// Computes `g` (both sides) at `threads`, then `g_ref` (ggml's) and `g_op` (the op's) `reps`
/// times each: the seconds per computation of each.
pub(super) fn compute_and_time(
    threads: usize,
    g: &crate::ggml::Graph<'_>,
    g_ref: &crate::ggml::Graph<'_>,
    g_op: &crate::ggml::Graph<'_>,
    reps: usize,
) -> (f64, f64) {
    let backend = Backend::cpu(threads).unwrap();
    backend.compute(g).unwrap();
    let time = |g: &crate::ggml::Graph<'_>| {
        let t = std::time::Instant::now();
        for _ in 0..reps {
            backend.compute(g).unwrap();
        }
        t.elapsed().as_secs_f64() / reps.max(1) as f64
    };
    (time(g_ref), time(g_op))
}

/// An f16 mask `[n_kv, n]` of a prompt micro-batch: row i a causal prompt row, the
/// micro-batch's n tokens the last visible cells but 7, a few holes.
pub(super) fn prompt_mask(n: i64, n_kv: i64) -> Vec<u8> {
    let used = n_kv - 7;
    (0..n)
        .flat_map(|i| (0..n_kv).map(move |c| (i, c)))
        .flat_map(|(i, c)| {
            let visible = c <= used - n + i && (c % 29 != 3 || c == 0);
            f16_bits(if visible { 0.0 } else { f32::NEG_INFINITY }).to_le_bytes()
        })
        .collect()
}

/// ggml's flash attention of the query rows `q` `[head_dim, n_head, n]` over `seq`, as the
/// rows ops give it: `[head_dim_v · n_head, n]`.
pub(super) fn ggml_rows<'a>(
    ctx: &'a Context,
    q: crate::ggml::Tensor<'a>,
    seq: &SeqAttn<'a>,
    scale: f32,
    softcap: f32,
) -> crate::ggml::Tensor<'a> {
    let fa = ctx.flash_attn_ext(
        ctx.permute(q, [0, 2, 1, 3]),
        ctx.permute(seq.k, [0, 2, 1, 3]),
        ctx.permute(seq.v, [0, 2, 1, 3]),
        Some(seq.mask),
        scale,
        softcap,
    );
    ctx.reshape(fa, &[seq.v.ne()[0] * q.ne()[1], q.ne()[2]])
}

#[test]
#[cfg_attr(
    not(ggml_attn),
    ignore = "needs AVX2, FMA, F16C and a GCC-built ggml whose f16 vectors hold f32 lanes"
)]
fn the_prompt_rows_op_gives_ggml_results_bit_for_bit() {
    assert!(attn::available(), "this build runs the attention op");
    let cases = [
        ((64, 9, 3, 256, 5), 0.0),
        ((128, 12, 2, 768, 63), 0.0),
        ((64, 14, 2, 1024, 2), 0.0),
        ((256, 4, 1, 512, 17), 30.0),
    ];
    let mut seed = 100;
    for (i, &(shape, softcap)) in cases.iter().enumerate() {
        for threads in [1, 2, 3] {
            seed += 1;
            let (a, b) = rows_both(shape, softcap, threads, seed);
            assert_bits(&a, &b, &format!("case {i}, {threads} threads"));
        }
    }
}
