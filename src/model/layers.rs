//! The shared graph vocabulary every architecture is built from: inputs, norm, RoPE, attention
//! over the KV cache, feed-forward blocks. Op for op what llama.cpp's `llm_graph_context` does,
//! so that our logits match its logits. Every intermediate is named `{name}-{layer}` so graphs
//! can be dumped and compared.

use crate::ggml::{Context, Graph, Tensor, TensorHandle, Type};
use crate::kv::KvCache;

use super::Model;

/// The input tensors of one micro-batch graph (written after allocation).
pub struct Inputs<'g> {
    /// i32 [n_tokens]
    pub tokens: Tensor<'g>,
    /// i32 [n_tokens]
    pub pos: Tensor<'g>,
    /// f16 (flash attention) or f32 [n_kv, n_tokens]: 0 where attention is allowed, -inf not
    pub mask: Tensor<'g>,
    /// Sliding-window mask for architectures with local layers ([n_kv_swa, n_tokens]).
    pub mask_swa: Option<Tensor<'g>>,
    /// i64 [n_tokens]: the cache row of each new token
    pub k_idxs: Tensor<'g>,
    /// i64 [n_tokens] (or [n_tokens * n_embd_v_gqa] element indices when V is transposed)
    pub v_idxs: Tensor<'g>,
    /// The same two for the local layers, when they keep a ring smaller than the cache.
    pub k_idxs_swa: Option<Tensor<'g>>,
    pub v_idxs_swa: Option<Tensor<'g>>,
    /// i32 [n_outputs]: rows whose logits are wanted (None: all rows)
    pub out_ids: Option<Tensor<'g>>,
}

/// Builds one forward graph for a micro-batch.
pub struct Builder<'g> {
    pub ctx: &'g Context,
    pub model: &'g Model,
    pub kv: &'g KvCache,
    pub graph: Graph<'g>,
    pub inp: Inputs<'g>,
    pub n_tokens: i64,
    pub n_kv: i64,
    /// Cells the local layers attend to (at most their ring).
    pub n_kv_swa: i64,
    pub flash_attn: bool,
}

/// Activation used by a gated feed-forward block.
#[derive(Clone, Copy)]
pub enum FfnAct {
    /// silu(gate) * up (SwiGLU: llama, qwen2)
    Silu,
    /// gelu_tanh(gate) * up (GeGLU: gemma)
    Gelu,
}

impl<'g> Builder<'g> {
    /// A graph for `n_tokens` new tokens attending to `n_kv` cache cells, with logits for
    /// `n_outputs` rows. Flash attention is used exactly when the cache stores V untransposed.
    pub fn new(
        ctx: &'g Context,
        model: &'g Model,
        kv: &'g KvCache,
        n_tokens: usize,
        n_kv: u32,
        n_outputs: usize,
    ) -> Self {
        let flash_attn = !kv.v_trans;
        let swa = model.hp.swa.is_some();
        let graph_size = model.graph_size();
        let nt = n_tokens as i64;
        let n_kv_swa = n_kv.min(kv.cells.ring()) as i64;
        let n_kv = n_kv as i64;
        let ring = kv.cells.ring() < kv.size();
        let tokens = ctx
            .new_tensor(Type::I32, &[nt])
            .set_name("inp_tokens")
            .set_input();
        let pos = ctx
            .new_tensor(Type::I32, &[nt])
            .set_name("inp_pos")
            .set_input();
        let mask_type = if flash_attn { Type::F16 } else { Type::F32 };
        let mask = ctx
            .new_tensor(mask_type, &[n_kv, nt])
            .set_name("attn_inp_kq_mask")
            .set_input();
        let mask_swa = swa.then(|| {
            ctx.new_tensor(mask_type, &[n_kv_swa, nt])
                .set_name("attn_inp_kq_mask_swa")
                .set_input()
        });
        let k_idxs = ctx
            .new_tensor(Type::I64, &[nt])
            .set_name("inp_k_idxs")
            .set_input();
        let n_v = if kv.v_trans {
            nt * model.hp.n_embd_v_gqa() as i64
        } else {
            nt
        };
        let v_idxs = ctx
            .new_tensor(Type::I64, &[n_v])
            .set_name("inp_v_idxs")
            .set_input();
        let k_idxs_swa = (swa && ring).then(|| {
            ctx.new_tensor(Type::I64, &[nt])
                .set_name("inp_k_idxs_swa")
                .set_input()
        });
        let v_idxs_swa = (swa && ring).then(|| {
            ctx.new_tensor(Type::I64, &[n_v])
                .set_name("inp_v_idxs_swa")
                .set_input()
        });
        let out_ids = (n_outputs < n_tokens).then(|| {
            ctx.new_tensor(Type::I32, &[n_outputs as i64])
                .set_name("inp_out_ids")
                .set_input()
        });
        Builder {
            ctx,
            model,
            kv,
            graph: ctx.new_graph(graph_size),
            inp: Inputs {
                tokens,
                pos,
                mask,
                mask_swa,
                k_idxs,
                v_idxs,
                k_idxs_swa,
                v_idxs_swa,
                out_ids,
            },
            n_tokens: nt,
            n_kv,
            n_kv_swa,
            flash_attn,
        }
    }

    /// A weight tensor of the model.
    pub fn w(&self, h: TensorHandle) -> Tensor<'g> {
        self.model.weights.get(h)
    }

    pub fn name(&self, t: Tensor<'g>, name: &str, il: Option<usize>) -> Tensor<'g> {
        match il {
            Some(il) => t.set_name(&format!("{name}-{il}")),
            None => t.set_name(name),
        }
    }

    /// Token embeddings: rows of `token_embd` for the input ids, times the model's embedding
    /// scale when it has one.
    pub fn embeddings(&mut self) -> Tensor<'g> {
        let t = self
            .ctx
            .get_rows(self.w(self.model.tok_embd), self.inp.tokens);
        let scale = self.model.hp.embd_scale;
        let t = if scale != 1.0 {
            self.ctx.scale(t, scale)
        } else {
            t
        };
        let t = self.name(t, "inp_embd", None);
        // Materialized first, as llama.cpp does.
        self.graph.expand(t);
        t
    }

    /// RMSNorm, then the learned scale.
    pub fn rms_norm(&self, x: Tensor<'g>, weight: TensorHandle, il: Option<usize>) -> Tensor<'g> {
        let t = self.ctx.rms_norm(x, self.model.hp.rms_eps);
        let t = self.name(t, "norm", il);
        self.ctx.mul(t, self.w(weight))
    }

    /// `W x`, by the kernel `W`'s route picks (decided at load: `crate::ggml::kernels`).
    pub fn mm(&self, w: TensorHandle, x: Tensor<'g>) -> Tensor<'g> {
        self.model.weights.matmul(self.ctx, w, x)
    }

    /// `W x (+ b)`.
    pub fn linear(&self, w: TensorHandle, b: Option<TensorHandle>, x: Tensor<'g>) -> Tensor<'g> {
        let t = self.mm(w, x);
        match b {
            Some(b) => self.ctx.add(t, self.w(b)),
            None => t,
        }
    }

    /// RoPE with the model's parameters, at layer `il`'s base and scale (local layers of
    /// sliding-window models have their own).
    pub fn rope(&self, x: Tensor<'g>, il: usize) -> Tensor<'g> {
        let r = &self.model.hp.rope;
        let (freq_base, freq_scale) = self.model.hp.rope_base_scale(il);
        let ff = self.model.rope_freqs.map(|h| self.w(h));
        self.ctx.rope_ext(
            x,
            self.inp.pos,
            ff,
            r.n_rot as i32,
            r.kind.ggml_mode(),
            r.n_ctx_orig as i32,
            freq_base,
            freq_scale,
            r.ext_factor,
            1.0,
            32.0,
            1.0,
        )
    }

    /// Store this batch's K and V in the cache, then attend over the cache. `q`, `k`, `v` are
    /// `[head_dim, n_head(_kv), n_tokens]`; returns `[head_dim_v * n_head, n_tokens]`.
    pub fn attention(
        &mut self,
        il: usize,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        kq_scale: f32,
        swa: bool,
    ) -> Tensor<'g> {
        let c = self.ctx;
        let hp = &self.model.hp;
        let kvc = self.kv.ctx();
        let k_cache = kvc.get(self.kv.k(il));
        let v_cache = kvc.get(self.kv.v(il));
        let (hd_k, hd_v, n_head_kv) = (
            hp.head_dim_k as i64,
            hp.head_dim_v as i64,
            hp.n_head_kv as i64,
        );
        let (ek, ev) = (hd_k * n_head_kv, hd_v * n_head_kv);
        // A local layer's cells are its ring (the whole cache when it has none).
        let size = self.kv.layer_cells(il) as i64;
        let (n_kv, k_idxs, v_idxs) = match (swa, self.inp.k_idxs_swa, self.inp.v_idxs_swa) {
            (true, Some(k), Some(v)) => (self.n_kv_swa, k, v),
            (true, ..) => (self.n_kv_swa, self.inp.k_idxs, self.inp.v_idxs),
            _ => (self.n_kv, self.inp.k_idxs, self.inp.v_idxs),
        };
        debug_assert_eq!(swa, self.kv.is_swa(il));
        let nt = self.n_tokens;

        // Quantized caches store rotated heads (see `KvCache::k_rot`); rotating Q the same way
        // keeps Q·K unchanged, and V's rotation is undone on the output.
        let k_rot = self.kv.k_rot().map(|h| kvc.get(h));
        let v_rot = self.kv.v_rot().map(|h| kvc.get(h));
        let (q, k) = match k_rot {
            Some(r) => (c.mul_mat_hadamard(q, r), c.mul_mat_hadamard(k, r)),
            None => (q, k),
        };
        let v = match v_rot {
            Some(r) => c.mul_mat_hadamard(v, r),
            None => v,
        };

        // Same insertion order as llama.cpp: q, v, k, then the cache writes.
        self.graph.expand(q);
        self.graph.expand(v);
        self.graph.expand(k);
        let k_rows = c.view(k, &[ek, nt], &[k.nb()[2]], 0);
        let k_store = c.set_rows(k_cache, k_rows, k_idxs);
        self.graph.expand(k_store);
        let v_store = if self.kv.v_trans {
            let v_flat = c.reshape(v, &[1, ev * nt]);
            let v_view = c.reshape(v_cache, &[1, ev * size]);
            c.set_rows(v_view, v_flat, v_idxs)
        } else {
            let v_rows = c.view(v, &[ev, nt], &[v.nb()[2]], 0);
            c.set_rows(v_cache, v_rows, v_idxs)
        };
        self.graph.expand(v_store);

        let ty_k = self.kv.type_k;
        let ty_v = self.kv.type_v;
        let kk = cache_heads(c, k_cache, ty_k, hd_k, n_head_kv, n_kv, size);
        let mask = if swa {
            self.inp.mask_swa.expect("swa mask")
        } else {
            self.inp.mask
        };
        let q = c.permute(q, [0, 2, 1, 3]);
        let kk = c.permute(kk, [0, 2, 1, 3]);
        let out = if self.flash_attn {
            let vv = cache_heads(c, v_cache, ty_v, hd_v, n_head_kv, n_kv, size);
            let vv = c.permute(vv, [0, 2, 1, 3]);
            let fa = c.flash_attn_ext(q, kk, vv, Some(mask), kq_scale, 0.0);
            // f32 accumulation, as llama.cpp asks (the CPU kernel always does; GPUs may not).
            c.set_prec_f32(fa);
            let fa = self.name(fa, "fattn", Some(il));
            let ne = fa.ne();
            c.reshape(fa, &[ne[0] * ne[1], ne[2] * ne[3]])
        } else {
            let kq = c.mul_mat(kk, q);
            c.set_prec_f32(kq);
            let kq = self.name(kq, "kq", Some(il));
            let kq = c.soft_max_ext(kq, Some(mask), kq_scale);
            // transposed V: [n_kv, n_head_kv, head_dim_v] with cells along rows
            let vv = c.view(
                v_cache,
                &[n_kv, n_head_kv, hd_v, 1],
                &[
                    ty_v.row_size(size * hd_v),
                    ty_v.row_size(size),
                    ty_v.row_size(size * ev),
                ],
                0,
            );
            let vv = c.permute(vv, [0, 2, 1, 3]);
            let kqv = c.mul_mat(vv, kq);
            let merged = c.permute(kqv, [0, 2, 1, 3]);
            let merged = c.cont(merged);
            let ne = merged.ne();
            c.reshape(merged, &[ne[0] * ne[1], ne[2] * ne[3]])
        };
        let out = self.name(out, "kqv_out", Some(il));
        let out = match v_rot {
            Some(r) => c.mul_mat_hadamard(out, r),
            None => out,
        };
        self.graph.expand(out);
        out
    }

    /// Gated feed-forward: down(act(gate x) * up x).
    pub fn ffn_gated(
        &self,
        x: Tensor<'g>,
        gate: TensorHandle,
        up: TensorHandle,
        down: TensorHandle,
        act: FfnAct,
    ) -> Tensor<'g> {
        let c = self.ctx;
        let u = self.mm(up, x);
        let g = self.mm(gate, x);
        let h = match act {
            FfnAct::Silu => c.swiglu_split(g, u),
            FfnAct::Gelu => c.geglu_split(g, u),
        };
        self.mm(down, h)
    }

    /// Keep only the rows whose outputs are wanted (applied before the last layer's residual).
    pub fn select_outputs(&self, x: Tensor<'g>) -> Tensor<'g> {
        match self.inp.out_ids {
            Some(ids) => self.ctx.get_rows(x, ids),
            None => x,
        }
    }

    /// Final norm and output projection (and soft-capping, if the model has it): the logits
    /// `[n_vocab, n_outputs]`.
    pub fn logits(&mut self, x: Tensor<'g>) -> Tensor<'g> {
        let t = self.rms_norm(x, self.model.output_norm, None);
        let t = self.name(t, "result_norm", None);
        let mut t = self.linear(self.model.output, self.model.output_b, t);
        if let Some(cap) = self.model.hp.final_logit_softcap {
            let c = self.ctx;
            t = c.scale(c.tanh(c.scale(t, 1.0 / cap)), cap);
        }
        let t = self.name(t, "result_output", None).set_output();
        self.graph.expand(t);
        t
    }
}

/// The first `n_kv` cells of a (non-transposed) cache tensor as `[head_dim, n_head_kv, n_kv, 1]`.
fn cache_heads<'g>(
    c: &'g Context,
    cache: Tensor<'g>,
    ty: Type,
    hd: i64,
    n_head_kv: i64,
    n_kv: i64,
    size: i64,
) -> Tensor<'g> {
    let width = hd * n_head_kv;
    c.view(
        cache,
        &[hd, n_head_kv, n_kv, 1],
        &[
            ty.row_size(hd),
            ty.row_size(width),
            ty.row_size(width * size),
        ],
        0,
    )
}
