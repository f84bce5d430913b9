//! Compiles ggml-base + ggml + ggml-cpu with the `cc` crate.
//!
//! The sources come from the ggml tree inside the crates.io package `llama-cpp-sys-2` (pinned in
//! Cargo.toml under a `cfg(any())` target so that it is locked and downloaded but never compiled).
//! We find it with `cargo metadata`; `GGML_SRC_DIR` (a folder holding `include/` and `src/`)
//! overrides. No cmake, no libclang, no third-party source in our repository.
//!
//! GPU backends, by feature: `cuda` (build/cuda.rs: nvcc over ggml-cuda, objects cached in
//! OUT_DIR) and `metal` (build/metal.rs, Apple targets only). The CPU-only build is unaffected.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "build/cuda.rs"]
mod cuda;
#[path = "build/metal.rs"]
mod metal;

const PINNED: &str = "llama-cpp-sys-2";

fn main() {
    let ggml = ggml_dir();
    println!("cargo:rerun-if-env-changed=GGML_SRC_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=abi_check.c");
    println!("cargo:rerun-if-changed=ember_shim.c");

    let src = ggml.join("src");
    let include = ggml.join("include");
    let cpu = src.join("ggml-cpu");
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let portable = env::var_os("CARGO_FEATURE_PORTABLE").is_some();
    let apple = env::var("CARGO_CFG_TARGET_VENDOR").is_ok_and(|v| v == "apple");
    let want_cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();
    // Metal only where it exists; elsewhere the feature is accepted and does nothing.
    let want_metal = env::var_os("CARGO_FEATURE_METAL").is_some() && apple;

    let c_files = [
        src.join("ggml.c"),
        src.join("ggml-alloc.c"),
        src.join("ggml-quants.c"),
        cpu.join("ggml-cpu.c"),
        cpu.join("quants.c"),
    ];
    let mut cpp_files = vec![
        src.join("ggml.cpp"),
        src.join("ggml-backend.cpp"),
        src.join("ggml-backend-meta.cpp"),
        src.join("ggml-opt.cpp"),
        src.join("ggml-threading.cpp"),
        src.join("gguf.cpp"),
        src.join("ggml-backend-reg.cpp"),
        cpu.join("ggml-cpu.cpp"),
        cpu.join("repack.cpp"),
        cpu.join("hbm.cpp"),
        cpu.join("traits.cpp"),
        cpu.join("amx/amx.cpp"),
        cpu.join("amx/mmq.cpp"),
        cpu.join("binary-ops.cpp"),
        cpu.join("unary-ops.cpp"),
        cpu.join("vec.cpp"),
        cpu.join("ops.cpp"),
        cpu.join("llamafile/sgemm.cpp"),
    ];
    // ggml's RPC backend (client and server; TCP only, no RDMA): small, no dependencies.
    cpp_files.push(src.join("ggml-rpc/ggml-rpc.cpp"));
    cpp_files.push(src.join("ggml-rpc/transport.cpp"));
    for extra in ["tiled/tiled.cpp", "tiled/tiled-kernel.cpp"] {
        let p = cpu.join(extra);
        if p.exists() {
            cpp_files.push(p);
        }
    }
    let mut c_arch = Vec::new();
    match target_arch.as_str() {
        "x86_64" | "x86" => {
            c_arch.push(cpu.join("arch/x86/quants.c"));
            cpp_files.push(cpu.join("arch/x86/repack.cpp"));
        }
        "aarch64" | "arm" => {
            c_arch.push(cpu.join("arch/arm/quants.c"));
            cpp_files.push(cpu.join("arch/arm/repack.cpp"));
        }
        other => println!("cargo:warning=ggml-sys: no tuned CPU kernels for target arch {other}"),
    }

    // ggml's CMake generates ggml-version.h; we write the same two macros ourselves.
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let version = ggml_version(&ggml);
    std::fs::write(
        out.join("ggml-version.h"),
        format!(
            "#pragma once\n#define GGML_VERSION \"{version}\"\n#define GGML_COMMIT \"{PINNED}\"\n"
        ),
    )
    .expect("write ggml-version.h");

    let configure = |b: &mut cc::Build| {
        b.include(&out)
            .include(&include)
            .include(&src)
            .include(&cpu)
            // ggml is always optimised: debug builds of Ember stay usable for tests.
            .opt_level(3)
            .debug(false)
            .warnings(false)
            .define("NDEBUG", None)
            .define("GGML_USE_CPU", None)
            .define("GGML_USE_CPU_REPACK", None)
            .define("GGML_USE_LLAMAFILE", None)
            .define("GGML_SCHED_MAX_COPIES", "4")
            .define("_XOPEN_SOURCE", "600")
            .define("_GNU_SOURCE", None);
        if apple {
            // Apple's clang has no OpenMP: ggml then uses its own thread pool.
            b.define("_DARWIN_C_SOURCE", None);
        } else {
            b.define("GGML_USE_OPENMP", None).flag("-fopenmp");
        }
    };
    // Only the CPU backend is compiled for the host CPU; ggml-base gets no tuning flags, as in
    // ggml's CMake build. This matters for results, not just portability: with FMA available
    // GCC fuses a*b+c in ggml-base's scalar code (reference dequantization, ...) and the last
    // bits of the logits differ from llama.cpp's.
    let tune = |b: &mut cc::Build| {
        if matches!(target_arch.as_str(), "x86_64" | "x86") {
            if portable {
                for f in ["-mavx2", "-mfma", "-mf16c", "-mbmi2", "-msse4.2"] {
                    b.flag(f);
                }
            } else {
                b.flag("-march=native");
            }
        } else if !portable {
            b.flag_if_supported("-mcpu=native");
        }
    };

    // GNU dialects (gnu11, gnu++17) as ggml's CMake build uses: in ISO mode GCC does not fuse
    // a*b+c into FMA, and e.g. the CPU backend's GELU table then differs in one entry.
    // C objects first (ggml-base untuned, then the CPU backend and our ABI check tuned), then
    // one archive with the C++ (again base untuned, CPU backend tuned).
    let is_base = |p: &PathBuf| p.parent() == Some(src.as_path());
    let mut base_c = cc::Build::new();
    configure(&mut base_c);
    base_c
        .std("gnu11")
        .files(c_files.iter().filter(|p| is_base(p)));
    let mut objects = base_c.compile_intermediates();
    let mut cpu_c = cc::Build::new();
    configure(&mut cpu_c);
    tune(&mut cpu_c);
    cpu_c
        .std("gnu11")
        .files(c_files.iter().chain(c_arch.iter()).filter(|p| !is_base(p)))
        .file("abi_check.c")
        .file("ember_shim.c");
    objects.extend(cpu_c.compile_intermediates());

    let mut base_cpp = cc::Build::new();
    configure(&mut base_cpp);
    // The backend registry (ggml-backend-reg.cpp) registers the backends compiled in.
    base_cpp.define("GGML_USE_RPC", None);
    if want_cuda {
        base_cpp.define("GGML_USE_CUDA", None);
    }
    if want_metal {
        base_cpp.define("GGML_USE_METAL", None);
    }
    base_cpp
        .cpp(true)
        .std("gnu++17")
        .files(cpp_files.iter().filter(|p| is_base(p)));
    objects.extend(base_cpp.compile_intermediates());
    let mut backends = vec!["cpu", "rpc"];
    if want_cuda {
        let c = cuda::build(&ggml, &out);
        objects.extend(c.objects);
        println!("cargo:cuda_lib_dir={}", c.lib_dir.display());
        println!("cargo:cuda_archs={}", c.archs);
        backends.push("cuda");
    }
    if want_metal {
        objects.extend(metal::build(&ggml, &out, &configure));
        backends.push("metal");
    }
    let mut cpp = cc::Build::new();
    configure(&mut cpp);
    tune(&mut cpp);
    cpp.cpp(true)
        .std("gnu++17")
        .files(cpp_files.iter().filter(|p| !is_base(p)))
        .objects(objects);
    let tool = cpp.get_compiler();
    let fuses = tool.is_like_gnu() && !tool.is_like_clang();
    println!("cargo:rustc-env=GGML_SYS_CXX_FUSES={}", u8::from(fuses));
    // For dependents' build scripts (DEP_GGML_CXX_FUSES): Ember's kernel tests need it.
    println!("cargo:cxx_fuses={}", u8::from(fuses));
    cpp.compile("ggml");

    if apple {
        println!("cargo:rustc-link-lib=dylib=c++");
    } else {
        println!("cargo:rustc-link-lib=dylib=gomp");
        println!("cargo:rustc-link-lib=dylib=stdc++");
        println!("cargo:rustc-link-lib=dylib=m");
    }
    println!("cargo:include={}", include.display());
    println!("cargo:root={}", ggml.display());
    let flags = if portable { "avx2-baseline" } else { "native" };
    println!("cargo:rustc-env=GGML_SYS_CPU_FLAGS={flags}");
    println!("cargo:cpu_flags={flags}");
    println!("cargo:rustc-env=GGML_SYS_VERSION={version}");
    println!("cargo:rustc-env=GGML_SYS_BACKENDS={}", backends.join(","));
    println!("cargo:backends={}", backends.join(","));
    println!("cargo:version={version}");
}

/// "MAJOR.MINOR.PATCH" from ggml's CMakeLists.txt (0.0.0 when it cannot be read).
fn ggml_version(ggml: &Path) -> String {
    let text = std::fs::read_to_string(ggml.join("CMakeLists.txt")).unwrap_or_default();
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("set({name} ")))
            .and_then(|rest| rest.trim_end_matches(')').trim().parse::<u32>().ok())
            .unwrap_or(0)
    };
    format!(
        "{}.{}.{}",
        part("GGML_VERSION_MAJOR"),
        part("GGML_VERSION_MINOR"),
        part("GGML_VERSION_PATCH")
    )
}

/// The ggml tree: `GGML_SRC_DIR`, else `<llama-cpp-sys-2>/llama.cpp/ggml` found via cargo metadata.
fn ggml_dir() -> PathBuf {
    if let Some(dir) = env::var_os("GGML_SRC_DIR") {
        let dir = PathBuf::from(dir);
        check_tree(&dir, "GGML_SRC_DIR");
        return dir;
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .unwrap_or_else(|e| panic!("ggml-sys: could not run `cargo metadata`: {e}"));
    if !out.status.success() {
        panic!(
            "ggml-sys: `cargo metadata` failed (set GGML_SRC_DIR to a ggml tree to skip it):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("ggml-sys: cargo metadata printed invalid JSON");
    let pkg = meta["packages"]
        .as_array()
        .and_then(|pkgs| pkgs.iter().find(|p| p["name"] == PINNED))
        .unwrap_or_else(|| panic!("ggml-sys: package {PINNED} not in cargo metadata"));
    let manifest_path = pkg["manifest_path"].as_str().expect("manifest_path");
    let dir = Path::new(manifest_path)
        .parent()
        .unwrap()
        .join("llama.cpp")
        .join("ggml");
    check_tree(&dir, PINNED);
    dir
}

fn check_tree(dir: &Path, origin: &str) {
    if !dir.join("include/ggml.h").exists() || !dir.join("src/ggml.c").exists() {
        panic!(
            "ggml-sys: {} (from {origin}) is not a ggml tree (no include/ggml.h or src/ggml.c)",
            dir.display()
        );
    }
}
