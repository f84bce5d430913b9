//! Q4_K weights × several activation columns for prompt processing on CPUs with AVX2 (no
//! AVX-512), reading the weights where ggml's CPU repack buffer holds them (`block_q4_Kx8`, see
//! [`super::q4k`]).
//!
//! ggml's AVX2 kernel for that layout (`ggml_gemm_q4_K_8x8_q8_K`) brings weight and activation
//! bytes into place with about as many shuffles, blends and permutes as it has multiplies
//! (`vpmaddubsw`), for every four columns. Here each 16-row group's quants are unpacked once
//! for all columns into 8-row vectors (4 quants of a row per 32-bit lane, rows 0-7 in the low
//! 32 bytes of a 64-byte line, rows 8-15 in the high), and every column then takes one
//! `vpmaddubsw` and one 16-bit add per 32 multiply-adds, its four activation quants broadcast
//! from memory.
//!
//! The results are ggml's bit for bit, by the same reasoning as the AVX-512 kernels':
//! - Per (row, column) the integer sums are ggml's: each 16-bit lane holds at most 16 products
//!   of a 4-bit quant and an 8-bit one (|·| ≤ 16 · 15 · 127 < 2^15), so no sum saturates or
//!   wraps, here or in ggml; `sc · dot` of each sub-block of 32 and `m · bsum` of each pair of
//!   sub-blocks are exact 32-bit integers.
//! - The float steps are ggml's: per super-block and pair of sub-blocks, `acc = fma(float(sc0 ·
//!   dot0 + sc1 · dot1), d_w · d_x, acc)` and `acc_min = fma(float(m0 · s0 + m1 · s1), dmin_w ·
//!   d_x, acc_min)`, the result `acc − acc_min` (matrix × matrix order, columns in groups of
//!   four); the columns left over (n mod 4) in ggml's matrix × vector order, the whole
//!   super-block summed in integers before one fused multiply-add each ([`single`]).
//! - Columns are quantized as ggml quantizes them (see [`super::groups::quantize_q8_k`]).
//!
//! The tests compare the op with `ggml_mul_mat` on repacked weights.

use std::arch::x86_64::*;

use super::groups::GROUP_ROWS;
use super::q4k::{
    row_groups, scale_min_bytes, ACT_BYTES, ACT_QS, ACT_SUMS, BLOCK_X8, UNPACKED_BYTES, X8_DMIN,
    X8_QS,
};
use super::x86::{quantize_q8_k, Q8_K_BYTES};

/// The unpacked super-block of a row group, as in [`super::q4k`] (each record 64 bytes: rows
/// 0-7 in its first 32, rows 8-15 in its last), except the scales: per sub-block, each row's
/// scale in both 16-bit halves of its 32-bit lane (for `vpmaddwd`).
const U_SCALES: usize = 4096;
const U_MINS: usize = U_SCALES + 512;
const U_D: usize = U_MINS + 256;
const U_DMIN: usize = U_D + 64;
const _: () = assert!(U_DMIN + 64 == UNPACKED_BYTES);

/// Quantizes `nsb` super-blocks of floats at `x` into activation blocks at `y` (the layout of
/// [`super::q4k::quantize`]) as ggml's `quantize_row_q8_K` does ([`quantize_q8_k`]), the sums
/// of each 16 quants added by sub-block of 32.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `x` holds 256·nsb floats, `y` room for nsb blocks.
pub unsafe fn quantize(x: *const f32, y: *mut u8, nsb: usize) {
    let mut q = [0u8; Q8_K_BYTES];
    for b in 0..nsb {
        quantize_q8_k(x.add(256 * b), q.as_mut_ptr(), 1);
        let yb = y.add(b * ACT_BYTES);
        std::ptr::copy_nonoverlapping(q.as_ptr(), yb, 4);
        for j in 0..8 {
            let sum16 = |k: usize| i16::from_le_bytes([q[260 + 2 * k], q[261 + 2 * k]]);
            let sum = sum16(2 * j) + sum16(2 * j + 1);
            std::ptr::copy_nonoverlapping(sum.to_le_bytes().as_ptr(), yb.add(ACT_SUMS + 2 * j), 2);
        }
        std::ptr::copy_nonoverlapping(q.as_ptr().add(4), yb.add(ACT_QS), 256);
    }
}

/// Unpacks `nsb` super-blocks of two `block_q4_Kx8` row groups (`a` for rows 0-7, `b` for
/// 8-15; pass `a` twice for a lone group) into `out`.
///
/// # Safety
/// The CPU has AVX2 and F16C; `a` and `b` address nsb blocks each, `out` room for nsb ·
/// [`UNPACKED_BYTES`].
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn unpack(a: *const u8, b: *const u8, nsb: usize, out: *mut u8) {
    let m4 = _mm256_set1_epi8(0x0F);
    // the first 4 bytes of each row's 8 to the low half, the last 4 to the high
    let split = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for s in 0..nsb {
        let o = out.add(s * UNPACKED_BYTES);
        for (half, p) in [a, b].into_iter().enumerate() {
            let p = p.add(s * BLOCK_X8);
            // the next 16-row group's same super-block (a thread's groups are contiguous): it
            // arrives while this group is multiplied
            let next = p.wrapping_add(2 * nsb * BLOCK_X8);
            for line in (0..BLOCK_X8).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line) as *const i8);
            }
            for c in 0..16 {
                let (g, q) = (c / 4, c % 4);
                let chunk = p.add(X8_QS + 64 * c);
                let r03 = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(chunk as *const _), split);
                let r47 = _mm256_permutevar8x32_epi32(
                    _mm256_loadu_si256(chunk.add(32) as *const _),
                    split,
                );
                let first = _mm256_permute2x128_si256::<0x20>(r03, r47);
                let second = _mm256_permute2x128_si256::<0x31>(r03, r47);
                for (h, w) in [first, second].into_iter().enumerate() {
                    let step = 2 * q + h;
                    let lo = _mm256_and_si256(w, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(w), m4);
                    let at = |sb: usize| o.add((sb * 8 + step) * 64 + 32 * half) as *mut __m256i;
                    _mm256_storeu_si256(at(2 * g), lo);
                    _mm256_storeu_si256(at(2 * g + 1), hi);
                }
            }
            let sm: [(u64, u64); 8] = std::array::from_fn(|sb| scale_min_bytes(p, sb));
            let lanes = |bytes: u64| _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes as i64));
            for (sb, &(v, _)) in sm.iter().enumerate() {
                let v = lanes(v);
                let pair = _mm256_or_si256(v, _mm256_slli_epi32::<16>(v));
                _mm256_storeu_si256(o.add(U_SCALES + 64 * sb + 32 * half) as *mut _, pair);
            }
            for g in 0..4 {
                let (m0, m1) = (lanes(sm[2 * g].1), lanes(sm[2 * g + 1].1));
                let pair = _mm256_or_si256(m0, _mm256_slli_epi32::<16>(m1));
                _mm256_storeu_si256(o.add(U_MINS + 64 * g + 32 * half) as *mut _, pair);
            }
            for (at, to) in [(0, U_D), (X8_DMIN, U_DMIN)] {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(p.add(at) as *const _));
                _mm256_storeu_ps(o.add(to + 32 * half) as *mut f32, v);
            }
        }
    }
}

/// A 32-bit value at `p` in every lane (a broadcast load the compiler folds into its user).
#[inline(always)]
unsafe fn bcast(p: *const u8) -> __m256i {
    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline(always)]
unsafe fn load_ps(p: *const u8) -> __m256 {
    _mm256_loadu_ps(p as *const f32)
}

/// The integer dot products of sub-block `sb` of one 8-row half (`ub`: its super-block,
/// offset to the half) with C activation blocks, each scaled by its row's sub-block scale.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn scaled_dots<const C: usize>(
    ub: *const u8,
    ab: &[*const u8; C],
    sb: usize,
) -> [__m256i; C] {
    let mut dot = [_mm256_setzero_si256(); C];
    for step in 0..8 {
        let w = load(ub.add((8 * sb + step) * 64));
        for c in 0..C {
            let q = bcast(ab[c].add(ACT_QS + 32 * sb + 4 * step));
            dot[c] = _mm256_add_epi16(dot[c], _mm256_maddubs_epi16(w, q));
        }
    }
    let sc = load(ub.add(U_SCALES + 64 * sb));
    dot.map(|d| _mm256_madd_epi16(d, sc))
}

/// A row group (`u`, unpacked) × C columns of grouped activations, in ggml's matrix × matrix
/// order: `out[c]` gets the 16 rows' results of column c.
///
/// # Safety
/// The CPU has AVX2 and FMA; `u` holds nsb unpacked super-blocks, each `cols[c]` nsb
/// activation blocks.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile<const C: usize>(
    u: *const u8,
    cols: &[*const u8; C],
    nsb: usize,
    out: &mut [[f32; GROUP_ROWS]; C],
) {
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); C];
        let mut acc_min = [_mm256_setzero_ps(); C];
        for b in 0..nsb {
            let ub = u.add(b * UNPACKED_BYTES + 32 * half);
            let ab: [*const u8; C] = std::array::from_fn(|c| cols[c].add(b * ACT_BYTES));
            for g in 0..4 {
                let s0 = scaled_dots::<C>(ub, &ab, 2 * g);
                let s1 = scaled_dots::<C>(ub, &ab, 2 * g + 1);
                let (d, dmin) = (load_ps(ub.add(U_D)), load_ps(ub.add(U_DMIN)));
                let mins = load(ub.add(U_MINS + 64 * g));
                for c in 0..C {
                    let dx = _mm256_set1_ps(std::ptr::read_unaligned(ab[c] as *const f32));
                    let sum = _mm256_cvtepi32_ps(_mm256_add_epi32(s0[c], s1[c]));
                    acc[c] = _mm256_fmadd_ps(sum, _mm256_mul_ps(d, dx), acc[c]);
                    let m = _mm256_madd_epi16(mins, bcast(ab[c].add(ACT_SUMS + 4 * g)));
                    let dm = _mm256_mul_ps(dmin, dx);
                    acc_min[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m), dm, acc_min[c]);
                }
            }
        }
        for c in 0..C {
            let o = out[c].as_mut_ptr().add(8 * half);
            _mm256_storeu_ps(o, _mm256_sub_ps(acc[c], acc_min[c]));
        }
    }
}

/// A row group × C columns, each in ggml's matrix × vector order (as it multiplies a column
/// quantized alone): the whole super-block summed in integers, then one fused multiply-add
/// each for the scaled sums and the mins. The columns run side by side only to keep the core
/// busy: each is computed exactly as it would be alone.
///
/// # Safety
/// As [`tile`].
#[target_feature(enable = "avx2,fma")]
pub unsafe fn columns<const C: usize>(
    u: *const u8,
    cols: &[*const u8; C],
    nsb: usize,
    out: &mut [[f32; GROUP_ROWS]; C],
) {
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); C];
        let mut acc_min = [_mm256_setzero_ps(); C];
        for b in 0..nsb {
            let ub = u.add(b * UNPACKED_BYTES + 32 * half);
            let ab: [*const u8; C] = std::array::from_fn(|c| cols[c].add(b * ACT_BYTES));
            let mut sum = [_mm256_setzero_si256(); C];
            for sb in 0..8 {
                let s = scaled_dots::<C>(ub, &ab, sb);
                for c in 0..C {
                    sum[c] = _mm256_add_epi32(sum[c], s[c]);
                }
            }
            let (d, dmin) = (load_ps(ub.add(U_D)), load_ps(ub.add(U_DMIN)));
            for c in 0..C {
                let mut sum_min = _mm256_setzero_si256();
                for g in 0..4 {
                    let mins = load(ub.add(U_MINS + 64 * g));
                    let m = _mm256_madd_epi16(mins, bcast(ab[c].add(ACT_SUMS + 4 * g)));
                    sum_min = _mm256_add_epi32(sum_min, m);
                }
                let dx = _mm256_set1_ps(std::ptr::read_unaligned(ab[c] as *const f32));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[c]), _mm256_mul_ps(d, dx), acc[c]);
                let dm = _mm256_mul_ps(dmin, dx);
                acc_min[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum_min), dm, acc_min[c]);
            }
        }
        for c in 0..C {
            let o = out[c].as_mut_ptr().add(8 * half);
            _mm256_storeu_ps(o, _mm256_sub_ps(acc[c], acc_min[c]));
        }
    }
}

/// [`columns`] for one column.
///
/// # Safety
/// As [`tile`], for one column.
#[target_feature(enable = "avx2,fma")]
unsafe fn single(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; GROUP_ROWS]) {
    let mut o = [[0.0f32; GROUP_ROWS]; 1];
    columns::<1>(u, &[col], nsb, &mut o);
    *out = o[0];
}

/// The AVX2 Q4_K kernels for the row-group driver.
pub struct Q4KAvx2;

impl super::groups::Kernels for Q4KAvx2 {
    const ACT_BYTES: usize = ACT_BYTES;
    const UNPACKED_BYTES: usize = UNPACKED_BYTES;

    fn grouped_cols(n: usize) -> usize {
        n - n % 4
    }

    unsafe fn quantize(x: *const f32, y: *mut u8, nsb: usize) {
        quantize(x, y, nsb)
    }

    unsafe fn unpack(w: &ggml_sys::ggml_tensor, r0: usize, nr: usize, out: *mut u8) {
        let (a, b) = row_groups(w, r0, nr);
        unpack(a, b, w.ne[0] as usize / 256, out)
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
        single(u, col, nsb, out)
    }
}

/// The same kernels with every column in ggml's matrix × vector order, as it multiplies one to
/// three columns (and Ember any number, each as a lone one): the decode op on AVX2, the group's
/// weights unpacked once for all the columns of a step.
pub struct Q4KAvx2Columns;

impl super::groups::Kernels for Q4KAvx2Columns {
    const ACT_BYTES: usize = ACT_BYTES;
    const UNPACKED_BYTES: usize = UNPACKED_BYTES;

    /// Every column taken four at a time (each in matrix × vector order all the same).
    fn grouped_cols(n: usize) -> usize {
        n
    }

    unsafe fn quantize(x: *const f32, y: *mut u8, nsb: usize) {
        quantize(x, y, nsb)
    }

    unsafe fn unpack(w: &ggml_sys::ggml_tensor, r0: usize, nr: usize, out: *mut u8) {
        <Q4KAvx2 as super::groups::Kernels>::unpack(w, r0, nr, out)
    }

    unsafe fn tile4(u: *const u8, cols: &[*const u8; 4], nsb: usize, out: &mut [[f32; 16]; 4]) {
        columns::<4>(u, cols, nsb, out)
    }

    unsafe fn tile1(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; 16]) {
        single(u, col, nsb, out)
    }

    unsafe fn tile_rest(u: *const u8, cols: &[*const u8], nsb: usize, out: &mut [[f32; 16]; 3]) {
        match *cols {
            [a] => single(u, a, nsb, &mut out[0]),
            [a, b] => columns::<2>(u, &[a, b], nsb, (&mut out[..2]).try_into().unwrap()),
            _ => columns::<3>(u, &[cols[0], cols[1], cols[2]], nsb, out),
        }
    }

    unsafe fn single(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; 16]) {
        single(u, col, nsb, out)
    }
}
