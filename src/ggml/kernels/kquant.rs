//! Which weights the K-quant ops read, and their builders: for prompts, Q4_K as ggml repacks it and
//! Q6_K; for decoding (one to three tokens), Q4_K as ggml repacks it. The kernels are in
//! `q4k.rs` and `q6k.rs`, the prompt ops' driver in `groups.rs`.

#[cfg(target_arch = "x86_64")]
use super::{groups, q4k, q4k_avx2, q6k};
use super::{takes, Context, Kernel, Tensor, Type};

/// Q4_K weights that the Q4_K ops read: in ggml's CPU repack buffer, interleaved by eight rows
/// (rows a multiple of 8), 2-D, whole super-blocks per row.
pub(super) fn repacked_q4k(w: Tensor<'_>) -> bool {
    w.ty() == Type::Q4_K && w.is_cpu_repacked() && w.ne()[1] % 8 == 0 && k_quant_shape(w)
}

/// Q6_K weights that the Q6_K op reads: in plain host memory, contiguous, 2-D, whole
/// super-blocks per row.
pub(super) fn plain_q6k(w: Tensor<'_>) -> bool {
    w.ty() == Type::Q6_K && w.is_plain_host_data() && w.is_contiguous() && k_quant_shape(w)
}

/// A 2-D weight of whole super-blocks (256) per row.
fn k_quant_shape(w: Tensor<'_>) -> bool {
    let wn = w.ne();
    wn[0] % 256 == 0 && wn[2] == 1 && wn[3] == 1
}

impl Context {
    /// `w · x` for repacked Q4_K weights and several columns: the columns are quantized as
    /// ggml quantizes them (one op), then multiplied (a second op). The result is
    /// `ggml_mul_mat(w, x)`'s, bit for bit, for four columns or more.
    pub(super) fn mul_mat_q4k<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(
            takes(Kernel::Q4kPrompt, w, x),
            "mul_mat_q4k: operands not supported"
        );
        #[cfg(target_arch = "x86_64")]
        return match super::Machine::get().k_quant {
            true => self.mul_mat_grouped::<q4k::Q4K>(w, x),
            false => self.mul_mat_grouped::<q4k_avx2::Q4KAvx2>(w, x),
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no K-quant kernels off x86-64")
    }

    /// `w · x` for repacked Q4_K weights and one to three columns (decoding, short drafts): one
    /// op reading the interleaved layout directly. The result is `ggml_mul_mat(w, x)`'s, bit
    /// for bit.
    pub(super) fn mul_mat_q4k_vec<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(
            takes(Kernel::Q4kDecode, w, x),
            "mul_mat_q4k_vec: operands not supported"
        );
        #[cfg(target_arch = "x86_64")]
        return match super::Machine::get().k_quant {
            true => self.custom_op(
                Type::F32,
                [w.ne()[1], x.ne()[1]],
                &[x],
                Some(w),
                q4k::vec_op,
            ),
            false => self.mul_mat_grouped::<q4k_avx2::Q4KAvx2Columns>(w, x),
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no K-quant kernels off x86-64")
    }

    /// `w · x` for Q6_K weights: quantized, then multiplied (two ops). The result is
    /// `ggml_mul_mat(w, x)`'s, bit for bit, for eight columns or more where ggml's tiled path
    /// is the one it reproduces (see `route.rs`).
    pub(super) fn mul_mat_q6k<'a>(&'a self, w: Tensor<'a>, x: Tensor<'a>) -> Tensor<'a> {
        assert!(
            takes(Kernel::Q6kPrompt, w, x),
            "mul_mat_q6k: operands not supported"
        );
        #[cfg(target_arch = "x86_64")]
        return self.mul_mat_grouped::<q6k::Q6K>(w, x);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no K-quant kernels off x86-64")
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
