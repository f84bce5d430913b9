//! The decode op against ggml's own `mul_mat`: equal bit for bit, for every format, shape and
//! thread count.

use super::*;
use crate::ggml::{Backend, BufferType, Tensor, TensorHandle};

/// xorshift64*: reproducible test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }

    /// A float in [-2, 2).
    fn float(&mut self) -> f32 {
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

/// Random blocks of `ty` with valid scales: quants random, Q8_0 quants within ±127.
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
            _ => unreachable!(),
        }
    }
    out
}

/// A context holding a random `[k, n]` matrix of `ty` and a random f32 vector of `k`.
fn operands(ty: Type, k: usize, n: usize, seed: u64) -> (Context, TensorHandle, TensorHandle) {
    operands_cols(ty, k, n, 1, seed)
}

/// The same with `m` activation columns.
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
    let block = Format::of(ty).unwrap().block();
    w.write_bytes(0, &random_blocks(&mut rng, ty, n * k / block))
        .unwrap();
    let xs: Vec<f32> = (0..k * m).map(|_| rng.float()).collect();
    x.write_f32(&xs).unwrap();
    let (w, x) = (data.handle(w), data.handle(x));
    (data, w, x)
}

/// ggml's `mul_mat(w, x)` and `mul_mat_vec(w, x)` for a random `[k, n]` matrix of `ty`.
fn both(ty: Type, k: usize, n: usize, threads: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let (data, w, x) = operands(ty, k, n, seed);
    let (w, x) = (data.get(w), data.get(x));

    assert!(applies(w, x), "{ty:?} [{k}, {n}] should use the decode op");
    let ctx = Context::new(8, 16).unwrap();
    let mut g = ctx.new_graph(16);
    let reference = ctx.mul_mat(w, x);
    let ours = ctx.mul_mat_vec(w, x);
    g.expand(reference);
    g.expand(ours);
    ctx.alloc_tensors(BufferType::cpu(), false).unwrap();
    Backend::cpu(threads).unwrap().compute(&g).unwrap();
    let mut a = vec![0.0; n];
    let mut b = vec![0.0; n];
    reference.read_f32(0, &mut a).unwrap();
    ours.read_f32(0, &mut b).unwrap();
    (a, b)
}

#[test]
fn the_decode_op_gives_ggml_results_bit_for_bit() {
    if isa().is_none() {
        eprintln!("skipped: this CPU (or EMBER_NO_GEMV) has no decode kernels");
        return;
    }
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
            for threads in [1, 2, 3] {
                seed += 1;
                let (a, b) = both(ty, k, n, threads, seed);
                for (row, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "{ty:?} [{k}, {n}], {threads} threads, row {row}: ggml {x}, ours {y}"
                    );
                }
            }
        }
    }
}

/// ggml's `mul_mat(w, x)` and `mul_mat_tiled(w, x)` for `m` columns.
fn both_tiled(ty: Type, k: usize, n: usize, m: usize, threads: usize) -> (Vec<f32>, Vec<f32>) {
    let (data, w, x) = operands_cols(ty, k, n, m, (k * 31 + n * 7 + m) as u64);
    let (w, x) = (data.get(w), data.get(x));
    assert!(applies_tiled(w, x), "{ty:?} [{k}, {n}] x {m}");
    let ctx = Context::new(8, 16).unwrap();
    let mut g = ctx.new_graph(16);
    let reference = ctx.mul_mat(w, x);
    let ours = ctx.mul_mat_tiled(w, x);
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
fn the_tiled_op_gives_ggml_results_bit_for_bit() {
    if isa() != Some(x86::Isa::Vnni) {
        eprintln!("skipped: this CPU (or EMBER_NO_GEMV) has no AVX-512 VNNI tile kernels");
        return;
    }
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
                // 1 thread: the 256-bit kernels; more: the 512-bit ones where the CPU has them
                NARROW.store(threads == 1, std::sync::atomic::Ordering::Relaxed);
                let (a, b) = both_tiled(ty, k, n, m, threads);
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
    NARROW.store(false, std::sync::atomic::Ordering::Relaxed);
}

/// Random Q4_K weights `[k, n]` in ggml's CPU repack buffer (None where this ggml has none)
/// and random f32 columns `[k, m]` in plain memory.
type Operands = (Context, TensorHandle, Context, TensorHandle);

fn repacked_operands(k: usize, n: usize, m: usize, seed: u64) -> Option<Operands> {
    let buft = BufferType::cpu_repack()?;
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
    Some((weights, w, cols, x))
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
        let Some((weights, w, cols, x)) = repacked_operands(k, n, m, (k * 13 + n * 5 + m) as u64)
        else {
            eprintln!("skipped: this ggml has no CPU repack buffer");
            return;
        };
        let (w, x) = (weights.get(w), cols.get(x));
        assert!(w.is_cpu_repacked());
        if !applies_q4k(w, x) {
            eprintln!("skipped: this CPU (or EMBER_NO_TILED) has no Q4_K tile kernels");
            return;
        }
        assert_ggml_bits(w, x, |ctx, w, x| ctx.mul_mat_q4k(w, x));
    }
}

#[test]
fn the_q4_k_decode_op_gives_ggml_results_bit_for_bit() {
    for (k, n, m) in [
        (256, 8, 1),
        (256, 16, 1),
        (512, 24, 2),
        (1536, 40, 3),
        (2048, 64, 1),
    ] {
        let Some((weights, w, cols, x)) = repacked_operands(k, n, m, (k * 7 + n * 3 + m) as u64)
        else {
            eprintln!("skipped: this ggml has no CPU repack buffer");
            return;
        };
        let (w, x) = (weights.get(w), cols.get(x));
        if !applies_q4k_vec(w, x) {
            eprintln!("skipped: this CPU (or EMBER_NO_GEMV) has no Q4_K decode kernel");
            return;
        }
        assert_ggml_bits(w, x, |ctx, w, x| ctx.mul_mat_q4k_vec(w, x));
    }
}

#[test]
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
        if !applies_q6k(w, x) {
            eprintln!("skipped: this CPU (or EMBER_NO_TILED) has no Q6_K tile kernels");
            return;
        }
        assert_ggml_bits(w, x, |ctx, w, x| ctx.mul_mat_q6k(w, x));
    }
}

#[test]
fn only_single_vectors_of_plain_host_weights_apply() {
    let data = Context::new(4, 0).unwrap();
    let w = data.new_tensor(Type::Q4_1, &[64, 8]);
    let x = data.new_tensor(Type::F32, &[64, 1]);
    let x2 = data.new_tensor(Type::F32, &[64, 2]);
    let wf = data.new_tensor(Type::F16, &[64, 8]);
    assert!(!applies(w, x), "unallocated weights");
    data.alloc_tensors(BufferType::cpu(), false).unwrap();
    assert_eq!(applies(w, x), isa().is_some());
    assert!(!applies(w, x2), "two tokens go through ggml's matmul");
    assert!(!applies(wf, x), "f16 weights");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn vnni_and_avx2_kernels_agree() {
    use super::x86::{avx2, vnni, Isa, Q8_0_BYTES, Q8_1_BYTES};
    if Isa::detect() != Some(Isa::Vnni) {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    let mut rng = Rng(7);
    let nb = 18;
    for ty in [Type::Q4_1, Type::Q5_0, Type::Q8_0] {
        let w: Vec<Vec<u8>> = (0..4).map(|_| random_blocks(&mut rng, ty, nb)).collect();
        let xs: Vec<f32> = (0..nb * 32).map(|_| rng.float()).collect();
        let mut y = vec![0u8; nb * Q8_1_BYTES.max(Q8_0_BYTES)];
        let rows: [*const u8; 4] = std::array::from_fn(|r| w[r].as_ptr());
        let (mut a, mut b) = ([0.0f32; 4], [0.0f32; 4]);
        // SAFETY: the CPU has F16C (VNNI detected implies the base set).
        let f16 = unsafe { x86::F16Table::new() };
        // SAFETY: the CPU has AVX-512 VNNI (checked above, which implies the AVX2 set), every
        // row holds nb blocks of `ty` and `y` room for nb activation blocks.
        unsafe {
            match ty {
                Type::Q4_1 => {
                    x86::quantize_q8_1(xs.as_ptr(), y.as_mut_ptr(), nb);
                    avx2::dot_q4_1(&f16, &rows, y.as_ptr(), nb, &mut a);
                    vnni::dot_q4_1(&f16, &rows, y.as_ptr(), nb, &mut b);
                }
                Type::Q5_0 => {
                    x86::quantize_q8_0(xs.as_ptr(), y.as_mut_ptr(), nb);
                    avx2::dot_q5_0(&f16, &rows, y.as_ptr(), nb, &mut a);
                    vnni::dot_q5_0(&f16, &rows, y.as_ptr(), nb, &mut b);
                }
                _ => {
                    x86::quantize_q8_0(xs.as_ptr(), y.as_mut_ptr(), nb);
                    avx2::dot_q8_0(&f16, &rows, y.as_ptr(), nb, &mut a);
                    vnni::dot_q8_0(&f16, &rows, y.as_ptr(), nb, &mut b);
                }
            }
        }
        assert_eq!(
            a.map(f32::to_bits),
            b.map(f32::to_bits),
            "{ty:?}: {a:?} vs {b:?}"
        );
    }
}

/// Timing of both ops on one matrix (`cargo test --release --lib gemv_timing -- --ignored
/// --nocapture`): prints figures, asserts nothing about speed.
#[test]
#[ignore]
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
    for (ty, k, n) in shapes {
        let (data, w, x) = operands(ty, k, n, 3);
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
            let reps = (200_000_000 / (n * k)).max(10);
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
#[ignore]
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
            c.mul_mat_tiled(w, x)
        });
    }
}

/// Timing of ggml's matmul and the K-quant prompt ops, Q4_K on repacked weights and Q6_K
/// (`cargo test --release --lib k_quant_timing -- --ignored --nocapture`, `GEMV_THREADS=2`):
/// prints figures only.
#[test]
#[ignore]
fn k_quant_timing() {
    let threads: usize = std::env::var("GEMV_THREADS").map_or(1, |t| t.parse().unwrap());
    for (k, n, m) in [(1536, 8960, 512), (8960, 1536, 512), (1536, 1536, 512)] {
        let Some((weights, w, cols, x)) = repacked_operands(k, n, m, 3) else {
            return;
        };
        let (w, x) = (weights.get(w), cols.get(x));
        time_against_ggml("Q4_K", w, x, threads, 3, |c, w, x| c.mul_mat_q4k(w, x));
    }
    for (k, n, m) in [(8960, 1536, 512), (1536, 256, 512)] {
        let (data, w, x) = operands_cols(Type::Q6_K, k, n, m, 3);
        let (w, x) = (data.get(w), data.get(x));
        time_against_ggml("Q6_K", w, x, threads, 3, |c, w, x| c.mul_mat_q6k(w, x));
    }
}
