//! The ops of recurrent layers (Gated DeltaNet, as in Qwen3.5): the short causal convolution,
//! the gated delta rule with its state, their gates, and the sectioned RoPE of their attention
//! layers.

use ggml_sys as sys;

use super::{Context, Tensor};

impl Context {
    /// `1 / (1 + e^-a)`, elementwise.
    pub fn sigmoid<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: live context and live tensor headers; ggml validates shapes with GGML_ASSERT
        // (abort), never reading out of bounds at graph-build time (as every op of `Context`).
        self.op(|c| unsafe { sys::ggml_sigmoid(c, a.as_ptr()) })
    }

    /// `ln(1 + e^a)`, elementwise.
    pub fn softplus<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `sigmoid`.
        self.op(|c| unsafe { sys::ggml_softplus(c, a.as_ptr()) })
    }

    /// Causal 1-D convolution per channel: `sx` `[d_conv - 1 + n_tokens, channels, n_seqs]`
    /// (the kept window, then the new columns) with kernels `k` `[d_conv, channels]` →
    /// `[channels, n_tokens, n_seqs]`.
    pub fn ssm_conv<'a>(&'a self, sx: Tensor<'a>, k: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `sigmoid` (ggml asserts the shapes agree).
        self.op(|c| unsafe { sys::ggml_ssm_conv(c, sx.as_ptr(), k.as_ptr()) })
    }

    /// The gated delta rule over a micro-batch: q, k `[S, H_k, T, n_seqs]`, v `[S, H_v, T,
    /// n_seqs]`, the gate g and beta `[1, H_v, T, n_seqs]`, the state before `[S, S, H_v,
    /// n_seqs]`. The result packs the outputs `[S, H_v, T, n_seqs]` and then `snapshots` states,
    /// the latest first (slot s: the state s tokens before the last; only the first
    /// `min(T, snapshots)` are written).
    #[allow(clippy::too_many_arguments)]
    pub fn gated_delta_net<'a>(
        &'a self,
        q: Tensor<'a>,
        k: Tensor<'a>,
        v: Tensor<'a>,
        g: Tensor<'a>,
        beta: Tensor<'a>,
        state: Tensor<'a>,
        snapshots: i64,
    ) -> Tensor<'a> {
        // SAFETY: see `sigmoid` (ggml asserts every shape, type and contiguity it needs).
        self.op(|c| unsafe {
            sys::ggml_gated_delta_net(
                c,
                q.as_ptr(),
                k.as_ptr(),
                v.as_ptr(),
                g.as_ptr(),
                beta.as_ptr(),
                state.as_ptr(),
                snapshots,
            )
        })
    }

    /// Copy `a` into `b` (a view of a cache tensor): the result is `b`, written when the graph
    /// runs.
    pub fn cpy<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `sigmoid` (ggml asserts the element counts agree).
        self.op(|c| unsafe { sys::ggml_cpy(c, a.as_ptr(), b.as_ptr()) })
    }

    /// Multi-section RoPE (`mode` [`sys::GGML_ROPE_TYPE_IMROPE`] for Qwen3.5's interleaved
    /// sections): `pos` holds `4 * n_tokens` i32 positions, one run per section.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_multi<'a>(
        &'a self,
        a: Tensor<'a>,
        pos: Tensor<'a>,
        n_dims: i32,
        sections: [i32; sys::GGML_MROPE_SECTIONS],
        mode: i32,
        n_ctx_orig: i32,
        freq_base: f32,
        freq_scale: f32,
        ext_factor: f32,
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> Tensor<'a> {
        let mut sections = sections;
        // SAFETY: see `sigmoid`; ggml reads exactly GGML_MROPE_SECTIONS ints from `sections`,
        // which outlives the call, and null frequency factors are allowed.
        self.op(|c| unsafe {
            sys::ggml_rope_multi(
                c,
                a.as_ptr(),
                pos.as_ptr(),
                std::ptr::null_mut(),
                n_dims,
                sections.as_mut_ptr(),
                mode,
                n_ctx_orig,
                freq_base,
                freq_scale,
                ext_factor,
                attn_factor,
                beta_fast,
                beta_slow,
            )
        })
    }
}
