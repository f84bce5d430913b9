//! The shared graph vocabulary every architecture is built from: embeddings, norm, RoPE,
//! attention over the KV cache, feed-forward blocks, over the graph inputs of
//! [`super::inputs`]. Op for op what llama.cpp's `llm_graph_context` does, so that our logits
//! match its logits. Every intermediate is named `{name}-{layer}` so graphs can be dumped and
//! compared.

use crate::ggml::kernels::attn::{self, SeqAttn};
use crate::ggml::kernels::attn_quant;
use crate::ggml::kernels::store::{self, SeqStore};
use crate::ggml::{Context, Graph, Tensor, TensorHandle, Type};
use crate::kv::{AttnKind, KvCache};

use super::hparams::Gating;
use super::inputs::{GraphShape, Inputs};
use super::{Experts, Ffn, GateUp, Layer, Model, Qkv};

/// Builds one forward graph for a micro-batch of one or more sequences.
pub struct Builder<'g> {
    pub ctx: &'g Context,
    pub model: &'g Model,
    /// The cache of each sequence of the batch, in row order.
    kvs: Vec<&'g KvCache>,
    /// Each sequence's rows: (first, count).
    spans: Vec<(i64, i64)>,
    pub graph: Graph<'g>,
    /// The graph's inputs (see [`super::inputs`]).
    pub inp: Inputs,
    pub n_tokens: i64,
    pub flash_attn: bool,
    /// Every product computes each column as a one-column product does (see
    /// [`WeightSet::matmul_invariant`](super::WeightSet::matmul_invariant)): set when the
    /// batch holds several sequences, so that none's result depends on the others.
    pub invariant: bool,
    /// A verification step (`GraphShape::columns`): flash attention runs row by row, each row
    /// over the cells decoding its token alone attends. ggml's CPU kernel splits the cells
    /// among threads for a single query row from 512 cells on, but not for several rows, so a
    /// multi-row op would not give decoding's bits and greedy speculation could pick another
    /// token than plain decoding in a near-tie.
    pub rows_alone: bool,
    /// Decode steps, verification rows and short prompt micro-batches may attend through
    /// Ember's attention op (`ggml::kernels::attn`): this build runs it and no switch turns
    /// it off.
    attn_op: bool,
    /// Attention over Q8_0 and Q4_0 caches may run through Ember's op for them
    /// (`ggml::kernels::attn_quant`): this build runs it and no switch turns it off.
    attn_quant_op: bool,
}

/// Activation used by a gated feed-forward block.
#[derive(Clone, Copy)]
pub enum FfnAct {
    /// silu(gate) * up (SwiGLU: llama, qwen2)
    Silu,
    /// gelu_tanh(gate) * up (GeGLU: gemma)
    Gelu,
    /// gpt-oss's clamped SwiGLU: gate clamped above and up on both sides at
    /// [`SWIGLU_OAI_LIMIT`], then `gate·sigmoid(α·gate)·(up + 1)` with α = [`SWIGLU_OAI_ALPHA`]
    SwigluOai,
}

/// gpt-oss's SwiGLU constants (llama.cpp's, fixed in its graph rather than read from the file).
pub const SWIGLU_OAI_ALPHA: f32 = 1.702;
pub const SWIGLU_OAI_LIMIT: f32 = 7.0;

impl<'g> Builder<'g> {
    /// A graph for a micro-batch of shape `shape`: `n_tokens` new tokens, those of sequence
    /// `i` attending to `n_kv` cells of cache `kvs[i]`, with logits for `n_outputs` rows. Flash
    /// attention is used exactly when the caches store V untransposed.
    pub fn new(
        ctx: &'g Context,
        model: &'g Model,
        kvs: &[&'g KvCache],
        shape: &GraphShape,
    ) -> Self {
        let mut inp = Inputs::new(ctx, kvs, shape, model.hp.n_embd_v_gqa());
        if model.hp.rope_sections.is_some() {
            inp.use_pos_sections(ctx);
        }
        let spans = (0..shape.seqs.len())
            .map(|i| {
                let r = shape.span(i);
                (r.start as i64, r.len() as i64)
            })
            .collect();
        Builder {
            ctx,
            model,
            kvs: kvs.to_vec(),
            spans,
            graph: ctx.new_graph(model.graph_size(kvs.len(), shape.columns)),
            inp,
            n_tokens: shape.n_tokens as i64,
            flash_attn: !kvs[0].v_trans,
            invariant: kvs.len() > 1 && shape.invariant,
            rows_alone: shape.columns,
            attn_op: crate::switches::Switches::get().attn_op
                && crate::switches::KernelSwitches::get().ember_ops
                && attn::available(),
            attn_quant_op: crate::switches::Switches::get().attn_op
                && crate::switches::KernelSwitches::get().ember_ops
                && attn_quant::available(),
        }
    }

    /// The cache of sequence `i` of the batch.
    pub fn seq_kv(&self, i: usize) -> &'g KvCache {
        self.kvs[i]
    }

    /// Each sequence's rows of the batch: (first, count).
    pub fn spans(&self) -> &[(i64, i64)] {
        &self.spans
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
        let t = self.ctx.get_rows(
            self.w(self.model.tok_embd),
            self.inp.tokens.tensor(self.ctx),
        );
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
        if self.invariant {
            self.model.weights.matmul_invariant(self.ctx, w, x)
        } else {
            self.model.weights.matmul(self.ctx, w, x)
        }
    }

    /// `W x (+ b)`.
    pub fn linear(&self, w: TensorHandle, b: Option<TensorHandle>, x: Tensor<'g>) -> Tensor<'g> {
        let t = self.mm(w, x);
        match b {
            Some(b) => self.ctx.add(t, self.w(b)),
            None => t,
        }
    }

    /// The attention block's input side, as llama.cpp's llama-like graphs build it: the
    /// pre-attention RMSNorm of `x`, the Q/K/V projections, per-head Q and K norms where the
    /// layer has them, RoPE (unless the layer goes without), each step named as llama.cpp names
    /// it (`attn_norm`, `Qcur_normed`, `Qcur`, ...).
    pub fn attn_input(
        &self,
        l: &Layer,
        x: Tensor<'g>,
        il: usize,
    ) -> (Tensor<'g>, Tensor<'g>, Tensor<'g>) {
        let norm = l.attn_norm.expect("this layer has a pre-attention norm");
        let cur = self.name(self.rms_norm(x, norm, Some(il)), "attn_norm", Some(il));
        let (mut q, mut k, v) = self.qkv(l, cur);
        if let (Some(qn), Some(kn)) = (l.q_norm, l.k_norm) {
            q = self.name(self.rms_norm(q, qn, Some(il)), "Qcur_normed", Some(il));
            k = self.name(self.rms_norm(k, kn, Some(il)), "Kcur_normed", Some(il));
        }
        if self.model.hp.uses_rope(il) {
            q = self.rope(q, il);
            k = self.rope(k, il);
        }
        (
            self.name(q, "Qcur", Some(il)),
            self.name(k, "Kcur", Some(il)),
            self.name(v, "Vcur", Some(il)),
        )
    }

    /// In the last layer, only the rows whose outputs are wanted go on: `cur` (the attention
    /// output) and the `residual` it is added to, selected alike. Other layers: unchanged.
    pub fn last_layer_rows(
        &self,
        il: usize,
        cur: Tensor<'g>,
        residual: Tensor<'g>,
    ) -> (Tensor<'g>, Tensor<'g>) {
        if il + 1 == self.model.layers.len() {
            (self.select_outputs(cur), self.select_outputs(residual))
        } else {
            (cur, residual)
        }
    }

    /// Q, K and V of layer `l` for the input `x`, as `[head_dim, n_head(_kv), n_tokens]`:
    /// three projections (plus biases), or views into one fused projection.
    pub fn qkv(&self, l: &Layer, x: Tensor<'g>) -> (Tensor<'g>, Tensor<'g>, Tensor<'g>) {
        let c = self.ctx;
        let hp = &self.model.hp;
        let (hd, hdv, nh, nkv, nt) = (
            hp.head_dim_k as i64,
            hp.head_dim_v as i64,
            hp.n_head as i64,
            hp.n_head_kv as i64,
            self.n_tokens,
        );
        match l.qkv {
            Qkv::Split {
                wq,
                wk,
                wv,
                bq,
                bk,
                bv,
            } => (
                c.reshape(self.linear(wq, bq, x), &[hd, nh, nt]),
                c.reshape(self.linear(wk, bk, x), &[hd, nkv, nt]),
                c.reshape(self.linear(wv, bv, x), &[hdv, nkv, nt]),
            ),
            Qkv::Fused { w, b } => {
                let qkv = self.linear(w, b, x);
                let ty = qkv.ty();
                let row = qkv.nb()[1];
                let view = |d: i64, n: i64, first: i64| {
                    c.view(qkv, &[d, n, nt], &[ty.row_size(d), row], ty.row_size(first))
                };
                (
                    view(hd, nh, 0),
                    view(hd, nkv, hd * nh),
                    view(hdv, nkv, hd * nh + hd * nkv),
                )
            }
        }
    }

    /// The feed-forward block `f`: gated with activation `act` (gate and up separate, or fused
    /// into one matrix whose first half is the gate; biases where it has them), or a mixture
    /// of experts gated with `act`.
    pub fn ffn(&mut self, f: &Ffn, x: Tensor<'g>, act: FfnAct) -> Tensor<'g> {
        let c = self.ctx;
        let f = match f {
            Ffn::Gated(f) => f,
            Ffn::Moe(e) => return self.moe(e, x, act),
        };
        let up = self.linear(f.up, f.up_b, x);
        let h = match f.gate {
            Some(gate) => {
                let g = self.linear(gate, f.gate_b, x);
                self.glu(act, g, up)
            }
            None => c.swiglu(up),
        };
        self.linear(f.down, f.down_b, h)
    }

    /// `act(gate) * up`, fused.
    fn glu(&self, act: FfnAct, gate: Tensor<'g>, up: Tensor<'g>) -> Tensor<'g> {
        let c = self.ctx;
        match act {
            FfnAct::Silu => c.swiglu_split(gate, up),
            FfnAct::Gelu => c.geglu_split(gate, up),
            FfnAct::SwigluOai => c.swiglu_oai(gate, up, SWIGLU_OAI_ALPHA, SWIGLU_OAI_LIMIT),
        }
    }

    /// A mixture of gated experts, routed as llama.cpp's `build_moe_ffn` does: the router's
    /// logits (plus its bias), the top `n_expert_used` experts and their weights by the
    /// model's [`Gating`] (softmax over all logits, the chosen probabilities normalised to
    /// sum 1 with the sum clamped below at f16's smallest normal; or a softmax over the chosen
    /// logits alone), each expert's output (biases added per expert) scaled by its weight and
    /// the outputs summed in rank order.
    fn moe(&mut self, e: &Experts, x: Tensor<'g>, act: FfnAct) -> Tensor<'g> {
        let nt = x.ne()[1];
        if !self.invariant || nt == 1 {
            return self.moe_tokens(e, x, act);
        }
        // Batch-invariant: each token through its experts as alone (`mul_mat_id` groups a
        // batch's tokens by expert, and how many an expert gets decides its kernel's order).
        let c = self.ctx;
        let mut out: Option<Tensor<'g>> = None;
        for j in 0..nt {
            let xj = c.view(x, &[x.ne()[0], 1], &[x.nb()[1]], j as usize * x.nb()[1]);
            let o = self.moe_tokens(e, c.cont(xj), act);
            out = Some(match out {
                Some(a) => c.concat(a, o, 1),
                None => o,
            });
        }
        out.expect("a batch has a token")
    }

    /// [`moe`](Self::moe) for the tokens `x` together.
    fn moe_tokens(&mut self, e: &Experts, x: Tensor<'g>, act: FfnAct) -> Tensor<'g> {
        let c = self.ctx;
        let moe = self.model.hp.moe.as_ref().expect("a model with experts");
        let (n_embd, nt) = (x.ne()[0], x.ne()[1]);
        let (n_expert, k) = (moe.n_expert as i64, moe.n_expert_used as i64);
        let logits = self.linear(e.gate_inp, e.gate_inp_b, x);
        let probs = match moe.gating {
            Gating::SoftmaxNorm => c.soft_max(logits),
            Gating::SoftmaxWeight => logits,
        };
        let selected = c.argsort_top_k(probs, k as i32);
        let probs = c.reshape(probs, &[1, n_expert, nt]);
        let weights = c.reshape(c.get_rows(probs, selected), &[k, nt]);
        let weights = match moe.gating {
            Gating::SoftmaxNorm => {
                // f16's smallest normal number, 2^-14
                let sum = c.clamp(c.sum_rows(weights), 1.0 / 16384.0, f32::INFINITY);
                c.div(weights, sum)
            }
            Gating::SoftmaxWeight => c.soft_max(weights),
        };
        let weights = if moe.weights_scale != 0.0 && moe.weights_scale != 1.0 {
            c.scale(weights, moe.weights_scale)
        } else {
            weights
        };
        let weights = c.reshape(weights, &[1, k, nt]);
        self.graph.expand(weights);
        let cur = c.reshape(x, &[n_embd, 1, nt]);
        // each expert's product, plus its bias when it has one
        let expert_mm = |w, b: Option<TensorHandle>, x| {
            let t = c.mul_mat_id(self.w(w), x, selected);
            match b {
                Some(b) => c.add_id(t, self.w(b), selected),
                None => t,
            }
        };
        let (gate, up) = match e.gate_up {
            GateUp::Split { gate, up } => {
                let up = expert_mm(up, e.up_b, cur);
                (expert_mm(gate, e.gate_b, cur), up)
            }
            GateUp::Fused(w) => {
                // one product, then each expert's gate rows and up rows
                let gu = c.mul_mat_id(self.w(w), cur, selected);
                let (ne, nb) = (gu.ne(), gu.nb());
                let n_ff = ne[0] / 2;
                let half = |off: usize| c.view(gu, &[n_ff, ne[1], ne[2]], &[nb[1], nb[2]], off);
                (half(0), half(n_ff as usize * nb[0]))
            }
        };
        let h = self.glu(act, gate, up);
        let experts = expert_mm(e.down, e.down_b, h);
        let experts = c.mul(experts, weights);
        self.graph.expand(experts);
        let nb = experts.nb();
        let views: Vec<_> = (0..k as usize)
            .map(|i| {
                let v = c.view(experts, &[n_embd, nt], &[nb[2]], i * nb[1]);
                self.graph.expand(v);
                v
            })
            .collect();
        let mut out = views[0];
        for &v in &views[1..] {
            out = c.add(out, v);
            self.graph.expand(out);
        }
        if k == 1 {
            out = c.cont(out);
        }
        out
    }

    /// RoPE with the model's parameters, at layer `il`'s base and scale (local layers of
    /// sliding-window models have their own), with the model's frequency factors: llama3's
    /// `rope_freqs`, or LongRoPE's long factors when the cache is longer than the original
    /// context and its short ones otherwise.
    pub fn rope(&self, x: Tensor<'g>, il: usize) -> Tensor<'g> {
        let m = self.model;
        let r = &m.hp.rope;
        let (freq_base, freq_scale) = m.hp.rope_base_scale(il);
        let (ext_factor, attn_factor) = m.hp.rope_ext_attn(il);
        let factors = match m.rope_freqs {
            Some(f) => Some(f),
            None if self.kvs[0].size() > r.n_ctx_orig => m.rope_long,
            None => m.rope_short,
        };
        self.ctx.rope_ext(
            x,
            self.inp.pos.tensor(self.ctx),
            factors.map(|h| self.w(h)),
            r.n_rot as i32,
            r.kind.ggml_mode(),
            r.n_ctx_orig as i32,
            freq_base,
            freq_scale,
            ext_factor,
            attn_factor,
            r.beta_fast,
            r.beta_slow,
        )
    }

    /// Store this batch's K and V in the cache, then attend over the cache (over the sliding
    /// window in a local layer: the cache says which layers are). `q`, `k`, `v` are
    /// `[head_dim, n_head(_kv), n_tokens]`; returns `[head_dim_v * n_head, n_tokens]`. Each
    /// sequence of the batch stores to and attends over its own cache, its rows exactly as
    /// they would be alone; the outputs are put back together in row order.
    pub fn attention(
        &mut self,
        il: usize,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        kq_scale: f32,
    ) -> Tensor<'g> {
        if let Some(out) = self.attention_decode(il, q, k, v, kq_scale) {
            self.graph.expand(out);
            return out;
        }
        if self.kvs.len() == 1 {
            let out = self.attend(il, 0, q, k, v, kq_scale);
            self.graph.expand(out);
            return out;
        }
        let c = self.ctx;
        let rows = |t, (first, n): (i64, i64)| token_rows(c, t, first as usize, n as usize);
        let mut out: Option<Tensor<'g>> = None;
        for i in 0..self.kvs.len() {
            let span = self.spans[i];
            let (qs, ks, vs) = (rows(q, span), rows(k, span), rows(v, span));
            let o = self.attend(il, i, qs, ks, vs, kq_scale);
            out = Some(match out {
                Some(a) => c.concat(a, o, 1),
                None => o,
            });
        }
        let out = self.name(out.expect("a batch has a sequence"), "kqv_all", Some(il));
        self.graph.expand(out);
        out
    }

    /// [`attention`](Self::attention) for a decode step (one token per sequence) through
    /// Ember's attention op, which gives each sequence ggml's flash-attention result alone,
    /// bit for bit, for all sequences in a few ops; None where it does not run (switched off,
    /// not flash attention, caches not f16 in host memory, attention sinks, a shape it does
    /// not take).
    fn attention_decode(
        &mut self,
        il: usize,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        kq_scale: f32,
    ) -> Option<Tensor<'g>> {
        if self.spans.iter().any(|&(_, n)| n != 1)
            || !self.kvs.iter().all(|kv| self.attn_op_runs(il, kv))
        {
            return None;
        }
        let c = self.ctx;
        let hp = &self.model.hp;
        let (hd_k, hd_v, n_head_kv) = (
            hp.head_dim_k as i64,
            hp.head_dim_v as i64,
            hp.n_head_kv as i64,
        );
        let mut seqs = Vec::with_capacity(self.kvs.len());
        for i in 0..self.kvs.len() {
            let kv = self.kvs[i];
            let kvc = kv.ctx();
            let (k_cache, v_cache) = (kvc.get(kv.k(il)), kvc.get(kv.v(il)));
            let size = kv.layer_cells(il) as i64;
            let inp = self.inp.seqs[i].attn(kv.kind(il));
            let n_kv = inp.mask.n_kv() as i64;
            seqs.push(SeqAttn {
                k: cache_heads(c, k_cache, kv.type_k, hd_k, n_head_kv, n_kv, size),
                v: cache_heads(c, v_cache, kv.type_v, hd_v, n_head_kv, n_kv, size),
                mask: inp.mask.tensor(c),
            });
        }
        if !attn_op_takes(c, q, &seqs) {
            return None;
        }
        // Same insertion order as `attend`: q, v, k, then each sequence's cache writes.
        self.graph.expand(q);
        self.graph.expand(v);
        self.graph.expand(k);
        if !self.store_decode(il, k, v) {
            for i in 0..self.kvs.len() {
                let first = self.spans[i].0 as usize;
                self.store_kv(
                    il,
                    i,
                    token_rows(c, k, first, 1),
                    token_rows(c, v, first, 1),
                );
            }
        }
        let softcap = hp.attn_softcap.unwrap_or(0.0);
        let out = attn_op_rows(c, q, &seqs, kq_scale, softcap);
        Some(self.name(out, "kqv_out", Some(il)))
    }

    /// A decode step's cache writes (token i of `k`, `v` `[head_dim, n_head_kv, n_seq]` is
    /// sequence i's) in as few ops as [`store::SEQS_PER_OP`] allows, instead of two `set_rows`
    /// per sequence; false (nothing built) where the op does not take them. Only for
    /// [`attention_decode`](Self::attention_decode), once Ember's attention op runs over every
    /// cache ([`attn_op_runs`](Self::attn_op_runs): f16, host memory, flash attention).
    fn store_decode(&mut self, il: usize, k: Tensor<'g>, v: Tensor<'g>) -> bool {
        let c = self.ctx;
        // (the caller has checked the attention op's conditions on every cache; V stored by
        // rows and token i being sequence i's are this op's own)
        if self
            .spans
            .iter()
            .enumerate()
            .any(|(i, &s)| s != (i as i64, 1))
            || self.kvs.iter().any(|kv| kv.v_trans)
        {
            return false;
        }
        let seqs: Vec<SeqStore<'g>> = (0..self.kvs.len())
            .map(|i| {
                let kv = self.kvs[i];
                let kvc = kv.ctx();
                let whole = |t: Tensor<'g>| c.view(t, &[t.ne()[0], t.ne()[1]], &[t.nb()[1]], 0);
                let inp = self.inp.seqs[i].attn(kv.kind(il));
                SeqStore {
                    k_cache: whole(kvc.get(kv.k(il))),
                    v_cache: whole(kvc.get(kv.v(il))),
                    idx: inp.rows.k(c),
                }
            })
            .collect();
        let chunks: Vec<_> = seqs.chunks(store::SEQS_PER_OP).collect();
        let part = |t: Tensor<'g>, j: usize, n: usize| token_rows(c, t, j * store::SEQS_PER_OP, n);
        let taken = chunks
            .iter()
            .enumerate()
            .all(|(j, s)| store::takes(part(k, j, s.len()), part(v, j, s.len()), s));
        if !taken {
            return false;
        }
        for (j, s) in chunks.iter().enumerate() {
            let op = c.store_rows(part(k, j, s.len()), part(v, j, s.len()), s);
            self.graph.expand(op);
        }
        true
    }

    /// Whether Ember's attention op may attend over `kv` in layer `il`: this build runs it,
    /// no switch turns it off, f16 caches (not rotated), and [`ember_attn`](Self::ember_attn).
    fn attn_op_runs(&self, il: usize, kv: &KvCache) -> bool {
        self.attn_op
            && kv.type_k == Type::F16
            && kv.type_v == Type::F16
            && kv.k_rot().is_none()
            && kv.v_rot().is_none()
            && self.ember_attn(il, kv)
    }

    /// Whether Ember's attention op for quantized caches may attend over `kv` in layer `il`:
    /// this build runs it, no switch turns it off, Q8_0 or Q4_0 K and V caches (rotated or
    /// not), and [`ember_attn`](Self::ember_attn).
    fn attn_quant_runs(&self, il: usize, kv: &KvCache) -> bool {
        self.attn_quant_op
            && attn_quant::cache_type(kv.type_k)
            && attn_quant::cache_type(kv.type_v)
            && !kv.v_trans
            && self.ember_attn(il, kv)
    }

    /// What both of Ember's attention ops ask of layer `il` over `kv`: flash attention, no
    /// attention sinks, K and V in host memory.
    fn ember_attn(&self, il: usize, kv: &KvCache) -> bool {
        let kvc = kv.ctx();
        self.flash_attn
            && self.model.layers[il].attn_sinks.is_none()
            && kvc.get(kv.k(il)).is_plain_host_data()
            && kvc.get(kv.v(il)).is_plain_host_data()
    }

    /// Store sequence `seq`'s new K and V rows (`[head_dim, n_head_kv, n]`, already rotated
    /// for a quantized cache) in its cache, at the cells its inputs name.
    fn store_kv(&mut self, il: usize, seq: usize, k: Tensor<'g>, v: Tensor<'g>) {
        let c = self.ctx;
        let hp = &self.model.hp;
        let kv = self.kvs[seq];
        let kvc = kv.ctx();
        let (k_cache, v_cache) = (kvc.get(kv.k(il)), kvc.get(kv.v(il)));
        let (ek, ev) = (
            hp.head_dim_k as i64 * hp.n_head_kv as i64,
            hp.head_dim_v as i64 * hp.n_head_kv as i64,
        );
        let size = kv.layer_cells(il) as i64;
        let inp = self.inp.seqs[seq].attn(kv.kind(il));
        let (k_idxs, v_idxs) = (inp.rows.k(c), inp.rows.v(c));
        let nt = self.spans[seq].1;
        let k_rows = c.view(k, &[ek, nt], &[k.nb()[2]], 0);
        let k_store = c.set_rows(k_cache, k_rows, k_idxs);
        self.graph.expand(k_store);
        let v_store = if kv.v_trans {
            // (a view into a fused QKV projection is made contiguous first, as llama.cpp does)
            let v = if v.is_contiguous() { v } else { c.cont(v) };
            let v_flat = c.reshape(v, &[1, ev * nt]);
            let v_view = c.reshape(v_cache, &[1, ev * size]);
            c.set_rows(v_view, v_flat, v_idxs)
        } else {
            let v_rows = c.view(v, &[ev, nt], &[v.nb()[2]], 0);
            c.set_rows(v_cache, v_rows, v_idxs)
        };
        self.graph.expand(v_store);
    }

    /// [`attention`](Self::attention) for sequence `seq` of the batch: `q`, `k`, `v` are its
    /// rows.
    fn attend(
        &mut self,
        il: usize,
        seq: usize,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        kq_scale: f32,
    ) -> Tensor<'g> {
        let c = self.ctx;
        let hp = &self.model.hp;
        let kv = self.kvs[seq];
        let kvc = kv.ctx();
        let k_cache = kvc.get(kv.k(il));
        let v_cache = kvc.get(kv.v(il));
        let (hd_k, hd_v, n_head_kv) = (
            hp.head_dim_k as i64,
            hp.head_dim_v as i64,
            hp.n_head_kv as i64,
        );
        let ev = hd_v * n_head_kv;
        // A local layer's cells are its ring (the whole cache when it has none).
        let size = kv.layer_cells(il) as i64;
        let inp = self.inp.seqs[seq].attn(kv.kind(il));
        let n_kv = inp.mask.n_kv() as i64;
        let mask = inp.mask.tensor(c);
        let nt = self.spans[seq].1;
        // gpt-oss's attention sinks: a learned logit per head joins every softmax
        let sinks = self.model.layers[il].attn_sinks.map(|h| self.w(h));
        let fa_sinks = |fa: Tensor<'g>| {
            if let Some(s) = sinks {
                c.flash_attn_add_sinks(fa, s);
            }
        };
        let soft_max = |kq: Tensor<'g>, mask: Tensor<'g>| {
            let t = c.soft_max_ext(kq, Some(mask), kq_scale);
            if let Some(s) = sinks {
                c.soft_max_add_sinks(t, s);
            }
            t
        };

        // Quantized caches store rotated heads (see `KvCache::k_rot`); rotating Q the same way
        // keeps Q·K unchanged, and V's rotation is undone on the output.
        let k_rot = kv.k_rot().map(|h| kvc.get(h));
        let v_rot = kv.v_rot().map(|h| kvc.get(h));
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
        self.store_kv(il, seq, k, v);

        let ty_k = kv.type_k;
        let ty_v = kv.type_v;
        let kk = cache_heads(c, k_cache, ty_k, hd_k, n_head_kv, n_kv, size);
        let q_heads = q;
        let q = c.permute(q, [0, 2, 1, 3]);
        let kk = c.permute(kk, [0, 2, 1, 3]);
        // verification rows attend alone on full-attention layers (local ones keep a ring)
        let full = kv.kind(il) == AttnKind::Full && kv.layer_cells(il) == kv.size();
        // row i is the token in cell `used - nt + i`: decoding it alone attends the cells up to
        // it, padded as `Cells::n_kv` pads them; its Q row and mask row
        let used = kv.cells.used() as i64;
        let pad = crate::kv::KV_PAD as i64;
        // transposed V (no flash attention): [n, n_head_kv, head_dim_v] with cells along rows
        let v_cells = |n: i64| {
            let vv = c.view(
                v_cache,
                &[n, n_head_kv, hd_v, 1],
                &[
                    ty_v.row_size(size * hd_v),
                    ty_v.row_size(size),
                    ty_v.row_size(size * ev),
                ],
                0,
            );
            c.permute(vv, [0, 2, 1, 3])
        };
        let row_inputs = |i: i64| {
            let n_i = ((used - nt + i + 1 + pad - 1) / pad * pad).min(n_kv);
            let qrow = (i as usize) * q.nb()[1];
            let qi = c.view(q, &[q.ne()[0], 1, q.ne()[2], 1], &q.nb()[1..], qrow);
            let mrow = (i as usize) * mask.nb()[1];
            let mi = c.view(mask, &[n_i, 1], &[mask.nb()[1]], mrow);
            (n_i, qi, mi)
        };
        // the cache's first n cells, masked by `mask`, as Ember's attention ops take them
        let seq_attn = |n: i64, mask: Tensor<'g>| SeqAttn {
            k: cache_heads(c, k_cache, ty_k, hd_k, n_head_kv, n, size),
            v: cache_heads(c, v_cache, ty_v, hd_v, n_head_kv, n, size),
            mask,
        };
        // Q8_0 and Q4_0 caches: ggml attends each row alone, cell by cell, whatever the
        // micro-batch (so verification rows need nothing of their own either); Ember's op does
        // it faster
        if self.flash_attn && self.attn_quant_runs(il, kv) {
            let seq = seq_attn(n_kv, mask);
            if attn_quant::takes(q_heads, &seq) {
                let softcap = hp.attn_softcap.unwrap_or(0.0);
                let out = c.attn_quant(q_heads, &seq, kq_scale, softcap);
                let out = self.name(out, "kqv_out", Some(il));
                return match v_rot {
                    Some(r) => c.mul_mat_hadamard(out, r),
                    None => out,
                };
            }
        }
        // verification rows through Ember's attention op where it runs: each row one query
        // token over its own cells, as the op attends a decoding sequence's
        if self.flash_attn && self.rows_alone && nt > 1 && full && self.attn_op_runs(il, kv) {
            let rows: Vec<SeqAttn<'g>> = (0..nt)
                .map(|i| {
                    let (n_i, _, mi) = row_inputs(i);
                    seq_attn(n_i, mi)
                })
                .collect();
            if attn_op_takes(c, q_heads, &rows) {
                let softcap = hp.attn_softcap.unwrap_or(0.0);
                let out = attn_op_rows(c, q_heads, &rows, kq_scale, softcap);
                return self.name(out, "kqv_out", Some(il));
            }
        }
        // a short prompt micro-batch (ggml attends its rows one by one, each over every cell)
        // through Ember's attention op too
        if self.flash_attn && nt > 1 && !(self.rows_alone && full) && self.attn_op_runs(il, kv) {
            let seq = seq_attn(n_kv, mask);
            if attn::takes_rows(q_heads, &seq) {
                let softcap = hp.attn_softcap.unwrap_or(0.0);
                let out = c.attn_rows(q_heads, &seq, kq_scale, softcap);
                return self.name(out, "kqv_out", Some(il));
            }
        }
        let out = if self.flash_attn {
            let vv = cache_heads(c, v_cache, ty_v, hd_v, n_head_kv, n_kv, size);
            let vv = c.permute(vv, [0, 2, 1, 3]);
            let softcap = hp.attn_softcap.unwrap_or(0.0);
            let fa = if self.rows_alone && nt > 1 && full {
                let mut out: Option<Tensor<'g>> = None;
                for i in 0..nt {
                    let (n_i, qi, mi) = row_inputs(i);
                    let heads = |cache, ty, hd| {
                        c.permute(
                            cache_heads(c, cache, ty, hd, n_head_kv, n_i, size),
                            [0, 2, 1, 3],
                        )
                    };
                    let (ki, vi) = (heads(k_cache, ty_k, hd_k), heads(v_cache, ty_v, hd_v));
                    let fi = c.flash_attn_ext(qi, ki, vi, Some(mi), kq_scale, softcap);
                    fa_sinks(fi);
                    c.set_prec_f32(fi);
                    out = Some(match out {
                        None => fi,
                        Some(o) => c.concat(o, fi, 2),
                    });
                }
                out.expect("nt > 1 rows")
            } else {
                let fa = c.flash_attn_ext(q, kk, vv, Some(mask), kq_scale, softcap);
                fa_sinks(fa);
                // f32 accumulation, as llama.cpp asks (the CPU kernel always does; GPUs may not).
                c.set_prec_f32(fa);
                fa
            };
            let fa = self.name(fa, "fattn", Some(il));
            let ne = fa.ne();
            c.reshape(fa, &[ne[0] * ne[1], ne[2] * ne[3]])
        } else if self.rows_alone && nt > 1 && full {
            // as above, row by row: a lone row's K·Q and V·KQ products are one-column ones
            let mut out: Option<Tensor<'g>> = None;
            for i in 0..nt {
                let (n_i, qi, mi) = row_inputs(i);
                let ki = c.permute(
                    cache_heads(c, k_cache, ty_k, hd_k, n_head_kv, n_i, size),
                    [0, 2, 1, 3],
                );
                let kq = c.mul_mat(ki, qi);
                c.set_prec_f32(kq);
                let kq = match hp.attn_softcap {
                    Some(cap) => c.scale(c.tanh(c.scale(kq, 1.0 / cap)), cap),
                    None => kq,
                };
                let kq = soft_max(kq, mi);
                let kqv = c.mul_mat(v_cells(n_i), kq);
                let merged = c.cont(c.permute(kqv, [0, 2, 1, 3]));
                out = Some(match out {
                    None => merged,
                    Some(o) => c.concat(o, merged, 2),
                });
            }
            let merged = out.expect("nt > 1 rows");
            let ne = merged.ne();
            c.reshape(merged, &[ne[0] * ne[1], ne[2] * ne[3]])
        } else {
            let kq = c.mul_mat(kk, q);
            c.set_prec_f32(kq);
            let mut kq = self.name(kq, "kq", Some(il));
            if let Some(cap) = hp.attn_softcap {
                kq = c.scale(c.tanh(c.scale(kq, 1.0 / cap)), cap);
            }
            let kq = soft_max(kq, mask);
            let kqv = c.mul_mat(v_cells(n_kv), kq);
            let merged = c.permute(kqv, [0, 2, 1, 3]);
            let merged = c.cont(merged);
            let ne = merged.ne();
            c.reshape(merged, &[ne[0] * ne[1], ne[2] * ne[3]])
        };
        let out = self.name(out, "kqv_out", Some(il));
        match v_rot {
            Some(r) => c.mul_mat_hadamard(out, r),
            None => out,
        }
    }

    /// Keep only the rows whose outputs are wanted (applied before the last layer's residual).
    pub fn select_outputs(&self, x: Tensor<'g>) -> Tensor<'g> {
        match self.inp.out_ids.tensor(self.ctx) {
            Some(ids) => self.ctx.get_rows(x, ids),
            None => x,
        }
    }

    /// Final norm and output projection (then the logit scale and soft-capping, if the model
    /// has them): the logits
    /// `[n_vocab, n_outputs]`.
    pub fn logits(&mut self, x: Tensor<'g>) -> Tensor<'g> {
        let t = self.rms_norm(x, self.model.output_norm, None);
        let t = self.name(t, "result_norm", None);
        let mut t = self.linear(self.model.output, self.model.output_b, t);
        let c = self.ctx;
        if let Some(s) = self.model.hp.logit_scale {
            t = c.scale(t, 1.0 / s);
        }
        if let Some(cap) = self.model.hp.final_logit_softcap {
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

/// Tokens `first..first + n` of `t` `[head_dim, n_head, n_tokens]` (queries, keys, values).
fn token_rows<'g>(c: &'g Context, t: Tensor<'g>, first: usize, n: usize) -> Tensor<'g> {
    let (ne, nb) = (t.ne(), t.nb());
    c.view(t, &[ne[0], ne[1], n as i64], &[nb[1], nb[2]], first * nb[2])
}

/// Whether Ember's attention op takes query row `i` of `q` over `rows[i]`, for every row.
fn attn_op_takes<'g>(c: &'g Context, q: Tensor<'g>, rows: &[SeqAttn<'g>]) -> bool {
    rows.chunks(attn::SEQS_PER_OP)
        .enumerate()
        .all(|(j, r)| attn::takes(token_rows(c, q, j * attn::SEQS_PER_OP, r.len()), r))
}

/// Query row `i` of `q` attending over `rows[i]` (one token each) by Ember's attention op, in
/// as many ops as it takes: `[head_dim_v * n_head, rows]`.
fn attn_op_rows<'g>(
    c: &'g Context,
    q: Tensor<'g>,
    rows: &[SeqAttn<'g>],
    kq_scale: f32,
    softcap: f32,
) -> Tensor<'g> {
    let mut out: Option<Tensor<'g>> = None;
    for (j, r) in rows.chunks(attn::SEQS_PER_OP).enumerate() {
        let qj = token_rows(c, q, j * attn::SEQS_PER_OP, r.len());
        let o = c.attn_decode(qj, r, kq_scale, softcap);
        out = Some(match out {
            Some(a) => c.concat(a, o, 1),
            None => o,
        });
    }
    out.expect("at least one row")
}
