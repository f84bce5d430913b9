//! The quantized-cache attention op against ggml's flash attention over Q8_0 and Q4_0 caches:
//! equal bit for bit, for both formats and their mixes, head sizes, grouped heads, prompt
//! micro-batches and decoding rows, masked cells, soft-capping and thread counts.

use super::attn::SeqAttn;
use super::attn_quant;
use super::attn_tests::{assert_bits, compute_and_time, f16_bits, ggml_rows, prompt_mask};
use super::tests::Rng;
use crate::ggml::{BufferType, Context, Type};

/// One case: head size, heads, K/V heads, cache cells, query tokens (the last `n` of the
/// visible cells, causal, a few holes), soft-cap.
#[derive(Clone, Copy)]
struct Case {
    hd: i64,
    n_head: i64,
    n_head_kv: i64,
    n_kv: i64,
    n: i64,
    softcap: f32,
    /// K's and V's formats.
    types: (Type, Type),
}

/// `n` random blocks of type `ty`: Q8_0 (scales between 1/200 and 1/67, quants in ±127) or
/// Q4_0 (scales 16 times those, any nibbles).
fn blocks(rng: &mut Rng, ty: Type, n: i64) -> Vec<u8> {
    let q4 = ty == Type::Q4_0;
    (0..n)
        .flat_map(|_| {
            let d = (0.005 + rng.float().abs() * 0.005) * if q4 { 16.0 } else { 1.0 };
            let qs: Vec<u8> = if q4 {
                (0..16).map(|_| (rng.next() >> 40) as u8).collect()
            } else {
                (0..32)
                    .map(|_| ((rng.next() >> 40) % 255) as i64 - 127)
                    .map(|q| q as i8 as u8)
                    .collect()
            };
            f16_bits(d).to_le_bytes().into_iter().chain(qs)
        })
        .collect()
}

/// ggml's flash attention and the op for `case` at `threads`; then each computed `reps` more
/// times: (ggml's, the op's, seconds per ggml computation, per op computation).
fn run(case: Case, threads: usize, seed: u64, reps: usize) -> (Vec<f32>, Vec<f32>, f64, f64) {
    let Case {
        hd,
        n_head: nh,
        n_head_kv: nkv,
        n_kv,
        n,
        softcap,
        types: (tk, tv),
    } = case;
    let mut rng = Rng(seed);
    let data = Context::new(8, 0).unwrap();
    let q = data.new_tensor(Type::F32, &[hd, nh, n]);
    let k = data.new_tensor(tk, &[hd * nkv, n_kv]);
    let v = data.new_tensor(tv, &[hd * nkv, n_kv]);
    let m = data.new_tensor(Type::F16, &[n_kv, n]);
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    let qs: Vec<f32> = (0..hd * nh * n).map(|_| rng.float()).collect();
    q.write_f32(&qs).unwrap();
    for (t, ty) in [(k, tk), (v, tv)] {
        t.write_bytes(0, &blocks(&mut rng, ty, hd / 32 * nkv * n_kv))
            .unwrap();
    }
    m.write_bytes(0, &prompt_mask(n, n_kv)).unwrap();

    let ctx = Context::new(32, 64).unwrap();
    let mut g = ctx.new_graph(64);
    let mut g_ref = ctx.new_graph(64);
    let mut g_op = ctx.new_graph(64);
    let scale = 1.0 / (hd as f32).sqrt();
    let view = |t, ty: Type| {
        let row = ty.row_size(hd * nkv);
        ctx.view(
            t,
            &[hd, nkv, n_kv, 1],
            &[ty.row_size(hd), row, row * n_kv as usize],
            0,
        )
    };
    let seq = SeqAttn {
        k: view(k, tk),
        v: view(v, tv),
        mask: m,
    };
    let fa = ggml_rows(&ctx, q, &seq, scale, softcap);
    assert!(attn_quant::takes(q, &seq), "the op takes the case");
    let ours = ctx.attn_quant(q, &seq, scale, softcap);
    g.expand(fa);
    g.expand(ours);
    g_ref.expand(fa);
    g_op.expand(ours);
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    let (ta, tb) = compute_and_time(threads, &g, &g_ref, &g_op, reps);
    let mut a = vec![0.0; (hd * nh * n) as usize];
    let mut b = a.clone();
    fa.read_f32(0, &mut a).unwrap();
    ours.read_f32(0, &mut b).unwrap();
    (a, b, ta, tb)
}

#[test]
#[cfg_attr(not(ggml_attn), ignore = "needs AVX2, FMA, F16C and a GCC-built ggml")]
fn the_quantized_attention_op_gives_ggml_results_bit_for_bit() {
    assert!(attn_quant::available(), "this build runs the op");
    let case = |hd, n_head, n_head_kv, n_kv, n, softcap| Case {
        hd,
        n_head,
        n_head_kv,
        n_kv,
        n,
        softcap,
        types: (Type::Q8_0, Type::Q8_0),
    };
    let cases = [
        // SmolLM2's heads: a prompt micro-batch, a decoding row
        case(64, 9, 3, 256, 5, 0.0),
        case(64, 9, 3, 300, 1, 0.0),
        // Qwen 1.5B's and Qwen 0.5B's
        case(128, 12, 2, 768, 63, 0.0),
        case(64, 14, 2, 1024, 100, 0.0),
        // Gemma 3's: one K/V head for all, 256-wide heads; and soft-capping
        case(256, 4, 1, 512, 300, 0.0),
        case(256, 4, 1, 256, 17, 30.0),
        // a decoding row of it (its heads shared among the threads)
        case(256, 4, 1, 700, 1, 0.0),
        // more query heads per K/V head than taken at once
        case(64, 20, 2, 128, 9, 0.0),
    ];
    let (q8, q4) = (Type::Q8_0, Type::Q4_0);
    let mut seed = 300;
    for (i, &c) in cases.iter().enumerate() {
        for threads in [1, 2, 3] {
            seed += 1;
            let (a, b, _, _) = run(c, threads, seed, 0);
            assert_bits(&a, &b, &format!("case {i}, {threads} threads"));
        }
        // Q4_0 caches, and both mixes (at two threads)
        for types in [(q4, q4), (q8, q4), (q4, q8)] {
            seed += 1;
            let (a, b, _, _) = run(Case { types, ..c }, 2, seed, 0);
            assert_bits(&a, &b, &format!("case {i}, K/V {types:?}"));
        }
    }
}

#[test]
fn the_quantized_attention_op_refuses_what_it_does_not_reproduce() {
    let ctx = Context::new(32, 0).unwrap();
    let seq = |ty: Type, hd: i64, n_kv: i64| SeqAttn {
        k: ctx.new_tensor(ty, &[hd, 2, n_kv]),
        v: ctx.new_tensor(ty, &[hd, 2, n_kv]),
        mask: ctx.new_tensor(Type::F16, &[n_kv, 8]),
    };
    let q = |hd: i64| ctx.new_tensor(Type::F32, &[hd, 4, 8]);
    assert_eq!(
        attn_quant::takes(q(64), &seq(Type::Q8_0, 64, 32)),
        attn_quant::available()
    );
    assert_eq!(
        attn_quant::takes(q(64), &seq(Type::Q4_0, 64, 32)),
        attn_quant::available()
    );
    // f16 or Q4_1 caches, V heads not a multiple of 64, heads wider than 256, more rows than
    // the mask
    assert!(!attn_quant::takes(q(64), &seq(Type::F16, 64, 32)));
    assert!(!attn_quant::takes(q(64), &seq(Type::Q4_1, 64, 32)));
    assert!(!attn_quant::takes(q(96), &seq(Type::Q8_0, 96, 32)));
    assert!(!attn_quant::takes(q(320), &seq(Type::Q8_0, 320, 32)));
    let long = ctx.new_tensor(Type::F32, &[64, 4, 9]);
    assert!(!attn_quant::takes(long, &seq(Type::Q8_0, 64, 32)));
}

/// Times the op against ggml's flash attention over Q8_0 caches for a prompt micro-batch:
/// `cargo test --release --lib attn_quant_timing -- --ignored --nocapture` (`ATTN_THREADS`,
/// default 2; `ATTN_HEADS`, `ATTN_KV`, `ATTN_HD`, default Gemma 3's 4, 1 and 256; `ATTN_ROWS`
/// tokens, default 512, over as many cells; `ATTN_Q4=1`: Q4_0 caches).
#[test]
#[ignore = "a timing, not a test: run it by name"]
fn attn_quant_timing() {
    let var = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d) as i64
    };
    let n = var("ATTN_ROWS", 512);
    let case = Case {
        hd: var("ATTN_HD", 256),
        n_head: var("ATTN_HEADS", 4),
        n_head_kv: var("ATTN_KV", 1),
        n_kv: n + 7,
        n,
        softcap: 0.0,
        types: match var("ATTN_Q4", 0) {
            0 => (Type::Q8_0, Type::Q8_0),
            _ => (Type::Q4_0, Type::Q4_0),
        },
    };
    let threads = var("ATTN_THREADS", 2) as usize;
    let (a, b, ta, tb) = run(case, threads, 1, 5);
    assert_bits(&a, &b, "timing case");
    let row_cells = (case.n_head * n * (n + 1) / 2) as f64;
    println!(
        "{threads} threads, {n} rows: ggml {:.2} ms, op {:.2} ms per layer ({:.1} vs {:.1} ns per row-cell)",
        ta * 1e3,
        tb * 1e3,
        ta * 1e9 / row_cells,
        tb * 1e9 / row_cells
    );
}
