//! The decode op over several columns (a step of several sequences, or a prompt) for Q4_1,
//! Q5_0 and Q8_0 weights: one weight row against up to eight columns at once.
//!
//! Each (row, column) result is ggml's one-column `ggml_vec_dot_*` step for step, as the
//! one-column kernels in `x86.rs` compute it: per block one f32 product `d_w · d_x`, one
//! fused multiply-add of it with the 8 integer lane sums as floats into the pair's 8-lane
//! accumulator, and (Q4_1) `summs += m · s`; then ggml's horizontal sum. So every column gets
//! exactly what it gets alone, whatever else is in the batch.
//!
//! What is shared is what does not depend on the pair: a weight block is unpacked and its
//! scale looked up once for all the columns, and (Q4_1) the eight `m · s` terms are one vector
//! fused multiply-add (each product of two f16 values is exact in f32, so this is the scalar
//! sum's every step). For that the quantized columns are first laid out block by block
//! ([`pack`]): the eight column scales as f32 (and Q4_1's eight `s`), then each column's 32
//! quants. Per pair and block what remains (AVX2) is a broadcast load and one multiply for the
//! pair's scale product, the integer dot product (`vpmaddubsw` + `vpmaddwd`), its conversion
//! and one fused multiply-add; and eight columns' accumulators fit the vector registers.
//!
//! The VNNI kernels go further (see [`vnni`]): a permute for the scale product, and, for the
//! signed formats, weights offset to unsigned with a packed per-lane correction, so a pair
//! costs `vpdpbusd`, its conversion and the multiply-add on the arithmetic ports. Measured
//! on an Ice Lake Xeon (`cols_kernel_timing`, best of 5 runs, ns per row·column·block): Q8_0
//! 0.78 → 0.59, Q5_0 0.86 → 0.70 (0.63 with [`vnni`]'s unpack straight to unsigned), Q4_1
//! 0.69 → 0.62; the loop is then at the front end's five operations per cycle. Two columns
//! per 512-bit vector measured within 3% there (the 512-bit operations issue faster, but at a
//! lower clock); on an AMD Zen 4 EPYC, which runs them at full clock as two halves, they are
//! 6–11% faster (Q8_0 0.48 → 0.45, Q5_0 0.54 → 0.51, Q4_1 0.53 → 0.47): those kernels are
//! [`wide`] (`cols_wide.rs`). Faster still there from seven columns: one (row, column) per
//! pair of lanes, no scale permutes ([`pairs`](super::cols_lanes::pairs), `cols_lanes.rs`).
//! All three are timed once per process (`cols_choice.rs`) and taken where faster.

use std::arch::x86_64::*;

use super::x86::{
    bytes_from_nibbles_32, hsum_float_8, mul_sum_us8_avx2, signed_quants, F16Table, Isa,
    Q4_1_BYTES, Q5_0_BYTES, Q8_0_BYTES, Q8_1_BYTES,
};
use super::Format;

pub(super) use super::cols_wide as wide;

/// Columns per kernel call (the 256-bit kernels).
pub const COLS: usize = 8;

/// Columns per call of the 512-bit kernels.
pub const WIDE_COLS: usize = 16;

/// How far ahead of the current block a row's data is prefetched, in bytes.
pub(super) const PREFETCH: usize = 4096;

/// How the columns are laid out for a kernel: Q8_1 columns for Q4_1 weights; Q8_0 columns
/// for Q5_0 and Q8_0 weights, with (`Offset`, for the VNNI kernels) each 32-bit lane's
/// correction `-128 · (y₀ + y₁ + y₂ + y₃)` after the quants. The `Wide` layouts are those of
/// the 512-bit kernels ([`wide`]): 64-byte aligned, each pair of columns' quants (and
/// corrections) side by side, so one load brings a pair. The `LanesPair` layouts are those of
/// the one-column-per-lane kernels ([`pairs`](super::cols_lanes::pairs)): group k of every
/// column side by side, each column twice (`y + 128` for Q5_0 and Q8_0 weights).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Packing {
    Q8_1,
    Q8_0,
    Offset,
    Q8_1Wide,
    OffsetWide,
    LanesPair,
    LanesPairQ8_1,
}

impl Packing {
    /// The packing the kernels of `isa` read for weights of `fmt` (`wide`: the 512-bit ones).
    pub(super) fn of(isa: Isa, fmt: Format, wide: bool) -> Packing {
        match (isa, fmt, wide) {
            (Isa::Vnni, Format::Q4_1, true) => Packing::Q8_1Wide,
            (Isa::Vnni, _, true) => Packing::OffsetWide,
            (_, Format::Q4_1, _) => Packing::Q8_1,
            (Isa::Vnni, _, _) => Packing::Offset,
            _ => Packing::Q8_0,
        }
    }

    /// The packing the one-column-per-lane kernels ([`pairs`](super::cols_lanes::pairs)) read
    /// for weights of `fmt`.
    pub(super) fn lanes(fmt: Format) -> Packing {
        if fmt == Format::Q4_1 {
            Packing::LanesPairQ8_1
        } else {
            Packing::LanesPair
        }
    }

    /// Columns a kernel of this layout takes at most.
    pub fn max_cols(self) -> usize {
        match self {
            Packing::Q8_1Wide | Packing::OffsetWide => WIDE_COLS,
            _ => COLS,
        }
    }

    /// Bytes before the first column in a packed block: a scale per column as f32 (and
    /// Q8_1's `s` after them).
    fn head(self) -> usize {
        let per = match self {
            Packing::LanesPair | Packing::LanesPairQ8_1 => 2 * COLS,
            _ => self.max_cols(),
        };
        4 * per * if self.q8_1() { 2 } else { 1 }
    }

    /// Whether the columns are Q8_1 (with their `s`).
    fn q8_1(self) -> bool {
        matches!(
            self,
            Packing::Q8_1 | Packing::Q8_1Wide | Packing::LanesPairQ8_1
        )
    }

    /// Bytes of one packed block of `c` columns (the wide layouts: an even number).
    pub fn block(self, c: usize) -> usize {
        self.head()
            + match self {
                Packing::Q8_1 | Packing::Q8_0 => 32 * c,
                Packing::Offset => 64 * c,
                Packing::Q8_1Wide => 64 * c.div_ceil(2),
                Packing::OffsetWide => 128 * c.div_ceil(2),
                Packing::LanesPair | Packing::LanesPairQ8_1 => 64 * COLS,
            }
    }

    /// Where column `j`'s quants start in a packed block.
    #[inline(always)]
    pub fn quants(self, j: usize) -> usize {
        self.head()
            + match self {
                Packing::Q8_1 | Packing::Q8_0 | Packing::Q8_1Wide => 32 * j,
                Packing::Offset => 64 * j,
                Packing::OffsetWide => 128 * (j / 2) + 32 * (j % 2),
                Packing::LanesPair | Packing::LanesPairQ8_1 => 8 * j,
            }
    }

    /// Where column `j`'s corrections start, after its quants (the offset layouts).
    #[inline(always)]
    pub fn corrections(self, j: usize) -> usize {
        self.quants(j) + if self == Packing::OffsetWide { 64 } else { 32 }
    }
}

/// Lays out the quantized columns at `ys` (1 to `packing.max_cols()` of them, `nb` Q8_1
/// blocks each for the Q8_1 layouts, Q8_0 blocks otherwise) block by block at `out`, as the
/// kernels read them: `packing.block(ys.len())` bytes per block. Scale lanes past the last
/// column are zero.
///
/// # Safety
/// Each `ys[j]` points at `nb` activation blocks; `out` has room for `nb` packed blocks.
pub unsafe fn pack(f16: &F16Table, packing: Packing, ys: &[*const u8], nb: usize, out: *mut u8) {
    let c = ys.len();
    let max = packing.max_cols();
    debug_assert!((1..=max).contains(&c));
    if matches!(packing, Packing::LanesPair | Packing::LanesPairQ8_1) {
        return pack_lane_pairs(f16, packing, ys, nb, out);
    }
    let q8_1 = packing.q8_1();
    let offset = matches!(packing, Packing::Offset | Packing::OffsetWide);
    let (act, quants) = if q8_1 {
        (Q8_1_BYTES, 4)
    } else {
        (Q8_0_BYTES, 2)
    };
    let stride = packing.block(c);
    for b in 0..nb {
        let pb = out.add(b * stride);
        let mut d = [0.0f32; WIDE_COLS];
        let mut s = [0.0f32; WIDE_COLS];
        for (j, &y) in ys.iter().enumerate() {
            let yb = y.add(b * act);
            d[j] = f16.get(yb);
            if q8_1 {
                s[j] = f16.get(yb.add(2));
            }
            let col = pb.add(packing.quants(j));
            std::ptr::copy_nonoverlapping(yb.add(quants), col, 32);
            if offset {
                let q = std::slice::from_raw_parts(yb.add(quants) as *const i8, 32);
                let mut corr = [0i32; 8];
                for (l, c) in corr.iter_mut().enumerate() {
                    *c = -128 * q[4 * l..4 * l + 4].iter().map(|&v| v as i32).sum::<i32>();
                }
                let at = pb.add(packing.corrections(j));
                std::ptr::copy_nonoverlapping(corr.as_ptr() as *const u8, at, 32);
            }
        }
        std::ptr::copy_nonoverlapping(d.as_ptr() as *const u8, pb, 4 * max);
        if q8_1 {
            std::ptr::copy_nonoverlapping(s.as_ptr() as *const u8, pb.add(4 * max), 4 * max);
        }
    }
}

/// [`pack`] for the `LanesPair` layouts: per block the column scales as f32 (and Q8_1's
/// `s`), then for each 4-byte group k of the block that group of every column; each column
/// twice, in lanes 2j and 2j + 1 (against a pair of rows); Q8_0 columns as `y + 128` (the
/// unsigned side of `vpdpbusd`). Lanes past the last column: scale 0, quants 0.
///
/// # Safety
/// As [`pack`].
unsafe fn pack_lane_pairs(
    f16: &F16Table,
    packing: Packing,
    ys: &[*const u8],
    nb: usize,
    out: *mut u8,
) {
    let q8_1 = packing.q8_1();
    let (act, quants, flip) = if q8_1 {
        (Q8_1_BYTES, 4, 0)
    } else {
        (Q8_0_BYTES, 2, 0x8080_8080u32)
    };
    let stride = packing.block(ys.len());
    let at = packing.quants(0);
    for b in 0..nb {
        let pb = std::slice::from_raw_parts_mut(out.add(b * stride), stride);
        pb.fill(0);
        for (j, &y) in ys.iter().enumerate() {
            let yb = y.add(b * act);
            for h in 0..1 + q8_1 as usize {
                let v = f16.get(yb.add(2 * h)).to_ne_bytes();
                pb[64 * h + 8 * j..64 * h + 8 * j + 4].copy_from_slice(&v);
                pb[64 * h + 8 * j + 4..64 * h + 8 * j + 8].copy_from_slice(&v);
            }
            let q = yb.add(quants) as *const u32;
            for k in 0..8 {
                let g = (std::ptr::read_unaligned(q.add(k)) ^ flip) as u64;
                let o = at + 64 * k + 8 * j;
                pb[o..o + 8].copy_from_slice(&(g | g << 32).to_ne_bytes());
            }
        }
    }
}

/// The f32 at `p` in every lane, by a broadcast load: a load port only. (Written as an
/// intrinsic, the compiler loads the scalar, multiplies it and broadcasts the product with a
/// shuffle, which competes with the arithmetic for the vector ports.)
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn bcast(p: *const f32) -> __m256 {
    let v: __m256;
    // SAFETY: reads the f32 at `p` (the caller's), writes only `v`.
    unsafe {
        std::arch::asm!(
            "vbroadcastss {v}, dword ptr [{p}]",
            v = out(ymm_reg) v,
            p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        );
    }
    v
}

/// The AVX2 kernels (`vpmaddubsw` + `vpmaddwd` for the integer lane sums).
// `c` indexes the accumulators and the packed columns alike
#[allow(clippy::needless_range_loop)]
pub mod avx2 {
    use super::*;

    /// One row of Q4_1 (`nb` blocks at `row`) · C packed columns ([`Packing::Q8_1`]): `out[c]`,
    /// each what ggml's `ggml_vec_dot_q4_1_q8_1` gives for that column alone.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4_1<const C: usize>(
        f16: &F16Table,
        row: *const u8,
        packed: *const u8,
        nb: usize,
        out: &mut [f32; C],
    ) {
        let stride = Packing::Q8_1.block(C);
        let mut acc = [_mm256_setzero_ps(); C];
        let mut summs = _mm256_setzero_ps();
        for b in 0..nb {
            let pb = packed.add(b * stride);
            let (d0, qx) = q4_1_block(f16, row.add(b * Q4_1_BYTES), pb, &mut summs);
            for c in 0..C {
                let qy = _mm256_loadu_si256(pb.add(Packing::Q8_1.quants(c)) as *const __m256i);
                let d = _mm256_mul_ps(d0, bcast((pb as *const f32).add(c)));
                acc[c] = _mm256_fmadd_ps(d, mul_sum_us8_avx2(qx, qy), acc[c]);
            }
        }
        finish_q4_1(acc, summs, out)
    }

    /// One row of Q5_0 (`Q5`) or Q8_0 · C packed columns ([`Packing::Q8_0`]): `out[c]`, each
    /// what ggml's `ggml_vec_dot_q5_0_q8_0` / `ggml_vec_dot_q8_0_q8_0` gives alone.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn signed<const C: usize, const Q5: bool>(
        f16: &F16Table,
        row: *const u8,
        packed: *const u8,
        nb: usize,
        out: &mut [f32; C],
    ) {
        let block = if Q5 { Q5_0_BYTES } else { Q8_0_BYTES };
        let stride = Packing::Q8_0.block(C);
        let mut acc = [_mm256_setzero_ps(); C];
        for b in 0..nb {
            let (xb, pb) = (row.add(b * block), packed.add(b * stride));
            let d0 = signed_block(f16, xb);
            let qx = signed_quants::<Q5>(xb);
            let ax = _mm256_sign_epi8(qx, qx);
            for c in 0..C {
                let qy = _mm256_loadu_si256(pb.add(Packing::Q8_0.quants(c)) as *const __m256i);
                let p = mul_sum_us8_avx2(ax, _mm256_sign_epi8(qy, qx));
                let d = _mm256_mul_ps(d0, bcast((pb as *const f32).add(c)));
                acc[c] = _mm256_fmadd_ps(d, p, acc[c]);
            }
        }
        finish(acc, out)
    }
}

/// The VNNI kernels (`vpdpbusd` on 256-bit vectors). Two things keep the per-pair work at
/// three operations on the multiply-add ports: the eight scale products `d_w · d_x` of a block
/// are one vector multiply, each pair's taken from it by a permute (the shuffle port, otherwise
/// idle); and the weights of Q5_0 and Q8_0 are made unsigned by adding 128 (their sign bit
/// flipped), so no `vpsignb` per pair, while the packed correction `-128 · Σy` of each lane is
/// the `vpdpbusd` starting value: the lane sum is the same integer as ggml's.
#[allow(clippy::needless_range_loop)]
pub mod vnni {
    use super::*;

    /// Lane c of `v` in every lane, by one `vpermps` (written as an intrinsic, the compiler
    /// turns most lanes into two shuffles, and the shuffle port becomes the limit; any of the
    /// 32 registers, so the eight indices stay in registers without copies).
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    #[inline]
    unsafe fn lane(v: __m256, c: usize) -> __m256 {
        let idx = _mm256_set1_epi32(c as i32);
        let out: __m256;
        // SAFETY: register operands only.
        unsafe {
            std::arch::asm!(
                "vpermps {out:y}, {idx:y}, {v:y}",
                out = lateout(zmm_reg) out,
                idx = in(zmm_reg) idx,
                v = in(zmm_reg) v,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        out
    }

    /// The 32 quants of the Q5_0 block at `xb` plus 128, as unsigned bytes: `q + 128` is the
    /// low nibble with 0x80 above it where the block's high bit is set, 0x70 where it is clear
    /// (`q` = nibble − 16), so one mask blend of the two by the 32 high bits replaces the byte
    /// expansion of the bits, the subtraction and the flip.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
    #[inline]
    pub(crate) unsafe fn q5_0_unsigned(xb: *const u8) -> __m256i {
        let qh = std::ptr::read_unaligned(xb.add(2) as *const u32);
        let high = _mm256_mask_blend_epi8(qh, _mm256_set1_epi8(0x70), _mm256_set1_epi8(-128));
        _mm256_or_si256(bytes_from_nibbles_32(xb.add(6)), high)
    }

    /// As [`avx2::q4_1`].
    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    pub unsafe fn q4_1<const C: usize>(
        f16: &F16Table,
        row: *const u8,
        packed: *const u8,
        nb: usize,
        out: &mut [f32; C],
    ) {
        let stride = Packing::Q8_1.block(C);
        let mut acc = [_mm256_setzero_ps(); C];
        let mut summs = _mm256_setzero_ps();
        for b in 0..nb {
            let pb = packed.add(b * stride);
            let (d0, qx) = q4_1_block(f16, row.add(b * Q4_1_BYTES), pb, &mut summs);
            let ds = _mm256_mul_ps(d0, _mm256_loadu_ps(pb as *const f32));
            for c in 0..C {
                let qy = _mm256_loadu_si256(pb.add(Packing::Q8_1.quants(c)) as *const __m256i);
                let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), qx, qy);
                acc[c] = _mm256_fmadd_ps(lane(ds, c), _mm256_cvtepi32_ps(p), acc[c]);
            }
        }
        finish_q4_1(acc, summs, out)
    }

    /// As [`avx2::signed`], on [`Packing::Offset`] columns.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
    pub unsafe fn signed<const C: usize, const Q5: bool>(
        f16: &F16Table,
        row: *const u8,
        packed: *const u8,
        nb: usize,
        out: &mut [f32; C],
    ) {
        let block = if Q5 { Q5_0_BYTES } else { Q8_0_BYTES };
        let stride = Packing::Offset.block(C);
        let flip = _mm256_set1_epi8(0x80u8 as i8);
        let mut acc = [_mm256_setzero_ps(); C];
        for b in 0..nb {
            let (xb, pb) = (row.add(b * block), packed.add(b * stride));
            let d0 = signed_block(f16, xb);
            let ds = _mm256_mul_ps(d0, _mm256_loadu_ps(pb as *const f32));
            let ux = if Q5 {
                q5_0_unsigned(xb)
            } else {
                _mm256_xor_si256(signed_quants::<false>(xb), flip)
            };
            for c in 0..C {
                let qy = _mm256_loadu_si256(pb.add(Packing::Offset.quants(c)) as *const __m256i);
                let corr =
                    _mm256_loadu_si256(pb.add(Packing::Offset.corrections(c)) as *const __m256i);
                let p = _mm256_dpbusd_epi32(corr, ux, qy);
                acc[c] = _mm256_fmadd_ps(lane(ds, c), _mm256_cvtepi32_ps(p), acc[c]);
            }
        }
        finish(acc, out)
    }
}

/// What a Q4_1 weight block (at `xb`; its packed columns at `pb`) gives all columns: its d in
/// every lane and its quants, after adding its `m · s` terms to `summs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q4_1_block(
    f16: &F16Table,
    xb: *const u8,
    pb: *const u8,
    summs: &mut __m256,
) -> (__m256, __m256i) {
    _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
    let d0 = _mm256_broadcast_ss(&*f16.at(xb));
    let m = _mm256_broadcast_ss(&*f16.at(xb.add(2)));
    let s = _mm256_loadu_ps(pb.add(32) as *const f32);
    *summs = _mm256_fmadd_ps(m, s, *summs);
    (d0, bytes_from_nibbles_32(xb.add(4)))
}

/// A Q5_0 or Q8_0 weight block's d (at `xb`) in every lane, the row's data ahead prefetched.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn signed_block(f16: &F16Table, xb: *const u8) -> __m256 {
    _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(PREFETCH) as *const i8);
    _mm256_broadcast_ss(&*f16.at(xb))
}

/// ggml's horizontal sum of each pair's accumulator.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn finish<const C: usize>(acc: [__m256; C], out: &mut [f32; C]) {
    for c in 0..C {
        out[c] = hsum_float_8(acc[c]);
    }
}

/// As [`finish`], plus each column's `Σ m · s`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn finish_q4_1<const C: usize>(acc: [__m256; C], summs: __m256, out: &mut [f32; C]) {
    let mut sm = [0.0f32; COLS];
    _mm256_storeu_ps(sm.as_mut_ptr(), summs);
    for c in 0..C {
        out[c] = hsum_float_8(acc[c]) + sm[c];
    }
}
