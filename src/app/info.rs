//! `ember info MODEL [--json] [-c N -ctk X -ctv Y]`: metadata, tensor table, whether Ember
//! runs the file (and why not), and for a model Ember can run, the KV cache it would allocate.

use std::io::Write;

use anyhow::{Context as _, Result};
use serde_json::json;

use crate::cli::args::InfoArgs;
use crate::cli::config::{cache_type, ContextSize};
use crate::ggml::Type;
use crate::gguf::{describe_json, describe_text, GgufFile};
use crate::kv::{rotation_size, KvBytes, KvShape};
use crate::model::arch::Arch;
use crate::model::open_gguf;

const MIB: f64 = 1024.0 * 1024.0;

pub fn run(a: &InfoArgs) -> Result<()> {
    let type_k = cache_type("--cache-type-k", &a.cache_type_k)?;
    let type_v = cache_type("--cache-type-v", &a.cache_type_v)?;
    let f = open_gguf(&a.model, false).with_context(|| format!("reading {}", a.model.display()))?;
    let ring = (a.ubatch_size.max(1), a.swa_full);
    let kv = kv_report(&f, a.ctx_size, ring, type_k, type_v)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let runs = crate::model::Model::check(&f);
    if a.json {
        let mut v = describe_json(&f);
        v["ember_runs"] = json!(runs.is_ok());
        if let Err(e) = &runs {
            v["ember_runs_error"] = json!(e.to_string());
        }
        if let Some(kv) = &kv {
            v["kv_cache"] = kv.json();
        }
        v["chat_template"] = json!(chat_report(&f));
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        describe_text(&f, &mut out)?;
        match &runs {
            Ok(arch) => writeln!(
                out,
                "\nEmber runs this file (architecture {}).",
                arch.name()
            )?,
            Err(e) => writeln!(out, "\nEmber cannot run this file: {e}")?,
        }
        writeln!(out, "Chat template: {}.", chat_report(&f))?;
        if let Some(kv) = &kv {
            kv.write_text(&mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// What the chat does with this file's template: none, the file's, and how a reasoning
/// model's thinking is told apart.
fn chat_report(f: &GgufFile) -> String {
    use crate::chat::reasoning::Syntax;
    match f.get_str("tokenizer.chat_template") {
        Err(_) => "none (the chat is raw completion unless --chat-template names one)".into(),
        Ok(src) => match Syntax::detect(src) {
            None => "the file's".into(),
            Some(Syntax::Tags { open, close }) => format!(
                "the file's; a reasoning model: {open}…{close} blocks are kept off stdout (--show-reasoning shows them)"
            ),
            Some(Syntax::Harmony) => "the file's; harmony channels: the final channel on stdout, analysis and commentary are reasoning (--show-reasoning shows them)".into(),
        },
    }
}

/// The KV cache a session with these settings allocates.
struct KvReport {
    n_ctx: u32,
    /// Cells of each sliding-window layer (`n_ctx` when they keep the whole context).
    ring: u32,
    type_k: Type,
    type_v: Type,
    shape: KvShape,
    bytes: KvBytes,
    rot_k: Option<u32>,
    rot_v: Option<u32>,
    /// Multi-token-prediction layers the file carries after the trunk (not run).
    n_mtp: u32,
}

/// `None` for files Ember cannot run (vocab-only files, other architectures); an error when
/// the model is runnable but the cache types do not fit its heads.
/// `ring`: the micro-batch size and `--swa-full`, which set the sliding-window layers' cells.
fn kv_report(
    f: &GgufFile,
    n_ctx: u32,
    ring: (u32, bool),
    type_k: Type,
    type_v: Type,
) -> Result<Option<KvReport>> {
    let Some(arch) = f
        .get_str("general.architecture")
        .ok()
        .and_then(Arch::from_name)
    else {
        return Ok(None);
    };
    let Ok(hp) = arch.hparams(f) else {
        return Ok(None);
    };
    let n_ctx = ContextSize::exactly(n_ctx).resolve(hp.n_ctx_train);
    let shape = hp.kv_shape();
    shape.check(type_k, type_v)?;
    let ring = shape.ring(n_ctx, ring.0, ring.1);
    Ok(Some(KvReport {
        n_ctx,
        ring,
        type_k,
        type_v,
        bytes: shape.bytes(n_ctx, ring, type_k, type_v),
        rot_k: rotation_size(type_k, hp.head_dim_k, true),
        rot_v: rotation_size(type_v, hp.head_dim_v, false),
        shape,
        n_mtp: hp.n_layer_mtp,
    }))
}

impl KvReport {
    fn per_token(&self) -> KvBytes {
        let n = self.n_ctx.max(1) as u64;
        KvBytes {
            k: self.bytes.k / n,
            v: self.bytes.v / n,
        }
    }

    fn json(&self) -> serde_json::Value {
        let t = self.per_token();
        json!({
            "n_ctx": self.n_ctx,
            "type_k": self.type_k.name(),
            "type_v": self.type_v.name(),
            "n_layer": self.shape.n_layer,
            "n_head_kv": self.shape.n_head_kv,
            "n_swa_layers": self.shape.n_swa_layers(),
            "swa_window": self.shape.swa.as_ref().map(|s| s.0),
            "swa_cells": self.shape.swa.as_ref().map(|_| self.ring),
            "head_dim_k": self.shape.head_dim_k,
            "head_dim_v": self.shape.head_dim_v,
            "k_bytes": self.bytes.k,
            "v_bytes": self.bytes.v,
            "total_bytes": self.bytes.k + self.bytes.v,
            "k_bytes_per_token": t.k,
            "v_bytes_per_token": t.v,
            "k_rotation": self.rot_k,
            "v_rotation": self.rot_v,
            "n_recurrent_layers": self.shape.recurrent.as_ref().map(|r| r.n_recurrent()),
            "recurrent_state_bytes": self.shape.recurrent.as_ref().map(|r| r.bytes_per_copy()),
            "n_mtp_layers": self.n_mtp,
        })
    }

    fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let t = self.per_token();
        writeln!(
            out,
            "\nKV cache at {} tokens: {} layers x {} KV heads, head size {}/{} (K/V)",
            self.n_ctx,
            (0..self.shape.n_layer)
                .filter(|&il| self.shape.has_kv(il))
                .count(),
            self.shape.n_head_kv,
            self.shape.head_dim_k,
            self.shape.head_dim_v
        )?;
        if let Some(r) = &self.shape.recurrent {
            let n = r.n_recurrent();
            writeln!(
                out,
                "  {n} of the layers are recurrent (Gated DeltaNet): no K and V, a state of {:.2} MiB \
                 for all of them per sequence, whatever the context (kept twice or more: see -v)",
                r.bytes_per_copy() as f64 / MIB
            )?;
        }
        if self.n_mtp > 0 {
            writeln!(
                out,
                "  {} multi-token-prediction layer(s) after the trunk: loaded nowhere, not run",
                self.n_mtp
            )?;
        }
        if let Some((window, _)) = &self.shape.swa {
            let n = self.shape.n_swa_layers();
            writeln!(
                out,
                "  {n} of the layers attend a sliding window of {window}: they hold {} cells{}",
                self.ring,
                crate::kv::ring_note(self.ring, self.n_ctx)
            )?;
        }
        for (which, ty, bytes, per, rot) in [
            ("K", self.type_k, self.bytes.k, t.k, self.rot_k),
            ("V", self.type_v, self.bytes.v, t.v, self.rot_v),
        ] {
            let rot = rot.map_or(String::new(), |n| format!(", Hadamard rotation {n}"));
            writeln!(
                out,
                "  {:<8} {per:>7} bytes/token  {bytes:>12} bytes  {:>9.2} MiB{rot}",
                format!("{which} {}", ty.name()),
                bytes as f64 / MIB
            )?;
        }
        let total = self.bytes.k + self.bytes.v;
        writeln!(
            out,
            "  total    {:>7} bytes/token  {total:>12} bytes  {:>9.2} MiB",
            t.k + t.v,
            total as f64 / MIB
        )
    }
}
