//! Saving and restoring a session's KV state: the tokens evaluated so far and their K and V
//! rows, with what is needed to refuse a file made for another model or other cache types.
//! Used by `--prompt-cache` and the REPL's `/save` and `/load`.
//!
//! Layout (little-endian): magic `EMBERKV1`, u32 version, u64 model fingerprint, u32 K type,
//! u32 V type, u8 V transposed, u32 layers, u32 K row bytes, u32 V row bytes, u32 tokens, the
//! token ids (u32 each), u64 length of an application blob and the blob (the REPL's
//! conversation), then per layer: K rows of the tokens, V rows (or, for a transposed V, each
//! V component's run of token values). A sliding-window layer stores only the tokens a later
//! token can still attend to (the last `window` of them), in position order whatever ring its
//! cache keeps them in. Version 2 brought that; version 1 stored every token in every layer.

use std::io::{Read, Write};

use crate::ggml::{Tensor, TensorHandle, Type};

use super::session::Session;

const MAGIC: &[u8; 8] = b"EMBERKV1";
const VERSION: u32 = 2;
/// The application blob may not be larger than this (a conversation is text).
const MAX_EXTRA: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an Ember state file (bad magic)")]
    Magic,
    #[error("state file version {0} is not supported (this Ember writes version {VERSION})")]
    Version(u32),
    #[error("the state file was made with another model (fingerprint {file:016x}, this model {this:016x})")]
    Model { file: u64, this: u64 },
    #[error("the state file was made with cache types -ctk {fk} -ctv {fv}; this run uses -ctk {k} -ctv {v}")]
    CacheTypes {
        fk: String,
        fv: String,
        k: Type,
        v: Type,
    },
    #[error("the state file was made with flash attention {}; this run has it {}", on_off(!*.file_trans), on_off(!*.this_trans))]
    Layout { file_trans: bool, this_trans: bool },
    #[error("the state file's cache shape ({0}) does not match this model's")]
    Shape(String),
    #[error("the state file holds {tokens} tokens, more than this context of {n_ctx} (raise -c)")]
    TooLong { tokens: u32, n_ctx: u32 },
    #[error("the cache no longer holds the first {0} positions' sliding window (re-evaluate them, or run with --swa-full)")]
    Unavailable(usize),
    #[error("the state file is truncated or corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Ggml(#[from] crate::ggml::GgmlError),
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// What a state file restored besides the KV rows.
#[derive(Debug)]
pub struct Restored {
    /// The tokens now in the cache (positions `0..tokens.len()`).
    pub tokens: Vec<u32>,
    /// The application blob saved with them.
    pub extra: Vec<u8>,
}

struct Header {
    fingerprint: u64,
    type_k: u32,
    type_v: u32,
    v_trans: bool,
    n_layer: u32,
    k_row: u32,
    v_row: u32,
}

impl Session {
    fn state_header(&self) -> Header {
        let kv = self.kv();
        let row = |t: Tensor<'_>| t.nb()[1] as u32;
        Header {
            fingerprint: self.model().fingerprint(),
            type_k: kv.type_k.raw() as u32,
            type_v: kv.type_v.raw() as u32,
            v_trans: kv.v_trans,
            n_layer: self.model().hp.n_layer,
            k_row: row(kv.ctx().get(kv.k(0))),
            v_row: row(kv.ctx().get(kv.v(0))),
        }
    }

    /// The byte ranges holding positions `0..n` (a local layer: from `window_start(n)`), in
    /// file order: per layer the K rows, then the V rows (or, for a transposed V, each
    /// component's run of values), each in position order.
    fn kv_ranges(&self, n: usize) -> Vec<(TensorHandle, usize, usize)> {
        let kv = self.kv();
        let mut out = Vec::new();
        for il in 0..self.model().hp.n_layer as usize {
            let lo = if kv.is_swa(il) {
                kv.cells.window_start(n as u32) as usize
            } else {
                0
            };
            let cells = kv.layer_cells(il) as usize;
            let runs = cell_runs(lo, n, cells);
            let (k, v) = (kv.k(il), kv.v(il));
            let row = kv.ctx().get(k).nb()[1];
            out.extend(runs.iter().map(|&(c, len)| (k, c * row, len * row)));
            let vt = kv.ctx().get(v);
            if kv.v_trans {
                let es = vt.ty().type_size();
                let comps = vt.n_elements() as usize / cells;
                for d in 0..comps {
                    out.extend(
                        runs.iter()
                            .map(|&(c, len)| (v, (d * cells + c) * es, len * es)),
                    );
                }
            } else {
                let row = vt.nb()[1];
                out.extend(runs.iter().map(|&(c, len)| (v, c * row, len * row)));
            }
        }
        out
    }

    /// Write the first `tokens.len()` positions of the cache (which must hold those tokens)
    /// with `extra`, an application blob.
    pub fn save_state(
        &self,
        w: &mut impl Write,
        tokens: &[u32],
        extra: &[u8],
    ) -> Result<(), StateError> {
        let n = tokens.len();
        if !self.kv().cells.holds_window(n as u32) {
            return Err(StateError::Unavailable(n));
        }
        let h = self.state_header();
        let mut head = Vec::with_capacity(64 + 4 * n);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&h.fingerprint.to_le_bytes());
        head.extend_from_slice(&h.type_k.to_le_bytes());
        head.extend_from_slice(&h.type_v.to_le_bytes());
        head.push(h.v_trans as u8);
        for v in [h.n_layer, h.k_row, h.v_row, n as u32] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        for &t in tokens {
            head.extend_from_slice(&t.to_le_bytes());
        }
        head.extend_from_slice(&(extra.len() as u64).to_le_bytes());
        w.write_all(&head)?;
        w.write_all(extra)?;
        let kv = self.kv();
        let mut buf = Vec::new();
        for (h, offset, len) in self.kv_ranges(n) {
            buf.resize(len, 0);
            kv.ctx().get(h).read_bytes(offset, &mut buf)?;
            w.write_all(&buf)?;
        }
        w.flush()?;
        Ok(())
    }

    /// Replace the cache's contents with a saved state. On error the cache is left empty.
    pub fn load_state(&mut self, r: &mut impl Read) -> Result<Restored, StateError> {
        self.clear();
        let this = self.state_header();
        let mut magic = Vec::with_capacity(8);
        r.take(8).read_to_end(&mut magic)?;
        if magic != MAGIC {
            return Err(StateError::Magic);
        }
        let version = read_u32(r)?;
        if version != VERSION {
            return Err(StateError::Version(version));
        }
        let fingerprint = read_u64(r)?;
        if fingerprint != this.fingerprint {
            return Err(StateError::Model {
                file: fingerprint,
                this: this.fingerprint,
            });
        }
        let (tk, tv) = (read_u32(r)?, read_u32(r)?);
        if (tk, tv) != (this.type_k, this.type_v) {
            let name = |t: u32| Type::from_raw(t).map_or(format!("type {t}"), |t| t.to_string());
            return Err(StateError::CacheTypes {
                fk: name(tk),
                fv: name(tv),
                k: self.kv().type_k,
                v: self.kv().type_v,
            });
        }
        let mut b = [0u8; 1];
        read_exact(r, &mut b, "header")?;
        let file_trans = b[0] != 0;
        if file_trans != this.v_trans {
            return Err(StateError::Layout {
                file_trans,
                this_trans: this.v_trans,
            });
        }
        let shape = [read_u32(r)?, read_u32(r)?, read_u32(r)?];
        if shape != [this.n_layer, this.k_row, this.v_row] {
            return Err(StateError::Shape(format!(
                "{} layers, rows of {} and {} bytes",
                shape[0], shape[1], shape[2]
            )));
        }
        let n = read_u32(r)?;
        if n > self.n_ctx() {
            return Err(StateError::TooLong {
                tokens: n,
                n_ctx: self.n_ctx(),
            });
        }
        let mut raw = vec![0u8; 4 * n as usize];
        read_exact(r, &mut raw, "token list")?;
        let tokens: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let n_vocab = self.model().hp.n_vocab;
        if let Some(t) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(StateError::Corrupt(format!(
                "token id {t} outside the vocabulary"
            )));
        }
        let extra_len = read_u64(r)?;
        if extra_len > MAX_EXTRA {
            return Err(StateError::Corrupt(format!(
                "application data of {extra_len} bytes"
            )));
        }
        let mut extra = Vec::new();
        r.take(extra_len).read_to_end(&mut extra)?;
        if extra.len() as u64 != extra_len {
            return Err(StateError::Corrupt(
                "file ends inside the application data".into(),
            ));
        }
        let n = n as usize;
        let kv = self.kv();
        let mut buf = Vec::new();
        for (h, offset, len) in self.kv_ranges(n) {
            buf.resize(len, 0);
            read_exact(r, &mut buf, "K and V rows")?;
            kv.ctx().get(h).write_bytes(offset, &buf)?;
        }
        if r.read(&mut [0u8; 1])? != 0 {
            return Err(StateError::Corrupt("data after the last layer".into()));
        }
        self.set_n_past(n as u32);
        Ok(Restored { tokens, extra })
    }
}

/// Positions `lo..n` of a layer with `cells` cells (position p in cell `p % cells`) as runs of
/// consecutive cells: (first cell, count), in position order.
fn cell_runs(lo: usize, n: usize, cells: usize) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut p = lo;
    while p < n {
        let c = p % cells;
        let len = (n - p).min(cells - c);
        runs.push((c, len));
        p += len;
    }
    runs
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), StateError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            StateError::Corrupt(format!("file ends inside the {what}"))
        } else {
            e.into()
        }
    })
}

fn read_u32(r: &mut impl Read) -> Result<u32, StateError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, "header")?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64, StateError> {
    let mut b = [0u8; 8];
    read_exact(r, &mut b, "header")?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::cell_runs;

    #[test]
    fn runs_wrap_around_the_ring() {
        assert_eq!(cell_runs(0, 5, 100), [(0, 5)]);
        assert_eq!(cell_runs(3, 3, 100), []);
        assert_eq!(cell_runs(200, 300, 256), [(200, 56), (0, 44)]);
        assert_eq!(cell_runs(256, 300, 256), [(0, 44)]);
    }
}
