//! Saving and restoring a session's KV state: the tokens evaluated so far and their K and V
//! rows, with what is needed to refuse a file made for another model or other cache types, and
//! checksums that refuse a corrupt one. Used by `--prompt-cache` and the REPL's `/save` and
//! `/load`.
//!
//! Layout (little-endian): a fixed header, magic `EMBERKV1`, u32 version, u64 model
//! fingerprint, u32 K type, u32 V type, u8 V transposed, u32 layers, u32 K row bytes, u32 V row
//! bytes, u32 tokens, u64 length of an application blob (the REPL's conversation), u64
//! checksum of the header so far; then the token ids (u32 each), the blob, per layer the K
//! rows of the tokens and the V rows (or, for a transposed V, each V component's run of token
//! values), and a u64 checksum of every byte before it. A sliding-window layer stores only the
//! tokens a later token can still attend to (the last `window` of them), in position order
//! whatever ring its cache keeps them in. Checksums are [`crate::hash`]; the header has its own
//! so that a damaged header is reported as damage, not as a file for another model.
//! A hybrid model's file adds, before the final checksum, a u32 count (1 or 2) and each
//! recurrent layer's convolution and delta-rule states at the last position (and the one
//! before, when count is 2), f32, as many floats as the model says.
//! Version 3 brought the checksums; version 2 the sliding-window rows; version 1 stored every
//! token in every layer.

use std::io::{Read, Write};

use crate::ggml::{Tensor, TensorHandle, Type};
use crate::hash::Hasher;

use super::session::Session;

const MAGIC: &[u8; 8] = b"EMBERKV1";
const VERSION: u32 = 3;
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
    #[error("the recurrent state at position {0} is no longer held (it is kept at the end of each prompt)")]
    NoState(usize),
    #[error("the state file is corrupt (checksum mismatch in its {0})")]
    Checksum(&'static str),
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

/// The fixed header: what must match this session, and the sizes of what follows.
#[derive(Clone, Debug, PartialEq)]
struct Header {
    fingerprint: u64,
    type_k: u32,
    type_v: u32,
    v_trans: bool,
    n_layer: u32,
    k_row: u32,
    v_row: u32,
    n_tokens: u32,
    extra_len: u64,
}

impl Header {
    /// Magic, version, the fields and the header checksum.
    fn write(&self, w: &mut Hashing<impl Write>) -> std::io::Result<()> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.fingerprint.to_le_bytes());
        b.extend_from_slice(&self.type_k.to_le_bytes());
        b.extend_from_slice(&self.type_v.to_le_bytes());
        b.push(self.v_trans as u8);
        for v in [self.n_layer, self.k_row, self.v_row, self.n_tokens] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.extra_len.to_le_bytes());
        w.write_all(&b)?;
        w.write_checksum()
    }

    /// Read and check magic, version and the header checksum.
    fn read(r: &mut Hashing<impl Read>) -> Result<Header, StateError> {
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
        let (type_k, type_v) = (read_u32(r)?, read_u32(r)?);
        let mut b = [0u8; 1];
        read_exact(r, &mut b, "header")?;
        let h = Header {
            fingerprint,
            type_k,
            type_v,
            v_trans: b[0] != 0,
            n_layer: read_u32(r)?,
            k_row: read_u32(r)?,
            v_row: read_u32(r)?,
            n_tokens: read_u32(r)?,
            extra_len: read_u64(r)?,
        };
        r.check_checksum("header")?;
        if b[0] > 1 {
            return Err(StateError::Corrupt(format!("flag byte {}", b[0])));
        }
        Ok(h)
    }
}

/// A reader or writer that hashes every byte going through it.
struct Hashing<T> {
    inner: T,
    hash: Hasher,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: Hasher::new(),
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.write(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Hashing<W> {
    /// Write the checksum of everything written so far (itself hashed too, like any byte).
    fn write_checksum(&mut self) -> std::io::Result<()> {
        let sum = self.hash.finish();
        self.write_all(&sum.to_le_bytes())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> Hashing<R> {
    /// Read a checksum and compare it with that of everything read before it.
    fn check_checksum(&mut self, part: &'static str) -> Result<(), StateError> {
        let want = self.hash.finish();
        if read_u64(self)? != want {
            return Err(StateError::Checksum(part));
        }
        Ok(())
    }
}

impl Session {
    /// This session's header, for a file of `n_tokens` tokens and `extra_len` blob bytes.
    fn state_header(&self, n_tokens: u32, extra_len: u64) -> Header {
        let kv = self.kv();
        let row = |t: Tensor<'_>| t.nb()[1] as u32;
        Header {
            fingerprint: self.model().fingerprint(),
            type_k: kv.type_k.raw() as u32,
            type_v: kv.type_v.raw() as u32,
            v_trans: kv.v_trans,
            n_layer: self.model().hp.n_layer,
            k_row: row(kv.ctx().get(kv.k(kv.first_kv_layer()))),
            v_row: row(kv.ctx().get(kv.v(kv.first_kv_layer()))),
            n_tokens,
            extra_len,
        }
    }

    /// The byte ranges holding positions `0..n` (a local layer: from `window_start(n)`), in
    /// file order: per layer the K rows, then the V rows (or, for a transposed V, each
    /// component's run of values), each in position order.
    fn kv_ranges(&self, n: usize) -> Vec<(TensorHandle, usize, usize)> {
        let kv = self.kv();
        let mut out = Vec::new();
        for il in 0..self.model().hp.n_layer as usize {
            if !kv.has_kv(il) {
                continue;
            }
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
        let Some(crate::kv::States {
            count,
            bytes: states,
        }) = self.states_at(n as u32)?
        else {
            return Err(StateError::NoState(n));
        };
        let mut w = Hashing::new(w);
        self.state_header(n as u32, extra.len() as u64)
            .write(&mut w)?;
        let ids: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        w.write_all(&ids)?;
        w.write_all(extra)?;
        let kv = self.kv();
        let mut buf = Vec::new();
        for (h, offset, len) in self.kv_ranges(n) {
            buf.resize(len, 0);
            kv.ctx().get(h).read_bytes(offset, &mut buf)?;
            w.write_all(&buf)?;
        }
        if kv.recurrent().is_some() {
            w.write_all(&count.to_le_bytes())?;
            for b in &states {
                w.write_all(b)?;
            }
        }
        w.write_checksum()?;
        w.flush()?;
        Ok(())
    }

    /// Replace the cache's contents with a saved state. On error the cache is left empty.
    pub fn load_state(&mut self, r: &mut impl Read) -> Result<Restored, StateError> {
        self.clear();
        let this = self.state_header(0, 0);
        let mut r = Hashing::new(r);
        let file = Header::read(&mut r)?;
        if file.fingerprint != this.fingerprint {
            return Err(StateError::Model {
                file: file.fingerprint,
                this: this.fingerprint,
            });
        }
        if (file.type_k, file.type_v) != (this.type_k, this.type_v) {
            let name = |t: u32| Type::from_raw(t).map_or(format!("type {t}"), |t| t.to_string());
            return Err(StateError::CacheTypes {
                fk: name(file.type_k),
                fv: name(file.type_v),
                k: self.kv().type_k,
                v: self.kv().type_v,
            });
        }
        if file.v_trans != this.v_trans {
            return Err(StateError::Layout {
                file_trans: file.v_trans,
                this_trans: this.v_trans,
            });
        }
        let shape = [file.n_layer, file.k_row, file.v_row];
        if shape != [this.n_layer, this.k_row, this.v_row] {
            return Err(StateError::Shape(format!(
                "{} layers, rows of {} and {} bytes",
                shape[0], shape[1], shape[2]
            )));
        }
        let n = file.n_tokens;
        if n > self.n_ctx() {
            return Err(StateError::TooLong {
                tokens: n,
                n_ctx: self.n_ctx(),
            });
        }
        if file.extra_len > MAX_EXTRA {
            return Err(StateError::Corrupt(format!(
                "application data of {} bytes",
                file.extra_len
            )));
        }
        let mut raw = vec![0u8; 4 * n as usize];
        read_exact(&mut r, &mut raw, "token list")?;
        let tokens: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let mut extra = Vec::new();
        (&mut r).take(file.extra_len).read_to_end(&mut extra)?;
        if extra.len() as u64 != file.extra_len {
            return Err(StateError::Corrupt(
                "file ends inside the application data".into(),
            ));
        }
        let n = n as usize;
        let kv = self.kv();
        let mut buf = Vec::new();
        for (h, offset, len) in self.kv_ranges(n) {
            buf.resize(len, 0);
            read_exact(&mut r, &mut buf, "K and V rows")?;
            kv.ctx().get(h).write_bytes(offset, &buf)?;
        }
        // a hybrid model's recurrent states at n (and n - 1): `count` slots of each layer's
        // conv and delta-rule rows, sized by this model (never by the file)
        let mut states = Vec::new();
        let mut count = 0;
        if let Some(rs) = kv.recurrent() {
            count = read_u32(&mut r)?;
            if !(1..=2).contains(&count) {
                return Err(StateError::Corrupt(format!("{count} recurrent states")));
            }
            for floats in rs.shape.tensor_floats() {
                let mut b = vec![0u8; floats as usize * 4 * count as usize];
                read_exact(&mut r, &mut b, "recurrent states")?;
                states.push(b);
            }
        }
        r.check_checksum("contents")?;
        if r.read(&mut [0u8; 1])? != 0 {
            return Err(StateError::Corrupt("data after the checksum".into()));
        }
        let n_vocab = self.model().hp.n_vocab;
        if let Some(t) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(StateError::Corrupt(format!(
                "token id {t} outside the vocabulary"
            )));
        }
        self.set_n_past(n as u32);
        if count > 0 {
            self.put_states(n as u32, count, &states)?;
        }
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
    use super::{cell_runs, Hashing, Header, StateError};

    #[test]
    fn runs_wrap_around_the_ring() {
        assert_eq!(cell_runs(0, 5, 100), [(0, 5)]);
        assert_eq!(cell_runs(3, 3, 100), []);
        assert_eq!(cell_runs(200, 300, 256), [(200, 56), (0, 44)]);
        assert_eq!(cell_runs(256, 300, 256), [(0, 44)]);
    }

    fn header() -> Header {
        Header {
            fingerprint: 0x0123_4567_89ab_cdef,
            type_k: 1,
            type_v: 8,
            v_trans: true,
            n_layer: 30,
            k_row: 384,
            v_row: 384,
            n_tokens: 17,
            extra_len: 5,
        }
    }

    fn header_bytes() -> Vec<u8> {
        let mut w = Hashing::new(Vec::new());
        header().write(&mut w).unwrap();
        w.inner
    }

    #[test]
    fn a_header_reads_back() {
        let bytes = header_bytes();
        assert_eq!(bytes.len(), 61);
        let h = Header::read(&mut Hashing::new(bytes.as_slice())).unwrap();
        assert_eq!(h, header());
    }

    #[test]
    fn a_damaged_header_is_corrupt_not_another_model() {
        // Guards the header checksum: a flipped bit in the fingerprint or a size must not be
        // reported as "another model" or acted on (the magic and version come first).
        let bytes = header_bytes();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let e = Header::read(&mut Hashing::new(b.as_slice())).unwrap_err();
                match (i, e) {
                    (0..8, StateError::Magic)
                    | (8..12, StateError::Version(_))
                    | (12.., StateError::Checksum("header")) => {}
                    (i, e) => panic!("byte {i} bit {bit}: {e}"),
                }
            }
        }
    }

    #[test]
    fn a_truncated_header_is_refused() {
        let bytes = header_bytes();
        for n in 12..bytes.len() {
            let e = Header::read(&mut Hashing::new(&bytes[..n])).unwrap_err();
            assert!(
                matches!(e, StateError::Corrupt(ref m) if m.contains("header")),
                "{n} bytes: {e}"
            );
        }
    }

    #[test]
    fn an_old_version_is_refused_by_its_number() {
        let mut b = header_bytes();
        b[8..12].copy_from_slice(&2u32.to_le_bytes());
        let e = Header::read(&mut Hashing::new(b.as_slice())).unwrap_err();
        assert!(matches!(e, StateError::Version(2)), "{e}");
        assert_eq!(
            e.to_string(),
            "state file version 2 is not supported (this Ember writes version 3)"
        );
    }
}
