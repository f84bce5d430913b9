use super::*;
use crate::kv::KvShape;

/// A cache of `size` cells (`ring` in the local layers) for layers local as `local` says.
fn cache(local: &[bool], window: u32, size: u32, ring: u32, v_trans: bool) -> KvCache {
    let shape = KvShape {
        n_layer: local.len() as u32,
        head_dim_k: 32,
        head_dim_v: 32,
        n_head_kv: 1,
        swa: Some((window, local.to_vec())),
        recurrent: None,
    };
    KvCache::placed(&shape, (size, ring), Type::F16, Type::F16, v_trans, &[], 1).unwrap()
}

fn shape(n_tokens: usize, n_kv: u32, n_outputs: usize) -> GraphShape {
    GraphShape::single(n_tokens, n_kv, n_outputs, 0)
}

fn names(ctx: &Context, a: &KvInputs) -> [String; 3] {
    [a.mask.tensor(ctx), a.rows.k(ctx), a.rows.v(ctx)].map(|t| t.name())
}

#[test]
fn attention_inputs_exist_for_the_kinds_of_layer_the_model_has() {
    let ctx = Context::new(16, 0).unwrap();
    let s = shape(4, 256, 1);
    // local and global layers, the local ones in a ring: each kind its own rows
    let kv = cache(&[true, false], 8, 1024, 256, false);
    let inp = Inputs::new(&ctx, &[&kv], &s, 32);
    let (full, local) = (
        inp.seqs[0].full.as_ref().unwrap(),
        inp.seqs[0].local.as_ref().unwrap(),
    );
    assert_eq!(
        names(&ctx, full),
        ["attn_inp_kq_mask", "inp_k_idxs", "inp_k_idxs"]
    );
    assert_eq!(
        names(&ctx, local),
        ["attn_inp_kq_mask_swa", "inp_k_idxs_swa", "inp_k_idxs_swa"]
    );
    assert!(!local.rows.shared);
    // without a ring the local layers write the full layers' rows
    let mut ctx = ctx;
    ctx.reset();
    let kv = cache(&[true, false], 8, 1024, 1024, false);
    let inp = Inputs::new(&ctx, &[&kv], &s, 32);
    let (full, local) = (
        inp.seqs[0].full.as_ref().unwrap(),
        inp.seqs[0].local.as_ref().unwrap(),
    );
    assert!(local.rows.shared && !full.rows.shared);
    assert_eq!(local.rows.k, full.rows.k);
    // every layer local: no full-attention inputs; none local: no sliding-window ones
    for ring in [256, 1024] {
        ctx.reset();
        let kv = cache(&[true, true], 8, 1024, ring, false);
        let inp = Inputs::new(&ctx, &[&kv], &s, 32);
        assert!(inp.seqs[0].full.is_none());
        let local = inp.seqs[0].local.as_ref().unwrap();
        assert_eq!(
            names(&ctx, local),
            ["attn_inp_kq_mask_swa", "inp_k_idxs_swa", "inp_k_idxs_swa"]
        );
        assert!(!local.rows.shared);
    }
    ctx.reset();
    let kv = cache(&[false, false], 8, 1024, 256, false);
    let inp = Inputs::new(&ctx, &[&kv], &s, 32);
    assert!(inp.seqs[0].local.is_none() && inp.seqs[0].full.is_some());
    // V stored by rows goes to K's rows (one tensor, above); a transposed V has an index per
    // value
    ctx.reset();
    let kv = cache(&[false, false], 8, 1024, 256, true);
    let inp = Inputs::new(&ctx, &[&kv], &s, 32);
    let full = inp.seqs[0].full.as_ref().unwrap();
    assert_eq!(
        names(&ctx, full),
        ["attn_inp_kq_mask", "inp_k_idxs", "inp_v_idxs"]
    );
    assert_eq!(full.rows.v(&ctx).ne()[0], 4 * 32);
}

#[test]
fn a_graph_is_reused_for_micro_batches_its_inputs_fit() {
    let mut ctx = Context::new(16, 0).unwrap();
    let built = shape(1, 512, 1);
    let kv = cache(&[true, false], 8, 1024, 256, false);
    let inp = Inputs::new(&ctx, &[&kv], &built, 32);
    assert_eq!(inp.attn(AttnKind::Local).mask.n_kv(), 256);
    assert!(inp.can_reuse(&built));
    assert!(!inp.can_reuse(&shape(1, 768, 1)));
    assert!(!inp.can_reuse(&shape(2, 512, 1)));
    assert!(!inp.can_reuse(&shape(2, 512, 2)));
    // the full layers' mask has an attended-cell count of its own: the output rows as well
    ctx.reset();
    let built = shape(4, 512, 1);
    let inp = Inputs::new(&ctx, &[&kv], &built, 32);
    assert!(inp.out_ids.tensor(&ctx).is_some());
    assert!(!inp.can_reuse(&shape(4, 512, 4)));
    // all layers local: past the ring more attended cells change nothing
    ctx.reset();
    let kv = cache(&[true, true], 8, 1024, 256, false);
    let inp = Inputs::new(&ctx, &[&kv], &shape(1, 512, 1), 32);
    assert!(inp.can_reuse(&shape(1, 768, 1)));
    assert!(inp.can_reuse(&shape(1, 256, 1)));
    assert!(!inp.can_reuse(&shape(2, 768, 2)));
}

#[test]
fn a_transposed_v_has_a_row_index_per_value() {
    let ctx = Context::new(16, 0).unwrap();
    let kv = cache(&[false], 8, 256, 256, true);
    let inp = Inputs::new(&ctx, &[&kv], &shape(3, 256, 1), 32);
    let full = inp.attn(AttnKind::Full);
    assert_eq!(full.rows.k(&ctx).ne()[0], 3);
    assert_eq!(full.rows.v(&ctx).ne()[0], 3 * 32);
    assert_eq!(full.mask.tensor(&ctx).ty(), Type::F32);
}

#[test]
fn masks_are_causal_within_the_window_around_the_ring() {
    let (z, n) = (0u8, 1u8);
    let mut m = Vec::new();
    // every position seen: position p sees cells 0..=p
    causal_mask(&mut m, &[0, 2], 4, u32::MAX, 8, z, n);
    assert_eq!(m, [[z, n, n, n], [z, z, z, n]].concat());
    // window 3 in a ring of 8: position 9 sees 7, 8, 9 in cells 7, 0, 1
    causal_mask(&mut m, &[9, 10], 8, 3, 8, z, n);
    let row9 = [z, z, n, n, n, n, n, z];
    let row10 = [z, z, z, n, n, n, n, n];
    assert_eq!(m, [row9, row10].concat());
}
