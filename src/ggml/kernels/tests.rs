//! Ember's kernels against ggml's own `mul_mat`: equal bit for bit, for every format, shape and
//! thread count; and the routes that pick them.
//!
//! A test this CPU (or this ggml) cannot run is ignored, saying why (the cfgs come from
//! `build.rs`); one that runs asserts the kernel is there, it never passes without running.

use super::route::{Kernel, KernelSwitches, Machine, Placement, Route};
use super::*;
use crate::ggml::{Backend, BufferType, Tensor, TensorHandle};

/// The route of `w` with every switch on, no GPU.
fn route(w: Tensor<'_>) -> Route {
    Route::decide_with(w, false, Machine::get(), &KernelSwitches::ALL_ON)
}

/// xorshift64*: reproducible test data without a dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }

    /// A float in [-2, 2).
    pub(super) fn float(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
    }

    /// f16 bits of a value of either sign between 2^-10 and 1.
    fn scale(&mut self) -> [u8; 2] {
        let sign = (self.next() & 1) as u16;
        let exp = 5 + (self.next() % 10) as u16;
        let mant = (self.next() & 0x3ff) as u16;
        ((sign << 15) | (exp << 10) | mant).to_le_bytes()
    }
}

/// Random blocks of `ty` with valid scales: quants random, Q8_0 quants within ±127 (floats:
/// one value per block).
fn random_blocks(rng: &mut Rng, ty: Type, n_blocks: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..n_blocks {
        match ty {
            Type::Q4_1 => {
                out.extend(rng.scale());
                out.extend(rng.scale());
                out.extend((0..16).map(|_| rng.byte()));
            }
            Type::Q5_0 => {
                out.extend(rng.scale());
                out.extend((0..20).map(|_| rng.byte()));
            }
            Type::Q8_0 => {
                out.extend(rng.scale());
                out.extend((0..32).map(|_| (rng.byte() as i8).max(-127) as u8));
            }
            Type::Q6_K => {
                out.extend((0..192).map(|_| rng.byte()));
                out.extend((0..16).map(|_| rng.byte()));
                out.extend(rng.scale());
            }
            Type::Q4_0 => {
                out.extend(rng.scale());
                out.extend((0..16).map(|_| rng.byte()));
            }
            Type::Q4_K => {
                out.extend(rng.scale());
                out.extend(rng.scale());
                out.extend((0..140).map(|_| rng.byte()));
            }
            Type::F16 => out.extend(rng.scale()),
            Type::F32 => out.extend(rng.float().to_le_bytes()),
            _ => unreachable!(),
        }
    }
    out
}

/// A context holding a random `[k, n]` matrix of `ty` and `m` random f32 columns of `k`.
fn operands_cols(
    ty: Type,
    k: usize,
    n: usize,
    m: usize,
    seed: u64,
) -> (Context, TensorHandle, TensorHandle) {
    let mut rng = Rng(seed);
    let data = Context::new(2, 0).unwrap();
    let w = data.new_tensor(ty, &[k as i64, n as i64]);
    let x = data.new_tensor(Type::F32, &[k as i64, m as i64]);
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    let block = ty.block_size() as usize;
    w.write_bytes(0, &random_blocks(&mut rng, ty, n * k / block))
        .unwrap();
    let xs: Vec<f32> = (0..k * m).map(|_| rng.float()).collect();
    x.write_f32(&xs).unwrap();
    let (w, x) = (data.handle(w), data.handle(x));
    (data, w, x)
}

/// ggml's `mul_mat(w, x)` and `mul_mat_vec(w, x)` for a random `[k, n]` matrix of `ty` and `m`
/// columns.
fn both(ty: Type, k: usize, n: usize, m: usize, threads: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let (data, w, x) = operands_cols(ty, k, n, m, seed);
    let (w, x) = (data.get(w), data.get(x));

    assert_eq!(route(w).kernel(1), Kernel::Decode, "{ty:?} [{k}, {n}]");
    let ctx = Context::new(8, 16).unwrap();
    let mut g = ctx.new_graph(16);
    let reference = ctx.mul_mat(w, x);
    let ours = ctx.mul_mat_vec(w, x);
    g.expand(reference);
    g.expand(ours);
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    Backend::cpu(threads).unwrap().compute(&g).unwrap();
    let mut a = vec![0.0; n * m];
    let mut b = vec![0.0; n * m];
    reference.read_f32(0, &mut a).unwrap();
    ours.read_f32(0, &mut b).unwrap();
    (a, b)
}

#[test]
#[cfg_attr(not(cpu_avx2), ignore = "this CPU has no AVX2, FMA and F16C")]
fn the_decode_op_gives_ggml_results_bit_for_bit() {
    let mut seed = 1;
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0, Type::Q6_K] {
        for (k, n) in [
            (32, 1),
            (64, 3),
            (576, 37),
            (1536, 64),
            (576, 130),
            (256, 5),
            (2048, 9),
        ] {
            if ty == Type::Q6_K && k % 256 != 0 {
                continue;
            }
            // several columns (a step of several sequences) too, each multiplied as alone:
            // as ggml multiplies Q4_1, Q5_0 and Q8_0 at any count, Q6_K up to seven
            // (from 16 columns a thread, the op splits by columns: 33 and 70 at 2 and 3 threads)
            for m in [1, 2, 3, 4, 5, 7, 9, 13, 33, 70] {
                if ty == Type::Q6_K && m > 7 {
                    continue;
                }
                for threads in [1, 2, 3] {
                    let runs = match m {
                        1 => true,
                        2..=32 => threads == 2 && k <= 576,
                        _ => threads >= 2 && k <= 576,
                    };
                    if !runs {
                        continue;
                    }
                    seed += 1;
                    let (a, b) = both(ty, k, n, m, threads, seed);
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "{ty:?} [{k}, {n}] x {m}, {threads} threads, column {}, row {}: \
                             ggml {x}, ours {y}",
                            i / n,
                            i % n
                        );
                    }
                }
            }
        }
    }
}

/// ggml's `mul_mat(w, x)` and `mul_mat_tiled(w, x, wide)` for `m` columns.
fn both_tiled(
    ty: Type,
    k: usize,
    n: usize,
    m: usize,
    threads: usize,
    wide: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (data, w, x) = operands_cols(ty, k, n, m, (k * 31 + n * 7 + m) as u64);
    let (w, x) = (data.get(w), data.get(x));
    let tiles = Kernel::Tile {
        wide: Machine::get().avx512f,
    };
    // (optimized builds route these columns to the decode op first, untuned: tuning decides)
    let routed = if cfg!(debug_assertions) {
        tiles
    } else {
        Kernel::Decode
    };
    assert_eq!(route(w).kernel(m as i64), routed, "{ty:?} [{k}, {n}] x {m}");
    let ctx = Context::new(8, 16).unwrap();
    let mut g = ctx.new_graph(16);
    let reference = ctx.mul_mat(w, x);
    let ours = ctx.mul_mat_tiled(w, x, wide);
    g.expand(reference);
    g.expand(ours);
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    Backend::cpu(threads).unwrap().compute(&g).unwrap();
    let mut a = vec![0.0; n * m];
    let mut b = vec![0.0; n * m];
    reference.read_f32(0, &mut a).unwrap();
    ours.read_f32(0, &mut b).unwrap();
    (a, b)
}

#[test]
#[cfg_attr(not(cpu_avx512vnni), ignore = "this CPU has no AVX-512 VNNI")]
fn the_tiled_op_gives_ggml_results_bit_for_bit() {
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        for (k, n, m) in [
            (32, 4, 2),
            (64, 7, 3),
            (576, 37, 5),
            (576, 64, 17),
            (1536, 30, 64),
            (256, 130, 9),
            (640, 12, 130),
        ] {
            for threads in [1, 2, 3] {
                // 1 thread: the 256-bit kernels; more: the 512-bit ones
                let (a, b) = both_tiled(ty, k, n, m, threads, threads > 1);
                assert!(a.iter().all(|v| v.is_finite()) && a.iter().any(|&v| v != 0.0));
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "{ty:?} [{k}, {n}] x {m}, {threads} threads, element {i}: ggml {x}, ours {y}"
                    );
                }
            }
        }
    }
}

/// Random Q4_K weights `[k, n]` in ggml's CPU repack buffer and random f32 columns `[k, m]`
/// in plain memory.
type Operands = (Context, TensorHandle, Context, TensorHandle);

fn repacked_operands(k: usize, n: usize, m: usize, seed: u64) -> Operands {
    let buft = BufferType::cpu_repack().expect("this ggml has no CPU repack buffer");
    let mut rng = Rng(seed);
    let weights = Context::new(1, 0).unwrap();
    let w = weights.new_tensor(Type::Q4_K, &[k as i64, n as i64]);
    weights.alloc_tensors(buft, true).unwrap();
    let mut data = Vec::new();
    for _ in 0..n * k / 256 {
        data.extend(rng.scale());
        data.extend(rng.scale());
        data.extend((0..140).map(|_| rng.byte()));
    }
    w.write_bytes(0, &data).unwrap();
    let cols = Context::new(1, 0).unwrap();
    let x = cols.new_tensor(Type::F32, &[k as i64, m as i64]);
    cols.alloc_tensors(BufferType::cpu(), false).unwrap();
    // some columns with their largest magnitude both positive and negative (where ggml's two
    // quantizers part ways)
    let xs: Vec<f32> = (0..k * m)
        .map(|i| match (i / k % 3, i % k) {
            (1, 5) => 2.5,
            (1, 9) => -2.5,
            (2, 3) => -2.5,
            (2, 7) => 2.5,
            _ => rng.float(),
        })
        .collect();
    x.write_f32(&xs).unwrap();
    let (w, x) = (weights.handle(w), cols.handle(x));
    (weights, w, cols, x)
}

/// `ours(ctx, w, x)` against ggml's `mul_mat(w, x)` for `[k, n]` weights and `m` columns, at
/// 1–3 threads: equal bit for bit (and not all zero).
fn assert_ggml_bits<'a>(
    w: Tensor<'a>,
    x: Tensor<'a>,
    ours: impl for<'c> Fn(&'c Context, Tensor<'c>, Tensor<'c>) -> Tensor<'c>,
) {
    let (k, n, m) = (w.ne()[0], w.ne()[1] as usize, x.ne()[1] as usize);
    for threads in [1, 2, 3] {
        let ctx = Context::new(8, 16).unwrap();
        let mut g = ctx.new_graph(16);
        let reference = ctx.mul_mat(w, x);
        let t = ours(&ctx, w, x);
        g.expand(reference);
        g.expand(t);
        ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
        Backend::cpu(threads).unwrap().compute(&g).unwrap();
        let mut a = vec![0.0; n * m];
        let mut b = vec![0.0; n * m];
        reference.read_f32(0, &mut a).unwrap();
        t.read_f32(0, &mut b).unwrap();
        assert!(a.iter().all(|v| v.is_finite()) && a.iter().any(|&v| v != 0.0));
        for (i, (p, q)) in a.iter().zip(&b).enumerate() {
            assert_eq!(
                p.to_bits(),
                q.to_bits(),
                "[{k}, {n}] x {m}, {threads} threads, row {}, column {}: ggml {p}, ours {q}",
                i % n,
                i / n
            );
        }
    }
}

#[test]
#[cfg_attr(not(cpu_avx2), ignore = "this CPU has no AVX2, FMA and F16C")]
fn the_q4_k_op_gives_ggml_results_bit_for_bit() {
    for (k, n, m) in [
        (256, 8, 4),
        (256, 16, 5),
        (512, 24, 7),
        (1536, 40, 13),
        (768, 64, 16),
        (256, 8, 6),
        (1024, 48, 130),
        // rows = 8 mod 16 in one chunk: ggml's 512-bit kernel hands the last 8 to its 256-bit one
        (256, 24, 16),
        (512, 40, 20),
    ] {
        let (weights, w, cols, x) = repacked_operands(k, n, m, (k * 13 + n * 5 + m) as u64);
        let (w, x) = (weights.get(w), cols.get(x));
        assert!(w.is_cpu_repacked());
        // (AVX2 kernels: routed in optimized builds only, like the decode op's columns)
        let routed = Machine::get().k_quant || !cfg!(debug_assertions);
        assert_eq!(route(w).kernel(m as i64) == Kernel::Q4kPrompt, routed);
        assert_ggml_bits(w, x, |ctx, w, x| ctx.mul_mat_q4k(w, x));
    }
}

#[test]
#[cfg_attr(not(cpu_avx2), ignore = "this CPU has no AVX2, FMA and F16C")]
fn the_q4_k_decode_op_gives_ggml_results_bit_for_bit() {
    for (k, n, m) in [
        (256, 8, 1),
        (256, 16, 1),
        (512, 24, 2),
        (1536, 40, 3),
        (2048, 64, 1),
    ] {
        let (weights, w, cols, x) = repacked_operands(k, n, m, (k * 7 + n * 3 + m) as u64);
        let (w, x) = (weights.get(w), cols.get(x));
        // (AVX2 kernels: routed in optimized builds only, from two columns on)
        let routed = Machine::get().k_quant || (!cfg!(debug_assertions) && m > 1);
        assert_eq!(route(w).kernel(m as i64) == Kernel::Q4kDecode, routed);
        assert_ggml_bits(w, x, |ctx, w, x| ctx.mul_mat_q4k_vec(w, x));
    }
}

#[test]
#[cfg_attr(
    not(ggml_tiles_vnni),
    ignore = "this CPU has no AVX-512 VNNI, or ggml was not built for it by GCC"
)]
fn the_q6_k_op_gives_ggml_results_bit_for_bit() {
    for (k, n, m) in [
        (256, 16, 8),
        (256, 5, 9),
        (512, 40, 16),
        (1536, 24, 17),
        (768, 33, 40),
        (2048, 16, 300),
    ] {
        let (data, w, x) = operands_cols(Type::Q6_K, k, n, m, (k * 3 + n * 11 + m) as u64);
        let (w, x) = (data.get(w), data.get(x));
        assert_eq!(
            route(w).kernel(m as i64),
            Kernel::Q6kPrompt,
            "and ggml's tiled path on (GGML_CPU_TILED_MM unset or not 0)"
        );
        assert_ggml_bits(w, x, |ctx, w, x| ctx.mul_mat_q6k(w, x));
    }
}

#[test]
fn routes_follow_placement_format_and_columns() {
    let data = Context::new(4, 0).unwrap();
    let w = data.new_tensor(Type::Q4_1, &[64, 8]);
    let wf = data.new_tensor(Type::F16, &[64, 8]);
    let w6 = data.new_tensor(Type::Q6_K, &[256, 8]);
    assert_eq!(
        route(w),
        Route::ggml(Placement::Device),
        "unallocated weights"
    );
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    let m = Machine::get();
    let r = route(w);
    assert_eq!(r.placement(), Placement::Host);
    assert_eq!(r.kernel(1) == Kernel::Decode, m.avx2);
    let tiles = Kernel::Tile { wide: m.avx512f };
    // the decode op takes several columns itself (optimized builds), before the tile op
    // (untuned: tuning may leave them to the tile op)
    let columns = m.avx2 && !cfg!(debug_assertions);
    assert_eq!(r.kernel(2) == Kernel::Decode, columns);
    assert_eq!(r.kernel(512) == Kernel::Decode, columns);
    assert_eq!(r.kernel(2) == tiles, m.vnni && !columns);
    assert_eq!(r.kernel(512) == tiles, m.vnni && !columns);
    assert_eq!(route(wf).describe(), "all ggml", "f16 weights");
    assert_eq!(route(wf).describe_batches(), "all ggml per column");
    assert_eq!(route(wf).exact_columns(), Some(1));
    let ggml_tiles = m.k_quant && m.ggml_vnni && m.ggml_fuses_mul_add;
    let r6 = route(w6);
    assert_eq!(r6.kernel(1) == Kernel::Decode, m.avx2);
    assert_eq!(r6.kernel(7), Kernel::Ggml, "ggml's vec_dot order below 8");
    assert_eq!(r6.kernel(8) == Kernel::Q6kPrompt, ggml_tiles);
    assert_eq!(r.exact_columns(), None);
    assert_eq!(r6.exact_columns(), Some(7));
}

#[test]
#[cfg_attr(not(cpu_avx512vnni), ignore = "this CPU has no AVX-512 VNNI")]
fn switches_and_gpu_layers_change_routes_as_documented() {
    let data = Context::new(2, 0).unwrap();
    let w = data.new_tensor(Type::Q8_0, &[64, 8]);
    let w6 = data.new_tensor(Type::Q6_K, &[256, 8]);
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    let m = Machine::get();
    let on = KernelSwitches::ALL_ON;
    let describe = |w, gpu, s: KernelSwitches| Route::decide_with(w, gpu, m, &s).describe();
    // optimized builds: the decode op before the tile op for several columns (tuning decides)
    let (all, gpu, narrow) = if cfg!(debug_assertions) {
        (
            "1 decode, 2+ tile-512",
            "1 decode, 2-31 tile-512, 32+ ggml",
            "1 decode, 2+ tile-256",
        )
    } else {
        ("all decode", "1-31 decode, 32+ ggml", "all decode")
    };
    assert_eq!(describe(w, false, on), all);
    assert_eq!(describe(w, true, on), gpu);
    let no_wide = KernelSwitches {
        wide_tiles: false,
        ..on
    };
    assert_eq!(describe(w, false, no_wide), narrow);
    let no_tiled = KernelSwitches {
        prompt_ops: false,
        ..on
    };
    assert_eq!(describe(w, false, no_tiled), "1 decode, 2+ ggml");
    let no_gemv = KernelSwitches {
        ember_ops: false,
        ..on
    };
    assert_eq!(describe(w, false, no_gemv), "all ggml");
    let ggml_untiled = KernelSwitches {
        ggml_tiled_mm: false,
        ..on
    };
    assert_eq!(describe(w6, false, ggml_untiled), "1 decode, 2+ ggml");
    if m.ggml_vnni && m.ggml_fuses_mul_add {
        assert_eq!(describe(w6, false, on), "1 decode, 2-7 ggml, 8+ q6k-prompt");
        assert_eq!(
            Route::decide_with(w6, false, m, &on).describe_batches(),
            "2-7 ggml, 8+ decode"
        );
        assert_eq!(
            describe(w6, true, on),
            "1 decode, 2-7 ggml, 8-31 q6k-prompt, 32+ ggml"
        );
    }
    let (weights, wq, _cols, _x) = repacked_operands(256, 16, 1, 5);
    let wq = weights.get(wq);
    assert_eq!(describe(wq, true, on), "1-3 q4k-decode, 4+ q4k-prompt");
    assert_eq!(describe(wq, false, no_tiled), "1-3 q4k-decode, 4+ ggml");
    assert_eq!(describe(wq, false, no_gemv), "all ggml");
    assert_eq!(route(wq).exact_columns(), Some(3));
}

/// Column `c` of `[k, m]` f32 columns, as its own `[k, 1]` tensor of `ctx`.
fn column<'a>(ctx: &'a Context, x: Tensor<'a>, c: usize) -> Tensor<'a> {
    let k = x.ne()[0];
    ctx.view(x, &[k, 1], &[x.nb()[1]], c * x.nb()[1])
}

/// The weight types the column tests run over, in plain host memory.
const HOST_TYPES: [Type; 8] = [
    Type::Q4_0,
    Type::Q4_1,
    Type::Q5_0,
    Type::Q8_0,
    Type::Q4_K,
    Type::Q6_K,
    Type::F16,
    Type::F32,
];

/// The product of `w` by the first `m` columns of `x` (contiguous) by `product`, against each
/// column alone through the kernel for one column (what decoding computes): the first
/// difference, as (column, row, product's value, lone value).
fn against_lone_columns<'a>(
    w: Tensor<'a>,
    x: Tensor<'a>,
    m: usize,
    product: impl for<'c> Fn(&'c Context, Tensor<'c>, Tensor<'c>) -> Tensor<'c>,
) -> Option<(usize, usize, f32, f32)> {
    let r = route(w);
    let n = w.ne()[1] as usize;
    let size = 64 + 8 * m;
    let ctx = Context::new(size, size).unwrap();
    let mut g = ctx.new_graph(size);
    let xm = ctx.cont(ctx.view(x, &[x.ne()[0], m as i64], &[x.nb()[1]], 0));
    let all = product(&ctx, w, xm);
    g.expand(all);
    let singles: Vec<_> = (0..m)
        .map(|c| {
            let t = ctx.mul_mat_by(r.kernel(1), w, ctx.cont(column(&ctx, x, c)));
            g.expand(t);
            t
        })
        .collect();
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    Backend::cpu(2).unwrap().compute(&g).unwrap();
    let mut a = vec![0.0; n * m];
    all.read_f32(0, &mut a).unwrap();
    for (c, t) in singles.iter().enumerate() {
        let mut b = vec![0.0; n];
        t.read_f32(0, &mut b).unwrap();
        let col = &a[c * n..(c + 1) * n];
        if let Some((row, (p, q))) = col
            .iter()
            .zip(&b)
            .enumerate()
            .find(|(_, (p, q))| p.to_bits() != q.to_bits())
        {
            return Some((c, row, *p, *q));
        }
    }
    None
}

/// For `m` of 1 to `max` columns: the product of `w` by the first `m` columns of `x` through
/// the kernel its route picks, against each column alone through the kernel for one column;
/// the first `m` where they differ, if any.
fn first_inexact(w: Tensor<'_>, x: Tensor<'_>, max: usize) -> Option<usize> {
    let r = route(w);
    (1..=max).find(|&m| {
        against_lone_columns(w, x, m, |ctx, w, x| {
            ctx.mul_mat_by(r.kernel(m as i64), w, x)
        })
        .is_some()
    })
}

#[test]
#[cfg_attr(not(cpu_avx2), ignore = "this CPU has no AVX2, FMA and F16C")]
fn exact_columns_hold() {
    let m = 40;
    let check = |what: &str, w: Tensor<'_>, x: Tensor<'_>| {
        let exact = route(w).exact_columns();
        let upto = exact.map_or(m, |e| e + 1);
        assert_eq!(
            first_inexact(w, x, upto),
            exact.map(|e| e + 1),
            "{what}: {}",
            route(w).describe()
        );
    };
    for ty in HOST_TYPES {
        let (data, w, x) = operands_cols(ty, 512, 24, m, 11);
        check(ty.name(), data.get(w), data.get(x));
    }
    let (weights, w, cols, x) = repacked_operands(512, 24, m, 11);
    check("repacked q4_K", weights.get(w), cols.get(x));
}

/// The product of `w` by `m` columns of `x` the batch-invariant way, against each column alone
/// through the one-column kernel: equal bit for bit.
fn assert_invariant(what: &str, w: Tensor<'_>, x: Tensor<'_>, m: usize) {
    let r = route(w);
    let diff = against_lone_columns(w, x, m, |ctx, w, x| ctx.mul_mat_invariant(&r, w, x));
    assert_eq!(
        diff,
        None,
        "{what} ({:?}), {m} columns: (column, row, batch, alone)",
        r.invariant(m as i64)
    );
}

#[test]
#[cfg_attr(not(cpu_avx2), ignore = "this CPU has no AVX2, FMA and F16C")]
fn invariant_products_give_one_column_results() {
    for ty in HOST_TYPES {
        let (data, w, x) = operands_cols(ty, 512, 24, 24, 5);
        for m in [2, 4, 8, 13, 24] {
            assert_invariant(ty.name(), data.get(w), data.get(x), m);
        }
    }
    let (weights, w, cols, x) = repacked_operands(512, 24, 24, 5);
    for m in [2, 4, 8, 13, 24] {
        assert_invariant("repacked q4_K", weights.get(w), cols.get(x), m);
    }
    // the decode ops take every column of a wide product themselves
    let (data, w6, _) = operands_cols(Type::Q6_K, 512, 24, 1, 5);
    assert_eq!(
        route(data.get(w6)).invariant(8),
        super::Invariant::Columns(Kernel::Decode)
    );
    // (AVX2 kernels: routed in optimized builds only)
    let q4k = match Machine::get().k_quant || (Machine::get().avx2 && !cfg!(debug_assertions)) {
        true => super::Invariant::Columns(Kernel::Q4kDecode),
        false => super::Invariant::Groups(3),
    };
    assert_eq!(route(weights.get(w)).invariant(8), q4k);
}

#[cfg(target_arch = "x86_64")]
#[test]
#[cfg_attr(not(cpu_avx512vnni), ignore = "this CPU has no AVX-512 VNNI")]
fn vnni_and_avx2_kernels_agree() {
    use super::x86::{avx2, vnni, Q8_0_BYTES, Q8_1_BYTES};
    assert!(
        Machine::get().vnni,
        "the build saw AVX-512 VNNI, the test does not"
    );
    let mut rng = Rng(7);
    let nb = 18;
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        let w: Vec<Vec<u8>> = (0..4).map(|_| random_blocks(&mut rng, ty, nb)).collect();
        let xs: Vec<f32> = (0..nb * 32).map(|_| rng.float()).collect();
        let mut y = vec![0u8; nb * Q8_1_BYTES.max(Q8_0_BYTES)];
        let rows: [*const u8; 4] = std::array::from_fn(|r| w[r].as_ptr());
        let ys = [y.as_ptr()];
        let (mut a, mut b) = ([[0.0f32; 4]], [[0.0f32; 4]]);
        // SAFETY: the CPU has F16C (VNNI detected implies the base set).
        let f16 = unsafe { x86::F16Table::new() };
        // SAFETY: the CPU has AVX-512 VNNI (checked above, which implies the AVX2 set), every
        // row holds nb blocks of `ty` and `y` room for nb activation blocks.
        unsafe {
            match ty {
                Type::Q4_1 => {
                    x86::quantize_q8_1(xs.as_ptr(), y.as_mut_ptr(), nb);
                    avx2::dot_q4_1(&f16, &rows, &ys, nb, &mut a);
                    vnni::dot_q4_1(&f16, &rows, &ys, nb, &mut b);
                }
                Type::Q5_0 => {
                    x86::quantize_q8_0(xs.as_ptr(), y.as_mut_ptr(), nb);
                    avx2::dot_q5_0(&f16, &rows, &ys, nb, &mut a);
                    vnni::dot_q5_0(&f16, &rows, &ys, nb, &mut b);
                }
                _ => {
                    x86::quantize_q8_0(xs.as_ptr(), y.as_mut_ptr(), nb);
                    avx2::dot_q8_0(&f16, &rows, &ys, nb, &mut a);
                    vnni::dot_q8_0(&f16, &rows, &ys, nb, &mut b);
                }
            }
        }
        assert_eq!(
            a[0].map(f32::to_bits),
            b[0].map(f32::to_bits),
            "{ty:?}: {a:?} vs {b:?}"
        );
    }
}

/// `blocks` quantized activation blocks of `fmt`'s columns: scales in range, quants anywhere
/// in i8 but -128 (±127 as ggml makes them).
#[cfg(target_arch = "x86_64")]
fn random_columns(rng: &mut Rng, fmt: Format, blocks: usize) -> Vec<u8> {
    let scales = if fmt == Format::Q4_1 { 4 } else { 2 };
    (0..blocks * fmt.act_bytes())
        .map(|i| {
            if i % fmt.act_bytes() < scales {
                rng.byte() % 48
            } else {
                (rng.byte() as i8).max(-127) as u8
            }
        })
        .collect()
}

/// `ys` (each `nb` activation blocks) packed as `packing` lays them out, at the returned offset
/// (a cache line's start) of the returned buffer; bytes the packing leaves alone are 0xA5.
#[cfg(target_arch = "x86_64")]
fn pack_aligned(
    f16: &x86::F16Table,
    packing: cols::Packing,
    ys: &[*const u8],
    nb: usize,
) -> (Vec<u8>, usize) {
    let mut buf = vec![0xA5u8; nb * packing.block(ys.len()) + 64];
    let start = buf.as_ptr().align_offset(64);
    // SAFETY: each column holds nb blocks, the buffer room for nb packed blocks after `start`.
    unsafe { cols::pack(f16, packing, ys, nb, buf.as_mut_ptr().add(start)) };
    (buf, start)
}

/// The decode op's 512-bit kernels over several columns give what its 256-bit VNNI kernels
/// give (which the op tests compare with ggml), column for column: 1 to 16 columns in one
/// call of the 512-bit kernels, in calls of up to 8 of the 256-bit ones.
#[cfg(target_arch = "x86_64")]
#[test]
#[cfg_attr(not(cpu_avx512vnni), ignore = "this CPU has no AVX-512 VNNI")]
fn wide_and_narrow_column_kernels_agree() {
    assert!(
        Machine::get().vnni,
        "the build saw AVX-512 VNNI, the test does not"
    );
    let f16 = f16_table().unwrap();
    let mut rng = Rng(11);
    let nb = 19;
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        let fmt = Format::of(ty).unwrap();
        let w = random_blocks(&mut rng, ty, nb);
        let n = cols::WIDE_COLS;
        let act = random_columns(&mut rng, fmt, n * nb);
        let ys: Vec<*const u8> = (0..n)
            .map(|c| act.as_ptr().wrapping_add(c * nb * fmt.act_bytes()))
            .collect();
        let run = |wide: bool, ys: &[*const u8]| -> Vec<u32> {
            let packing = cols::Packing::of(x86::Isa::Vnni, fmt, wide);
            let mut out = vec![0.0f32; ys.len()];
            for (k, chunk) in ys.chunks(packing.max_cols()).enumerate() {
                let (buf, start) = pack_aligned(f16, packing, chunk, nb);
                let p = buf.as_ptr().wrapping_add(start);
                let at = out.as_mut_ptr().wrapping_add(k * packing.max_cols());
                // SAFETY: the buffer holds nb packed blocks of the chunk's columns at `p`,
                // `out` has room for their results; the CPU has VNNI.
                unsafe {
                    super::packed_row_n(
                        chunk.len(),
                        x86::Isa::Vnni,
                        wide,
                        f16,
                        fmt,
                        w.as_ptr(),
                        p,
                        nb,
                        at,
                        1,
                    );
                }
            }
            out.iter().map(|v| v.to_bits()).collect()
        };
        for c in 1..=n {
            assert_eq!(
                run(false, &ys[..c]),
                run(true, &ys[..c]),
                "{ty:?}, {c} columns"
            );
        }
    }
}

/// The one-column-per-lane kernels give each (row, column) what the 256-bit kernels give it:
/// 1 to 8 columns, 1 to 4 rows (two pairs, one pair, a pair and a lone row, a lone row).
#[cfg(target_arch = "x86_64")]
#[test]
#[cfg_attr(not(cpu_avx512vnni), ignore = "this CPU has no AVX-512 VNNI")]
fn lane_kernels_agree_with_the_column_kernels() {
    assert!(
        Machine::get().vnni,
        "the build saw AVX-512 VNNI, the test does not"
    );
    let f16 = f16_table().unwrap();
    let mut rng = Rng(13);
    let nb = 21;
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        let fmt = Format::of(ty).unwrap();
        let w = random_blocks(&mut rng, ty, 4 * nb);
        let row_bytes = w.len() / 4;
        let act = random_columns(&mut rng, fmt, 8 * nb);
        let ys: Vec<*const u8> = (0..8)
            .map(|c| act.as_ptr().wrapping_add(c * nb * fmt.act_bytes()))
            .collect();
        for c in 1..=8 {
            let narrow = cols::Packing::of(x86::Isa::Vnni, fmt, false);
            let (nbuf, ns) = pack_aligned(f16, narrow, &ys[..c], nb);
            let (lbuf, ls) = pack_aligned(f16, cols::Packing::lanes(fmt), &ys[..c], nb);
            let mut want = vec![0.0f32; 4 * c];
            for r in 0..4 {
                // SAFETY: row r holds nb blocks, the buffer nb packed blocks of c columns,
                // `want` room for c results 4 apart; VNNI asserted above.
                unsafe {
                    super::packed_row_n(
                        c,
                        x86::Isa::Vnni,
                        false,
                        f16,
                        fmt,
                        w.as_ptr().add(r * row_bytes),
                        nbuf.as_ptr().add(ns),
                        nb,
                        want.as_mut_ptr().add(r),
                        4,
                    )
                };
            }
            for m in 1..=4 {
                let mut got = vec![f32::NAN; 4 * c];
                // SAFETY: rows 0..m hold nb blocks each, the buffer nb packed blocks of c
                // columns, `got` room for m results of each column, 4 apart; VNNI.
                unsafe {
                    super::lane_rows(
                        c,
                        m,
                        f16,
                        fmt,
                        w.as_ptr(),
                        row_bytes,
                        lbuf.as_ptr().add(ls),
                        nb,
                        got.as_mut_ptr(),
                        4,
                    )
                };
                for j in 0..c {
                    for r in 0..4 {
                        let (g, e) = (got[4 * j + r], want[4 * j + r]);
                        if r < m {
                            assert_eq!(
                                g.to_bits(),
                                e.to_bits(),
                                "{ty:?}, {c} columns, {m} rows: row {r} column {j}"
                            );
                        } else {
                            assert!(g.is_nan(), "{ty:?}, {c} columns, {m} rows: row {r} written");
                        }
                    }
                }
            }
        }
    }
}

/// Timing of both ops on one matrix (`cargo test --release --lib gemv_timing -- --ignored
/// --nocapture`; `GEMV_THREADS`, `GEMV_COLS` columns): prints figures, asserts nothing about
/// speed.
#[test]
#[ignore = "timing: prints figures, run by hand (see the doc comment)"]
fn gemv_timing() {
    let shapes = [
        (Type::Q4_1, 576, 1536),
        (Type::Q4_1, 1536, 576),
        (Type::Q8_0, 576, 49152),
        (Type::Q5_0, 640, 2048),
        (Type::Q8_0, 640, 262144),
        (Type::Q6_K, 1536, 8960),
    ];
    let threads: usize = std::env::var("GEMV_THREADS").map_or(1, |t| t.parse().unwrap());
    // columns: one (decoding), or a step of several sequences
    let m: usize = std::env::var("GEMV_COLS").map_or(1, |t| t.parse().unwrap());
    for (ty, k, n) in shapes {
        let (data, w, x) = operands_cols(ty, k, n, m, 3);
        let (w, x) = (data.get(w), data.get(x));
        for ours in [false, true, false, true] {
            let ctx = Context::new(8, 16).unwrap();
            let mut g = ctx.new_graph(16);
            let t = if ours {
                ctx.mul_mat_vec(w, x)
            } else {
                ctx.mul_mat(w, x)
            };
            g.expand(t);
            ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
            let be = Backend::cpu(threads).unwrap();
            let reps = (200_000_000 / (n * k * m)).max(10);
            let t0 = std::time::Instant::now();
            for _ in 0..reps {
                be.compute(&g).unwrap();
            }
            let us = t0.elapsed().as_secs_f64() * 1e6 / reps as f64;
            let gb = (w.nbytes() as f64) / us / 1e3;
            eprintln!(
                "{ty:?} [{k}, {n}] {}: {us:.1} µs ({gb:.1} GB/s)",
                if ours { "ours" } else { "ggml" }
            );
        }
    }
}

/// Prints the time of ggml's `mul_mat(w, x)` and of `ours(ctx, w, x)`, alternately, twice each.
fn time_against_ggml<'a>(
    label: &str,
    w: Tensor<'a>,
    x: Tensor<'a>,
    threads: usize,
    reps: usize,
    ours: impl for<'c> Fn(&'c Context, Tensor<'c>, Tensor<'c>) -> Tensor<'c>,
) {
    let (k, n, m) = (w.ne()[0], w.ne()[1], x.ne()[1]);
    for mine in [false, true, false, true] {
        let ctx = Context::new(8, 16).unwrap();
        let mut g = ctx.new_graph(16);
        let t = if mine {
            ours(&ctx, w, x)
        } else {
            ctx.mul_mat(w, x)
        };
        g.expand(t);
        ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
        let be = Backend::cpu(threads).unwrap();
        be.compute(&g).unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            be.compute(&g).unwrap();
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let gmac = (k * n * m) as f64 / ms / 1e6;
        let who = if mine { "ours" } else { "ggml" };
        eprintln!("{label} [{k}, {n}] x {m} {who}: {ms:.2} ms ({gmac:.1} GMAC/s)");
    }
}

/// Timing of ggml's matmul and the tile op on prompt-sized products (`cargo test --release
/// --lib tiled_timing -- --ignored --nocapture`, `GEMV_THREADS=2`): prints figures only.
#[test]
#[ignore = "timing: prints figures, run by hand (see the doc comment)"]
fn tiled_timing() {
    let shapes = [
        (Type::Q4_1, 576, 1536, 512),
        (Type::Q5_0, 896, 4864, 512),
        (Type::Q8_0, 896, 896, 512),
    ];
    let threads: usize = std::env::var("GEMV_THREADS").map_or(1, |t| t.parse().unwrap());
    for (ty, k, n, m) in shapes {
        let (data, w, x) = operands_cols(ty, k, n, m, 3);
        let (w, x) = (data.get(w), data.get(x));
        time_against_ggml(&format!("{ty:?}"), w, x, threads, 10, |c, w, x| {
            c.mul_mat_tiled(w, x, Machine::get().avx512f)
        });
    }
}

/// Timing of ggml's matmul and the K-quant prompt ops, Q4_K on repacked weights and Q6_K
/// (`cargo test --release --lib k_quant_timing -- --ignored --nocapture`, `GEMV_THREADS=2`):
/// prints figures only.
#[test]
#[ignore = "timing: prints figures, run by hand (see the doc comment)"]
fn k_quant_timing() {
    let threads: usize = std::env::var("GEMV_THREADS").map_or(1, |t| t.parse().unwrap());
    for (k, n, m) in [(1536, 8960, 512), (8960, 1536, 512), (1536, 1536, 512)] {
        let (weights, w, cols, x) = repacked_operands(k, n, m, 3);
        let (w, x) = (weights.get(w), cols.get(x));
        time_against_ggml("Q4_K", w, x, threads, 3, |c, w, x| c.mul_mat_q4k(w, x));
    }
    // the decode op: a few columns (ggml: matrix x vector per column up to 3, then its gemm)
    let ms: Vec<usize> = std::env::var("Q4K_COLS").map_or(vec![1, 2, 3, 8], |v| {
        v.split(',').map(|c| c.parse().unwrap()).collect()
    });
    for m in ms {
        let (weights, w, cols, x) = repacked_operands(1536, 8960, m, 3);
        let (w, x) = (weights.get(w), cols.get(x));
        time_against_ggml("Q4_K", w, x, threads, 50, |c, w, x| c.mul_mat_q4k_vec(w, x));
    }
    for (k, n, m) in [(8960, 1536, 512), (1536, 256, 512)] {
        let (data, w, x) = operands_cols(Type::Q6_K, k, n, m, 3);
        let (w, x) = (data.get(w), data.get(x));
        time_against_ggml("Q6_K", w, x, threads, 3, |c, w, x| c.mul_mat_q6k(w, x));
    }
}

/// Timing of the several-column kernels, not a test
/// (`cargo test --release --lib cols_kernel_timing -- --ignored --nocapture`): nanoseconds per
/// (row, column, block) for 8 columns, each kernel of this CPU's instruction sets timed in
/// turn (alternating, best of 5), on 16 rows of 18 blocks (in cache) or, with `COLS_BIG=1`,
/// 80,000 rows of 28 blocks (streamed from memory). Prints figures, asserts nothing about speed.
#[test]
#[cfg(target_arch = "x86_64")]
#[ignore = "timing: prints figures, run by hand (see the doc comment)"]
fn cols_kernel_timing() {
    type Kernel = unsafe fn(&x86::F16Table, *const u8, *const u8, usize, &mut [f32; 8]);
    let Some(f16) = f16_table() else { return };
    let mut rng = Rng(7);
    let big = std::env::var("COLS_BIG").is_ok();
    let (nb, rows) = if big { (28, 80_000) } else { (18, 16) };
    let vnni = Machine::get().vnni;
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        let fmt = Format::of(ty).unwrap();
        let mut kernels: Vec<(&str, cols::Packing, Kernel)> = Vec::new();
        match ty {
            Type::Q4_1 => {
                kernels.push(("avx2", cols::Packing::Q8_1, cols::avx2::q4_1::<8>));
                if vnni {
                    kernels.push(("vnni", cols::Packing::Q8_1, cols::vnni::q4_1::<8>));
                    kernels.push(("vnni-512", cols::Packing::Q8_1Wide, cols::wide::q4_1::<8>));
                }
            }
            Type::Q5_0 => {
                kernels.push(("avx2", cols::Packing::Q8_0, cols::avx2::signed::<8, true>));
                if vnni {
                    kernels.push(("vnni", cols::Packing::Offset, cols::vnni::signed::<8, true>));
                    kernels.push((
                        "vnni-512",
                        cols::Packing::OffsetWide,
                        cols::wide::signed::<8, true>,
                    ));
                }
            }
            _ => {
                kernels.push(("avx2", cols::Packing::Q8_0, cols::avx2::signed::<8, false>));
                if vnni {
                    kernels.push((
                        "vnni",
                        cols::Packing::Offset,
                        cols::vnni::signed::<8, false>,
                    ));
                    kernels.push((
                        "vnni-512",
                        cols::Packing::OffsetWide,
                        cols::wide::signed::<8, false>,
                    ));
                }
            }
        }
        let w = random_blocks(&mut rng, ty, nb * rows);
        let row_bytes = w.len() / rows;
        let act: Vec<u8> = (0..cols::COLS * nb * fmt.act_bytes())
            .map(|_| rng.byte() % 64)
            .collect();
        let ys: Vec<*const u8> = (0..cols::COLS)
            .map(|c| act.as_ptr().wrapping_add(c * nb * fmt.act_bytes()))
            .collect();
        let packs: Vec<(Vec<u8>, usize)> = kernels
            .iter()
            .map(|&(_, packing, _)| pack_aligned(f16, packing, &ys, nb))
            .collect();
        let reps = if big { 4 } else { 20_000 };
        let mut best = vec![f64::MAX; kernels.len()];
        for _ in 0..5 {
            for (k, &(_, _, kernel)) in kernels.iter().enumerate() {
                let packed = packs[k].0.as_ptr().wrapping_add(packs[k].1);
                let mut out = [0.0f32; 8];
                let t0 = std::time::Instant::now();
                for _ in 0..reps {
                    for r in 0..rows {
                        // SAFETY: row r holds nb blocks, `packed` nb packed blocks of 8
                        // columns in the kernel's layout; `f16_table` found the features
                        // (and `Machine` VNNI for the VNNI kernels).
                        unsafe { kernel(f16, w.as_ptr().add(r * row_bytes), packed, nb, &mut out) };
                    }
                    std::hint::black_box(&out);
                }
                let ns = t0.elapsed().as_secs_f64() * 1e9 / (reps * rows * nb * cols::COLS) as f64;
                best[k] = best[k].min(ns);
            }
        }
        for (k, &(name, _, _)) in kernels.iter().enumerate() {
            eprintln!("{ty:?} {name}: {:.3} ns per row, column and block", best[k]);
        }
    }
}

/// Timing of the one-column-per-lane kernels (two pairs of rows a call) against the 256-bit and
/// 512-bit ones (`cargo test --release --lib lane_kernel_timing -- --ignored --nocapture`;
/// `COLS_N` columns, 1 to 8, 8 unless set; `COLS_BIG`: weights far past the caches): prints
/// figures, asserts nothing about speed.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore = "timing: prints figures, run by hand (see the doc comment)"]
fn lane_kernel_timing() {
    let Some(f16) = f16_table() else { return };
    if !Machine::get().vnni {
        return;
    }
    let mut rng = Rng(7);
    // COLS_N columns (8 unless set)
    let c: usize = std::env::var("COLS_N").map_or(8, |v| v.parse().unwrap());
    // COLS_BIG: weights far past the caches, as a model's
    let big = std::env::var("COLS_BIG").is_ok();
    let (nb, rows, reps) = if big {
        (28, 100_000, 3)
    } else {
        (28, 16, 20_000)
    };
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        let fmt = Format::of(ty).unwrap();
        let w = random_blocks(&mut rng, ty, nb * rows);
        let row_bytes = w.len() / rows;
        let act: Vec<u8> = (0..8 * nb * fmt.act_bytes())
            .map(|_| rng.byte() % 64)
            .collect();
        let ys: Vec<*const u8> = (0..c)
            .map(|c| act.as_ptr().wrapping_add(c * nb * fmt.act_bytes()))
            .collect();
        let packs: Vec<(Vec<u8>, usize)> = [
            cols::Packing::of(x86::Isa::Vnni, fmt, false),
            cols::Packing::of(x86::Isa::Vnni, fmt, true),
            cols::Packing::lanes(fmt),
        ]
        .into_iter()
        .map(|packing| pack_aligned(f16, packing, &ys, nb))
        .collect();
        let mut best = [f64::MAX; 3];
        let mut out = [
            vec![0.0f32; c * rows],
            vec![0.0f32; c * rows],
            vec![0.0f32; c * rows],
        ];
        for _ in 0..5 {
            for (k, best) in best.iter_mut().enumerate() {
                let p = packs[k].0.as_ptr().wrapping_add(packs[k].1);
                let o = out[k].as_mut_ptr();
                let t0 = std::time::Instant::now();
                for _ in 0..reps {
                    for r in (0..rows).step_by(if k < 2 { 1 } else { 4 }) {
                        let row = w.as_ptr().wrapping_add(r * row_bytes);
                        // SAFETY: the rows hold nb blocks, `p` nb packed blocks of c columns
                        // in the kernel's layout, `out` room for rows × c; VNNI.
                        unsafe {
                            if k < 2 {
                                super::packed_row_n(
                                    c,
                                    x86::Isa::Vnni,
                                    k == 1,
                                    f16,
                                    fmt,
                                    row,
                                    p,
                                    nb,
                                    o.add(r),
                                    rows,
                                )
                            } else {
                                super::lane_rows(
                                    c,
                                    4,
                                    f16,
                                    fmt,
                                    row,
                                    row_bytes,
                                    p,
                                    nb,
                                    o.add(r),
                                    rows,
                                )
                            }
                        }
                    }
                    std::hint::black_box(&out[k]);
                }
                let ns = t0.elapsed().as_secs_f64() * 1e9 / (reps * rows * nb * c) as f64;
                *best = best.min(ns);
            }
        }
        let bits = |o: &[f32]| o.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out[0]), bits(&out[1]));
        assert_eq!(bits(&out[0]), bits(&out[2]));
        eprintln!(
            "{ty:?}, {c} columns: 256-bit {:.3}, 512-bit {:.3}, one column per lane {:.3} ns per row, column and block",
            best[0], best[1], best[2]
        );
    }
}
