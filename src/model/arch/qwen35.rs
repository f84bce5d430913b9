//! `qwen35` (Qwen3.5 / 3.6 dense): a hybrid. Three of every four layers (or as
//! `attention.recurrent_layers` says) are Gated DeltaNet layers: a fused Q/K/V projection
//! through a short causal convolution (its window kept per sequence), L2-normed Q and K, and
//! the gated delta rule over a recurrent state per value head (kept per sequence), its output
//! RMS-normed and gated by `silu(z)`. The other layers are gated full attention: Q's
//! projection carries a per-head gate (`sigmoid`, applied to the attention's output), Q and K
//! are RMS-normed per head, RoPE is multi-section (IMROPE). Every layer norms after attention
//! too; the feed-forward block is SwiGLU (`qwen35moe`: experts and a shared expert). The
//! multi-token-prediction layers some files carry (`nextn_predict_layers`) are not run.
//! Op for op llama.cpp's `src/models/qwen35.cpp` with its fused gated delta-net op, as its
//! CPU backend runs it.

use crate::ggml::Tensor;
use crate::gguf::{GgufFile, MetaError};
use crate::model::hparams::{self, Hparams, HparamsError, Key, Reader, RopeType, Ssm};
use crate::model::layers::{Builder, FfnAct};
use crate::model::names::W;
use crate::model::weights::{Binder, WeightError};
use crate::model::{DeltaNet, Ffn, Layer, Qkv};

use super::bind;

pub fn hparams(f: &GgufFile) -> Result<Hparams, HparamsError> {
    read_hybrid(f, "qwen35", |_, _| {})
}

/// The hyper-parameters of a Qwen3.5 hybrid (`arch`: `qwen35` or `qwen35moe`), then `more`
/// reads the architecture's own.
pub fn read_hybrid(
    f: &GgufFile,
    arch: &str,
    more: impl FnOnce(&mut Reader<'_>, &mut Hparams),
) -> Result<Hparams, HparamsError> {
    hparams::read_with(f, arch, RopeType::Imrope, |r, hp| {
        let n_all = hp.n_layer;
        let mtp = r.opt_u32(Key::NextnPredictLayers).unwrap_or(0);
        if n_all > 0 && mtp >= n_all {
            r.push(bad(
                Key::NextnPredictLayers.name(arch),
                "fewer than block_count",
                mtp.to_string(),
            ));
        } else {
            hp.n_layer = n_all - mtp;
            hp.n_layer_mtp = mtp;
        }
        hp.rope_sections = sections(r, arch, hp.rope.n_rot);
        if let Some(s) = r.opt_f32(Key::AttentionScale).filter(|&s| s != 0.0) {
            hp.attn_scale = s;
        }
        hp.ssm = ssm(r, arch, n_all, hp.n_layer);
        more(r, hp);
    })
}

fn bad(key: String, expected: &'static str, found: String) -> MetaError {
    MetaError::WrongType {
        key,
        expected,
        found,
    }
}

/// `rope.dimension_sections`: up to four non-negative section sizes (missing ones 0) whose
/// pairs fit in the rotated dimensions.
fn sections(r: &mut Reader<'_>, arch: &str, n_rot: u32) -> Option<[i32; 4]> {
    let key = Key::RopeDimensionSections;
    let Some(v) = r.opt_ints(key) else {
        r.push(MetaError::Missing {
            key: key.name(arch),
        });
        return None;
    };
    // (ggml takes each rotated pair's section modulo their sum: it must not be 0)
    let ok = !v.is_empty()
        && v.len() <= 4
        && v.iter().all(|&x| (0..=i64::from(n_rot)).contains(&x))
        && (1..=i64::from(n_rot)).contains(&v.iter().sum::<i64>());
    if !ok {
        r.push(bad(
            key.name(arch),
            "1 to 4 section sizes within rope.dimension_count",
            format!("{v:?}"),
        ));
        return None;
    }
    let mut s = [0i32; 4];
    for (d, &x) in s.iter_mut().zip(&v) {
        *d = x as i32;
    }
    Some(s)
}

/// The Gated DeltaNet geometry and which of the trunk's `n_layer` layers are recurrent.
fn ssm(r: &mut Reader<'_>, arch: &str, n_all: u32, n_layer: u32) -> Option<Ssm> {
    let d_conv = r.u32(Key::SsmConvKernel);
    let d_inner = r.u32(Key::SsmInnerSize);
    let d_state = r.u32(Key::SsmStateSize);
    let dt_rank = r.u32(Key::SsmTimeStepRank);
    let n_group = r.u32(Key::SsmGroupCount);
    let geometry_ok = (1..=64).contains(&d_conv)
        && dt_rank > 0
        && n_group > 0
        && dt_rank.is_multiple_of(n_group)
        && d_inner.is_multiple_of(dt_rank)
        && d_inner / dt_rank == d_state
        && (1..=1024).contains(&d_state)
        && u64::from(d_state) * u64::from(d_inner) <= 1 << 26;
    if !geometry_ok {
        // (missing keys are reported already, as 0)
        if [d_conv, d_inner, d_state, dt_rank, n_group]
            .iter()
            .all(|&x| x > 0)
        {
            r.push(bad(
                Key::SsmInnerSize.name(arch),
                "ssm.inner_size = ssm.time_step_rank × ssm.state_size (state ≤ 1024, 2^26 floats a layer), \
                 time_step_rank a multiple of ssm.group_count, conv_kernel 1..64",
                format!(
                    "inner {d_inner}, state {d_state}, time_step_rank {dt_rank}, group_count \
                     {n_group}, conv_kernel {d_conv}"
                ),
            ));
        }
        return None;
    }
    let recurrent = match r.opt_bools(Key::RecurrentLayers) {
        Some(v) if v.len() == n_all as usize => v[..n_layer as usize].to_vec(),
        Some(v) => {
            r.push(bad(
                Key::RecurrentLayers.name(arch),
                "one bool per layer",
                format!("{} values for {n_all} layers", v.len()),
            ));
            return None;
        }
        None => {
            let interval = r.opt_u32(Key::FullAttentionInterval).unwrap_or(4);
            if interval == 0 {
                r.push(bad(
                    Key::FullAttentionInterval.name(arch),
                    "a positive interval",
                    "0".into(),
                ));
                return None;
            }
            (0..n_layer).map(|i| (i + 1) % interval != 0).collect()
        }
    };
    Some(Ssm {
        d_conv,
        d_inner,
        d_state,
        dt_rank,
        n_group,
        recurrent,
    })
}

/// Bind one layer's tensors: a Gated DeltaNet layer's or a gated attention layer's, the norms
/// and the feed-forward block.
pub fn layer(b: &mut Binder<'_>, hp: &Hparams, il: u32) -> Result<Layer, WeightError> {
    let (e, l) = (hp.n_embd as u64, Some(il));
    let ssm = hp
        .ssm
        .as_ref()
        .expect("qwen35 hyper-parameters have the ssm geometry");
    let (qkv, wo, q_norm, k_norm, gdn) = if ssm.is_recurrent(il as usize) {
        let key_dim = u64::from(ssm.d_state) * u64::from(ssm.n_group);
        let value_dim = u64::from(ssm.d_inner);
        let conv_dim = 2 * key_dim + value_dim;
        let heads = u64::from(ssm.dt_rank);
        let qkv = Qkv::Fused {
            w: b.matrix(W::AttnQkv, l, &[e, conv_dim])?,
            b: None,
        };
        let gdn = DeltaNet {
            gate: b.matrix(W::AttnGate, l, &[e, value_dim])?,
            conv1d: b.plain(W::SsmConv1d, l, &[u64::from(ssm.d_conv), conv_dim])?,
            dt_bias: b.bias(W::SsmDt, l, &[heads])?,
            a: b.bare(W::SsmA, l, &[heads])?,
            beta: b.matrix(W::SsmBeta, l, &[e, heads])?,
            alpha: b.matrix(W::SsmAlpha, l, &[e, heads])?,
            norm: b.plain(W::SsmNorm, l, &[u64::from(ssm.d_state)])?,
        };
        let wo = b.matrix(W::SsmOut, l, &[value_dim, e])?;
        (qkv, wo, None, None, Some(Box::new(gdn)))
    } else {
        let (hd, nh) = (hp.head_dim_k as u64, hp.n_head as u64);
        let qkv = bind::qkv(b, hp, il, 2 * hd * nh)?;
        let wo = b.matrix(W::AttnOut, l, &[hd * nh, e])?;
        let qn = b.plain(W::AttnQNorm, l, &[hd])?;
        let kn = b.plain(W::AttnKNorm, l, &[hd])?;
        (qkv, wo, Some(qn), Some(kn), None)
    };
    Ok(Layer {
        attn_norm: Some(b.plain(W::AttnNorm, l, &[e])?),
        qkv,
        wo,
        bo: None,
        attn_sinks: None,
        q_norm,
        k_norm,
        attn_post_norm: Some(b.plain(W::AttnPostNorm, l, &[e])?),
        ffn_norm: None,
        ffn: bind::ffn(b, hp, il)?,
        ffn_post_norm: None,
        gdn,
        shexp: None,
    })
}

/// The forward graph; returns the logits of the selected rows.
pub fn build<'g>(b: &mut Builder<'g>) -> Tensor<'g> {
    let m = b.model;
    let mut x = b.embeddings();
    for (il, l) in m.layers.iter().enumerate() {
        let c = b.ctx;
        let norm = l.attn_norm.expect("qwen35 layers have an attention norm");
        let cur = b.name(b.rms_norm(x, norm, Some(il)), "attn_norm", Some(il));
        b.graph.expand(cur);
        let cur = match &l.gdn {
            Some(g) => delta_net(b, l, g, cur, il),
            None => gated_attention(b, l, cur, il),
        };
        let cur = b.name(c.add(cur, x), "attn_residual", Some(il));
        let post = l
            .attn_post_norm
            .expect("qwen35 layers have a post-attention norm");
        let normed = b.name(b.rms_norm(cur, post, Some(il)), "attn_post_norm", Some(il));
        let ffn = feed_forward(b, l, normed, il);
        x = b.name(c.add(ffn, cur), "l_out", Some(il));
    }
    // llama.cpp norms every row, then keeps the wanted ones (row by row the same values)
    let x = b.select_outputs(x);
    b.logits(x)
}

/// The feed-forward block: SwiGLU, or experts plus the shared expert gated by a sigmoid.
fn feed_forward<'g>(b: &mut Builder<'g>, l: &Layer, x: Tensor<'g>, il: usize) -> Tensor<'g> {
    let c = b.ctx;
    let out = b.ffn(&l.ffn, x, FfnAct::Silu);
    let Some(sh) = &l.shexp else {
        return b.name(out, "ffn_out", Some(il));
    };
    let moe = b.name(out, "ffn_moe_out", Some(il));
    let shared = b.ffn(&Ffn::Gated(sh.ffn.clone()), x, FfnAct::Silu);
    let gate = c.sigmoid(c.mul_mat(b.w(sh.gate_inp), x));
    let shared = b.name(c.mul(shared, gate), "ffn_shexp_gated", Some(il));
    b.name(c.add(moe, shared), "ffn_out", Some(il))
}

/// A gated attention layer: Q's projection holds each head's query then its gate.
fn gated_attention<'g>(b: &mut Builder<'g>, l: &Layer, x: Tensor<'g>, il: usize) -> Tensor<'g> {
    let c = b.ctx;
    let hp = &b.model.hp;
    let (hd, nh, nkv, nt) = (
        hp.head_dim_k as i64,
        hp.n_head as i64,
        hp.n_head_kv as i64,
        b.n_tokens,
    );
    let Qkv::Split {
        wq,
        wk,
        wv,
        bq,
        bk,
        bv,
    } = l.qkv
    else {
        unreachable!("qwen35's attention layers have separate Q, K and V")
    };
    let q_full = b.linear(wq, bq, x);
    let k = b.linear(wk, bk, x);
    let v = b.linear(wv, bv, x);
    let es = q_full.ty().row_size(1);
    let (nb1, nb2) = (es * 2 * hd as usize, es * 2 * (hd * nh) as usize);
    let q = c.view(q_full, &[hd, nh, nt], &[nb1, nb2], 0);
    let q = b.name(
        b.rms_norm(q, l.q_norm.expect("q norm"), Some(il)),
        "Qcur_normed",
        Some(il),
    );
    let k = c.reshape(k, &[hd, nkv, nt]);
    let k = b.name(
        b.rms_norm(k, l.k_norm.expect("k norm"), Some(il)),
        "Kcur_normed",
        Some(il),
    );
    let gate = c.view(q_full, &[hd, nh, nt], &[nb1, nb2], es * hd as usize);
    let gate = c.reshape(c.cont(gate), &[hd * nh, nt]);
    let v = c.reshape(v, &[hd, nkv, nt]);
    let q = b.name(rope(b, q), "Qcur", Some(il));
    let k = b.name(rope(b, k), "Kcur", Some(il));
    let v = b.name(v, "Vcur", Some(il));
    let att = b.attention(il, q, k, v, hp.attn_scale);
    let att = b.name(c.mul(att, c.sigmoid(gate)), "attn_gated", Some(il));
    b.linear(l.wo, None, att)
}

/// Multi-section RoPE with the model's parameters.
fn rope<'g>(b: &Builder<'g>, x: Tensor<'g>) -> Tensor<'g> {
    let hp = &b.model.hp;
    let r = &hp.rope;
    b.ctx.rope_multi(
        x,
        b.inp.pos.tensor(b.ctx),
        r.n_rot as i32,
        hp.rope_sections.expect("qwen35 has rope sections"),
        r.kind.ggml_mode(),
        r.n_ctx_orig as i32,
        r.freq_base,
        r.freq_scale,
        r.ext_factor,
        r.attn_factor,
        r.beta_fast,
        r.beta_slow,
    )
}

/// A Gated DeltaNet layer over `x` (the normed input), each sequence of the batch through its
/// own convolution window and state.
fn delta_net<'g>(
    b: &mut Builder<'g>,
    l: &Layer,
    g: &DeltaNet,
    x: Tensor<'g>,
    il: usize,
) -> Tensor<'g> {
    let c = b.ctx;
    let m = b.model;
    let ssm = m.hp.ssm.as_ref().expect("ssm geometry");
    let nv = ssm.dt_rank as i64;
    let nt = b.n_tokens;
    let Qkv::Fused { w, b: bias } = l.qkv else {
        unreachable!("a delta-net layer binds its fused input projection")
    };
    let qkv_mixed = b.name(b.linear(w, bias, x), "linear_attn_qkv_mixed", Some(il));
    let z = b.name(b.mm(g.gate, x), "z", Some(il));
    // beta and the decay gate [n_v_heads, n_tokens] (elementwise: as llama.cpp's 4-d views)
    let beta = c.sigmoid(b.mm(g.beta, x));
    let alpha = c.softplus(c.add(b.mm(g.alpha, x), b.w(g.dt_bias)));
    let gate = c.mul(alpha, b.w(g.a));
    let spans = b.spans().to_vec();
    let out = if spans.len() == 1 {
        recurrence(b, g, ssm, 0, [qkv_mixed, gate, beta], il)
    } else {
        let mut out: Option<Tensor<'g>> = None;
        for (i, &(first, n)) in spans.iter().enumerate() {
            // the sequence's tokens (columns)
            let cols = |t: Tensor<'g>| {
                let nb1 = t.nb()[1];
                c.cont(c.view(t, &[t.ne()[0], n], &[nb1], first as usize * nb1))
            };
            let o = recurrence(b, g, ssm, i, [cols(qkv_mixed), cols(gate), cols(beta)], il);
            out = Some(match out {
                Some(a) => c.concat(a, o, 2),
                None => o,
            });
        }
        out.expect("a batch has a sequence")
    };
    // out: [head_v, nv, nt]
    let hv = ssm.d_state as i64;
    let z = c.reshape(z, &[hv, nv, nt, 1]);
    let normed = b.rms_norm(out, g.norm, Some(il));
    let gated = c.mul(normed, c.silu(z));
    let flat = b.name(c.reshape(gated, &[hv * nv, nt]), "final_output", Some(il));
    b.linear(l.wo, None, flat)
}

/// One sequence's convolution and delta rule: `[qkv_mixed, gate, beta]` its columns (one per
/// token); returns
/// the outputs `[head_v, n_v_heads, n_tokens, 1]`, and writes the new states (and snapshots)
/// into its cache.
fn recurrence<'g>(
    b: &mut Builder<'g>,
    g: &DeltaNet,
    ssm: &Ssm,
    seq: usize,
    [qkv_mixed, gate, beta]: [Tensor<'g>; 3],
    il: usize,
) -> Tensor<'g> {
    let c = b.ctx;
    let eps = b.model.hp.rms_eps;
    let kv = b.seq_kv(seq);
    let rs = kv
        .recurrent()
        .expect("a hybrid model's cache has recurrent states");
    let kvc = kv.ctx();
    let conv_all = kvc.get(rs.conv(il));
    let state_all = kvc.get(rs.state(il));
    let slots = rs.slots() as i64;
    let (hk, nk, hv, nv) = (
        ssm.d_state as i64,
        ssm.n_group as i64,
        ssm.d_state as i64,
        ssm.dt_rank as i64,
    );
    let channels = ssm.conv_channels() as i64;
    let keep = ssm.d_conv as i64 - 1;
    let nt = qkv_mixed.ne()[1];
    let f = 4usize; // f32
    let (gate, beta) = (
        c.reshape(gate, &[1, nv, nt, 1]),
        c.reshape(beta, &[1, nv, nt, 1]),
    );

    // the convolution: the kept window, then this batch's inputs, channel by channel
    let window = c.view(
        conv_all,
        &[keep, channels, 1],
        &[keep as usize * f, (keep * channels) as usize * f],
        0,
    );
    let conv_input = c.concat(
        window,
        c.transpose(c.reshape(qkv_mixed, &[channels, nt, 1])),
        0,
    );
    let conv_input = b.name(conv_input, "conv_input", Some(il));
    // the windows after the last min(nt, slots) tokens, latest first, into the state's slots
    let row = (keep * channels) as usize * f;
    for s in 0..nt.min(slots) {
        let at = (conv_input.ne()[0] - keep - s) as usize * f;
        let src = c.view(
            conv_input,
            &[keep, channels, 1],
            &[conv_input.nb()[1], conv_input.nb()[2]],
            at,
        );
        let dst = c.view(conv_all, &[keep * channels], &[], s as usize * row);
        b.graph.expand(c.cpy(src, dst));
    }
    let conv = c.silu(c.ssm_conv(conv_input, b.w(g.conv1d)));
    let conv = b.name(conv, "conv_output_silu", Some(il));
    let nb1 = channels as usize * f;
    let view = |d: i64, n: i64, off: usize| {
        c.view(
            conv,
            &[d, n, nt, 1],
            &[d as usize * f, nb1, nb1 * nt as usize],
            off,
        )
    };
    let q = view(hk, nk, 0);
    let k = view(hk, nk, (hk * nk) as usize * f);
    let v = view(hv, nv, (2 * hk * nk) as usize * f);
    let l2 = |t: Tensor<'g>| {
        let n = t.ne()[0] as f32;
        c.scale(c.rms_norm(t, eps / n), 1.0 / n.sqrt())
    };
    let (q, k) = (l2(q), l2(k));
    let d = hv * hv * nv;
    let state = c.view(
        state_all,
        &[hv, hv, nv, 1],
        &[hv as usize * f, (hv * hv) as usize * f, d as usize * f],
        0,
    );
    let out = c.gated_delta_net(q, k, v, gate, beta, state, slots);
    let out = b.name(out, "gdn_out", Some(il));
    let scores = (hv * nv * nt) as usize * f;
    let written = nt.min(slots);
    let src = c.view(out, &[d, written], &[d as usize * f], scores);
    let dst = c.view(state_all, &[d, written], &[d as usize * f], 0);
    b.graph.expand(c.cpy(src, dst));
    c.view(
        out,
        &[hv, nv, nt, 1],
        &[hv as usize * f, (hv * nv) as usize * f, scores],
        0,
    )
}
