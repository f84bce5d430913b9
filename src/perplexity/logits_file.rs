//! llama.cpp's saved-logits file (`llama-perplexity --kl-divergence-base`).
//!
//! Layout (little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `_logits_` |
//! | 4 | `n_ctx` (u32) |
//! | 4 | `n_vocab` (i32) |
//! | 4 | `n_chunk` (i32) |
//! | 4·n_chunk·n_ctx | evaluated tokens (i32) |
//! | 2·nv per row | `n_chunk · (n_ctx-1-n_ctx/2)` rows |
//!
//! A row is `nv = 2*((n_vocab+1)/2)+4` u16: `f32 scale`, `f32 min_log_prob`,
//! then `n_vocab` u16 `q` with `log_prob = scale*q + min_log_prob` (plus one
//! zero u16 of padding when `n_vocab` is odd).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{cmax, cmin, first_scored, row_len_u16, scored_per_chunk};

/// File magic.
pub const MAGIC: &[u8; 8] = b"_logits_";
/// Header size in bytes (magic + n_ctx + n_vocab + n_chunk).
pub const HEADER_LEN: u64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum LogitsFileError {
    #[error("logits file I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("not a llama.cpp logits file: expected magic \"_logits_\", found {0:?}")]
    BadMagic([u8; 8]),
    #[error("logits file too short for its 20-byte header ({0} bytes)")]
    TruncatedHeader(u64),
    #[error("invalid logits file header: {0}")]
    InvalidHeader(String),
    #[error(
        "logits file size mismatch: header (n_ctx={n_ctx}, n_vocab={n_vocab}, n_chunk={n_chunk}) \
         implies {expected} bytes, file has {actual}"
    )]
    SizeMismatch {
        n_ctx: u32,
        n_vocab: i32,
        n_chunk: i32,
        expected: u64,
        actual: u64,
    },
    #[error("log-prob row {index} out of range ({rows} rows)")]
    RowOutOfRange { index: usize, rows: usize },
    #[error("logits row has {got} values, expected n_vocab = {expected}")]
    RowLength { got: usize, expected: usize },
    #[error("token {token} at index {index} is outside the vocabulary (n_vocab = {n_vocab})")]
    BadToken {
        token: i32,
        index: usize,
        n_vocab: usize,
    },
    #[error("logits writer: {0}")]
    Usage(String),
}

type Result<T> = std::result::Result<T, LogitsFileError>;

/// Per-row quantization parameters and by-products of [`quantize_log_probs`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowQuant {
    pub scale: f32,
    pub min_log_prob: f32,
    pub max_logit: f32,
    /// `ln(sum(exp(l - max_logit)))` as `f32`.
    pub log_sum_exp: f32,
}

impl RowQuant {
    /// `-log p(token)`, computed as llama.cpp's writer does (`f32`).
    pub fn nll(&self, logits: &[f32], token: usize) -> f64 {
        f64::from(self.max_logit + self.log_sum_exp - logits[token])
    }
}

/// llama.cpp's `nearest_int`: round-to-nearest-even via the 1.5·2^23 trick.
#[inline]
fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0f32;
    (val.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Quantizes the log-softmax of `logits` into `q` (`q.len() == logits.len()`),
/// bit for bit like llama.cpp's perplexity tool: log-probs below
/// `max_logit - 16` (relative) are clamped to the minimum, the range is split
/// into 65535 steps, values are rounded to nearest (ties to even).
pub fn quantize_log_probs(logits: &[f32], q: &mut [u16]) -> RowQuant {
    assert!(!logits.is_empty(), "quantize_log_probs: empty row");
    assert_eq!(q.len(), logits.len(), "quantize_log_probs: length mismatch");
    let mut max_logit = logits[0];
    let mut min_logit = logits[0];
    for &l in &logits[1..] {
        max_logit = cmax(max_logit, l);
        min_logit = cmin(min_logit, l);
    }
    min_logit = cmax(min_logit, max_logit - 16.0);
    let mut sum_exp = 0.0f64;
    for &l in logits {
        sum_exp += f64::from((l - max_logit).exp());
    }
    let log_sum_exp = sum_exp.ln() as f32;
    let min_log_prob = min_logit - max_logit - log_sum_exp;
    let scale = (max_logit - min_logit) / 65535.0f32;
    if scale != 0.0 {
        let inv_scale = 1.0f32 / scale;
        for (qi, &l) in q.iter_mut().zip(logits) {
            *qi = if l > min_logit {
                nearest_int(inv_scale * (l - min_logit)) as u16
            } else {
                0
            };
        }
    } else {
        q.fill(0);
    }
    RowQuant {
        scale,
        min_log_prob,
        max_logit,
        log_sum_exp,
    }
}

fn check_dims(n_ctx: usize, n_vocab: usize, n_chunk: usize) -> Result<(u32, i32, i32)> {
    let bad = |m: String| LogitsFileError::InvalidHeader(m);
    let c = u32::try_from(n_ctx).map_err(|_| bad(format!("n_ctx {n_ctx} too large")))?;
    let v = i32::try_from(n_vocab).map_err(|_| bad(format!("n_vocab {n_vocab} too large")))?;
    let k = i32::try_from(n_chunk).map_err(|_| bad(format!("n_chunk {n_chunk} too large")))?;
    if c == 0 || v <= 0 {
        return Err(bad(format!("n_ctx={n_ctx}, n_vocab={n_vocab} must be > 0")));
    }
    Ok((c, v, k))
}

/// Total file size implied by a header, or `None` on overflow.
fn expected_len(n_ctx: u64, n_vocab: u64, n_chunk: u64) -> Option<u64> {
    let tokens = n_chunk.checked_mul(n_ctx)?.checked_mul(4)?;
    let rows = n_chunk.checked_mul(scored_per_chunk(usize::try_from(n_ctx).ok()?) as u64)?;
    let row_bytes = (row_len_u16(usize::try_from(n_vocab).ok()?) as u64).checked_mul(2)?;
    HEADER_LEN
        .checked_add(tokens)?
        .checked_add(rows.checked_mul(row_bytes)?)
}

fn check_tokens(tokens: &[i32], n_vocab: usize) -> Result<()> {
    match tokens.iter().position(|&t| t < 0 || t as usize >= n_vocab) {
        Some(index) => Err(LogitsFileError::BadToken {
            token: tokens[index],
            index,
            n_vocab,
        }),
        None => Ok(()),
    }
}

/// Writes a logits file. Header goes out in [`new`](Self::new), then all
/// tokens once ([`write_tokens`](Self::write_tokens)), then one
/// [`write_row`](Self::write_row) per scored position, chunk by chunk.
pub struct LogitsWriter<W: Write> {
    w: W,
    n_ctx: usize,
    n_vocab: usize,
    n_chunk: usize,
    total_rows: usize,
    tokens: Vec<i32>,
    tokens_written: bool,
    rows_written: usize,
    q: Vec<u16>,
    bytes: Vec<u8>,
}

impl<W: Write> LogitsWriter<W> {
    pub fn new(mut w: W, n_ctx: usize, n_vocab: usize, n_chunk: usize) -> Result<Self> {
        let (c, v, k) = check_dims(n_ctx, n_vocab, n_chunk)?;
        if expected_len(c.into(), v as u64, k as u64).is_none() {
            return Err(LogitsFileError::InvalidHeader("file size overflows".into()));
        }
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&c.to_le_bytes());
        header.extend_from_slice(&v.to_le_bytes());
        header.extend_from_slice(&k.to_le_bytes());
        w.write_all(&header)?;
        Ok(LogitsWriter {
            w,
            n_ctx,
            n_vocab,
            n_chunk,
            total_rows: n_chunk * scored_per_chunk(n_ctx),
            tokens: Vec::new(),
            tokens_written: false,
            rows_written: 0,
            q: vec![0; n_vocab],
            bytes: vec![0; 2 * row_len_u16(n_vocab)],
        })
    }

    /// Writes all `n_chunk * n_ctx` evaluated tokens (original ids, before any
    /// BOS substitution). Must be called exactly once, before the rows.
    pub fn write_tokens(&mut self, tokens: &[i32]) -> Result<()> {
        if self.tokens_written {
            return Err(LogitsFileError::Usage("tokens already written".into()));
        }
        let want = self.n_chunk * self.n_ctx;
        if tokens.len() != want {
            return Err(LogitsFileError::Usage(format!(
                "expected n_chunk*n_ctx = {want} tokens, got {}",
                tokens.len()
            )));
        }
        check_tokens(tokens, self.n_vocab)?;
        let mut buf = Vec::with_capacity(tokens.len() * 4);
        for t in tokens {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        self.w.write_all(&buf)?;
        self.tokens = tokens.to_vec();
        self.tokens_written = true;
        Ok(())
    }

    /// Quantizes and writes the next scored row; returns `-log p(target)` for
    /// the token this position predicts (as llama.cpp's writer computes it).
    pub fn write_row(&mut self, logits: &[f32]) -> Result<f64> {
        if !self.tokens_written {
            return Err(LogitsFileError::Usage(
                "write_tokens must come first".into(),
            ));
        }
        if self.rows_written >= self.total_rows {
            return Err(LogitsFileError::Usage(format!(
                "all {} rows already written",
                self.total_rows
            )));
        }
        if logits.len() != self.n_vocab {
            return Err(LogitsFileError::RowLength {
                got: logits.len(),
                expected: self.n_vocab,
            });
        }
        let per_chunk = scored_per_chunk(self.n_ctx);
        let (chunk, j) = (self.rows_written / per_chunk, self.rows_written % per_chunk);
        let target = self.tokens[chunk * self.n_ctx + first_scored(self.n_ctx) + j + 1] as usize;

        let rq = quantize_log_probs(logits, &mut self.q);
        self.bytes[0..4].copy_from_slice(&rq.scale.to_le_bytes());
        self.bytes[4..8].copy_from_slice(&rq.min_log_prob.to_le_bytes());
        for (dst, q) in self.bytes[8..].chunks_exact_mut(2).zip(&self.q) {
            dst.copy_from_slice(&q.to_le_bytes());
        }
        // the odd-vocab padding u16 (if any) stays zero, as in llama.cpp
        self.w.write_all(&self.bytes)?;
        self.rows_written += 1;
        Ok(rq.nll(logits, target))
    }

    pub fn rows_written(&self) -> usize {
        self.rows_written
    }

    pub fn total_rows(&self) -> usize {
        self.total_rows
    }

    /// Flushes and returns the sink; errors if rows are missing.
    pub fn finish(mut self) -> Result<W> {
        if self.rows_written != self.total_rows {
            return Err(LogitsFileError::Usage(format!(
                "only {} of {} rows written",
                self.rows_written, self.total_rows
            )));
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

/// One dequantizable log-prob row of the base model.
#[derive(Clone, Copy, Debug)]
pub struct LogProbRow<'a> {
    pub scale: f32,
    pub min: f32,
    pub q: &'a [u16],
}

impl LogProbRow<'_> {
    /// `scale*q[i] + min` (f32, as llama.cpp).
    #[inline]
    pub fn log_prob(&self, i: usize) -> f32 {
        self.scale * f32::from(self.q[i]) + self.min
    }

    /// Dequantizes all log-probs into `out` (`out.len() == q.len()`).
    pub fn dequantize_into(&self, out: &mut [f32]) {
        for (o, &q) in out.iter_mut().zip(self.q) {
            *o = self.scale * f32::from(q) + self.min;
        }
    }
}

/// Reads a logits file: header and tokens up front, rows on demand.
pub struct LogitsReader<R: Read + Seek = File> {
    r: R,
    n_ctx: u32,
    n_vocab: i32,
    n_chunk: i32,
    tokens: Vec<i32>,
    rows: usize,
    rows_offset: u64,
    pos: u64,
    bytes: Vec<u8>,
    q: Vec<u16>,
}

impl LogitsReader<File> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(File::open(path)?)
    }
}

impl<R: Read + Seek> LogitsReader<R> {
    /// Validates the header against the stream length and loads the tokens.
    pub fn new(mut r: R) -> Result<Self> {
        let actual = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        if actual < HEADER_LEN {
            return Err(LogitsFileError::TruncatedHeader(actual));
        }
        let mut h = [0u8; HEADER_LEN as usize];
        r.read_exact(&mut h)?;
        let magic: [u8; 8] = h[0..8].try_into().expect("8 bytes");
        if &magic != MAGIC {
            return Err(LogitsFileError::BadMagic(magic));
        }
        let word = |i: usize| -> [u8; 4] { h[i..i + 4].try_into().expect("4 bytes") };
        let n_ctx = u32::from_le_bytes(word(8));
        let n_vocab = i32::from_le_bytes(word(12));
        let n_chunk = i32::from_le_bytes(word(16));
        if n_ctx == 0 || n_vocab <= 0 || n_chunk < 0 {
            return Err(LogitsFileError::InvalidHeader(format!(
                "n_ctx={n_ctx}, n_vocab={n_vocab}, n_chunk={n_chunk}"
            )));
        }
        let expected = expected_len(n_ctx.into(), n_vocab as u64, n_chunk as u64)
            .ok_or_else(|| LogitsFileError::InvalidHeader("file size overflows".into()))?;
        if expected != actual {
            return Err(LogitsFileError::SizeMismatch {
                n_ctx,
                n_vocab,
                n_chunk,
                expected,
                actual,
            });
        }
        let n_tok = n_chunk as usize * n_ctx as usize;
        let mut raw = vec![0u8; n_tok * 4];
        r.read_exact(&mut raw)?;
        let tokens: Vec<i32> = raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let nv = n_vocab as usize;
        check_tokens(&tokens, nv)?;
        let rows_offset = HEADER_LEN + raw.len() as u64;
        Ok(LogitsReader {
            r,
            n_ctx,
            n_vocab,
            n_chunk,
            tokens,
            rows: n_chunk as usize * scored_per_chunk(n_ctx as usize),
            rows_offset,
            pos: rows_offset,
            bytes: vec![0; 2 * row_len_u16(nv)],
            q: vec![0; nv],
        })
    }

    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    pub fn n_vocab(&self) -> i32 {
        self.n_vocab
    }

    pub fn n_chunk(&self) -> i32 {
        self.n_chunk
    }

    /// All `n_chunk * n_ctx` evaluated tokens.
    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Tokens of chunk `c` (`n_ctx` of them).
    pub fn chunk_tokens(&self, c: usize) -> &[i32] {
        let n = self.n_ctx as usize;
        &self.tokens[c * n..(c + 1) * n]
    }

    /// Total scored rows (`n_chunk * (n_ctx - 1 - n_ctx/2)`).
    pub fn n_rows(&self) -> usize {
        self.rows
    }

    /// Rows per chunk (`n_ctx - 1 - n_ctx/2`).
    pub fn rows_per_chunk(&self) -> usize {
        scored_per_chunk(self.n_ctx as usize)
    }

    /// The token that row `i` predicts (ground truth for perplexity).
    pub fn target(&self, i: usize) -> u32 {
        let per = self.rows_per_chunk();
        let n = self.n_ctx as usize;
        self.tokens[(i / per) * n + first_scored(n) + i % per + 1] as u32
    }

    /// Reads row `i` (rows are in chunk order; sequential reads do not seek).
    /// The row borrows the reader, so take [`target`](Self::target) first:
    /// `let t = r.target(i); let row = r.row(i)?; kld.add(&logits, &row, t);`
    pub fn row(&mut self, i: usize) -> Result<LogProbRow<'_>> {
        if i >= self.rows {
            return Err(LogitsFileError::RowOutOfRange {
                index: i,
                rows: self.rows,
            });
        }
        let off = self.rows_offset + i as u64 * self.bytes.len() as u64;
        if off != self.pos {
            self.r.seek(SeekFrom::Start(off))?;
        }
        // keep `pos` unknown if the read fails midway
        self.pos = u64::MAX;
        self.r.read_exact(&mut self.bytes)?;
        self.pos = off + self.bytes.len() as u64;
        let scale = f32::from_le_bytes(self.bytes[0..4].try_into().expect("4 bytes"));
        let min = f32::from_le_bytes(self.bytes[4..8].try_into().expect("4 bytes"));
        for (q, b) in self.q.iter_mut().zip(self.bytes[8..].chunks_exact(2)) {
            *q = u16::from_le_bytes([b[0], b[1]]);
        }
        Ok(LogProbRow {
            scale,
            min,
            q: &self.q,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// LCG shared with the C++ reference program used to produce the
    /// parity constants below.
    struct Lcg(u64);
    impl Lcg {
        fn step(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0
        }
        fn logit(&mut self) -> f32 {
            (self.step() >> 40) as f32 / 16_777_216.0 * 30.0 - 20.0
        }
    }

    fn fnv1a(data: &[u8]) -> u64 {
        data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    fn true_log_softmax(logits: &[f32]) -> Vec<f64> {
        let max = logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
        logits.iter().map(|&l| l as f64 - max - lse).collect()
    }

    /// Writes a small file; returns (bytes, rows of logits, nll per row).
    fn make_file(
        n_ctx: usize,
        n_vocab: usize,
        n_chunk: usize,
    ) -> (Vec<u8>, Vec<Vec<f32>>, Vec<f64>) {
        let mut g = Lcg(777);
        let tokens: Vec<i32> = (0..n_ctx * n_chunk)
            .map(|_| ((g.step() >> 33) % n_vocab as u64) as i32)
            .collect();
        let mut w = LogitsWriter::new(Cursor::new(Vec::new()), n_ctx, n_vocab, n_chunk).unwrap();
        w.write_tokens(&tokens).unwrap();
        let mut rows = Vec::new();
        let mut nlls = Vec::new();
        for _ in 0..w.total_rows() {
            let row: Vec<f32> = (0..n_vocab).map(|_| g.logit()).collect();
            nlls.push(w.write_row(&row).unwrap());
            rows.push(row);
        }
        (w.finish().unwrap().into_inner(), rows, nlls)
    }

    #[test]
    fn bit_exact_with_llama_cpp() {
        // Same construction as the C++ reference (llama.cpp's own
        // `log_softmax`/`nearest_int` from tools/perplexity/perplexity.cpp,
        // built with g++ -O3 for x86-64): all-equal row (scale 0), a narrow
        // row (no clamp), a quarter-step row (rounding ties), a wide row.
        let (n_ctx, n_vocab, n_chunk) = (6usize, 1001usize, 2usize);
        let mut g = Lcg(12345);
        let tokens: Vec<i32> = (0..n_ctx * n_chunk)
            .map(|_| ((g.step() >> 33) % n_vocab as u64) as i32)
            .collect();
        let mut w = LogitsWriter::new(Vec::new(), n_ctx, n_vocab, n_chunk).unwrap();
        w.write_tokens(&tokens).unwrap();
        let mut nll_sum = 0.0f64;
        for r in 0..w.total_rows() {
            let row: Vec<f32> = (0..n_vocab)
                .map(|_| {
                    let x = g.logit();
                    match r {
                        0 => 1.5,
                        1 => x * 0.1,
                        2 => (x * 4.0).round() / 4.0,
                        _ => x,
                    }
                })
                .collect();
            nll_sum += w.write_row(&row).unwrap();
        }
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 8116);
        assert_eq!(fnv1a(&bytes), 0x87bc_0aed_1005_2de5);
        assert_eq!(nll_sum, 61.980_395_317_077_64);
    }

    #[test]
    fn roundtrip_and_dequantization_error() {
        let (n_ctx, n_vocab, n_chunk) = (9usize, 37usize, 3usize);
        let (bytes, rows, nlls) = make_file(n_ctx, n_vocab, n_chunk);
        let per = n_ctx - 1 - n_ctx / 2;
        let nv = 2 * n_vocab.div_ceil(2) + 4;
        assert_eq!(
            bytes.len(),
            20 + n_ctx * n_chunk * 4 + n_chunk * per * nv * 2
        );
        assert_eq!(&bytes[..8], b"_logits_");

        let mut r = LogitsReader::new(Cursor::new(bytes)).unwrap();
        assert_eq!(r.n_ctx(), n_ctx as u32);
        assert_eq!(r.n_vocab(), n_vocab as i32);
        assert_eq!(r.n_chunk(), n_chunk as i32);
        assert_eq!(r.tokens().len(), n_ctx * n_chunk);
        assert_eq!(r.n_rows(), rows.len());
        assert_eq!(r.rows_per_chunk(), per);
        let mut deq = vec![0f32; n_vocab];
        // read out of order to exercise seeking
        for i in (0..rows.len()).rev().chain(0..rows.len()) {
            let target = r.target(i) as usize;
            let c = i / per;
            assert_eq!(target as i32, r.chunk_tokens(c)[n_ctx / 2 + i % per + 1]);
            let truth = true_log_softmax(&rows[i]);
            assert!((nlls[i] + truth[target]).abs() < 1e-4);
            let row = r.row(i).unwrap();
            row.dequantize_into(&mut deq);
            let max = truth.iter().cloned().fold(f64::MIN, f64::max);
            let tol = f64::from(row.scale) * 0.5 + 1e-4;
            for (k, (&d, &t)) in deq.iter().zip(&truth).enumerate() {
                assert_eq!(d, row.log_prob(k));
                if t > max - 16.0 {
                    assert!(
                        (f64::from(d) - t).abs() <= tol,
                        "row {i} tok {k}: {d} vs {t}"
                    );
                } else {
                    // clamped to the minimum
                    assert_eq!(row.q[k], 0);
                    assert!(t <= f64::from(d) + 1e-4);
                }
            }
        }
        assert!(matches!(
            r.row(rows.len()),
            Err(LogitsFileError::RowOutOfRange { .. })
        ));
    }

    #[test]
    fn open_from_path() {
        let (bytes, _, _) = make_file(4, 10, 2);
        let path = std::env::temp_dir().join(format!("ember-logits-{}.bin", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let mut r = LogitsReader::open(&path).unwrap();
        assert_eq!(r.n_rows(), 2);
        assert!(r.row(1).is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            LogitsReader::open(&path),
            Err(LogitsFileError::Io(_))
        ));
    }

    #[test]
    fn header_validation() {
        let open = |b: Vec<u8>| LogitsReader::new(Cursor::new(b));
        let (good, _, _) = make_file(5, 11, 2);
        assert!(open(good.clone()).is_ok());

        assert!(matches!(
            open(good[..10].to_vec()),
            Err(LogitsFileError::TruncatedHeader(10))
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(open(bad), Err(LogitsFileError::BadMagic(_))));
        let e = open(good[..good.len() - 1].to_vec()).err().unwrap();
        assert!(
            matches!(e, LogitsFileError::SizeMismatch { actual, expected, .. } if actual + 1 == expected)
        );
        assert!(e.to_string().contains("n_vocab=11"));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            open(long),
            Err(LogitsFileError::SizeMismatch { .. })
        ));
        for (off, val) in [(8usize, 0i32), (12, 0), (12, -5), (16, -1)] {
            let mut b = good.clone();
            b[off..off + 4].copy_from_slice(&val.to_le_bytes());
            assert!(
                matches!(open(b), Err(LogitsFileError::InvalidHeader(_))),
                "{off}"
            );
        }
        // a huge n_chunk is caught by the size check, not by allocating
        let mut b = good.clone();
        b[16..20].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(open(b), Err(LogitsFileError::SizeMismatch { .. })));
        // token outside the vocabulary
        let mut b = good;
        b[20..24].copy_from_slice(&11i32.to_le_bytes());
        assert!(matches!(
            open(b),
            Err(LogitsFileError::BadToken {
                token: 11,
                index: 0,
                ..
            })
        ));
    }

    #[test]
    fn writer_misuse() {
        let mut w = LogitsWriter::new(Vec::new(), 4, 3, 1).unwrap();
        assert!(matches!(
            w.write_row(&[0.0; 3]),
            Err(LogitsFileError::Usage(_))
        ));
        assert!(matches!(
            w.write_tokens(&[0, 1, 2]),
            Err(LogitsFileError::Usage(_))
        ));
        assert!(matches!(
            w.write_tokens(&[0, 1, 2, 3]),
            Err(LogitsFileError::BadToken { .. })
        ));
        w.write_tokens(&[0, 1, 2, 1]).unwrap();
        assert!(matches!(
            w.write_tokens(&[0, 1, 2, 1]),
            Err(LogitsFileError::Usage(_))
        ));
        assert!(matches!(
            w.write_row(&[0.0; 2]),
            Err(LogitsFileError::RowLength {
                got: 2,
                expected: 3
            })
        ));
        assert_eq!(w.total_rows(), 1);
        let nll = w.write_row(&[0.0, 0.0, 0.0]).unwrap();
        assert!((nll - 3f64.ln()).abs() < 1e-6);
        assert!(matches!(
            w.write_row(&[0.0; 3]),
            Err(LogitsFileError::Usage(_))
        ));
        assert_eq!(w.rows_written(), 1);
        assert!(w.finish().is_ok());
        let w = LogitsWriter::new(Vec::new(), 4, 3, 1).unwrap();
        assert!(matches!(w.finish(), Err(LogitsFileError::Usage(_))));
        assert!(LogitsWriter::new(Vec::new(), 0, 3, 1).is_err());
        assert!(LogitsWriter::new(Vec::new(), 4, 0, 1).is_err());
    }

    #[test]
    fn quantize_edge_cases() {
        let mut q = [0u16; 3];
        let rq = quantize_log_probs(&[2.0, 2.0, 2.0], &mut q);
        assert_eq!(rq.scale, 0.0);
        assert_eq!(q, [0, 0, 0]);
        assert!((rq.min_log_prob + 3f32.ln()).abs() < 1e-6);
        let rq = quantize_log_probs(&[0.0, 100.0, 50.0], &mut q);
        // range clamped to 16 below the max
        assert_eq!(rq.scale, 16.0 / 65535.0);
        assert_eq!(q, [0, 65535, 0]);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(65534.7), 65535);
    }
}
