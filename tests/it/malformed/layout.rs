//! Byte surgery on a valid GGUF file: where each field lies, and copies with one changed.

use crate::common::{tiny_writer, TinyArch};
use ember::gguf::GgufWriter;

/// What a case hands to the binary.
pub enum Input {
    Bytes(Vec<u8>),
    Dir,
    Missing,
}

/// Where each field of a valid file lies.
pub struct Layout {
    pub kvs: Vec<Kv>,
    pub tensors: Vec<Ti>,
    pub infos_end: usize,
    pub data_start: usize,
}

pub struct Kv {
    pub key: String,
    /// The key's u64 length field.
    pub at: usize,
    pub type_at: usize,
    pub value_at: usize,
}

pub struct Ti {
    pub name: String,
    pub n_dims_at: usize,
    pub dims_at: usize,
    pub type_at: usize,
    pub offset_at: usize,
}

pub fn rd_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset just past a value of GGUF type `ty` starting at `at`.
pub fn skip_value(b: &[u8], at: usize, ty: u32) -> usize {
    match ty {
        0 | 1 | 7 => at + 1,
        2 | 3 => at + 2,
        4..=6 => at + 4,
        10..=12 => at + 8,
        8 => at + 8 + rd_u64(b, at) as usize,
        9 => {
            let elem = rd_u32(b, at);
            let n = rd_u64(b, at + 4);
            (0..n).fold(at + 12, |p, _| skip_value(b, p, elem))
        }
        _ => panic!("unknown value type {ty}"),
    }
}

/// Walk a valid file (written by our writer, default alignment 32).
pub fn layout(b: &[u8]) -> Layout {
    let n_tensors = rd_u64(b, 8);
    let n_kv = rd_u64(b, 16);
    let mut p = 24;
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let len = rd_u64(b, p) as usize;
        let key = String::from_utf8(b[p + 8..p + 8 + len].to_vec()).unwrap();
        let type_at = p + 8 + len;
        let value_at = type_at + 4;
        kvs.push(Kv {
            key,
            at: p,
            type_at,
            value_at,
        });
        p = skip_value(b, value_at, rd_u32(b, type_at));
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let len = rd_u64(b, p) as usize;
        let name = String::from_utf8(b[p + 8..p + 8 + len].to_vec()).unwrap();
        let n_dims_at = p + 8 + len;
        let n_dims = rd_u32(b, n_dims_at) as usize;
        let type_at = n_dims_at + 4 + 8 * n_dims;
        tensors.push(Ti {
            name,
            n_dims_at,
            dims_at: n_dims_at + 4,
            type_at,
            offset_at: type_at + 4,
        });
        p = type_at + 12;
    }
    Layout {
        kvs,
        tensors,
        infos_end: p,
        data_start: p.next_multiple_of(32),
    }
}

/// The valid file every surgery starts from.
pub struct Base {
    pub bytes: Vec<u8>,
    pub l: Layout,
}

impl Base {
    pub fn new() -> Base {
        let bytes = tiny_writer(1, TinyArch::Llama).to_bytes();
        let l = layout(&bytes);
        Base { bytes, l }
    }

    pub fn kv(&self, key: &str) -> &Kv {
        self.l.kvs.iter().find(|k| k.key == key).unwrap()
    }

    pub fn ti(&self, name: &str) -> &Ti {
        self.l.tensors.iter().find(|t| t.name == name).unwrap()
    }

    /// A copy with `f` applied.
    pub fn with(&self, f: impl FnOnce(&mut Vec<u8>, &Base)) -> Input {
        let mut b = self.bytes.clone();
        f(&mut b, self);
        Input::Bytes(b)
    }

    pub fn cut(&self, at: usize) -> Input {
        Input::Bytes(self.bytes[..at].to_vec())
    }

    /// Overwrite the bytes of key `key` (same length) with `new`.
    pub fn rename_key(&self, key: &str, new: &str) -> Input {
        assert_eq!(key.len(), new.len());
        let at = self.kv(key).at + 8;
        self.with(|b, _| b[at..at + new.len()].copy_from_slice(new.as_bytes()))
    }

    pub fn rename_tensor(&self, name: &str, new: &str) -> Input {
        assert_eq!(name.len(), new.len());
        let at = self.ti(name).n_dims_at - name.len();
        self.with(|b, _| b[at..at + new.len()].copy_from_slice(new.as_bytes()))
    }
}

/// The tiny model with `f` applied to its writer.
pub fn written(arch: TinyArch, f: impl FnOnce(&mut GgufWriter)) -> Input {
    let mut w = tiny_writer(1, arch);
    f(&mut w);
    Input::Bytes(w.to_bytes())
}
