//! Q4_K weights × several activation columns for prompt processing, and × one to three for
//! decoding ([`dot`]), on CPUs with AVX-512 VNNI, reading the weights where ggml's CPU repack
//! buffer holds them (`block_q4_Kx8`: the super-blocks of eight rows interleaved, 8 bytes of
//! quants at a time).
//!
//! ggml's own kernel for that layout (`ggml_gemm_q4_K_8x8_q8_K`) multiplies with
//! `vpmaddubsw`, adds the 16-bit sums, applies the sub-block scales with `vpmaddwd` and spends
//! about as many shuffles again bringing rows and columns into place: some four vector
//! instructions per 64 multiply-adds. Here each row group's quants are unpacked once into
//! 16-row vectors (4 quants of each row per 32-bit lane), then every column takes one
//! `vpdpbusd` per 64 multiply-adds, its four activation quants broadcast from memory.
//!
//! The results are ggml's bit for bit:
//! - Per (row, column) the integer sums are ggml's: the dot product of each sub-block of 32
//!   (below 2^16 in magnitude) and `m · bsum` of each pair of sub-blocks.
//! - The float steps are ggml's. Per super-block and per pair of sub-blocks, `acc = fma(float(sc0
//!   · dot0 + sc1 · dot1), d_w · d_x, acc)` and `acc_min = fma(float(m0 · s0 + m1 · s1),
//!   dmin_w · d_x, acc_min)`; the result is `acc − acc_min`. The scaled pair sum is formed in
//!   f32 from exact products of integers below 2^24, so it is the very integer.
//! - Columns are quantized as ggml quantizes them ([`quantize_q8_k`]; ggml uses one quantizer
//!   for groups of four columns and another for the rest, alike up to the sign of d).
//! - ggml multiplies the columns left over after the groups of four (n mod 4) with its matrix
//!   × vector kernel, which sums the whole super-block in integers before one fused
//!   multiply-add. [`single`] does the same for them.
//!
//! The tests compare the op with `ggml_mul_mat` on repacked weights.

use std::arch::x86_64::*;

use super::groups::{bcast, load, quantize_q8_k, GROUP_ROWS};

/// Bytes of one `block_q4_Kx8`: d[8], dmin[8] (f16), scales[96], qs[1024].
pub const BLOCK_X8: usize = 1152;
pub const X8_DMIN: usize = 16;
const X8_SCALES: usize = 32;
pub const X8_QS: usize = 128;

/// Bytes of one quantized activation super-block: d (f32), the sums of the quants of each
/// pair of sub-blocks of 32 (4 × two i16), the 256 quants.
pub const ACT_BYTES: usize = 276;
pub const ACT_SUMS: usize = 4;
pub const ACT_QS: usize = 20;

/// Bytes of one super-block of a row group, unpacked: quants (8 sub-blocks × 8 steps of 4 ×
/// 16 rows), scales (8 × 16 f32), mins of each sub-block pair (4 × 16 × two i16), d and dmin
/// (16 f32 each).
pub const UNPACKED_BYTES: usize = U_DMIN + 64;
const U_SCALES: usize = 4096;
const U_MINS: usize = U_SCALES + 512;
const U_D: usize = U_MINS + 256;
const U_DMIN: usize = U_D + 64;

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
        for j in 0..8 {
            let sum = q.sums16[2 * j] + q.sums16[2 * j + 1];
            std::ptr::copy_nonoverlapping(sum.to_le_bytes().as_ptr(), yb.add(ACT_SUMS + 2 * j), 2);
        }
        std::ptr::copy_nonoverlapping(q.quants.as_ptr() as *const u8, yb.add(ACT_QS), 256);
    }
}

/// Unpacks `nsb` super-blocks of two `block_q4_Kx8` rows groups (`a` for lanes 0-7, `b` for
/// 8-15; pass `a` twice for a lone group) into `out`.
///
/// # Safety
/// The CPU has AVX-512 F and BW; `a` and `b` address nsb blocks each, `out` room for
/// nsb · [`UNPACKED_BYTES`].
#[target_feature(enable = "avx512f,avx512bw,f16c")]
pub unsafe fn unpack(a: *const u8, b: *const u8, nsb: usize, out: *mut u8) {
    for s in 0..nsb {
        let (pa, pb) = (a.add(s * BLOCK_X8), b.add(s * BLOCK_X8));
        let o = out.add(s * UNPACKED_BYTES);
        for c in 0..16 {
            let (g, q) = (c / 4, c % 4);
            for (h, (lo, hi)) in chunk_lanes(pa, pb, c).into_iter().enumerate() {
                let step = 2 * q + h;
                _mm512_storeu_si512(o.add(((2 * g) * 8 + step) * 64) as *mut _, lo);
                _mm512_storeu_si512(o.add(((2 * g + 1) * 8 + step) * 64) as *mut _, hi);
            }
        }
        let (sc, mins) = scales_mins(pa, pb);
        for (sb, v) in sc.iter().enumerate() {
            _mm512_storeu_ps(
                o.add(U_SCALES + 64 * sb) as *mut f32,
                _mm512_cvtepi32_ps(*v),
            );
        }
        for (g, v) in mins.iter().enumerate() {
            _mm512_storeu_si512(o.add(U_MINS + 64 * g) as *mut _, *v);
        }
        _mm512_storeu_ps(o.add(U_D) as *mut f32, f16_pair(pa, pb, 0));
        _mm512_storeu_ps(o.add(U_DMIN) as *mut f32, f16_pair(pa, pb, X8_DMIN));
    }
}

/// Chunk `c` (of 16) of one super-block of two `block_q4_Kx8` in `vpdpbusd` lanes (row r of
/// `a` in lane r, of `b` in lane 8 + r): for the first and the second 4 of the chunk's 8 bytes
/// per row, the low nibbles (quants 8(c%4)..+4 of sub-block 2(c/4), resp. the next 4) and the
/// high nibbles (the same of sub-block 2(c/4)+1).
///
/// # Safety
/// The CPU has AVX-512 F and BW; `a` and `b` address one block each.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn chunk_lanes(a: *const u8, b: *const u8, c: usize) -> [(__m512i, __m512i); 2] {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let m4 = _mm512_set1_epi8(0x0F);
    let ra = load(a.add(X8_QS + 64 * c));
    let rb = load(b.add(X8_QS + 64 * c));
    [even, odd].map(|idx| {
        let w = _mm512_permutex2var_epi32(ra, idx, rb);
        (
            _mm512_and_si512(w, m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(w), m4),
        )
    })
}

/// The eight f16 values at byte `at` of the blocks `a` and `b` (d or dmin), as 16 f32 lanes.
///
/// # Safety
/// The CPU has AVX-512 F; `a` and `b` address one block each.
#[target_feature(enable = "avx512f,f16c")]
#[inline]
unsafe fn f16_pair(a: *const u8, b: *const u8, at: usize) -> __m512 {
    _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(
        _mm256_castsi128_si256(_mm_loadu_si128(a.add(at) as *const _)),
        _mm_loadu_si128(b.add(at) as *const _),
    ))
}

/// The two `block_q4_Kx8` row groups holding rows r0..r0+nr (nr ≤ 16) of the repacked `w`:
/// the second is the first again when nr ≤ 8 (its lanes are then computed and dropped).
pub fn row_groups(w: &ggml_sys::ggml_tensor, r0: usize, nr: usize) -> (*const u8, *const u8) {
    let nsb = w.ne[0] as usize / 256;
    let group = |i: usize| (w.data as *const u8).wrapping_add(i * nsb * BLOCK_X8);
    let a = group(r0 / 8);
    (a, if nr > 8 { group(r0 / 8 + 1) } else { a })
}

/// 16 floats at `p`.
///
/// # Safety
/// As [`load`].
#[inline(always)]
unsafe fn load_ps(p: *const u8) -> __m512 {
    _mm512_loadu_ps(p as *const f32)
}

/// A row group (`u`, unpacked) × C columns of grouped activations, in ggml's matrix × matrix
/// order: `out[c]` gets the 16 rows' results of column c.
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
    let mut acc_min = [_mm512_setzero_ps(); C];
    for b in 0..nsb {
        let ub = u.add(b * UNPACKED_BYTES);
        let ab: [*const u8; C] = std::array::from_fn(|c| cols[c].add(b * ACT_BYTES));
        let (d, dmin) = (load_ps(ub.add(U_D)), load_ps(ub.add(U_DMIN)));
        for g in 0..4 {
            let mut dot0 = [_mm512_setzero_si512(); C];
            let mut dot1 = [_mm512_setzero_si512(); C];
            for step in 0..8 {
                let w0 = load(ub.add((16 * g + step) * 64));
                let w1 = load(ub.add((16 * g + 8 + step) * 64));
                for c in 0..C {
                    let q = ab[c].add(ACT_QS + 64 * g + 4 * step);
                    dot0[c] = _mm512_dpbusd_epi32(dot0[c], w0, bcast(q));
                    dot1[c] = _mm512_dpbusd_epi32(dot1[c], w1, bcast(q.add(32)));
                }
            }
            let sc0 = load_ps(ub.add(U_SCALES + 128 * g));
            let sc1 = load_ps(ub.add(U_SCALES + 128 * g + 64));
            let mins = load(ub.add(U_MINS + 64 * g));
            for c in 0..C {
                let dx = _mm512_set1_ps(std::ptr::read_unaligned(ab[c] as *const f32));
                // sc0·dot0 + sc1·dot1: exact products and sum, all below 2^24
                let f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(dot0[c]), sc0);
                let f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot1[c]), sc1, f0);
                acc[c] = _mm512_fmadd_ps(f, _mm512_mul_ps(d, dx), acc[c]);
                let m = _mm512_madd_epi16(mins, bcast(ab[c].add(ACT_SUMS + 4 * g)));
                acc_min[c] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin, dx), acc_min[c]);
            }
        }
    }
    for c in 0..C {
        _mm512_storeu_ps(out[c].as_mut_ptr(), _mm512_sub_ps(acc[c], acc_min[c]));
    }
}

/// A row group × one column quantized alone, in ggml's matrix × vector order: the whole
/// super-block summed in integers, then one fused multiply-add each for the scaled sums and
/// the mins.
///
/// # Safety
/// As [`tile`], for one column.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn single(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; GROUP_ROWS]) {
    let mut acc = _mm512_setzero_ps();
    let mut acc_min = _mm512_setzero_ps();
    for b in 0..nsb {
        let ub = u.add(b * UNPACKED_BYTES);
        let ab = col.add(b * ACT_BYTES);
        let mut sum = _mm512_setzero_si512();
        let mut sum_min = _mm512_setzero_si512();
        for sb in 0..8 {
            let mut dot = _mm512_setzero_si512();
            for step in 0..8 {
                let w = load(ub.add((8 * sb + step) * 64));
                dot = _mm512_dpbusd_epi32(dot, w, bcast(ab.add(ACT_QS + 32 * sb + 4 * step)));
            }
            let sc = _mm512_cvttps_epi32(load_ps(ub.add(U_SCALES + 64 * sb)));
            sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(dot, sc));
        }
        for g in 0..4 {
            let mins = load(ub.add(U_MINS + 64 * g));
            let m = _mm512_madd_epi16(mins, bcast(ab.add(ACT_SUMS + 4 * g)));
            sum_min = _mm512_add_epi32(sum_min, m);
        }
        let dx = _mm512_set1_ps(std::ptr::read_unaligned(ab as *const f32));
        acc = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(sum),
            _mm512_mul_ps(load_ps(ub.add(U_D)), dx),
            acc,
        );
        let dm = _mm512_mul_ps(load_ps(ub.add(U_DMIN)), dx);
        acc_min = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_min), dm, acc_min);
    }
    _mm512_storeu_ps(out.as_mut_ptr(), _mm512_sub_ps(acc, acc_min));
}

/// How far ahead of each group's current super-block its data is prefetched, in bytes.
const PREFETCH: usize = 8192;

/// The eight rows' 6-bit scale and min of sub-block `sb` of the `block_q4_Kx8` at `p`, a byte
/// per row (row r in byte r of each word), from the 12 bytes ggml packs them into (its kmask
/// unpacking, on three 32-bit words).
///
/// # Safety
/// `p` addresses one block.
#[inline]
pub unsafe fn scale_min_bytes(p: *const u8, sb: usize) -> (u64, u64) {
    let w = p.add(X8_SCALES + 12 * sb) as *const u32;
    let (w0, w1, w2) = (
        w.read_unaligned(),
        w.add(1).read_unaligned(),
        w.add(2).read_unaligned(),
    );
    let s_lo = w0 & 0x3f3f_3f3f;
    let s_hi = (w2 & 0x0f0f_0f0f) | (((w0 >> 6) & 0x0303_0303) << 4);
    let m_lo = w1 & 0x3f3f_3f3f;
    let m_hi = ((w2 >> 4) & 0x0f0f_0f0f) | (((w1 >> 6) & 0x0303_0303) << 4);
    (
        u64::from(s_lo) | u64::from(s_hi) << 32,
        u64::from(m_lo) | u64::from(m_hi) << 32,
    )
}

/// The scales and mins of one super-block of two `block_q4_Kx8` (lanes 0-7 and 8-15)
/// ([`scale_min_bytes`]): `sc[s]` the scales of sub-block s as i32 lanes, `mins[g]` those of
/// sub-blocks 2g and 2g+1 as pairs of i16.
///
/// # Safety
/// The CPU has AVX-512 F and BW; `a` and `b` address one block each.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn scales_mins(a: *const u8, b: *const u8) -> ([__m512i; 8], [__m512i; 4]) {
    let pa: [(u64, u64); 8] = std::array::from_fn(|sb| scale_min_bytes(a, sb));
    let pb: [(u64, u64); 8] = std::array::from_fn(|sb| scale_min_bytes(b, sb));
    let lanes = |lo: u64, hi: u64| _mm512_cvtepu8_epi32(_mm_set_epi64x(hi as i64, lo as i64));
    let sc: [__m512i; 8] = std::array::from_fn(|sb| lanes(pa[sb].0, pb[sb].0));
    let mins: [__m512i; 4] = std::array::from_fn(|g| {
        _mm512_or_si512(
            lanes(pa[2 * g].1, pb[2 * g].1),
            _mm512_slli_epi32::<16>(lanes(pa[2 * g + 1].1, pb[2 * g + 1].1)),
        )
    });
    (sc, mins)
}

/// Two `block_q4_Kx8` row groups (`a`, `b`: lanes 0-7 and 8-15; pass `a` twice for a lone
/// group) × C activation columns, each in ggml's matrix × vector order (as [`single`]), straight
/// from the repacked layout: the decode kernel. The weights are brought into lanes once for the
/// C columns.
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `a` and `b` address nsb blocks each, every `cols[c]`
/// nsb activation blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
pub unsafe fn dot<const C: usize>(
    a: *const u8,
    b: *const u8,
    cols: &[*const u8; C],
    nsb: usize,
    out: &mut [[f32; GROUP_ROWS]; C],
) {
    let mut acc = [_mm512_setzero_ps(); C];
    let mut acc_min = [_mm512_setzero_ps(); C];
    for s in 0..nsb {
        let (pa, pb) = (a.add(s * BLOCK_X8), b.add(s * BLOCK_X8));
        for line in (0..BLOCK_X8).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(pa.wrapping_add(PREFETCH + line) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(pb.wrapping_add(PREFETCH + line) as *const i8);
        }
        let ab: [*const u8; C] = std::array::from_fn(|c| cols[c].add(s * ACT_BYTES));
        let (sc, mins) = scales_mins(pa, pb);
        let mut sum = [_mm512_setzero_si512(); C];
        for g in 0..4 {
            let mut dot0 = [_mm512_setzero_si512(); C];
            let mut dot1 = [_mm512_setzero_si512(); C];
            for q in 0..4 {
                for (h, (lo, hi)) in chunk_lanes(pa, pb, 4 * g + q).into_iter().enumerate() {
                    for c in 0..C {
                        let act = ab[c].add(ACT_QS + 64 * g + 8 * q + 4 * h);
                        dot0[c] = _mm512_dpbusd_epi32(dot0[c], lo, bcast(act));
                        dot1[c] = _mm512_dpbusd_epi32(dot1[c], hi, bcast(act.add(32)));
                    }
                }
            }
            for c in 0..C {
                sum[c] = _mm512_add_epi32(sum[c], _mm512_mullo_epi32(dot0[c], sc[2 * g]));
                sum[c] = _mm512_add_epi32(sum[c], _mm512_mullo_epi32(dot1[c], sc[2 * g + 1]));
            }
        }
        let (d, dmin) = (f16_pair(pa, pb, 0), f16_pair(pa, pb, X8_DMIN));
        for c in 0..C {
            let mut sum_min = _mm512_setzero_si512();
            for (g, m) in mins.iter().enumerate() {
                let pair = bcast(ab[c].add(ACT_SUMS + 4 * g));
                sum_min = _mm512_add_epi32(sum_min, _mm512_madd_epi16(*m, pair));
            }
            let dx = _mm512_set1_ps(std::ptr::read_unaligned(ab[c] as *const f32));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[c]), _mm512_mul_ps(d, dx), acc[c]);
            let dm = _mm512_mul_ps(dmin, dx);
            acc_min[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum_min), dm, acc_min[c]);
        }
    }
    for c in 0..C {
        _mm512_storeu_ps(out[c].as_mut_ptr(), _mm512_sub_ps(acc[c], acc_min[c]));
    }
}

/// Columns per call of [`dot`] in the decode op.
const DOT_COLS: usize = 8;

/// [`dot`] for `nc` (1 to [`DOT_COLS`]) columns `col(0..nc)`, into `out[..nc]`.
///
/// # Safety
/// As [`dot`].
unsafe fn dot_n(
    a: *const u8,
    b: *const u8,
    nc: usize,
    col: impl Fn(usize) -> *const u8,
    nsb: usize,
    out: &mut [[f32; GROUP_ROWS]; DOT_COLS],
) {
    fn part<const C: usize>(o: &mut [[f32; GROUP_ROWS]; DOT_COLS]) -> &mut [[f32; GROUP_ROWS]; C] {
        (&mut o[..C]).try_into().unwrap()
    }
    // SAFETY: forwarded.
    unsafe {
        match nc {
            1 => dot::<1>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            2 => dot::<2>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            3 => dot::<3>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            4 => dot::<4>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            5 => dot::<5>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            6 => dot::<6>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            7 => dot::<7>(a, b, &std::array::from_fn(&col), nsb, part(out)),
            _ => dot::<8>(a, b, &std::array::from_fn(&col), nsb, part(out)),
        }
    }
}

thread_local! {
    /// The quantized activation columns of [`vec_op`], per thread (each thread quantizes them
    /// itself: a few KiB, and the op has no barrier to share them).
    static ACT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The decode op's body: repacked Q4_K weights × columns, each in ggml's matrix × vector order
/// (so each as a lone column gives it); thread `ith` of `nth` takes its share of the 16-row
/// groups.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by `Context::mul_mat_q4k_vec`: its source the
/// f32 columns (256·nsb floats each, contiguous), `user` the repacked Q4_K weight tensor (rows
/// a multiple of 8, outliving the graph), `dst` f32 `[rows, cols]`; the CPU has AVX-512 F, BW
/// and VNNI.
pub unsafe extern "C" fn vec_op(
    dst: *mut ggml_sys::ggml_tensor,
    ith: std::ffi::c_int,
    nth: std::ffi::c_int,
    user: *mut std::ffi::c_void,
) {
    // SAFETY: ggml passes the live result tensor, whose source is the columns, and the user
    // data the op was built with: the weight tensor.
    let (dst, w) = unsafe { (&*dst, &*(user as *const ggml_sys::ggml_tensor)) };
    // SAFETY: the op was built with this source, live for the graph's computation.
    let x = unsafe { &*dst.src[0] };
    let nsb = w.ne[0] as usize / 256;
    let n_rows = w.ne[1] as usize;
    let n_cols = x.ne[1] as usize;
    let out = dst.data as *mut f32;
    ACT.with_borrow_mut(|act| {
        act.resize(n_cols * nsb * ACT_BYTES, 0);
        for c in 0..n_cols {
            let xp = (x.data as *const u8).wrapping_add(c * x.nb[1]) as *const f32;
            // SAFETY: column c holds nsb super-blocks of floats, `act` room for n_cols rows of
            // nsb activation blocks; the CPU features were checked when the op was built.
            unsafe { quantize(xp, act.as_mut_ptr().add(c * nsb * ACT_BYTES), nsb) };
        }
        for g in super::share(n_rows.div_ceil(GROUP_ROWS), ith, nth) {
            let r0 = g * GROUP_ROWS;
            let nr = GROUP_ROWS.min(n_rows - r0);
            let (a, b) = row_groups(w, r0, nr);
            let col = |c: usize| act.as_ptr().wrapping_add(c * nsb * ACT_BYTES);
            // Columns up to DOT_COLS at a time, the group's weights brought into lanes once
            // for them (while they are in the cache): every column in the order of a lone one.
            for c0 in (0..n_cols).step_by(DOT_COLS) {
                let nc = DOT_COLS.min(n_cols - c0);
                let mut o = [[0.0f32; GROUP_ROWS]; DOT_COLS];
                // SAFETY: the weights hold the group's nsb blocks, `act` every column's.
                unsafe { dot_n(a, b, nc, |j| col(c0 + j), nsb, &mut o) };
                for (j, oc) in o.iter().take(nc).enumerate() {
                    // SAFETY: rows r0..r0+nr of column c0 + j lie inside `out`.
                    unsafe {
                        let at = out.add((c0 + j) * n_rows + r0);
                        std::ptr::copy_nonoverlapping(oc.as_ptr(), at, nr)
                    };
                }
            }
        }
    });
}

/// The Q4_K kernels for the row-group driver.
pub struct Q4K;

impl super::groups::Kernels for Q4K {
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
