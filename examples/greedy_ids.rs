use ember::generate::{Session, SessionParams, Want};
use ember::model::{open_gguf, LoadOptions, Model};
use ember::sampling::argmax;
use std::sync::Arc;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let f = Arc::new(open_gguf(std::path::Path::new(&args[1]), false).unwrap());
    let m = std::rc::Rc::new(Model::load(f, LoadOptions::default()).unwrap());
    let fa = args.get(3).map(|s| s == "fa").unwrap_or(true);
    let mut s = Session::new(
        m.clone(),
        SessionParams {
            n_ctx: 4096,
            n_ubatch: 512,
            n_threads: 2,
            type_k: ember::ggml::Type::F16,
            type_v: ember::ggml::Type::F16,
            flash_attn: fa,
        },
    )
    .unwrap();
    let toks: Vec<u32> = args[2].split(',').map(|x| x.parse().unwrap()).collect();
    let mut out = vec![];
    let mut l = s.eval(&toks, Want::Last).unwrap().to_vec();
    let t0 = std::time::Instant::now();
    for _ in 0..64 {
        let t = argmax(&l);
        out.push(t);
        l = s.eval(&[t], Want::Last).unwrap().to_vec();
    }
    eprintln!("{:?} per tok", t0.elapsed() / 64);
    println!("{:?}", out);
}
