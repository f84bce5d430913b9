//! Several sequences in one session: each sequence's logits, prompt and decoding, equal the
//! ones it gets alone, bit for bit, whatever else is in the batch.

use crate::common;

use std::rc::Rc;
use std::sync::Arc;

use ember::generate::{Session, SessionParams, Want};
use ember::ggml::Type;
use ember::model::{open_gguf, LoadOptions, Model};
use ember::sampling::argmax;

fn load(path: &std::path::Path) -> Rc<Model> {
    let f = Arc::new(open_gguf(path, false).expect("open"));
    Rc::new(Model::load(f, LoadOptions::default()).expect("load"))
}

fn session(m: &Rc<Model>, n_ctx: u32, n_seq: u32, fa: bool) -> Session {
    let p = SessionParams {
        n_ctx,
        n_ubatch: 8,
        n_threads: 2,
        type_k: Type::F16,
        type_v: Type::F16,
        flash_attn: fa,
        swa_full: false,
        n_seq,
        invariant: true,
        snapshots: 2,
    };
    Session::new(m.clone(), p).expect("session")
}

fn prompt(i: usize) -> Vec<u32> {
    (0..3 + 5 * i)
        .map(|j| ((i * 37 + j * 11) % 250) as u32 + 1)
        .collect()
}

/// Each prompt alone: greedy, `n` tokens; every step's logits.
fn alone(m: &Rc<Model>, p: &[u32], n: usize, fa: bool) -> Vec<Vec<f32>> {
    let mut s = session(m, 256, 1, fa);
    let mut out = vec![s.eval(p, Want::Last).unwrap().to_vec()];
    for _ in 1..n {
        let t = argmax(out.last().unwrap());
        out.push(s.eval(&[t], Want::Last).unwrap().to_vec());
    }
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `n_prompts` prompts through `n_seq` sequences, a finished one's sequence taken by the next
/// prompt (continuous batching): every step's logits equal the prompt's alone.
fn batch_equals_alone(path: &std::path::Path, n_seq: u32, n_prompts: usize, fa: bool) {
    let m = load(path);
    let n = 6;
    let want: Vec<_> = (0..n_prompts)
        .map(|i| alone(&m, &prompt(i), n, fa))
        .collect();
    let mut s = session(&m, 256 * n_seq, n_seq, fa);
    assert_eq!(s.n_seq(), n_seq as usize);
    assert_eq!(s.n_ctx(), 256);
    // (prompt, step, last logits) per sequence
    let mut slots: Vec<Option<(usize, usize, Vec<f32>)>> = vec![None; n_seq as usize];
    let mut next = 0;
    let mut done = 0;
    while done < n_prompts {
        for (slot, st) in slots.iter_mut().enumerate() {
            if st.is_none() && next < n_prompts {
                s.clear_seq(slot);
                let l = s
                    .eval_seq(slot, &prompt(next), Want::Last)
                    .unwrap()
                    .to_vec();
                assert_eq!(bits(&l), bits(&want[next][0]), "prompt {next}");
                *st = Some((next, 1, l));
                next += 1;
            }
        }
        let steps: Vec<(usize, u32)> = slots
            .iter()
            .enumerate()
            .filter_map(|(slot, st)| st.as_ref().map(|(_, _, l)| (slot, argmax(l))))
            .collect();
        let n_vocab = m.hp.n_vocab as usize;
        let logits = s.decode_step(&steps).unwrap().to_vec();
        for (k, &(slot, _)) in steps.iter().enumerate() {
            let (p, step, last) = slots[slot].as_mut().unwrap();
            let got = &logits[k * n_vocab..(k + 1) * n_vocab];
            assert_eq!(
                bits(got),
                bits(&want[*p][*step]),
                "prompt {p}, step {step}, {} sequences in the step",
                steps.len()
            );
            *last = got.to_vec();
            *step += 1;
            if *step == n {
                slots[slot] = None;
                done += 1;
            }
        }
    }
}

#[test]
fn f16_matrices_give_each_sequence_its_lone_logits() {
    let (_d, p) = common::tiny_model(3);
    batch_equals_alone(&p, 3, 5, true);
    batch_equals_alone(&p, 4, 4, false);
}

#[test]
fn q8_matrices_give_each_sequence_its_lone_logits() {
    let (_d, p) = common::tiny_model_q8(4);
    batch_equals_alone(&p, 4, 6, true);
}

#[test]
fn every_architecture_batches() {
    for arch in common::TinyArch::ALL {
        let (_d, p) = common::tiny_model_of(5, arch);
        batch_equals_alone(&p, 2, 3, true);
    }
}

#[test]
fn a_sequence_s_cache_is_its_own() {
    let (_d, p) = common::tiny_model(6);
    let m = load(&p);
    let mut s = session(&m, 1024, 3, true);
    assert_eq!(
        s.n_ctx(),
        256,
        "1024 cells shared by 3 sequences: 256 each (a multiple of 256)"
    );
    s.eval_seq(1, &prompt(2), Want::Last).unwrap();
    assert_eq!(
        (s.seq_n_past(0), s.seq_n_past(1)),
        (0, prompt(2).len() as u32)
    );
    // one token per sequence, never two of one
    assert!(s.decode_step(&[(1, 5), (1, 6)]).is_err());
    assert!(s.decode_step(&[(0, 5), (7, 6)]).is_err());
    let full: Vec<u32> = vec![1; 257];
    assert!(
        s.eval_seq(2, &full, Want::Last).is_err(),
        "past the sequence's share"
    );
}

#[test]
fn a_copied_prefix_gives_the_lone_logits() {
    for fa in [true, false] {
        let (_d, p) = common::tiny_model(7);
        let m = load(&p);
        // 20 tokens; micro-batches of 8: the first 16 are two whole micro-batches
        let prompt: Vec<u32> = (0..20).map(|j| (j * 13 % 200) as u32 + 1).collect();
        let want = alone(&m, &prompt, 3, fa);
        let mut s = session(&m, 512, 2, fa);
        s.eval_seq(0, &prompt[..16], Want::Last).unwrap();
        s.eval_seq(1, &[9, 9, 9], Want::Last).unwrap();
        assert!(s.can_copy_prefix());
        s.copy_prefix(0, 1, 16).unwrap();
        assert_eq!(s.seq_n_past(1), 16);
        let l = s.eval_seq(1, &prompt[16..], Want::Last).unwrap().to_vec();
        assert_eq!(bits(&l), bits(&want[0]), "fa={fa}");
        let l = s.decode_step(&[(1, argmax(&l))]).unwrap().to_vec();
        assert_eq!(bits(&l), bits(&want[1]), "fa={fa}");
    }
}
