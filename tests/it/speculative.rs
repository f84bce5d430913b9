//! Speculative decoding on tiny models: greedy output equals plain decoding with any draft,
//! sampled output follows the target's distribution (χ²), and rollback leaves no trace.

use crate::common;

use std::rc::Rc;
use std::sync::Arc;

use ember::generate::{generate, EvalError, GenerateParams, Session, SessionParams, Want};
use ember::ggml::Type;
use ember::model::{open_gguf, LoadOptions, Model};
use ember::sampling::{Sampler, SamplingParams};
use ember::speculative::{self, Draft, DraftModel, Drafter, Lookup, SpecParams, Speculator};
use ember::tokenizer::Tokenizer;

struct Loaded {
    model: Rc<Model>,
    tok: Tokenizer,
}

fn load(p: &std::path::Path) -> Loaded {
    let f = Arc::new(open_gguf(p, false).unwrap());
    let tok = Tokenizer::from_gguf(&f).unwrap();
    Loaded {
        model: Rc::new(Model::load(f, LoadOptions::default()).unwrap()),
        tok,
    }
}

fn session(m: &Rc<Model>) -> Session {
    let p = SessionParams {
        n_ctx: 128,
        n_ubatch: 512,
        n_threads: 1,
        type_k: Type::F16,
        type_v: Type::F16,
        flash_attn: true,
        swa_full: false,
        n_seq: 1,
        invariant: true,
        snapshots: 2,
    };
    Session::new(m.clone(), p).unwrap()
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temp: 0.0,
        seed: 1,
        ..SamplingParams::default()
    }
}

const PROMPT: [u32; 6] = [259, 116, 104, 101, 32, 99];
const GEN: GenerateParams = GenerateParams {
    n_predict: 40,
    ignore_eos: true,
};

fn plain(t: &Loaded) -> Vec<u32> {
    let mut s = session(&t.model);
    let mut out = Vec::new();
    let mut sampler = Sampler::new(greedy());
    generate(&mut s, &t.tok, &mut sampler, &PROMPT, GEN, |id| {
        out.push(id);
        true
    })
    .unwrap();
    out
}

fn speculative(
    t: &Loaded,
    d: Box<dyn Drafter>,
    spec: SpecParams,
    sp: SamplingParams,
    g: GenerateParams,
) -> (Vec<u32>, Session, speculative::SpecStats) {
    let mut s = session(&t.model);
    let mut out = Vec::new();
    let mut sampler = Sampler::new(sp);
    let (_, _, stats) = Speculator::new(d, spec)
        .generate(&mut s, &t.tok, &mut sampler, &PROMPT, g, |id| {
            out.push(id);
            true
        })
        .unwrap();
    (out, s, stats)
}

fn model_drafter(d: &Loaded, sp: SamplingParams) -> Box<dyn Drafter> {
    Box::new(DraftModel::new(session(&d.model), Sampler::new(sp), 0.0))
}

fn fixed(k: usize) -> SpecParams {
    SpecParams {
        draft_max: k,
        draft_min: 0,
        fixed: true,
    }
}

#[test]
fn greedy_output_equals_plain_decoding_with_any_draft() {
    let (_d1, p1) = common::tiny_model_q8(1);
    let (_d2, p2) = common::tiny_model(2);
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let shape = common::Tiny {
        n_layer: 1,
        ..common::TINY
    };
    common::write_tiny_shaped(&cut, 1, common::TinyArch::Llama, &shape);
    let target = load(&p1);
    let want = plain(&target);
    for (name, path) in [("itself", &p1), ("unrelated", &p2), ("1-layer cut", &cut)] {
        let draft = load(path);
        for k in [1, 3, 8] {
            let d = model_drafter(&draft, greedy());
            let (got, s, stats) = speculative(&target, d, fixed(k), greedy(), GEN);
            assert_eq!(got, want, "draft {name}, k = {k}");
            assert_eq!(s.n_past() as usize, PROMPT.len() + want.len() - 1);
            if name == "itself" {
                assert_eq!(stats.accepted, stats.drafted, "a model agrees with itself");
                assert!(stats.target_passes <= want.len() / 2, "{stats:?}");
            }
        }
    }
    let d = Box::new(Lookup::new(3));
    let (got, _, _) = speculative(&target, d, fixed(4), greedy(), GEN);
    assert_eq!(got, want, "prompt lookup");
    // the cost model may choose any length, plain decoding included: same tokens
    let draft = load(&p2);
    let d = model_drafter(&draft, greedy());
    let spec = SpecParams {
        fixed: false,
        ..fixed(6)
    };
    let (got, _, _) = speculative(&target, d, spec, greedy(), GEN);
    assert_eq!(got, want, "cost model");
}

/// Drafts from a known text: its continuation for the first `right` tokens of each draft
/// (`usize::MAX`: every draft accepted), then at each position another token than the one
/// there (0: every draft rejected).
struct Replay {
    answer: Vec<u32>,
    right: usize,
    text: Vec<u32>,
}

impl Drafter for Replay {
    fn start(&mut self, prompt: &[u32]) -> Result<Option<f64>, EvalError> {
        self.text = prompt.to_vec();
        Ok(Some(0.0))
    }

    fn token_cost(&mut self, _probe: u32) -> Result<f64, EvalError> {
        Ok(0.0)
    }

    fn propose(&mut self, k: usize, n_vocab: usize) -> Result<Draft, EvalError> {
        let next = self.answer.iter().skip(self.text.len()).take(k);
        let tokens = next
            .enumerate()
            .map(|(i, &t)| {
                if i < self.right {
                    t
                } else {
                    (t + 1) % n_vocab as u32
                }
            })
            .collect();
        Ok(Draft::point_masses(tokens))
    }

    fn accept(&mut self, tokens: &[u32]) {
        self.text.extend_from_slice(tokens);
    }

    fn rollback(&mut self, len: usize) {
        self.text.truncate(len);
    }

    fn is_free(&self) -> bool {
        true
    }
}

/// At temperature 0 a draft is verified only in batches whose products give one column's
/// results bit for bit: on f16 matrices that is one column, so nothing is drafted and the text
/// is plain decoding's.
/// A hybrid model (Qwen3.5's recurrent layers) cannot roll its state back token by token: a
/// rejected draft comes back from the state snapshots of the verification batch. Whatever is
/// accepted (all, none, the first 1 or 2 of each draft), from a draft model, a replay or
/// prompt lookup, the text is plain decoding's.
#[test]
fn a_hybrid_model_speculates_to_plain_decodings_tokens() {
    let (_d1, p1) = common::tiny_model_q8_of(1, common::TinyArch::Qwen35);
    let (_d2, p2) = common::tiny_model_q8_of(2, common::TinyArch::Qwen35);
    let target = load(&p1);
    let want = plain(&target);
    let answer: Vec<u32> = PROMPT.iter().chain(&want).copied().collect();
    for right in [usize::MAX, 0, 1, 2] {
        let d = Box::new(Replay {
            answer: answer.clone(),
            right,
            text: Vec::new(),
        });
        let (got, s, stats) = speculative(&target, d, fixed(4), greedy(), GEN);
        assert_eq!(got, want, "right: {right}");
        assert_eq!(s.n_past() as usize, PROMPT.len() + want.len() - 1);
        assert!(stats.drafted > 0, "{stats:?}");
        if right == 0 {
            assert_eq!(stats.accepted, 0);
        }
    }
    for (name, path) in [("itself", &p1), ("unrelated", &p2)] {
        let draft = load(path);
        for k in [1, 3, 6] {
            let d = model_drafter(&draft, greedy());
            let (got, _, stats) = speculative(&target, d, fixed(k), greedy(), GEN);
            assert_eq!(got, want, "draft {name}, k = {k}");
            if name == "itself" {
                assert_eq!(stats.accepted, stats.drafted, "a model agrees with itself");
            }
        }
    }
    let (got, _, _) = speculative(&target, Box::new(Lookup::new(3)), fixed(4), greedy(), GEN);
    assert_eq!(got, want, "prompt lookup");
}

#[test]
fn greedy_speculation_on_f16_matrices_drafts_nothing() {
    let (_d1, p1) = common::tiny_model(1);
    let target = load(&p1);
    let want = plain(&target);
    let draft = load(&p1);
    let d = model_drafter(&draft, greedy());
    let (got, _, stats) = speculative(&target, d, fixed(4), greedy(), GEN);
    assert_eq!(got, want);
    assert_eq!(stats.drafted, 0, "{stats:?}");
}

/// A new drafter is one `impl Drafter`, outside the crate too: whether all its drafts are
/// accepted or none, the text is plain decoding's and the cache holds it.
#[test]
fn a_drafter_of_ones_own_keeps_plain_decodings_tokens() {
    let (_d1, p1) = common::tiny_model_q8(1);
    let target = load(&p1);
    let want = plain(&target);
    let answer: Vec<u32> = PROMPT.iter().chain(&want).copied().collect();
    for wrong in [false, true] {
        let d = Box::new(Replay {
            answer: answer.clone(),
            right: if wrong { 0 } else { usize::MAX },
            text: Vec::new(),
        });
        let (got, s, stats) = speculative(&target, d, fixed(4), greedy(), GEN);
        assert_eq!(got, want, "wrong drafts: {wrong}");
        assert_eq!(s.n_past() as usize, PROMPT.len() + want.len() - 1);
        assert!(stats.drafted > 0, "{stats:?}");
        let accepted = if wrong { 0 } else { stats.drafted };
        assert_eq!(stats.accepted, accepted, "wrong drafts: {wrong}");
    }
}

#[test]
fn rollback_leaves_the_cache_as_plain_decoding_does() {
    let (_d1, p1) = common::tiny_model_q8(1);
    let (_d2, p2) = common::tiny_model(2);
    let (target, draft) = (load(&p1), load(&p2));
    let d = model_drafter(&draft, greedy());
    let (got, mut s, stats) = speculative(&target, d, fixed(5), greedy(), GEN);
    assert!(
        stats.accepted < stats.drafted,
        "an unrelated draft gets rejections"
    );
    // Both caches now hold the prompt and all but the last generated token: the next
    // position's logits must agree.
    let mut p = session(&target.model);
    let mut all = PROMPT.to_vec();
    all.extend_from_slice(&got[..got.len() - 1]);
    for &t in &all {
        p.eval(&[t], Want::Last).unwrap();
    }
    let last = *got.last().unwrap();
    let a = s.eval(&[last], Want::Last).unwrap().to_vec();
    let b = p.eval(&[last], Want::Last).unwrap().to_vec();
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(d < 2e-2, "max |Δlogit| {d}");
}

/// Sampling with speculation draws each token from the target's distribution: the second
/// generated token (the first that goes through drafting and verification) is counted over
/// many seeds and compared with its exact marginal by χ².
#[test]
fn sampled_tokens_follow_the_target_distribution() {
    let (_d1, p1) = common::tiny_model(1);
    let (_d2, p2) = common::tiny_model(2);
    let (target, draft) = (load(&p1), load(&p2));
    let sp = |seed| SamplingParams {
        temp: 1.0,
        top_k: 6,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplingParams::default()
    };
    // exact marginal of the second token: Σ_t1 p(t1) p(t2 | t1)
    let n_vocab = target.model.hp.n_vocab as usize;
    let mut s = session(&target.model);
    let first = s.eval(&PROMPT, Want::Last).unwrap().to_vec();
    let mut probe = Sampler::new(sp(0));
    let mut marginal = vec![0f64; n_vocab];
    for (t1, p1) in probe.distribution(&first) {
        s.truncate(PROMPT.len() as u32);
        let second = s.eval(&[t1], Want::Last).unwrap().to_vec();
        for (t2, p2) in probe.distribution(&second) {
            marginal[t2 as usize] += f64::from(p1) * f64::from(p2);
        }
    }
    let runs = 3000;
    let mut counts = vec![0usize; n_vocab];
    let g = GenerateParams {
        n_predict: 2,
        ignore_eos: true,
    };
    let mut rejected = 0;
    for seed in 0..runs {
        let d = model_drafter(&draft, sp(seed + 10_000));
        let (got, _, st) = speculative(&target, d, fixed(3), sp(seed), g);
        counts[got[1] as usize] += 1;
        rejected += st.drafted - st.accepted;
    }
    assert!(
        rejected > runs as usize / 10,
        "the test needs rejections: {rejected}"
    );
    // χ² over tokens with expected count >= 5; the rest pooled
    let (mut chi2, mut df, mut pool_e, mut pool_o) = (0.0, 0, 0.0, 0.0);
    for (t, &p) in marginal.iter().enumerate() {
        let e = p * runs as f64;
        let o = counts[t] as f64;
        if e >= 5.0 {
            chi2 += (o - e).powi(2) / e;
            df += 1;
        } else {
            pool_e += e;
            pool_o += o;
        }
    }
    if pool_e > 0.0 {
        chi2 += (pool_o - pool_e).powi(2) / pool_e.max(1.0);
        df += 1;
    }
    df -= 1;
    // 99.9% quantile of χ² ≈ df + 3.1·sqrt(2 df) + 5 (generous for df in 5..40)
    let limit = df as f64 + 3.1 * (2.0 * df as f64).sqrt() + 5.0;
    assert!(
        chi2 < limit,
        "χ² = {chi2:.1} with {df} degrees of freedom (limit {limit:.1})"
    );
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let (_d1, p1) = common::tiny_model(1);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("vocab.gguf");
    common::write_vocab_only(&other, true);
    let a = load(&p1);
    let f = open_gguf(&other, false).unwrap();
    let b = Tokenizer::from_gguf(&f).unwrap();
    let err = speculative::compat::check(&a.tok, &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("BOS"), "{err}");
    assert!(speculative::compat::check(&a.tok, &a.tok).is_ok());
}

/// From 512 cells on, ggml's CPU flash attention splits a single query row's cells among the
/// threads, but not several rows': a verification pass attending all its rows in one op gives
/// other bits than decoding, and greedy speculation could leave plain decoding's text in a
/// near-tie. `eval_verify` attends row by row, each row over the cells decoding its token alone
/// attends: on a long context with two threads, flash attention on or off, each row's logits
/// are those of decoding its token alone, bit for bit; also for a pass whose rows straddle a
/// 256-cell boundary followed at once by one that does not (re-using the first pass's graph
/// would keep its spans).
#[test]
fn verification_rows_equal_lone_decoding_past_512_cells_with_threads() {
    let (_d, m) = common::tiny_model_q8_ctx(83, 4096);
    let t = load(&m);
    let n_vocab = t.model.hp.n_vocab as usize;
    let session = |flash_attn| {
        let mut s = Session::new(
            t.model.clone(),
            SessionParams {
                n_ctx: 2048,
                n_ubatch: 512,
                n_threads: 2,
                type_k: Type::F16,
                type_v: Type::F16,
                flash_attn,
                swa_full: false,
                n_seq: 1,
                invariant: true,
                snapshots: 2,
            },
        )
        .unwrap();
        s.enable_verify().unwrap();
        s
    };
    let prompt: Vec<u32> = (0..509u32).map(|i| (i * 7919 + 13) % 256).collect();
    let passes: [&[u32]; 3] = [
        &[116, 104, 101, 32],
        &[99, 97, 116, 32],
        &[100, 111, 103, 10],
    ];
    for flash_attn in [true, false] {
        let (mut a, mut b) = (session(flash_attn), session(flash_attn));
        a.eval(&prompt, Want::Last).unwrap();
        b.eval(&prompt, Want::Last).unwrap();
        for (k, pass) in passes.iter().enumerate() {
            // `a` verifies (every draft accepted: nothing rolled back), `b` decodes alone
            let n0 = a.n_past();
            let verified = a.eval_verify(pass).unwrap().to_vec();
            let mut alone = Vec::new();
            for &tok in pass.iter() {
                alone.extend_from_slice(b.eval(&[tok], Want::Last).unwrap());
            }
            assert_eq!(verified.len(), pass.len() * n_vocab);
            let same = verified
                .iter()
                .zip(&alone)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same,
                "fa {flash_attn}, pass {k} at {n0} cells: rows differ from decoding"
            );
        }
        // what the test guards against: one multi-row op differs from decoding
        if flash_attn {
            let n0 = b.n_past();
            let multi_row = b.eval(passes[0], Want::All).unwrap().to_vec();
            b.truncate(n0);
            let mut alone = Vec::new();
            for &tok in passes[0] {
                alone.extend_from_slice(b.eval(&[tok], Want::Last).unwrap());
            }
            let same = multi_row
                .iter()
                .zip(&alone)
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                !same,
                "a multi-row pass gave decoding's bits: the test lost its point"
            );
        }
    }
}

/// Speculation keeps its pass times in the tune file; where the kept times show that no draft
/// can pay, the next run does not load the draft model at all, and its text is plain
/// decoding's.
#[test]
fn kept_pass_times_skip_a_draft_that_cannot_pay() {
    let (_d, m) = common::tiny_model_q8(5);
    let m = m.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tune.json");
    let env = [
        ("EMBER_TUNE", "on"),
        ("EMBER_TUNE_FILE", file.to_str().unwrap()),
    ];
    let args = [
        "-m",
        m,
        "-p",
        "the the a",
        "-n",
        "16",
        "--temp",
        "0",
        "-t",
        "1",
        "-v",
    ];
    let plain = common::run_ember(&args, None, &env);
    assert!(plain.status.success(), "{}", common::show(&plain));
    let spec = [&args[..], &["-md", m]].concat();
    let first = common::run_ember(&spec, None, &env);
    assert!(first.status.success(), "{}", common::show(&first));
    assert_eq!(first.stdout, plain.stdout);
    // The file holds the model's pass times now (target and draft are the same file): make a
    // verification pass cost as much as decoding its tokens one by one.
    let mut kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("the tune file was written")).unwrap();
    let models = kept["passes"]
        .as_object_mut()
        .and_then(|m| m.values_mut().next())
        .and_then(|m| m.as_object_mut())
        .expect("pass times kept");
    for times in models.values_mut() {
        for n in 1..=8 {
            times[n.to_string()] = serde_json::json!(0.01 * n as f64);
        }
    }
    std::fs::write(&file, serde_json::to_vec(&kept).unwrap()).unwrap();
    let second = common::run_ember(&spec, None, &env);
    assert!(second.status.success(), "{}", common::show(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("draft model not loaded"), "{err}");
    assert_eq!(second.stdout, plain.stdout);
}
