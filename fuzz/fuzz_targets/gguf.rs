//! Arbitrary bytes through Ember's GGUF reader: parsing must return `Ok` or `Err`, never
//! panic, hang or allocate more than a small multiple of the input. A file that parses is
//! then walked like `ember info` walks it (every value, every tensor's data, both summaries),
//! and a known architecture's hyper-parameters are read from it (pure Rust, no ggml).
#![no_main]

use ember::gguf::{describe_json, describe_text, GgufFile};
use ember::model::Arch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, value) in f.metadata() {
        assert!(std::ptr::eq(f.get(key).unwrap(), value));
        let _ = value.type_description();
        let _ = f.get_str_array(key);
        let _ = f.get_f32_array(key);
        let _ = f.get_i32_array(key);
        let _ = f.get_u64(key);
    }
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.size);
        assert!(f.tensor(&t.name).is_some());
        let _ = t.n_elements();
    }
    let mut text = Vec::new();
    describe_text(&f, &mut text).unwrap();
    let _ = describe_json(&f).to_string();
    let arch = f
        .get_str("general.architecture")
        .ok()
        .and_then(Arch::from_name);
    if let Some(Ok(hp)) = arch.map(|a| a.hparams(&f)) {
        let _ = (hp.kv_shape(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        for il in 0..hp.n_layer as usize {
            let _ = (hp.is_swa(il), hp.rope_base_scale(il));
        }
    }
});
