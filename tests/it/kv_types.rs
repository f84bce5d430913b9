//! KV cache types: every K/V type pair runs, the allocated tensors have the chosen types, the
//! reported sizes are the allocation, and impossible combinations are clear errors.

use crate::common;

use std::rc::Rc;
use std::sync::Arc;

use ember::generate::{Session, SessionParams, Want};
use ember::ggml::Type;
use ember::model::{open_gguf, LoadOptions, Model};

const TYPES: [(&str, Type); 9] = [
    ("f32", Type::F32),
    ("f16", Type::F16),
    ("bf16", Type::BF16),
    ("q8_0", Type::Q8_0),
    ("q4_0", Type::Q4_0),
    ("q4_1", Type::Q4_1),
    ("q5_0", Type::Q5_0),
    ("q5_1", Type::Q5_1),
    ("iq4_nl", Type::IQ4_NL),
];

const TOKENS: [u32; 10] = [5, 17, 200, 42, 99, 3, 256, 257, 150, 77];
const N_CTX: u32 = 64;

fn head64_model() -> (tempfile::TempDir, std::path::PathBuf, Rc<Model>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny64.gguf");
    common::write_tiny_shaped(&p, 3, common::TinyArch::Llama, &common::TINY_HEAD64);
    let f = Arc::new(open_gguf(&p, false).unwrap());
    let m = Rc::new(Model::load(f, LoadOptions::default()).unwrap());
    (dir, p, m)
}

fn session(m: &Rc<Model>, type_k: Type, type_v: Type, flash_attn: bool) -> Session {
    let p = SessionParams {
        n_ctx: N_CTX,
        n_ubatch: 512,
        n_threads: 2,
        type_k,
        type_v,
        flash_attn,
        swa_full: false,
        n_seq: 1,
        invariant: true,
        snapshots: 2,
    };
    Session::new(m.clone(), p).unwrap_or_else(|e| panic!("{type_k}/{type_v}: {e}"))
}

/// Logits of the prompt evaluated in two halves, so the second half reads cached K/V.
fn logits(s: &mut Session) -> Vec<f32> {
    s.eval(&TOKENS[..5], Want::Last).unwrap();
    s.eval(&TOKENS[5..], Want::All).unwrap().to_vec()
}

fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

#[test]
fn every_type_pair_runs_and_stays_close_to_f32() {
    let (_d, _p, m) = head64_model();
    let reference = logits(&mut session(&m, Type::F32, Type::F32, true));
    let scale = mean_abs_diff(&reference, &vec![0.0; reference.len()]);
    for (nk, tk) in TYPES {
        for (nv, tv) in TYPES {
            let fa_choices: &[bool] = if tv.is_quantized() {
                &[true]
            } else {
                &[true, false]
            };
            for &fa in fa_choices {
                let out = logits(&mut session(&m, tk, tv, fa));
                assert!(out.iter().all(|x| x.is_finite()), "{nk}/{nv} fa={fa}");
                let d = mean_abs_diff(&out, &reference);
                // On random weights 4-bit caches move logits by up to ~11% of their mean size;
                // a missing back-rotation of V moves them by ~110%.
                assert!(
                    d < 0.25 * scale,
                    "{nk}/{nv} fa={fa}: mean |Δlogit| {d} against mean |logit| {scale}"
                );
            }
        }
    }
}

#[test]
fn allocated_tensors_have_the_chosen_types_and_the_reported_size() {
    let (_d, _p, m) = head64_model();
    let shape = m.hp.kv_shape();
    for (tk, tv) in [
        (Type::F16, Type::F16),
        (Type::Q8_0, Type::Q4_0),
        (Type::Q4_0, Type::Q8_0),
        (Type::BF16, Type::IQ4_NL),
        (Type::Q5_1, Type::F32),
    ] {
        let s = session(&m, tk, tv, true);
        let kv = s.kv();
        let (mut k_bytes, mut v_bytes) = (0u64, 0u64);
        for il in 0..m.hp.n_layer as usize {
            let (k, v) = (kv.ctx().get(kv.k(il)), kv.ctx().get(kv.v(il)));
            assert_eq!((k.ty(), v.ty()), (tk, tv), "layer {il}");
            k_bytes += k.nbytes() as u64;
            v_bytes += v.nbytes() as u64;
        }
        assert_eq!(kv.bytes().k, k_bytes);
        assert_eq!(kv.bytes().v, v_bytes);
        assert_eq!(kv.bytes(), shape.bytes(N_CTX, N_CTX, tk, tv));
    }
}

#[test]
fn sizes_follow_the_block_formats() {
    let (_d, _p, m) = head64_model();
    let shape = m.hp.kv_shape();
    // 2 layers × 1 KV head × 64 values per cell: f16 2 B per value, q8_0 34 B per 32,
    // q4_0 18 B per 32.
    let cells = 2 * N_CTX as u64;
    let b = shape.bytes(N_CTX, N_CTX, Type::F16, Type::Q8_0);
    assert_eq!((b.k, b.v), (cells * 64 * 2, cells * 2 * 34));
    let b = shape.bytes(N_CTX, N_CTX, Type::Q4_0, Type::F32);
    assert_eq!((b.k, b.v), (cells * 2 * 18, cells * 64 * 4));
}

#[test]
fn quantized_caches_rotate_and_float_caches_do_not() {
    let (_d, _p, m) = head64_model();
    let s = session(&m, Type::Q8_0, Type::Q4_0, true);
    assert_eq!(
        (s.kv().k_rot_size(), s.kv().v_rot_size()),
        (Some(64), Some(64))
    );
    let s = session(&m, Type::F16, Type::Q4_0, true);
    assert_eq!((s.kv().k_rot_size(), s.kv().v_rot_size()), (None, Some(64)));
    let s = session(&m, Type::F16, Type::F16, false);
    assert_eq!((s.kv().k_rot_size(), s.kv().v_rot_size()), (None, None));
}

#[test]
fn a_block_larger_than_the_head_is_an_error_naming_both() {
    // the default tiny model has heads of 16 values; q8_0 blocks hold 32
    let (_d, p) = common::tiny_model(1);
    let f = Arc::new(open_gguf(&p, false).unwrap());
    let m = Rc::new(Model::load(f, LoadOptions::default()).unwrap());
    let params = SessionParams {
        n_ctx: N_CTX,
        n_ubatch: 512,
        n_threads: 1,
        type_k: Type::Q8_0,
        type_v: Type::F16,
        flash_attn: true,
        swa_full: false,
        n_seq: 1,
        invariant: true,
        snapshots: 2,
    };
    let err = Session::new(m, params)
        .err()
        .expect("q8_0 on 16-value heads")
        .to_string();
    assert!(
        err.contains("q8_0") && err.contains("32") && err.contains("16"),
        "{err}"
    );

    let p = p.to_str().unwrap();
    let o = common::run_ember(&["-m", p, "-p", "hi", "-n", "1", "-ctk", "q8_0"], None, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("q8_0") && err.contains("head size 16"),
        "{err}"
    );
    let o = common::run_ember(&["info", p, "-ctv", "q4_0"], None, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::show(&o));
}

#[test]
fn quantized_v_without_flash_attention_is_a_usage_error() {
    let (_d, p, _m) = head64_model();
    let p = p.to_str().unwrap();
    let o = common::run_ember(
        &["-m", p, "-p", "hi", "-n", "1", "-ctv", "q4_0", "-fa", "off"],
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs flash attention"));
    // auto chooses flash attention itself, and says so with -v
    let o = common::run_ember(
        &[
            "-m", p, "-p", "hi", "-n", "1", "-ctv", "q4_0", "-v", "--temp", "0",
        ],
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("flash attention on (auto"), "{err}");
}

#[test]
fn info_reports_the_bytes_a_session_allocates() {
    let (_d, p, m) = head64_model();
    let o = common::run_ember(
        &[
            "info",
            p.to_str().unwrap(),
            "--json",
            "-c",
            "64",
            "-ctk",
            "q8_0",
            "-ctv",
            "q4_0",
        ],
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", common::show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = session(&m, Type::Q8_0, Type::Q4_0, true);
    assert_eq!(v["kv_cache"]["k_bytes"], s.kv().bytes().k);
    assert_eq!(v["kv_cache"]["v_bytes"], s.kv().bytes().v);
    assert_eq!(v["kv_cache"]["n_ctx"], 64);
}

/// Ember's attention op for quantized caches gives ggml's flash attention's results: SmolLM2
/// answers a prompt (a micro-batch of over 64 rows) and decodes token for token the same with
/// the op (default) and without it (`EMBER_NO_ATTN_OP=1`), at each quantized cache type pair.
#[test]
fn quantized_caches_answer_the_same_through_embers_attention_op() {
    let model = common::smollm2();
    let m = model.to_str().unwrap();
    let prompt = "The history of the river valley begins with the first farmers, who cleared the \
                  forests along the banks, built villages of timber and clay, and learned to \
                  read the seasons of the flood. Over the centuries the villages grew into \
                  towns, the towns into cities, and the cities into kingdoms that traded grain, \
                  copper and cloth with the peoples of the hills, whose caravans crossed the \
                  passes every spring. Their scribes kept records of every harvest, and from \
                  those records we know that";
    for (k, v) in [("q8_0", "q8_0"), ("q8_0", "q4_0"), ("q4_0", "q4_0")] {
        let run = |env: &[(&str, &str)]| {
            let args = [
                "-m",
                m,
                "-p",
                prompt,
                "-n",
                "40",
                "--temp",
                "0",
                "-t",
                "2",
                "-ctk",
                k,
                "-ctv",
                v,
                "--ignore-eos",
                "--json",
            ];
            let o = common::run_ember(&args, None, env);
            assert!(o.status.success(), "{}", common::show(&o));
            let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert!(r["timings"]["prompt_tokens"].as_u64().unwrap() > 64);
            (r["text"].clone(), r["tokens"].clone())
        };
        let (ours, ggml) = (run(&[]), run(&[("EMBER_NO_ATTN_OP", "1")]));
        assert_eq!(ours, ggml, "K {k}, V {v}");
    }
}
