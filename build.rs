//! Build facts for `ember --version`: git revision, profile, target, enabled backends.
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
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
