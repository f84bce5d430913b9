//! The driver shared by the prompt ops of the K-quant formats ([`super::q4k`],
//! [`super::q6k`]): one op quantizes the activation columns, a second splits the weight rows
//! into 16-row groups among the threads, unpacks each group once into a per-thread buffer and
//! runs it over every column, four at a time. Also what the K-quant kernels share: the
//! activation quantizer and two load helpers.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ffi::{c_int, c_void};

use ggml_sys as sys;

use super::{quantize_columns, share};

/// Rows per group: one per 32-bit lane of a 512-bit vector.
pub const GROUP_ROWS: usize = 16;

/// One super-block of 256 activations quantized as ggml quantizes them for the K-quants
/// (`quantize_row_q8_K` and `ggml_quantize_mat_q8_K_4x8`): d, the quants, the sum of the quants
/// of each 16.
pub struct Q8K {
    pub d: f32,
    pub quants: [i8; 256],
    pub sums16: [i16; 16],
}

/// Quantizes the 256 floats at `x`: iscale = −127 / amax, quants rounded half to even, d = 1 /
/// iscale. ggml takes the sign of the largest value instead (its two quantizers even pick
/// differently when +amax and −amax both occur); the other sign negates d and every quant
/// alike, which changes no product of the K-quant kernels and so no result.
///
/// # Safety
/// The CPU has AVX-512 F and BW; `x` holds 256 floats.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn quantize_q8_k(x: *const f32) -> Q8K {
    let mut v = [_mm512_setzero_ps(); 16];
    let mut amax = _mm512_setzero_ps();
    for (i, vi) in v.iter_mut().enumerate() {
        *vi = _mm512_loadu_ps(x.add(16 * i));
        amax = _mm512_max_ps(amax, _mm512_abs_ps(*vi));
    }
    let amax = _mm512_reduce_max_ps(amax);
    let iscale = if amax == 0.0 { 0.0 } else { -127.0 / amax };
    let mut out = Q8K {
        d: if amax == 0.0 { 0.0 } else { 1.0 / iscale },
        quants: [0; 256],
        sums16: [0; 16],
    };
    let s = _mm512_set1_ps(iscale);
    for (j, vj) in v.iter().enumerate() {
        let q = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(*vj, s),
        );
        _mm_storeu_si128(
            out.quants.as_mut_ptr().add(16 * j) as *mut __m128i,
            _mm512_cvtsepi32_epi8(q),
        );
        out.sums16[j] = _mm512_reduce_add_epi32(q) as i16;
    }
    out
}

/// A 32-bit value at `p` in every lane (a broadcast load the compiler folds into its user).
///
/// # Safety
/// `p` addresses 4 readable bytes; the caller runs with AVX-512 F.
#[inline(always)]
pub unsafe fn bcast(p: *const u8) -> __m512i {
    _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
}

/// 64 bytes at `p`.
///
/// # Safety
/// `p` addresses 64 readable bytes; the caller runs with AVX-512 F.
#[inline(always)]
pub unsafe fn load(p: *const u8) -> __m512i {
    _mm512_loadu_si512(p as *const _)
}

/// Columns per tile.
const TILE_C: usize = 4;

/// What a weight format brings to the driver. Every function is `unsafe`: the CPU has the
/// features the op was built for, and the pointers address what each says.
pub trait Kernels {
    /// Bytes of one quantized activation super-block.
    const ACT_BYTES: usize;
    /// Bytes of one unpacked super-block of a row group.
    const UNPACKED_BYTES: usize;

    /// How many of `n` columns ggml multiplies with its matrix × matrix order (the rest, with
    /// [`Kernels::single`]).
    fn grouped_cols(n: usize) -> usize;

    /// `nsb` super-blocks of floats at `x` into activation blocks at `y`.
    unsafe fn quantize(x: *const f32, y: *mut u8, nsb: usize);

    /// Rows r0..r0+nr (nr ≤ 16) of `w` into `out` (the group's unpacked super-blocks).
    unsafe fn unpack(w: &sys::ggml_tensor, r0: usize, nr: usize, out: *mut u8);

    /// The group × four columns, matrix × matrix order.
    unsafe fn tile4(u: *const u8, cols: &[*const u8; 4], nsb: usize, out: &mut [[f32; 16]; 4]);

    /// The group × one column, matrix × matrix order.
    unsafe fn tile1(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; 16]);

    /// The group × the last one to three grouped columns (`out[j]` for `cols[j]`): one by one
    /// unless a kernel set takes them together.
    unsafe fn tile_rest(u: *const u8, cols: &[*const u8], nsb: usize, out: &mut [[f32; 16]; 3]) {
        for (c, o) in cols.iter().zip(out.iter_mut()) {
            Self::tile1(u, *c, nsb, o);
        }
    }

    /// The group × one column, in the order ggml gives the columns past `grouped_cols`.
    unsafe fn single(u: *const u8, col: *const u8, nsb: usize, out: &mut [f32; 16]);
}

thread_local! {
    /// The unpacked row group, per thread.
    static UNPACKED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Quantizes the activation columns: thread `ith` of `nth` takes its share.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by the op's builder: its source the f32
/// columns (256·nsb floats each, contiguous), `dst` an i8 tensor of one activation row of nsb
/// blocks per column; the CPU has the features `K` needs.
pub unsafe extern "C" fn quantize_op<K: Kernels>(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    _: *mut c_void,
) {
    // SAFETY: ggml passes the live result tensor, whose source is the op's operand, live for
    // the graph's computation.
    let nsb = unsafe { (*(*dst).src[0]).ne[0] } as usize / 256;
    // SAFETY: every column holds nsb super-blocks of floats and each row of `dst` room for nsb
    // activation blocks (checked when the op was built); the CPU features too.
    unsafe { quantize_columns(dst, ith, nth, |xp, yp| K::quantize(xp, yp, nsb)) };
}

/// Multiplies the weights by the quantized columns: thread `ith` of `nth` takes its share of
/// the 16-row groups, unpacks each once and runs it over every column.
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by the op's builder: its source the output of
/// [`quantize_op`], `user` the weight tensor (which outlives the graph), `dst` f32
/// `[rows, cols]`; the CPU has the features `K` needs.
pub unsafe extern "C" fn tile_op<K: Kernels>(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    user: *mut c_void,
) {
    // SAFETY: ggml passes the live result tensor, whose source is the quantized columns, and
    // the user data the op was built with: the weight tensor.
    let (dst, w) = unsafe { (&*dst, &*(user as *const sys::ggml_tensor)) };
    // SAFETY: the op was built with this source, live for the graph's computation.
    let xq = unsafe { &*dst.src[0] };
    let nsb = w.ne[0] as usize / 256;
    let n_rows = w.ne[1] as usize;
    let n_cols = xq.ne[1] as usize;
    let grouped = K::grouped_cols(n_cols);
    let col = |c: usize| (xq.data as *const u8).wrapping_add(c * xq.nb[1]);
    let out = dst.data as *mut f32;
    UNPACKED.with_borrow_mut(|u| {
        u.resize(nsb * K::UNPACKED_BYTES, 0);
        for g in share(n_rows.div_ceil(GROUP_ROWS), ith, nth) {
            let r0 = g * GROUP_ROWS;
            let nr = GROUP_ROWS.min(n_rows - r0);
            // SAFETY: rows r0..r0+nr exist; `u` was sized for the group above.
            unsafe { K::unpack(w, r0, nr, u.as_mut_ptr()) };
            let store = |c: usize, o: &[f32; GROUP_ROWS]| {
                // SAFETY: column c < n_cols and rows r0..r0+nr lie inside `out`.
                unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), out.add(c * n_rows + r0), nr) };
            };
            let up = u.as_ptr();
            let mut c0 = 0;
            while c0 + TILE_C <= grouped {
                let cols: [*const u8; TILE_C] = std::array::from_fn(|j| col(c0 + j));
                let mut o = [[0.0f32; GROUP_ROWS]; TILE_C];
                // SAFETY: columns c0..c0+4 hold nsb activation blocks; `u` the unpacked group.
                unsafe { K::tile4(up, &cols, nsb, &mut o) };
                for (j, oj) in o.iter().enumerate() {
                    store(c0 + j, oj);
                }
                c0 += TILE_C;
            }
            if c0 < grouped {
                let cols: [*const u8; TILE_C - 1] = std::array::from_fn(|j| col(c0 + j));
                let mut o = [[0.0f32; GROUP_ROWS]; TILE_C - 1];
                // SAFETY: as above, the last one to three grouped columns (the pointers past
                // them are never read).
                unsafe { K::tile_rest(up, &cols[..grouped - c0], nsb, &mut o) };
                for (j, oj) in o.iter().take(grouped - c0).enumerate() {
                    store(c0 + j, oj);
                }
                c0 = grouped;
            }
            for c in c0..n_cols {
                let mut o = [0.0f32; GROUP_ROWS];
                // SAFETY: as above, one column.
                unsafe {
                    if c < grouped {
                        K::tile1(up, col(c), nsb, &mut o)
                    } else {
                        K::single(up, col(c), nsb, &mut o)
                    }
                };
                store(c, &o);
            }
        }
    });
}
