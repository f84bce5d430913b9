//! The ops of mixture-of-experts feed-forward blocks: softmax routing, top-k expert selection,
//! weight normalisation and the per-expert matrix product.

use ggml_sys as sys;

use super::{Context, Tensor};

impl Context {
    /// Softmax over each row.
    pub fn soft_max<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: live context and live tensor headers; ggml validates shapes with GGML_ASSERT
        // (abort), never reading out of bounds at graph-build time (as every op of `Context`).
        self.op(|c| unsafe { sys::ggml_soft_max(c, a.as_ptr()) })
    }

    /// The indices (i32) of the `k` largest values of each row, largest first.
    pub fn argsort_top_k<'a>(&'a self, a: Tensor<'a>, k: i32) -> Tensor<'a> {
        // SAFETY: see `soft_max` (ggml asserts k <= the row length).
        self.op(|c| unsafe { sys::ggml_argsort_top_k(c, a.as_ptr(), k) })
    }

    /// The sum of each row: `[1, ne1, ...]`.
    pub fn sum_rows<'a>(&'a self, a: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `soft_max`.
        self.op(|c| unsafe { sys::ggml_sum_rows(c, a.as_ptr()) })
    }

    pub fn clamp<'a>(&'a self, a: Tensor<'a>, min: f32, max: f32) -> Tensor<'a> {
        // SAFETY: see `soft_max`.
        self.op(|c| unsafe { sys::ggml_clamp(c, a.as_ptr(), min, max) })
    }

    /// `a / b`, `b` broadcast over `a`.
    pub fn div<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `soft_max`.
        self.op(|c| unsafe { sys::ggml_div(c, a.as_ptr(), b.as_ptr()) })
    }

    /// Per-expert products: `experts` [k, m, n_expert] × `b` [k, n_used (or 1), n_tokens] with
    /// `ids` [n_used, n_tokens] (i32) naming the expert of each → [m, n_used, n_tokens].
    pub fn mul_mat_id<'a>(
        &'a self,
        experts: Tensor<'a>,
        b: Tensor<'a>,
        ids: Tensor<'a>,
    ) -> Tensor<'a> {
        // SAFETY: see `soft_max`; the ids are ggml's own top-k output, inside 0..n_expert.
        self.op(|c| unsafe { sys::ggml_mul_mat_id(c, experts.as_ptr(), b.as_ptr(), ids.as_ptr()) })
    }

    /// `a` [n, n_used, n_tokens] plus the row of `b` [n, n_expert] that `ids` [n_used,
    /// n_tokens] (i32) names for each: a per-expert bias after [`mul_mat_id`](Self::mul_mat_id).
    pub fn add_id<'a>(&'a self, a: Tensor<'a>, b: Tensor<'a>, ids: Tensor<'a>) -> Tensor<'a> {
        // SAFETY: see `soft_max`; the ids are ggml's own top-k output, inside 0..n_expert.
        self.op(|c| unsafe { sys::ggml_add_id(c, a.as_ptr(), b.as_ptr(), ids.as_ptr()) })
    }

    /// gpt-oss's clamped SwiGLU, fused: with `g = min(a, limit)` and `u = clamp(b, -limit,
    /// limit)`, `g·sigmoid(alpha·g)·(u + 1)`.
    pub fn swiglu_oai<'a>(
        &'a self,
        a: Tensor<'a>,
        b: Tensor<'a>,
        alpha: f32,
        limit: f32,
    ) -> Tensor<'a> {
        // SAFETY: see `soft_max` (ggml asserts the shapes agree).
        self.op(|c| unsafe { sys::ggml_swiglu_oai(c, a.as_ptr(), b.as_ptr(), alpha, limit) })
    }
}
