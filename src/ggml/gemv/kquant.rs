//! Where the K-quant ops apply, and their builders: for prompts, Q4_K as ggml repacks it and
//! Q6_K; for decoding (one to three tokens), Q4_K as ggml repacks it. The kernels are in
//! `q4k.rs` and `q6k.rs`, the prompt ops' driver in `groups.rs`.

#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use super::{groups, isa, q4k, q6k, x86};
use super::{Context, Tensor, Type};

/// Whether `w · x` can go through the Q4_K tile op ([`Context::mul_mat_q4k`]): Q4_K weights
/// that ggml's CPU repack buffer holds (rows a multiple of 8), four or more contiguous f32
/// columns, a CPU with AVX-512 F, BW and VNNI. `EMBER_NO_TILED=1` (or `EMBER_NO_GEMV=1`) turns
/// it off, to compare.
pub fn applies_q4k(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !super::tiled_off() && repacked_q4k(w, x) && x.ne()[1] >= 4
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, x);
        false
    }
}

/// Whether `w · x` can go through the Q4_K decode op ([`Context::mul_mat_q4k_vec`]): Q4_K
/// weights that ggml's CPU repack buffer holds (rows a multiple of 8), one to three contiguous
/// f32 columns (ggml's matrix × vector kernel, column by column), a CPU with AVX-512 F, BW and
/// VNNI. `EMBER_NO_GEMV=1` turns it off, to compare.
pub fn applies_q4k_vec(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        repacked_q4k(w, x) && (1..4).contains(&x.ne()[1])
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, x);
        false
    }
}

/// Whether `w · x` can go through the Q6_K tile op ([`Context::mul_mat_q6k`]): Q6_K weights in
/// plain host memory, eight or more contiguous f32 columns (fewer go through ggml's
/// `vec_dot`, in another order), a CPU with AVX-512 F, BW and VNNI and a ggml built for it.
/// `EMBER_NO_TILED=1` (or `EMBER_NO_GEMV=1`) turns it off.
pub fn applies_q6k(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !super::tiled_off()
            && k_quant_cpu()
            && ggml_tiles_vnni()
            && w.ty() == Type::Q6_K
            && w.is_plain_host_data()
            && w.is_contiguous()
            && k_quant_operands(w, x)
            && x.ne()[1] >= 8
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (w, x);
        false
    }
}

/// Repacked Q4_K weights (rows a multiple of 8, as ggml repacks them) and columns both Q4_K
/// ops take, on a CPU that runs them.
#[cfg(target_arch = "x86_64")]
fn repacked_q4k(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    k_quant_cpu()
        && w.ty() == Type::Q4_K
        && w.is_cpu_repacked()
        && w.ne()[1] % 8 == 0
        && k_quant_operands(w, x)
}

/// Whether the CPU has what the K-quant kernels use, AVX-512 F, BW and VNNI (and
/// `EMBER_NO_GEMV` leaves the kernels on). Read once.
#[cfg(target_arch = "x86_64")]
fn k_quant_cpu() -> bool {
    static CPU: OnceLock<bool> = OnceLock::new();
    *CPU.get_or_init(|| {
        isa() == Some(x86::Isa::Vnni)
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
    })
}

/// Whether ggml's tiled K-quant kernels, which the Q6_K op reproduces, are the ones it
/// reproduces: ggml compiled with AVX-512 VNNI (a build for an AVX2 baseline, `portable`,
/// computes in another order).
///
/// Its last multiply-add is fused only where GCC compiled ggml (GNU dialect, as `ggml-sys`
/// builds it): clang keeps the two steps of `_mm512_add_ps(acc, _mm512_mul_ps(..))` apart. And
/// `GGML_CPU_TILED_MM=0` turns ggml's tiled path off (it then uses `vec_dot`).
#[cfg(target_arch = "x86_64")]
fn ggml_tiles_vnni() -> bool {
    static TILES: OnceLock<bool> = OnceLock::new();
    *TILES.get_or_init(|| {
        let enabled = std::env::var("GGML_CPU_TILED_MM").map_or(true, |v| atoi_nonzero(&v));
        // SAFETY: a constant of ggml's build, no arguments, no side effects.
        let vnni = unsafe { ggml_sys::ggml_cpu_has_avx512_vnni() != 0 };
        enabled && vnni && ggml_sys::CXX_FUSES_MUL_ADD
    })
}

/// Whether C's `atoi(s)` is not 0, as ggml reads its switches: leading blanks, a sign, then the
/// digits up to the first other character.
#[cfg(target_arch = "x86_64")]
fn atoi_nonzero(s: &str) -> bool {
    let t = s.trim_start();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    t.chars().take_while(char::is_ascii_digit).any(|c| c != '0')
}

#[cfg(all(test, target_arch = "x86_64"))]
#[test]
fn switches_read_as_atoi() {
    for (s, on) in [
        ("1", true),
        (" 2x", true),
        ("-1", true),
        ("0", false),
        ("", false),
    ] {
        assert_eq!(atoi_nonzero(s), on, "{s:?}");
    }
    for s in ["00", "abc", "+-1", "x1"] {
        assert!(!atoi_nonzero(s), "{s:?}");
    }
}

/// The shapes both K-quant prompt ops take: a 2-D weight of whole super-blocks per row, and
/// contiguous f32 columns as long as its rows.
fn k_quant_operands(w: Tensor<'_>, x: Tensor<'_>) -> bool {
    let (wn, xn) = (w.ne(), x.ne());
    wn[0] % 256 == 0
        && wn[2] == 1
        && wn[3] == 1
        && x.ty() == Type::F32
        && xn[0] == wn[0]
        && xn[2] == 1
        && xn[3] == 1
        && x.nb()[0] == 4
        && x.nb()[1] == 4 * xn[0] as usize
}

impl Context {
    /// `w · x` for repacked Q4_K weights and several columns: the columns are quantized as
    /// ggml quantizes them (one op), then multiplied (a second op). The caller checks
    /// [`applies_q4k`] first; the result is `ggml_mul_mat(w, x)`'s, bit for bit.
    pub fn mul_mat_q4k<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(applies_q4k(w, x), "mul_mat_q4k: operands not supported");
        #[cfg(target_arch = "x86_64")]
        return self.mul_mat_grouped::<q4k::Q4K>(w, x);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("applies_q4k is false off x86-64")
    }

    /// `w · x` for repacked Q4_K weights and one to three columns (decoding, short drafts): one
    /// op reading the interleaved layout directly. The caller checks [`applies_q4k_vec`] first;
    /// the result is `ggml_mul_mat(w, x)`'s, bit for bit.
    pub fn mul_mat_q4k_vec<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(
            applies_q4k_vec(w, x),
            "mul_mat_q4k_vec: operands not supported"
        );
        #[cfg(target_arch = "x86_64")]
        return self.custom_op(
            Type::F32,
            [w.ne()[1], x.ne()[1]],
            &[x],
            Some(w),
            q4k::vec_op,
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("applies_q4k_vec is false off x86-64")
    }

    /// `w · x` for Q6_K weights and eight or more columns: quantized, then multiplied (two
    /// ops). The caller checks [`applies_q6k`] first; the result is `ggml_mul_mat(w, x)`'s,
    /// bit for bit.
    pub fn mul_mat_q6k<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(applies_q6k(w, x), "mul_mat_q6k: operands not supported");
        #[cfg(target_arch = "x86_64")]
        return self.mul_mat_grouped::<q6k::Q6K>(w, x);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("applies_q6k is false off x86-64")
    }

    /// The two ops of the K-quant prompt kernels `K` (see [`groups`]).
    #[cfg(target_arch = "x86_64")]
    fn mul_mat_grouped<'a, K: groups::Kernels>(
        &'a self,
        w: Tensor<'a>,
        x: Tensor<'a>,
    ) -> Tensor<'a> {
        let (k, rows, cols) = (w.ne()[0], w.ne()[1], x.ne()[1]);
        let col_bytes = k / 256 * K::ACT_BYTES as i64;
        let xq = self.custom_op(
            Type::I8,
            [col_bytes, cols],
            &[x],
            None,
            groups::quantize_op::<K>,
        );
        self.custom_op(
            Type::F32,
            [rows, cols],
            &[xq],
            Some(w),
            groups::tile_op::<K>,
        )
    }
}
