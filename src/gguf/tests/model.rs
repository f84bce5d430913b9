//! Checks against the real SmolLM2-135M-Instruct Q4_1 model (`models/fetch-default`; the test
//! fails naming that command when the model is absent).

use super::*;

fn model_path() -> std::path::PathBuf {
    crate::test_data::real_model(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "run models/fetch-default",
    )
}

#[test]
fn real_model() {
    let path = model_path();
    let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    let n_params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    eprintln!(
        "version {} alignment {} n_kv {} n_tensors {} data_offset {} n_tokens {} n_params {}",
        f.version(),
        f.alignment(),
        f.metadata().len(),
        f.tensors().len(),
        f.data_offset(),
        tokens.len(),
        n_params
    );
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.get_str("general.architecture"), Ok("llama"));
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(tokens.len(), 49152);
    assert_eq!(f.get_u32("llama.block_count"), Ok(30));
    assert_eq!(f.get_u32("llama.embedding_length"), Ok(576));
    assert_eq!(f.get_u32("llama.context_length"), Ok(8192));
    assert_eq!(f.get_u32("llama.attention.head_count"), Ok(9));
    assert_eq!(f.get_u32("llama.attention.head_count_kv"), Ok(3));
    assert_eq!(
        f.get_i32_array("tokenizer.ggml.token_type")
            .map(|v| v.len()),
        Ok(49152)
    );
    assert!(f.get_str("tokenizer.chat_template").is_ok());

    let emb = f.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(emb.dims, vec![576, 49152]);
    assert_eq!(f.tensor_data(emb).len() as u64, emb.size);
    let last = f.tensors().iter().map(|t| t.offset + t.size).max().unwrap();
    assert!(last <= f.file_size());

    // The writer reproduces the file byte for byte from what was read.
    let mut w = GgufWriter::new()
        .version(f.version())
        .alignment(f.alignment());
    for (k, v) in f.metadata() {
        w.add(k, v.clone());
    }
    for t in f.tensors() {
        w.add_tensor(&t.name, t.ggml_type, &t.dims, f.tensor_data(t).to_vec());
    }
    let rewritten = w.to_bytes();
    assert_eq!(rewritten.len(), f.bytes().len());
    assert!(rewritten == f.bytes(), "rewritten file differs");

    let j = describe_json(&f);
    assert_eq!(j["metadata"]["tokenizer.ggml.tokens"]["len"], 49152);
    assert_eq!(j["n_params"], n_params);
    let mut text = Vec::new();
    describe_text(&f, &mut text).unwrap();
    assert!(String::from_utf8(text).unwrap().contains("(49152 items)"));
}
