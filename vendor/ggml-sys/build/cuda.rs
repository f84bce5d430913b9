//! `--features cuda`: compiles ggml-cuda with nvcc, as ggml's CMake build does
//! (`ggml/src/ggml-cuda/CMakeLists.txt` and `ggml_cuda_fattn_vec_instances` in
//! `ggml/cmake/common.cmake`): the same source list, definitions and nvcc flags.
//!
//! - Toolkit: `CUDA_PATH` / `CUDA_HOME` / `CUDA_TOOLKIT_ROOT_DIR` (a folder with `bin/nvcc`), else
//!   `nvcc` on `PATH`, else `/usr/local/cuda`. The pip wheels (`nvidia-cuda-nvcc`, ...) install
//!   such a folder: `site-packages/nvidia/cu13`.
//! - Architectures: `CMAKE_CUDA_ARCHITECTURES` (CMake's syntax: `90`, `80-real;90`, `native`);
//!   default: those of the GPUs `nvidia-smi` reports, else [`DEFAULT_ARCHS`].
//! - Flash-attention vector kernels: `GGML_CUDA_FA_QUANTS` (`all` or `K-V` pairs), default
//!   [`DEFAULT_FA_QUANTS`]: every pair of the cache types f16, q8_0, q4_0, and bf16-bf16.
//! - cudart is linked statically and ggml is built without CUDA VMM (`GGML_CUDA_NO_VMM`), so
//!   the binary does not need the NVIDIA driver library to start: on a machine without a GPU
//!   it runs on the CPU. cuBLAS is linked dynamically.
//!
//! Objects are cached by source and flags in `<target dir>/ggml-cuda-objects`
//! (`EMBER_CUDA_OBJECTS` overrides), shared by every profile and feature set (ggml is always
//! built optimised) and kept when this crate is rebuilt: the CUDA kernels are compiled once
//! (they take long), not again for tests, `--features cuda,portable` or a change to build.rs.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// SASS for Ampere/Ada (8.x; sm_80 code runs on 8.6 and 8.9) and Hopper, PTX for 9.0 so that
/// newer GPUs can compile it at load time.
pub const DEFAULT_ARCHS: &str = "80-real;90";
/// ggml's FA type names, in its order.
const FA_TYPES: [&str; 7] = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "bf16", "f16"];
/// The K/V cache type pairs Ember's cache offers most (f16, q8_0, q4_0 and their mixes), and
/// ggml's own default bf16-bf16. Other pairs still run, converted to f16 by ggml (slower).
pub const DEFAULT_FA_QUANTS: &str = "f16-f16;f16-q8_0;f16-q4_0;q8_0-f16;q8_0-q8_0;q8_0-q4_0;\
                                     q4_0-f16;q4_0-q8_0;q4_0-q4_0;bf16-bf16";

pub struct Cuda {
    /// Object files to put into libggml.a.
    pub objects: Vec<PathBuf>,
    /// Folder holding the CUDA libraries (for the link and an rpath).
    pub lib_dir: PathBuf,
    /// `CMAKE_CUDA_ARCHITECTURES` as used.
    pub archs: String,
}

pub fn build(ggml: &Path, out: &Path) -> Cuda {
    for v in [
        "CUDA_PATH",
        "CUDA_HOME",
        "CUDA_TOOLKIT_ROOT_DIR",
        "CMAKE_CUDA_ARCHITECTURES",
        "GGML_CUDA_FA_QUANTS",
        "NVCC_CCBIN",
        "EMBER_CUDA_OBJECTS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let root = toolkit_root();
    let nvcc = root.join("bin").join("nvcc");
    let lib_dir = [
        "lib64",
        "lib",
        "targets/x86_64-linux/lib",
        "targets/sbsa-linux/lib",
    ]
    .iter()
    .map(|d| root.join(d))
    .find(|d| d.join("libcudart_static.a").exists())
    .unwrap_or_else(|| {
        panic!(
            "ggml-sys: no libcudart_static.a under {} (lib64, lib, targets/*/lib)",
            root.display()
        )
    });
    let version = nvcc_version(&nvcc);
    let archs = env::var("CMAKE_CUDA_ARCHITECTURES")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "native".into());
    let archs = if archs.trim() == "native" {
        native_archs().unwrap_or_else(|| DEFAULT_ARCHS.into())
    } else {
        archs
    };
    let fa = env::var("GGML_CUDA_FA_QUANTS")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FA_QUANTS.into());
    let fa_pairs = fa_combinations(&fa);

    let src = ggml.join("src");
    let cu = src.join("ggml-cuda");
    let ti = cu.join("template-instances");
    let mut files = glob(&cu, "", ".cu");
    for prefix in ["fattn-tile", "fattn-mma", "mmq", "mmf"] {
        files.extend(glob(&ti, prefix, ".cu"));
    }
    for pair in &fa_pairs {
        let f = ti.join(format!("fattn-vec-instance-{pair}.cu"));
        assert!(f.exists(), "ggml-sys: no FA instance {}", f.display());
        files.push(f);
    }

    let mut args: Vec<String> = vec![
        "-std=c++17".into(),
        "-O3".into(),
        "-DNDEBUG".into(),
        "-use_fast_math".into(),
        "-extended-lambda".into(),
        "-Xcompiler=-fPIC,-Wno-pedantic".into(),
        "-w".into(),
    ];
    if version >= (12, 8) {
        args.push("-compress-mode=size".into());
    }
    if let Ok(ccbin) = env::var("NVCC_CCBIN") {
        args.push(format!("-ccbin={ccbin}"));
    }
    for d in [
        "GGML_USE_CUDA",
        "GGML_CUDA_USE_GRAPHS",
        "GGML_CUDA_NO_VMM",
        "GGML_SCHED_MAX_COPIES=4",
        "_XOPEN_SOURCE=600",
        "_GNU_SOURCE",
    ] {
        args.push(format!("-D{d}"));
    }
    let fa_define = fa.split([',', ';']).map(str::trim).collect::<Vec<_>>();
    args.push(format!(
        "-DGGML_CUDA_FA_QUANTS=\"{}\"",
        fa_define.join(",").to_lowercase()
    ));
    for v in FA_TYPES {
        for k in FA_TYPES {
            let on = fa_pairs.iter().any(|p| *p == format!("{k}-{v}"));
            args.push(format!(
                "-DGGML_CUDA_FA_{}_{}={}",
                k.to_uppercase(),
                v.to_uppercase(),
                on as u8
            ));
        }
    }
    for a in archs.split(';').map(str::trim).filter(|a| !a.is_empty()) {
        args.push(gencode(a));
    }
    for inc in [ggml.join("include"), src.clone(), cu.clone()] {
        args.push(format!("-I{}", inc.display()));
    }

    // OUT_DIR is <target>/<profile>/build/ggml-sys-<hash>/out; the hash changes with features.
    let obj_dir = env::var_os("EMBER_CUDA_OBJECTS")
        .map(PathBuf::from)
        .or_else(|| out.ancestors().nth(4).map(|t| t.join("ggml-cuda-objects")))
        .unwrap_or_else(|| out.join("cuda"));
    std::fs::create_dir_all(&obj_dir)
        .unwrap_or_else(|e| panic!("ggml-sys: cannot create {}: {e}", obj_dir.display()));
    let objects = compile_all(&nvcc, &args, &files, &obj_dir);
    println!(
        "cargo:warning=ggml-sys: CUDA {}.{} for architectures {archs}; FA K-V pairs: {}",
        version.0,
        version.1,
        fa_pairs.join(",")
    );

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=static=cudart_static");
    // The pip wheels ship only versioned shared objects (libcublas.so.13).
    println!("cargo:rustc-link-lib={}", dylib(&lib_dir, "cublas"));
    println!("cargo:rustc-link-lib={}", dylib(&lib_dir, "cublasLt"));
    for l in ["dl", "rt", "pthread"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
    Cuda {
        objects,
        lib_dir,
        archs,
    }
}

/// `dylib=NAME` when `libNAME.so` exists, else the versioned file, verbatim.
fn dylib(dir: &Path, name: &str) -> String {
    if dir.join(format!("lib{name}.so")).exists() {
        return format!("dylib={name}");
    }
    let prefix = format!("lib{name}.so.");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    found.sort();
    match found.first() {
        Some(f) => format!("dylib:+verbatim={f}"),
        None => panic!(
            "ggml-sys: no lib{name}.so in {} (pip: nvidia-cublas)",
            dir.display()
        ),
    }
}

fn toolkit_root() -> PathBuf {
    for v in ["CUDA_PATH", "CUDA_HOME", "CUDA_TOOLKIT_ROOT_DIR"] {
        if let Some(d) = env::var_os(v).map(PathBuf::from) {
            if d.join("bin/nvcc").exists() {
                return d;
            }
            panic!("ggml-sys: {v}={} has no bin/nvcc", d.display());
        }
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let nvcc = dir.join("nvcc");
            if nvcc.exists() {
                let nvcc = nvcc.canonicalize().unwrap_or(nvcc);
                return nvcc.parent().and_then(Path::parent).unwrap().to_path_buf();
            }
        }
    }
    let d = PathBuf::from("/usr/local/cuda");
    if d.join("bin/nvcc").exists() {
        return d;
    }
    panic!(
        "ggml-sys: --features cuda needs the CUDA toolkit: set CUDA_PATH to a folder with \
         bin/nvcc (for example the pip wheels' site-packages/nvidia/cu13), or put nvcc on PATH"
    );
}

fn nvcc_version(nvcc: &Path) -> (u32, u32) {
    let out = Command::new(nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("ggml-sys: cannot run {}: {e}", nvcc.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    // "Cuda compilation tools, release 13.0, V13.0.88"
    text.split("release ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|v| {
            let mut it = v.trim().split('.');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .unwrap_or_else(|| panic!("ggml-sys: cannot read nvcc's version from:\n{text}"))
}

/// Compute capabilities of the GPUs present ("90;120a"), as CMake's `native` would pick them.
fn native_archs() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut archs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (maj, min) = l.trim().split_once('.')?;
            let a = format!("{}{}", maj.parse::<u32>().ok()?, min.parse::<u32>().ok()?);
            // Blackwell's FP4 instructions need the architecture-specific target (as ggml).
            Some(if a.starts_with("12") { a + "a" } else { a })
        })
        .collect();
    archs.sort();
    archs.dedup();
    (!archs.is_empty()).then(|| archs.join(";"))
}

/// nvcc's flag for one CMake architecture entry: `90` (code and PTX), `90-real` (code only),
/// `90-virtual` (PTX only).
fn gencode(a: &str) -> String {
    let (n, code) = if let Some(n) = a.strip_suffix("-real") {
        (n, format!("sm_{n}"))
    } else if let Some(n) = a.strip_suffix("-virtual") {
        (n, format!("compute_{n}"))
    } else {
        (a, format!("[compute_{a},sm_{a}]"))
    };
    assert!(
        !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()),
        "ggml-sys: bad CUDA architecture '{a}' in CMAKE_CUDA_ARCHITECTURES"
    );
    format!("-gencode=arch=compute_{n},code={code}")
}

/// The K-V pairs to compile, as ggml's `ggml_cuda_fattn_vec_instances` reads
/// `GGML_CUDA_FA_QUANTS` ("all", or pairs separated by ',' or ';'; f16-f16 always).
fn fa_combinations(spec: &str) -> Vec<String> {
    let spec = spec.trim().to_lowercase();
    let mut out = Vec::new();
    if spec == "all" {
        for v in FA_TYPES {
            for k in FA_TYPES {
                out.push(format!("{k}-{v}"));
            }
        }
        return out;
    }
    out.push("f16-f16".to_string());
    for pair in spec
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let ok = pair
            .split_once('-')
            .is_some_and(|(k, v)| FA_TYPES.contains(&k) && FA_TYPES.contains(&v));
        assert!(
            ok,
            "ggml-sys: GGML_CUDA_FA_QUANTS: '{pair}' is not 'all' or a K-V pair of {FA_TYPES:?}"
        );
        if !out.iter().any(|p| p == pair) {
            out.push(pair.to_string());
        }
    }
    out
}

fn glob(dir: &Path, prefix: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("ggml-sys: cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(ext))
        })
        .collect();
    v.sort();
    v
}

/// Compile every file (NUM_JOBS at a time), reusing objects whose source and flags are
/// unchanged.
fn compile_all(nvcc: &Path, args: &[String], files: &[PathBuf], obj_dir: &Path) -> Vec<PathBuf> {
    let jobs: usize = env::var("NUM_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(1)
        .max(1);
    let plan: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|f| {
            let mut h = DefaultHasher::new();
            args.hash(&mut h);
            f.hash(&mut h);
            if let Ok(m) = std::fs::metadata(f).and_then(|m| m.modified()) {
                m.hash(&mut h);
            }
            let stem = f.file_stem().unwrap().to_string_lossy();
            let obj = obj_dir.join(format!("{stem}-{:016x}.o", h.finish()));
            (f.clone(), obj)
        })
        .collect();
    let todo: Vec<&(PathBuf, PathBuf)> = plan.iter().filter(|(_, o)| !o.exists()).collect();
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(todo.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((src, obj)) = todo.get(i) else {
                    break;
                };
                let tmp = obj.with_extension(format!("{}.tmp", std::process::id()));
                let out = Command::new(nvcc)
                    .args(args)
                    .arg("-c")
                    .arg(src)
                    .arg("-o")
                    .arg(&tmp)
                    .output();
                match out {
                    Ok(o) if o.status.success() => {
                        std::fs::rename(&tmp, obj).expect("rename object");
                    }
                    Ok(o) => errors.lock().unwrap().push(format!(
                        "{}:\n{}{}",
                        src.display(),
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )),
                    Err(e) => errors
                        .lock()
                        .unwrap()
                        .push(format!("{}: cannot run nvcc: {e}", src.display())),
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap();
    if !errors.is_empty() {
        panic!("ggml-sys: nvcc failed:\n{}", errors.join("\n"));
    }
    plan.into_iter().map(|(_, o)| o).collect()
}
