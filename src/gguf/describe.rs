//! Human- and machine-readable summaries of a [`GgufFile`], used by
//! `ember info MODEL` ([`describe_text`]) and `ember info --json MODEL`
//! ([`describe_json`]).

use std::io::{self, Write};

use serde_json::{json, Map, Number};

use super::file::GgufFile;
use super::types::GgmlType;
use super::value::Value;

/// Arrays longer than this are abbreviated in the text output.
const TEXT_MAX_ITEMS: usize = 8;
/// Strings longer than this many chars are truncated in the text output.
const TEXT_MAX_CHARS: usize = 80;
/// Arrays longer than this are summarised as `{type, len, head}` in JSON.
const JSON_MAX_ITEMS: usize = 64;
/// Number of leading items kept in a JSON array summary.
const JSON_HEAD_ITEMS: usize = 8;

const MIB: f64 = 1024.0 * 1024.0;

/// Write a readable report: a header line (version, counts, file size), one
/// line per metadata key (long arrays as `[first 8 items, …] (N items)`, long
/// strings truncated with their byte length), a tensor table (name, type,
/// dims, MiB) and totals (parameters, bytes per type).
pub fn describe_text(f: &GgufFile, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "GGUF v{}: {} metadata keys, {} tensors, {} bytes ({:.2} MiB), alignment {}, data at offset {}",
        f.version(),
        f.metadata().len(),
        f.tensors().len(),
        f.file_size(),
        f.file_size() as f64 / MIB,
        f.alignment(),
        f.data_offset()
    )?;

    writeln!(out, "\nmetadata:")?;
    let key_w = f
        .metadata()
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0)
        .min(48);
    for (key, value) in f.metadata() {
        writeln!(
            out,
            "  {key:<key_w$}  {:<14} = {}",
            value.type_description(),
            text_value(value)
        )?;
    }

    writeln!(out, "\ntensors:")?;
    let name_w = f
        .tensors()
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    writeln!(
        out,
        "  {:<name_w$}  {:<8}  {:<28}  {:>10}",
        "name", "type", "dims", "MiB"
    )?;
    for t in f.tensors() {
        writeln!(
            out,
            "  {:<name_w$}  {:<8}  {:<28}  {:>10.3}",
            t.name,
            t.ggml_type.name(),
            format!("{:?}", t.dims),
            t.size as f64 / MIB
        )?;
    }

    let (n_params, total_bytes, by_type) = totals(f);
    writeln!(
        out,
        "\ntotals: {} tensors, {} params ({:.1} M), {} bytes ({:.2} MiB) of tensor data",
        f.tensors().len(),
        n_params,
        n_params as f64 / 1e6,
        total_bytes,
        total_bytes as f64 / MIB
    )?;
    for (ty, count, bytes) in by_type {
        writeln!(
            out,
            "  {:<8} {count:>5} tensors  {:>12.3} MiB",
            ty.name(),
            bytes as f64 / MIB
        )?;
    }
    Ok(())
}

/// A JSON summary:
/// `{version, alignment, data_offset, file_size, metadata: {key: value},
///   tensors: [{name, type, dims, offset, bytes}], n_params, total_bytes}`.
/// Arrays with more than 64 items become `{"type": "array[..]", "len": N, "head": [first 8]}`;
/// non-finite floats become the strings `"NaN"`, `"inf"`, `"-inf"`.
pub fn describe_json(f: &GgufFile) -> serde_json::Value {
    let mut metadata = Map::new();
    for (key, value) in f.metadata() {
        metadata.insert(key.clone(), json_value(value));
    }
    let tensors: Vec<serde_json::Value> = f
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ggml_type.name(),
                "dims": t.dims,
                "offset": t.offset,
                "bytes": t.size,
            })
        })
        .collect();
    let (n_params, total_bytes, _) = totals(f);
    json!({
        "version": f.version(),
        "alignment": f.alignment(),
        "data_offset": f.data_offset(),
        "file_size": f.file_size(),
        "metadata": metadata,
        "tensors": tensors,
        "n_params": n_params,
        "total_bytes": total_bytes,
    })
}

/// (parameters, tensor bytes, per type: (type, tensor count, bytes) by bytes descending).
fn totals(f: &GgufFile) -> (u64, u64, Vec<(GgmlType, usize, u64)>) {
    let mut by_type: Vec<(GgmlType, usize, u64)> = Vec::new();
    let (mut n_params, mut total_bytes) = (0u64, 0u64);
    for t in f.tensors() {
        n_params = n_params.saturating_add(t.n_elements());
        total_bytes = total_bytes.saturating_add(t.size);
        match by_type.iter_mut().find(|e| e.0 == t.ggml_type) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.size;
            }
            None => by_type.push((t.ggml_type, 1, t.size)),
        }
    }
    by_type.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.as_u32().cmp(&b.0.as_u32())));
    (n_params, total_bytes, by_type)
}

/// One value in the text report.
fn text_value(v: &Value) -> String {
    match v {
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
        Value::String(s) => {
            if s.chars().count() > TEXT_MAX_CHARS {
                let head: String = s.chars().take(TEXT_MAX_CHARS).collect();
                format!("\"{}…\" ({} bytes)", escape(&head), s.len())
            } else {
                format!("\"{}\"", escape(s))
            }
        }
        Value::Array(items) => {
            let shown: Vec<String> = items
                .iter()
                .take(TEXT_MAX_ITEMS)
                .map(|v| text_value(&v))
                .collect();
            if items.len() > TEXT_MAX_ITEMS {
                format!("[{} …] ({} items)", shown.join(", "), items.len())
            } else {
                format!("[{}]", shown.join(", "))
            }
        }
    }
}

/// Escape quotes, backslashes and control characters for one-line display.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A float as JSON: the shortest decimal that round-trips, or a string when not finite.
fn json_float(x: f64, shortest: String) -> serde_json::Value {
    match shortest.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(n) if x.is_finite() => serde_json::Value::Number(n),
        _ if x.is_nan() => json!("NaN"),
        _ if x > 0.0 => json!("inf"),
        _ => json!("-inf"),
    }
}

/// One value in the JSON report.
fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json_float(f64::from(*x), x.to_string()),
        Value::F64(x) => json_float(*x, x.to_string()),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(items) if items.len() > JSON_MAX_ITEMS => json!({
            "type": v.type_description(),
            "len": items.len(),
            "head": items.iter().take(JSON_HEAD_ITEMS).map(|v| json_value(&v)).collect::<Vec<_>>(),
        }),
        Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(|v| json_value(&v)).collect())
        }
    }
}
