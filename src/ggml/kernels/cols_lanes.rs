//! The decode op's column kernels with one column per lane (AVX-512 VNNI): two rows against
//! up to eight columns in each 512-bit vector, ggml's eight lanes of a column spread over
//! eight vectors.
//!
//! ggml's one-column `ggml_vec_dot_q4_1_q8_1` / `_q5_0_q8_0` / `_q8_0_q8_0` keep eight float
//! lanes per column: lane k takes, block after block, `d_w · d_x` times the integer sum of the
//! block's products 4k..4k+3, and the eight are summed at the end (Q4_1 adds `Σ m · s`). The
//! other column kernels ([`cols`](super::cols), [`wide`](super::cols_wide)) keep a column's
//! eight lanes in one vector, so each block needs the column's scale product copied into
//! eight lanes: a permute per column and block, on a port the arithmetic needs. Here vector k
//! holds lane k of each (row, column): lane 2j is column j against the first row of a pair,
//! lane 2j + 1 against the second. One multiply gives a block's 16 scale products, shared by
//! the eight vectors, and ggml's horizontal sum becomes three vertical adds. What remains on
//! the multiply-add ports per (row, column, block) is the `vpdpbusd` and the fused
//! multiply-add of each lane, the arithmetic ggml's result needs.
//!
//! The weights are broadcast: group k of both rows of a pair, side by side in memory, is one
//! 8-byte broadcast load (a load port only), so a block is unpacked a few blocks ahead into a
//! small ring ([`unpack_pair`]; a load that reads a store just made waits for it). The
//! columns are packed with each one twice ([`Packing::LanesPair`]) and loaded once for two
//! pairs of rows. Q4_1 weights are unsigned, its Q8_1 columns signed: `vpdpbusd` as it is.
//! Q5_0 and Q8_0 weights are signed, so the columns are packed as `y + 128` (unsigned) and
//! each group's sum starts from `-128 · Σw` (the same for all columns, one more broadcast):
//! the lane sum is the same integer as ggml's. Measured on a Zen 4 EPYC
//! (`lane_kernel_timing`, eight columns, ns per row, column and block, against the 512-bit
//! kernels): Q4_1 0.52 → 0.41, Q5_0 0.52 → 0.42, Q8_0 0.48 → 0.38 in the first-level cache;
//! 0.55 → 0.47, 0.58 → 0.47, 0.61 → 0.51 with the weights streamed from memory, the op's next
//! four rows prefetched as one region. [`choice`](super::cols_choice) times the kinds once per
//! process and takes these per column count where they cost less.

use std::arch::x86_64::*;

use super::cols::Packing;
use super::x86::{bytes_from_nibbles_32, F16Table, Q4_1_BYTES, Q5_0_BYTES, Q8_0_BYTES};

/// The weight formats, as the kernels' const parameter.
pub const Q4_1: u8 = 0;
pub const Q5_0: u8 = 1;
pub const Q8_0: u8 = 2;

/// Blocks of a row pair unpacked ahead of their products.
const AHEAD: usize = 8;

/// Slots of unpacked blocks (a power of two above [`AHEAD`]).
const RING: usize = 16;

/// One block of a pair of rows, unpacked: the two rows' groups k side by side (two 32-byte
/// halves as `vpunpck*dq` make them: groups 0, 1, 4, 5, then 2, 3, 6, 7), the same for the
/// starting values (Q5_0, Q8_0), then the two d and (Q4_1) the two m.
type Slot = [__m256i; 5];

/// A block's quants as bytes: Q4_1's nibbles (unsigned), Q5_0's (−16..15: the low nibble with
/// 0xF0 above it where the block's high bit is clear) and Q8_0's (signed).
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl")]
#[inline]
unsafe fn quants<const F: u8>(xb: *const u8) -> __m256i {
    match F {
        Q4_1 => bytes_from_nibbles_32(xb.add(4)),
        Q5_0 => {
            let qh = std::ptr::read_unaligned(xb.add(2) as *const u32);
            let high = _mm256_maskz_mov_epi8(!qh, _mm256_set1_epi8(0xF0u8 as i8));
            _mm256_or_si256(bytes_from_nibbles_32(xb.add(6)), high)
        }
        _ => _mm256_loadu_si256(xb.add(2) as *const __m256i),
    }
}

/// Unpacks the blocks at `x0` and `x1` (a pair of rows) into `slot`.
///
/// # Safety
/// Both hold a block of format F; `slot` is writable.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn unpack_pair<const F: u8>(f16: &F16Table, x0: *const u8, x1: *const u8, slot: *mut Slot) {
    let slot = &mut *slot;
    let (q0, q1) = (quants::<F>(x0), quants::<F>(x1));
    slot[0] = _mm256_unpacklo_epi32(q0, q1);
    slot[1] = _mm256_unpackhi_epi32(q0, q1);
    if F != Q4_1 {
        // -128 · Σw of each group, in the same order
        let start = |q| {
            let sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), q);
            _mm256_sub_epi32(_mm256_setzero_si256(), sums)
        };
        slot[2] = start(slot[0]);
        slot[3] = start(slot[1]);
    }
    let d = slot.as_mut_ptr().add(4) as *mut f32;
    *d = *f16.at(x0);
    *d.add(1) = *f16.at(x1);
    if F == Q4_1 {
        *d.add(2) = *f16.at(x0.add(2));
        *d.add(3) = *f16.at(x1.add(2));
    }
}

/// Where group k of a pair is in the first two vectors of a [`Slot`].
const fn group(k: usize) -> usize {
    32 * ((k >> 1) & 1) + 8 * ((k & 1) + 2 * (k >> 2))
}

/// The 8 bytes at `p` in every 64-bit lane, by a broadcast load.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bcast(p: *const u8) -> __m512i {
    _mm512_set1_epi64(std::ptr::read_unaligned(p as *const i64))
}

/// P pairs of rows of format F (`nb` blocks each, the first at `row`, `row_bytes` apart)
/// against C ≤ 8 columns packed as [`Packing::LanesPair`] (Q5_0, Q8_0) or
/// [`Packing::LanesPairQ8_1`] (Q4_1): each (row, column) result is ggml's one-column dot
/// product of the two bit for bit. The results of the first `rows` rows go to `out`: row r of
/// column j at `out[j · stride + r]` (the other rows, where a matrix ends, are computed and
/// dropped: they may repeat the last one, `row_bytes` 0 for a single row).
///
/// # Safety
/// The 2P rows hold nb blocks each, `packed` nb packed blocks of C columns; `out` has room
/// for `rows` rows of C columns `stride` apart; the CPU has AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn pairs<const P: usize, const C: usize, const F: u8>(
    f16: &F16Table,
    row: *const u8,
    row_bytes: usize,
    packed: *const u8,
    nb: usize,
    out: *mut f32,
    stride: usize,
    rows: usize,
) {
    let block = match F {
        Q4_1 => Q4_1_BYTES,
        Q5_0 => Q5_0_BYTES,
        _ => Q8_0_BYTES,
    };
    let packing = if F == Q4_1 {
        Packing::LanesPairQ8_1
    } else {
        Packing::LanesPair
    };
    let pstride = packing.block(C);
    let quants = packing.quants(0);
    let mut acc = [[_mm512_setzero_ps(); 8]; P];
    let mut summs = [_mm512_setzero_ps(); P];
    // each slot written (AHEAD blocks ahead) before it is read
    let mut ring = std::mem::MaybeUninit::<[[Slot; P]; RING]>::uninit();
    let ring = ring.as_mut_ptr() as *mut [Slot; P];
    let unpack = |b: usize, slots: *mut [Slot; P]| {
        for p in 0..P {
            let x0 = row.add(2 * p * row_bytes + b * block);
            unpack_pair::<F>(f16, x0, x0.add(row_bytes), (slots as *mut Slot).add(p));
        }
    };
    for b in 0..AHEAD.min(nb) {
        unpack(b, ring.add(b));
    }
    for b in 0..nb {
        if b + AHEAD < nb {
            unpack(b + AHEAD, ring.add((b + AHEAD) % RING));
        }
        // The rows of the next call (the op's next four): a contiguous region, two lines a
        // block, evenly over this call's blocks (the hardware prefetcher does the rest).
        let region = 2 * P * row_bytes;
        let next = row.wrapping_add(region + b * region / nb);
        _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64) as *const i8);
        let pb = packed.add(b * pstride);
        let dy = _mm512_load_ps(pb as *const f32);
        let slots = ring.add(b % RING) as *const Slot;
        for p in 0..P {
            let u = slots.add(p) as *const u8;
            let ds = _mm512_castsi512_ps(bcast(u.add(128)));
            let d = _mm512_mul_ps(ds, dy);
            if F == Q4_1 {
                // each (row, column)'s `m · s`: a product of two f16 values, exact in f32,
                // so this is ggml's scalar sum step for step
                let m = _mm512_castsi512_ps(bcast(u.add(136)));
                summs[p] = _mm512_fmadd_ps(m, _mm512_load_ps(pb.add(64) as *const f32), summs[p]);
            }
            for (k, acc) in acc[p].iter_mut().enumerate() {
                let y = _mm512_load_si512(pb.add(quants + 64 * k) as *const __m512i);
                let w = bcast(u.add(group(k)));
                let s = if F == Q4_1 {
                    _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, y)
                } else {
                    _mm512_dpbusd_epi32(bcast(u.add(64 + group(k))), y, w)
                };
                *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), *acc);
            }
        }
    }
    for p in 0..P {
        // ggml's horizontal sum of each (row, column)'s eight lanes, then (Q4_1) its Σ m · s
        let a = &acc[p];
        let t: [__m512; 4] = std::array::from_fn(|k| _mm512_add_ps(a[k], a[k + 4]));
        let mut r = _mm512_add_ps(_mm512_add_ps(t[0], t[2]), _mm512_add_ps(t[1], t[3]));
        if F == Q4_1 {
            r = _mm512_add_ps(r, summs[p]);
        }
        let mut all = [0.0f32; 16];
        _mm512_storeu_ps(all.as_mut_ptr(), r);
        for j in 0..C {
            for e in 0..2 {
                if 2 * p + e < rows {
                    *out.add(j * stride + 2 * p + e) = all[2 * j + e];
                }
            }
        }
    }
}
