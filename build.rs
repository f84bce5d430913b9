//! Build facts for `ember --version`: git revision, profile, target, enabled backends; and the
//! host CPU's features, as cfgs for the kernel tests (see `cpu_cfgs`).
use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EMBER_GIT_REV={rev}");
    // Published by ggml-sys (links = "ggml") to its dependents' build scripts.
    let dep = |k: &str| std::env::var(format!("DEP_GGML_{k}")).unwrap_or_else(|_| "unknown".into());
    // The backends ggml-sys compiled in (metal only on Apple targets).
    let mut backends = dep("BACKENDS");
    if let Ok(archs) = std::env::var("DEP_GGML_CUDA_ARCHS") {
        backends = backends.replace("cuda", &format!("cuda (archs {archs})"));
    }
    println!("cargo:rustc-env=EMBER_BACKENDS={backends}");
    // cuBLAS is a shared library: let the binaries and tests find it where the build did (the
    // pip wheels' folder is not on the loader's path). LD_LIBRARY_PATH still wins elsewhere.
    if let Ok(dir) = std::env::var("DEP_GGML_CUDA_LIB_DIR") {
        if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
    println!("cargo:rustc-env=EMBER_GGML_VERSION={}", dep("VERSION"));
    println!("cargo:rustc-env=EMBER_CPU_FLAGS={}", dep("CPU_FLAGS"));
    println!(
        "cargo:rustc-env=EMBER_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=EMBER_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    cpu_cfgs();
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

/// cfgs saying what the kernels of `src/ggml/kernels/` can run on the CPU the tests will run
/// on, so that a test this CPU cannot run is ignored, with the reason, and never passes
/// without running. Known only when building for the machine that builds (host = target, as
/// ggml itself is compiled for the host CPU); otherwise none is set and those tests are ignored.
/// - `cpu_avx2`: AVX2, FMA and F16C (the decode op);
/// - `cpu_avx512vnni`: and AVX-512 F, BW, VL and VNNI (the tile op and the K-quant ops);
/// - `ggml_tiles_vnni`: and ggml compiled for it (not `portable`) by a compiler that fuses its
///   last multiply-add (GCC): the tiled path the Q6_K op reproduces;
/// - `ggml_attn`: AVX2, FMA and F16C, ggml compiled by GCC with f16 vectors of f32 lanes (AVX2,
///   or AVX-512 F without AVX-512 FP16): the flash attention the attention op reproduces.
///
/// And which of llama.cpp's recorded outputs hold here (ggml's float steps, e.g. the widths of
/// its vector sums, follow the CPU it is compiled for, so greedy texts differ between machine
/// kinds by a token here and there):
/// - `golden_avx512vnni`: ggml compiled natively for an AVX-512 VNNI CPU (where the shared
///   golden outputs were recorded);
/// - `golden_avx2`: ggml compiled natively for a CPU with AVX2 but no AVX-512.
fn cpu_cfgs() {
    for cfg in [
        "cpu_avx2",
        "cpu_avx512vnni",
        "ggml_tiles_vnni",
        "ggml_attn",
        "golden_avx512vnni",
        "golden_avx2",
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("HOST") != var("TARGET") {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c");
        let vnni = avx2
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni");
        let native = var("DEP_GGML_CPU_FLAGS") == "native";
        let ggml_tiles = vnni && native && var("DEP_GGML_CXX_FUSES") == "1";
        let avx2_only = avx2 && !std::is_x86_feature_detected!("avx512f");
        let f16_halves = native && std::is_x86_feature_detected!("avx512fp16");
        let ggml_attn = avx2 && var("DEP_GGML_CXX_FUSES") == "1" && !f16_halves;
        for (cfg, on) in [
            ("cpu_avx2", avx2),
            ("cpu_avx512vnni", vnni),
            ("ggml_tiles_vnni", ggml_tiles),
            ("ggml_attn", ggml_attn),
            ("golden_avx512vnni", vnni && native),
            ("golden_avx2", avx2_only && native),
        ] {
            if on {
                println!("cargo::rustc-cfg={cfg}");
            }
        }
    }
}
