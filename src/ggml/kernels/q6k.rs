//! Q6_K weights × eight or more activation columns for prompt processing, on CPUs with
//! AVX-512 VNNI.
//!
//! ggml multiplies these with its "tiled" kernels: weights unpacked to bytes per 256-wide
//! slab and per 256 rows, the activation codes transposed for `vpdpbusd`, the result of every
//! super-block added into an f32 window. Here, as for Q4_K ([`super::q4k`]), a 16-row group is
//! unpacked once for all columns into `vpdpbusd` lanes (16 rows × 4 quants), and every column
//! then takes one `vpdpbusd` per 64 multiply-adds with its four quants broadcast from memory.
//!
//! The results are ggml's bit for bit (the tests compare with `ggml_mul_mat`):
//! - Per (row, column, super-block) the integer is ggml's: s = Σ sc · Σ (q − 32) · a over the
//!   sixteen sub-blocks of 16, formed here as Σ sc · Σ q · a − 32 · Σ sc · Σ a.
//! - Its float steps are ggml's: `acc = fma(float(s) · d_w, d_x, acc)` per super-block, in order
//!   (ggml's compiler fuses its multiply and add).
//! - The columns are quantized as ggml's `quantize_row_q8_K` quantizes them ([`quantize_q8_k`],
//!   up to the sign of d).

use std::arch::x86_64::*;

use super::groups::{bcast, load, quantize_q8_k, GROUP_ROWS};

/// Bytes of one Q6_K block: ql[128], qh[64], scales[16] (i8), d (f16).
const BLOCK: usize = 210;
const QH: usize = 128;
const SCALES: usize = 192;
const D: usize = 208;

/// Bytes of one quantized activation super-block: d (f32), the sums of the quants of each
/// sub-block of 16 (16 × i16), the 256 quants.
pub const ACT_BYTES: usize = 292;
const ACT_SUMS: usize = 4;
const ACT_QS: usize = 36;

/// Bytes of one unpacked super-block of a row group: quants (16 sub-blocks × 4 steps of 4 ×
/// 16 rows), scales as i32 (16 × 16), scales as pairs of i16 (8 × 16), d (16 f32).
pub const UNPACKED_BYTES: usize = U_D + 64;
const U_SCALES: usize = 4096;
const U_PAIRS: usize = U_SCALES + 1024;
const U_D: usize = U_PAIRS + 512;

/// Quantizes `nsb` super-blocks of floats at `x` into activation blocks at `y`.
///
/// # Safety
/// The CPU has AVX-512 F and BW; `x` holds 256·nsb floats, `y` room for nsb blocks.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn quantize(x: *const f32, y: *mut u8, nsb: usize) {
    for b in 0..nsb {
        let q = quantize_q8_k(x.add(b * 256));
        let yb = y.add(b * ACT_BYTES);
        std::ptr::copy_nonoverlapping(q.d.to_le_bytes().as_ptr(), yb, 4);
        std::ptr::copy_nonoverlapping(q.sums16.as_ptr() as *const u8, yb.add(ACT_SUMS), 32);
        std::ptr::copy_nonoverlapping(q.quants.as_ptr() as *const u8, yb.add(ACT_QS), 256);
    }
}

/// One row's super-block as 256 bytes 0-63, in element order.
///
/// # Safety
/// The CPU has AVX2; `blk` addresses one Q6_K block.
#[target_feature(enable = "avx2")]
unsafe fn decode(blk: *const u8, out: &mut [u8; 256]) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m3 = _mm256_set1_epi8(0x03);
    for half in 0..2 {
        let ql0 = _mm256_loadu_si256(blk.add(64 * half) as *const __m256i);
        let ql1 = _mm256_loadu_si256(blk.add(64 * half + 32) as *const __m256i);
        let qh = _mm256_loadu_si256(blk.add(QH + 32 * half) as *const __m256i);
        let high = [
            qh,
            _mm256_srli_epi16::<2>(qh),
            _mm256_srli_epi16::<4>(qh),
            _mm256_srli_epi16::<6>(qh),
        ]
        .map(|h| _mm256_slli_epi16::<4>(_mm256_and_si256(h, m3)));
        let parts = [
            _mm256_or_si256(_mm256_and_si256(ql0, m4), high[0]),
            _mm256_or_si256(_mm256_and_si256(ql1, m4), high[1]),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), high[2]),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4), high[3]),
        ];
        for (i, p) in parts.iter().enumerate() {
            _mm256_storeu_si256(
                out.as_mut_ptr().add(128 * half + 32 * i) as *mut __m256i,
                *p,
            );
        }
    }
}

/// Unpacks `nsb` super-blocks of 16 rows (`rows[i]`, each `nsb` blocks; repeat a row to fill
/// a short group) into `out`.
///
/// # Safety
/// The CPU has AVX-512 F and BW and F16C; every row addresses nsb blocks, `out` room for
/// nsb · [`UNPACKED_BYTES`].
#[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
pub unsafe fn unpack(rows: &[*const u8; GROUP_ROWS], nsb: usize, out: *mut u8) {
    let mut q = [[0u8; 256]; GROUP_ROWS];
    for b in 0..nsb {
        let o = out.add(b * UNPACKED_BYTES);
        let mut scales = [[0i32; GROUP_ROWS]; 16];
        let mut d = [0u16; GROUP_ROWS];
        for (r, row) in rows.iter().enumerate() {
            let blk = row.add(b * BLOCK);
            decode(blk, &mut q[r]);
            for (s, sc) in scales.iter_mut().enumerate() {
                sc[r] = *blk.add(SCALES + s) as i8 as i32;
            }
            d[r] = u16::from_le_bytes([*blk.add(D), *blk.add(D + 1)]);
        }
        // quants: dword k (elements 4k..4k+3) of every row side by side
        let o32 = o as *mut u32;
        for k in 0..64 {
            for (r, qr) in q.iter().enumerate() {
                let dw =
                    u32::from_le_bytes([qr[4 * k], qr[4 * k + 1], qr[4 * k + 2], qr[4 * k + 3]]);
                o32.add(16 * k + r).write_unaligned(dw);
            }
        }
        std::ptr::copy_nonoverlapping(scales.as_ptr() as *const u8, o.add(U_SCALES), 1024);
        for p in 0..8 {
            for (r, (&s0, &s1)) in scales[2 * p].iter().zip(&scales[2 * p + 1]).enumerate() {
                let at = o.add(U_PAIRS + 64 * p + 4 * r) as *mut [i16; 2];
                at.write_unaligned([s0 as i16, s1 as i16]);
            }
        }
        let h = _mm256_loadu_si256(d.as_ptr() as *const __m256i);
        _mm512_storeu_ps(o.add(U_D) as *mut f32, _mm512_cvtph_ps(h));
    }
}

/// A row group (`u`, unpacked) × C columns: `out[c]` gets the 16 rows' results of column c.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `u` holds nsb unpacked super-blocks, each `cols[c]`
/// nsb activation blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn tile<const C: usize>(
    u: *const u8,
    cols: &[*const u8; C],
    nsb: usize,
    out: &mut [[f32; GROUP_ROWS]; C],
) {
    let mut acc = [_mm512_setzero_ps(); C];
    for b in 0..nsb {
        let ub = u.add(b * UNPACKED_BYTES);
        let ab: [*const u8; C] = std::array::from_fn(|c| cols[c].add(b * ACT_BYTES));
        let mut sum = [_mm512_setzero_si512(); C];
        for p in 0..8 {
            let mut dot0 = [_mm512_setzero_si512(); C];
            let mut dot1 = [_mm512_setzero_si512(); C];
            for step in 0..4 {
                let w0 = load(ub.add((8 * p + step) * 64));
                let w1 = load(ub.add((8 * p + 4 + step) * 64));
                for c in 0..C {
                    let q = ab[c].add(ACT_QS + 32 * p + 4 * step);
                    dot0[c] = _mm512_dpbusd_epi32(dot0[c], w0, bcast(q));
                    dot1[c] = _mm512_dpbusd_epi32(dot1[c], w1, bcast(q.add(16)));
                }
            }
            let sc0 = load(ub.add(U_SCALES + 128 * p));
            let sc1 = load(ub.add(U_SCALES + 128 * p + 64));
            for c in 0..C {
                let s = _mm512_add_epi32(
                    _mm512_mullo_epi32(dot0[c], sc0),
                    _mm512_mullo_epi32(dot1[c], sc1),
                );
                sum[c] = _mm512_add_epi32(sum[c], s);
            }
        }
        let d = _mm512_loadu_ps(ub.add(U_D) as *const f32);
        for c in 0..C {
            // 32 · Σ sc · (sum of the column's quants in the sub-block)
            let mut bias = _mm512_setzero_si512();
            for p in 0..8 {
                let pairs = load(ub.add(U_PAIRS + 64 * p));
                let m = _mm512_madd_epi16(pairs, bcast(ab[c].add(ACT_SUMS + 4 * p)));
                bias = _mm512_add_epi32(bias, m);
            }
            let s = _mm512_sub_epi32(sum[c], _mm512_slli_epi32::<5>(bias));
            let dx = _mm512_set1_ps(std::ptr::read_unaligned(ab[c] as *const f32));
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), d), dx, acc[c]);
        }
    }
    for c in 0..C {
        _mm512_storeu_ps(out[c].as_mut_ptr(), acc[c]);
    }
}

/// The Q6_K kernels for the row-group driver.
pub struct Q6K;

impl super::groups::Kernels for Q6K {
    const ACT_BYTES: usize = ACT_BYTES;
    const UNPACKED_BYTES: usize = UNPACKED_BYTES;

    fn grouped_cols(n: usize) -> usize {
        n
    }

    unsafe fn quantize(x: *const f32, y: *mut u8, nsb: usize) {
        quantize(x, y, nsb)
    }

    unsafe fn unpack(w: &ggml_sys::ggml_tensor, r0: usize, nr: usize, out: *mut u8) {
        let nsb = w.ne[0] as usize / 256;
        let rows: [*const u8; GROUP_ROWS] = std::array::from_fn(|i| {
            (w.data as *const u8).wrapping_add((r0 + i.min(nr - 1)) * w.nb[1])
        });
        unpack(&rows, nsb, out)
    }

    unsafe fn tile4(u: *const u8, cols: &[*const u8; 4], nsb: usize, out: &mut [[f32; 16]; 4]) {
        tile::<4>(u, cols, nsb, out)
    }

    unsafe fn tile1(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; 16]) {
        let mut o = [[0.0f32; 16]; 1];
        tile::<1>(u, &[col], nsb, &mut o);
        *out = o[0];
    }

    unsafe fn single(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; 16]) {
        Self::tile1(u, col, nsb, out)
    }
}
