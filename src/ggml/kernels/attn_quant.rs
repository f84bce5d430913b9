//! Attention over quantized K and V caches (Q8_0 or Q4_0 each), for any number of query tokens
//! of one sequence (a prompt micro-batch, a decoding token), with ggml's flash-attention
//! arithmetic row for row.
//!
//! For quantized caches ggml's CPU flash attention always takes its one-row path: each query
//! row (one head of one token) is quantized to Q8_0, then cell by cell it takes a dot product
//! with the K row, the online softmax (one `expf`), converts the V row to f32 into a buffer
//! (`dequantize_row_q8_0`/`_q4_0`, scalar loops) and adds it, scaled, into an f32 accumulator
//! in memory. With Gemma 3's 256-wide heads that costs ~370 cycles per row and cell, and a
//! 512-token prompt over a Q8_0 cache spent a third of its time there. This op takes the query
//! heads of one token that share a K/V head together, 16 visible cells at a time: all their
//! scores (each K block loaded once for every head), then each row's maxima, exponentials and
//! sums in cell order, then the accumulators, 32 dimensions at a time in registers, each V
//! block converted once for all the heads.
//!
//! Every row's arithmetic is ggml's (AVX2 builds compiled by GCC, which fuses `S·ms + vs`): the
//! query quantized by `quantize_row_q8_0`; per cell the AVX2 Q8_0 or Q4_0 dot product's block
//! sums, scale products, FMAs and horizontal sum; scale, soft-cap, mask; the running maximum
//! and `expf` from the same C library; the accumulator scaled by `e^(M_old - M)` on a new
//! maximum and V (each value its quant times its block's scale, rounded) added with one FMA
//! per value; at the end scaled by `1/S`. Rows are independent in ggml (no split across
//! threads for quantized caches), so the result is ggml's bit for bit whatever the threads
//! (`the_quantized_attention_op_gives_ggml_results_bit_for_bit`).

use std::ffi::{c_int, c_void};

use ggml_sys as sys;

use super::attn::SeqAttn;
use super::route::Machine;
use super::{Context, Tensor, Type};

/// Largest head size handled (the accumulators live on the stack).
const MAX_HEAD: usize = 256;

/// Most query heads taken together over one K/V head (more are taken in turns).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const GROUP: usize = 8;

/// Visible cells taken together.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const BLOCK: usize = 16;

/// Bytes of a Q8_0 block: an f16 scale, 32 quants.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const Q8: usize = 34;

/// Bytes of a Q4_0 block: an f16 scale, 32 quants of 4 bits (stored plus 8).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const Q4: usize = 18;

/// Whether the op reads caches of this type: Q8_0 or Q4_0.
pub fn cache_type(t: Type) -> bool {
    matches!(t, Type::Q8_0 | Type::Q4_0)
}

/// Whether this build runs the op: ggml's Q8_0 dot product and quantizer are its AVX2 ones
/// (ggml compiled with AVX2 and FMA), its compiler fuses multiply-adds (GCC), and this CPU has
/// AVX2, FMA and F16C.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        let m = Machine::get();
        // SAFETY: constants of ggml's build, no arguments, no side effects.
        let ggml = unsafe { sys::ggml_cpu_has_avx2() != 0 && sys::ggml_cpu_has_fma() != 0 };
        m.avx2 && m.ggml_fuses_mul_add && ggml
    })
}

/// Whether the op takes these operands: `q` `[head_dim, n_head, n]` f32, K and V views
/// `[head_dim, n_head_kv, n_kv]` of whole heads, Q8_0 or Q4_0 each (K's as wide as the
/// queries, a multiple of 32; V's a multiple of 64, as ggml adds it in whole 64-value steps;
/// both up to 256), the mask f16 `[n_kv, ≥ n]`, one row per query token.
pub fn takes(q: Tensor<'_>, seq: &SeqAttn<'_>) -> bool {
    let (qn, kn, vn, mn) = (q.ne(), seq.k.ne(), seq.v.ne(), seq.mask.ne());
    available()
        && q.ty() == Type::F32
        && q.nb()[0] == 4
        && qn[2] >= 1
        && qn[3] == 1
        && cache_type(seq.k.ty())
        && cache_type(seq.v.ty())
        && seq.mask.ty() == Type::F16
        && seq.k.nb()[0] == seq.k.ty().row_size(32)
        && seq.v.nb()[0] == seq.v.ty().row_size(32)
        && seq.mask.nb()[0] == 2
        && kn[0] == qn[0]
        && kn[0] > 0
        && kn[0] % 32 == 0
        && kn[0] <= MAX_HEAD as i64
        && vn[0] > 0
        && vn[0] % 64 == 0
        && vn[0] <= MAX_HEAD as i64
        && kn[1] > 0
        && kn[1] == vn[1]
        && qn[1] % kn[1] == 0
        && kn[2] == vn[2]
        && kn[3] == 1
        && vn[3] == 1
        && mn[0] == kn[2]
        && mn[1] >= qn[2]
        && mn[2] == 1
        && mn[3] == 1
}

impl Context {
    /// `softmax(q·kᵀ·scale + mask)·v` over quantized caches for the `n` query tokens of one
    /// sequence, token i masked by row i of the mask: `[head_dim_v · n_head, n]`, as
    /// `flash_attn_ext` gives it, reshaped to rows. `softcap` 0: none. The operands must be
    /// ones [`takes`] accepts.
    pub fn attn_quant<'a>(
        &'a self,
        q: Tensor<'a>,
        seq: &SeqAttn<'a>,
        scale: f32,
        softcap: f32,
    ) -> Tensor<'a> {
        assert!(takes(q, seq), "attn_quant: operands not supported");
        self.rows_op(q, seq, scale, softcap, op)
    }
}

/// The op's body: thread `ith` of `nth` takes every `nth`-th unit ([`heads_per_unit`]), in
/// token order (a causal prompt's rows grow by one cell a token, so the threads' shares stay
/// even).
///
/// # Safety
/// Called by ggml's CPU backend with `dst` made by [`Context::attn_quant`]: sources the queries,
/// K, V and mask (checked by [`takes`]), all data allocated in host memory; `user` the packed
/// parameters.
unsafe extern "C" fn op(dst: *mut sys::ggml_tensor, ith: c_int, nth: c_int, user: *mut c_void) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: ggml passes the live result tensor, whose sources are the op's operands.
        let dst = unsafe { &*dst };
        // SAFETY: the op was built with these four sources, live for the graph's computation.
        let (q, k, v, m) = unsafe { (&*dst.src[0], &*dst.src[1], &*dst.src[2], &*dst.src[3]) };
        let (scale, softcap) = super::attn::unpack(user);
        let p = x86::Params {
            scale: if softcap != 0.0 {
                scale / softcap
            } else {
                scale
            },
            softcap,
            dk: q.ne[0] as usize,
            dv: v.ne[0] as usize,
            vl: Machine::get().avx512vl,
            vnni: Machine::get().vnni,
            k4: k.type_ == sys::GGML_TYPE_Q4_0,
            v4: v.type_ == sys::GGML_TYPE_Q4_0,
            k: k.data as *const u8,
            v: v.data as *const u8,
            k_head: k.nb[1],
            k_cell: k.nb[2],
            v_head: v.nb[1],
            v_cell: v.nb[2],
            n_kv: k.ne[2] as usize,
        };
        let (n_head, n_head_kv) = (q.ne[1] as usize, k.ne[1] as usize);
        let (ith, nth) = (ith.max(0) as usize, nth.max(1) as usize);
        let g = n_head / n_head_kv;
        let n_tok = q.ne[2] as usize;
        let run = heads_per_unit(n_tok, n_head_kv, g, nth);
        let runs = g.div_ceil(run);
        for u in (ith..n_tok * n_head_kv * runs).step_by(nth) {
            let (t, kvh, i) = (u / (n_head_kv * runs), u / runs % n_head_kv, u % runs);
            let mask = (m.data as *const u8).wrapping_add(t * m.nb[1]) as *const u16;
            let h = kvh * g + i * run;
            let end = ((kvh + 1) * g).min(h + run);
            let mut rows = [(std::ptr::null::<f32>(), std::ptr::null_mut::<f32>()); GROUP];
            for (r, hr) in rows.iter_mut().zip(h..end) {
                let qp = (q.data as *const u8).wrapping_add(t * q.nb[2] + hr * q.nb[1]);
                let op = (dst.data as *mut u8).wrapping_add(t * dst.nb[1] + hr * p.dv * 4);
                *r = (qp as *const f32, op as *mut f32);
            }
            // SAFETY: heads h..end of token t (rows of the queries and the output), over K/V
            // head kvh and its n_kv cells, mask row t (checked by `takes`); this CPU has AVX2,
            // FMA and F16C (`available`), and AVX-512 VNNI and VL where `p.vnni`, AVX-512 F
            // and VL where `p.vl`.
            unsafe { x86::rows(&p, kvh, mask, &rows[..end - h]) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (dst, ith, nth, user);
}

/// Query heads per unit of work (a unit: heads of one token over one K/V head; the threads
/// take every `nth`-th unit): the heads sharing a K/V head together ([`GROUP`] at most), so
/// that each K and V block is read once for them; but where that leaves too few units to
/// share evenly among the threads (a decoding token over Gemma 3's one K/V head: one unit for
/// two threads), one head each.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn heads_per_unit(n_tok: usize, n_head_kv: usize, g: usize, nth: usize) -> usize {
    let full = g.min(GROUP);
    let units = n_tok * n_head_kv * g.div_ceil(full);
    if !units.is_multiple_of(nth) && units < 4 * nth {
        1
    } else {
        full
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::attn::x86::{add_cell, half};
    use super::super::x86::bytes_from_nibbles_32;
    use super::super::x86::{hsum_float_8, mul_sum_us8_avx2, mul_sum_us8_vnni, quantize_q8_0};
    use super::{BLOCK, GROUP, MAX_HEAD, Q4, Q8};

    /// The op's parameters and operands as it reads them.
    pub(super) struct Params {
        /// The scale, divided by the soft-cap where there is one (as ggml does).
        pub scale: f32,
        pub softcap: f32,
        pub dk: usize,
        pub dv: usize,
        /// AVX-512 F and VL: 32 vector registers for 256-bit vectors.
        pub vl: bool,
        /// AVX-512 VNNI (and VL): ggml's block sums by `vpdpbusd`.
        pub vnni: bool,
        /// K, V: Q4_0 blocks (else Q8_0).
        pub k4: bool,
        pub v4: bool,
        pub k: *const u8,
        pub v: *const u8,
        /// Bytes between heads and between cells, in K and in V.
        pub k_head: usize,
        pub k_cell: usize,
        pub v_head: usize,
        pub v_cell: usize,
        pub n_kv: usize,
    }

    /// The f16 at `p` as f32.
    ///
    /// # Safety
    /// `p` points at two readable bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn half_at(p: *const u8) -> f32 {
        // SAFETY: the caller's promise.
        half(u16::from_le_bytes(unsafe { [*p, *p.add(1)] }))
    }

    /// Query rows `rows` (query, output) of one token, all over K/V head `kvh`, masked by
    /// `mask` (the token's row, `n_kv` values).
    ///
    /// # Safety
    /// As in `op`: the rows hold `dk` (queries) and `dv` (outputs) floats, K and V `n_kv`
    /// cells of the head, the mask `n_kv` values; the CPU has AVX2, FMA, F16C, and AVX-512
    /// VNNI and VL where `p.vnni`, AVX-512 F and VL where `p.vl`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows(
        p: &Params,
        kvh: usize,
        mask: *const u16,
        rows: &[(*const f32, *mut f32)],
    ) {
        // SAFETY: the caller's promises, passed on; `p.vnni`: the CPU has VNNI and VL.
        unsafe {
            match (p.vnni, rows.len()) {
                (true, 1) => rows_in::<1, true>(p, kvh, mask, rows),
                (true, 2) => rows_in::<2, true>(p, kvh, mask, rows),
                (true, 3) => rows_in::<3, true>(p, kvh, mask, rows),
                (true, 4) => rows_in::<4, true>(p, kvh, mask, rows),
                (true, 5) => rows_in::<5, true>(p, kvh, mask, rows),
                (true, 6) => rows_in::<6, true>(p, kvh, mask, rows),
                (true, 7) => rows_in::<7, true>(p, kvh, mask, rows),
                (true, _) => rows_in::<8, true>(p, kvh, mask, rows),
                (false, 1) => rows_in::<1, false>(p, kvh, mask, rows),
                (false, 2) => rows_in::<2, false>(p, kvh, mask, rows),
                (false, 3) => rows_in::<3, false>(p, kvh, mask, rows),
                (false, 4) => rows_in::<4, false>(p, kvh, mask, rows),
                (false, 5) => rows_in::<5, false>(p, kvh, mask, rows),
                (false, 6) => rows_in::<6, false>(p, kvh, mask, rows),
                (false, 7) => rows_in::<7, false>(p, kvh, mask, rows),
                (false, _) => rows_in::<8, false>(p, kvh, mask, rows),
            }
        }
    }

    /// [`rows`] for `G` rows, block sums by VNNI or by AVX2.
    ///
    /// # Safety
    /// As [`rows`], with `rows.len() == G <= GROUP`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_in<const G: usize, const VNNI: bool>(
        p: &Params,
        kvh: usize,
        mask: *const u16,
        rows: &[(*const f32, *mut f32)],
    ) {
        debug_assert!(rows.len() == G && G <= GROUP);
        let (dk, dv) = (p.dk, p.dv);
        // the queries quantized as ggml quantizes them for its Q8_0 dot product
        let mut qq = [[0u8; MAX_HEAD / 32 * Q8]; G];
        // and their blocks' scales as f32
        let mut qd = [[0f32; MAX_HEAD / 32]; G];
        for (r, &(qp, _)) in rows.iter().enumerate() {
            // SAFETY: a query row holds dk floats, dk / 32 blocks fit qq's rows.
            unsafe { quantize_q8_0(qp, qq[r].as_mut_ptr(), dk / 32) };
            for (b, d) in qd[r][..dk / 32].iter_mut().enumerate() {
                // SAFETY: block b's scale.
                *d = unsafe { half_at(qq[r].as_ptr().add(b * Q8)) };
            }
        }
        let mut m = [f32::NEG_INFINITY; G];
        let mut sum = [0f32; G];
        let mut acc = [[0f32; MAX_HEAD]; G];
        let k = p.k.wrapping_add(kvh * p.k_head);
        let v = p.v.wrapping_add(kvh * p.v_head);
        let mut idx = [0usize; BLOCK];
        let mut mv = [0f32; BLOCK];
        let mut ms = [[1f32; BLOCK]; G];
        let mut vs = [[1f32; BLOCK]; G];
        let mut ic = 0;
        while ic < p.n_kv {
            // the next BLOCK visible cells (ggml skips the masked ones entirely; the rows are
            // read in order, as the hardware prefetcher follows: prefetching a block ahead
            // measured no faster)
            let mut n = 0;
            while ic < p.n_kv && n < BLOCK {
                // SAFETY: ic < n_kv, the mask's length.
                let x = half(unsafe { *mask.add(ic) });
                if x != f32::NEG_INFINITY {
                    idx[n] = ic;
                    mv[n] = x;
                    n += 1;
                }
                ic += 1;
            }
            for j in 0..n {
                let kr = k.wrapping_add(idx[j] * p.k_cell);
                // SAFETY: a K row of dk / 32 blocks, qq's rows as many; VNNI: the CPU has
                // AVX-512 VNNI and VL.
                let dots = unsafe {
                    match (VNNI, p.k4) {
                        (true, false) => dots_vnni::<G, false>(kr, &qq, &qd, dk / 32),
                        (true, true) => dots_vnni::<G, true>(kr, &qq, &qd, dk / 32),
                        (false, false) => dots_avx2::<G, false>(kr, &qq, &qd, dk / 32),
                        (false, true) => dots_avx2::<G, true>(kr, &qq, &qd, dk / 32),
                    }
                };
                for r in 0..G {
                    let mut s = dots[r] * p.scale;
                    if p.softcap != 0.0 {
                        s = p.softcap * s.tanh();
                    }
                    let x = s + mv[j];
                    // ggml: a new maximum scales the sum and accumulator by e^(M_old - x) and
                    // adds V once; else V is added times e^(x - M). Both exponents are
                    // -|x - M| (IEEE subtraction is antisymmetric): one expf, no branch.
                    let gt = x > m[r];
                    let e = (-(x - m[r]).abs()).exp();
                    let (a, w) = if gt { (e, 1.0) } else { (1.0, e) };
                    m[r] = if gt { x } else { m[r] };
                    sum[r] = sum[r].mul_add(a, w);
                    ms[r][j] = a;
                    vs[r][j] = w;
                }
            }
            let vrow = |j: usize| v.wrapping_add(idx[j] * p.v_cell);
            let mut h = 0;
            while h < G {
                // rows h.. in a run of up to four (AVX-512 VL) or two
                let take = (G - h).min(if p.vl { 4 } else { 2 });
                let (a, w) = (&ms[h..h + take], &vs[h..h + take]);
                let base = acc.as_mut_ptr();
                // SAFETY: rows h..h + take of acc (take <= G - h), each MAX_HEAD >= dv floats.
                let accs = |i: usize| unsafe { (*base.add(h + i)).as_mut_ptr() };
                // `$f::<H, _>` for V's block format
                macro_rules! by_v {
                    ($f:ident, $h:literal) => {
                        if p.v4 {
                            $f::<$h, true>(std::array::from_fn(accs), &vrow, a, w, n, dv)
                        } else {
                            $f::<$h, false>(std::array::from_fn(accs), &vrow, a, w, n, dv)
                        }
                    };
                }
                // SAFETY: as above; V rows of dv / 32 blocks; `p.vl`: AVX-512 F and VL.
                unsafe {
                    match (p.vl, take) {
                        (true, 4) => by_v!(accumulate_vl, 4),
                        (true, 3) => by_v!(accumulate_vl, 3),
                        (true, 2) => by_v!(accumulate_vl, 2),
                        (true, _) => by_v!(accumulate_vl, 1),
                        (false, 2) => by_v!(accumulate, 2),
                        (false, _) => by_v!(accumulate, 1),
                    }
                }
                h += take;
            }
        }
        for (r, &(_, out)) in rows.iter().enumerate() {
            let inv = if sum[r] == 0.0 { 0.0 } else { 1.0 / sum[r] };
            for (d, x) in acc[r][..dv].iter().enumerate() {
                // SAFETY: an output row holds dv floats.
                unsafe { *out.add(d) = x * inv };
            }
        }
    }

    /// ggml's Q8_0 or Q4_0 (`K4`) dot product with Q8_0 (AVX2: per block the 8 lane sums of
    /// products as floats — Q4_0's quants less 8 — times the two scales' product, added by
    /// FMA; then `hsum_float_8`) of the K row at `kr` with each of the `G` quantized queries
    /// (their blocks' scales as f32 in `qd`), each K block loaded once: [`dots_vnni`] with
    /// `vpdpbusd`'s lane sums, [`dots_avx2`] with `vpmaddubsw` and `vpmaddwd`'s (the same).
    ///
    /// # Safety
    /// `kr` holds `nb` blocks, each row of `qq` and `qd` as many; [`dots_vnni`] on a CPU with
    /// AVX-512 VNNI and VL.
    macro_rules! dots_fn {
        ($name:ident, $features:literal, $mul_sum:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const G: usize, const K4: bool>(
                kr: *const u8,
                qq: &[[u8; MAX_HEAD / 32 * Q8]; G],
                qd: &[[f32; MAX_HEAD / 32]; G],
                nb: usize,
            ) -> [f32; G] {
                let mut acc = [_mm256_setzero_ps(); G];
                for b in 0..nb {
                    let xb = kr.wrapping_add(b * if K4 { Q4 } else { Q8 });
                    // SAFETY: block b of the K row: its scale, then its quants.
                    let (dx, qx) = unsafe {
                        let qx = if K4 {
                            let x = bytes_from_nibbles_32(xb.add(2));
                            _mm256_sub_epi8(x, _mm256_set1_epi8(8))
                        } else {
                            _mm256_loadu_si256(xb.add(2) as *const __m256i)
                        };
                        (half_at(xb), qx)
                    };
                    let ax = _mm256_sign_epi8(qx, qx);
                    for ((a, qr), dy) in acc.iter_mut().zip(qq).zip(qd) {
                        let yb = qr.as_ptr().wrapping_add(b * Q8);
                        // SAFETY: block b of the query.
                        let qy = unsafe { _mm256_loadu_si256(yb.add(2) as *const __m256i) };
                        let d = _mm256_set1_ps(dx * dy[b]);
                        // SAFETY: this function's features are the lane sum's.
                        let s = unsafe { $mul_sum(ax, _mm256_sign_epi8(qy, qx)) };
                        *a = _mm256_fmadd_ps(d, s, *a);
                    }
                }
                // SAFETY: AVX2 (this function's features).
                acc.map(|a| unsafe { hsum_float_8(a) })
            }
        };
    }
    dots_fn!(dots_avx2, "avx2,fma,f16c", mul_sum_us8_avx2);
    dots_fn!(
        dots_vnni,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        mul_sum_us8_vnni
    );

    /// `acc = v · vs + acc · ms` for `n` cells in order, for `H` rows: ggml's scaling of its
    /// accumulator (where `ms` is not 1; scaling by 1 leaves it as it is), then its addition
    /// of V (each value its quant — Q4_0's (`V4`) less 8 — times the block's scale, rounded),
    /// one FMA per value. 32
    /// dimensions of each row at a time, in registers, each V block converted once for the
    /// `H` rows. [`accumulate`] takes two rows at most (sixteen vector registers);
    /// [`accumulate_vl`], where AVX-512 VL gives thirty-two, four.
    ///
    /// # Safety
    /// Each accumulator holds `dv` floats, each V row (`vrow(j)`, j < n) `dv / 32` blocks; `dv` a multiple of 32; [`accumulate_vl`] on a CPU with AVX-512 F and VL.
    macro_rules! accumulate_fn {
        ($name:ident, $features:literal) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const H: usize, const V4: bool>(
                accs: [*mut f32; H],
                vrow: &impl Fn(usize) -> *const u8,
                ms: &[[f32; BLOCK]],
                vs: &[[f32; BLOCK]],
                n: usize,
                dv: usize,
            ) {
                for d in (0..dv).step_by(32) {
                    let mut a = [[_mm256_setzero_ps(); 4]; H];
                    for (r, acc) in a.iter_mut().zip(accs) {
                        for (i, x) in r.iter_mut().enumerate() {
                            // SAFETY: d + 8i + 8 <= dv.
                            *x = unsafe { _mm256_loadu_ps(acc.add(d + 8 * i)) };
                        }
                    }
                    for j in 0..n {
                        let vb = vrow(j).wrapping_add(d / 32 * if V4 { Q4 } else { Q8 });
                        // SAFETY: block d / 32 of the V row: its scale, then its quants.
                        let x: [__m256; 4] = unsafe {
                            let scale = _mm256_set1_ps(half_at(vb));
                            let q: [__m128i; 4] = if V4 {
                                // values 0-15: the low nibbles; 16-31: the high ones
                                let b = _mm_loadu_si128(vb.add(2) as *const __m128i);
                                let (m, eight) = (_mm_set1_epi8(0x0F), _mm_set1_epi8(8));
                                let lo = _mm_sub_epi8(_mm_and_si128(b, m), eight);
                                let hi =
                                    _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m), eight);
                                [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
                            } else {
                                std::array::from_fn(|i| {
                                    _mm_loadl_epi64(vb.add(2 + 8 * i) as *const __m128i)
                                })
                            };
                            q.map(|q| {
                                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), scale)
                            })
                        };
                        add_cell(&mut a, &x, ms, vs, j, |y| y);
                    }
                    for (r, acc) in a.iter().zip(accs) {
                        for (i, x) in r.iter().enumerate() {
                            // SAFETY: as above.
                            unsafe { _mm256_storeu_ps(acc.add(d + 8 * i), *x) };
                        }
                    }
                }
            }
        };
    }
    accumulate_fn!(accumulate, "avx2,fma,f16c");
    accumulate_fn!(accumulate_vl, "avx2,fma,f16c,avx512f,avx512vl");
}
