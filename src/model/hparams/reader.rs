//! The metadata reader that collects every problem (see [`Reader`]).

use crate::gguf::{GgufFile, MetaError};

use super::{HparamsError, Key, Swa};

/// Collects metadata look-ups, remembering failures instead of stopping at the first.
pub struct Reader<'a> {
    f: &'a GgufFile,
    arch: String,
    errors: Vec<MetaError>,
}

impl<'a> Reader<'a> {
    pub fn new(f: &'a GgufFile, arch: &str) -> Self {
        Reader {
            f,
            arch: arch.to_string(),
            errors: Vec::new(),
        }
    }

    fn note<T: Default>(&mut self, r: Result<T, MetaError>) -> T {
        r.unwrap_or_else(|e| {
            self.errors.push(e);
            T::default()
        })
    }

    pub fn u32(&mut self, k: Key) -> u32 {
        let r = self.f.get_u32(&k.name(&self.arch));
        self.note(r)
    }

    pub fn f32(&mut self, k: Key) -> f32 {
        let r = self.f.get_f32(&k.name(&self.arch));
        self.note(r)
    }

    /// An optional key: absent gives `None`; present with a wrong type is an error.
    pub fn opt_u32(&mut self, k: Key) -> Option<u32> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_u32(&key).map(Some);
        self.note(r)
    }

    pub fn opt_f32(&mut self, k: Key) -> Option<f32> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_f32(&key).map(Some);
        self.note(r)
    }

    pub fn opt_bool(&mut self, k: Key) -> Option<bool> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_bool(&key).map(Some);
        self.note(r)
    }

    pub fn opt_str(&mut self, k: Key) -> Option<String> {
        let key = k.name(&self.arch);
        self.f.get(&key)?;
        let r = self.f.get_str(&key).map(|s| Some(s.to_string()));
        self.note(r)
    }

    /// An array of integers (of any integer type), when the file has the key.
    pub fn opt_ints(&mut self, k: Key) -> Option<Vec<i64>> {
        use crate::gguf::Array as A;
        let key = k.name(&self.arch);
        let arr = self.f.get(&key)?.as_array()?;
        let v: Vec<i64> = match arr {
            A::U8(v) => v.iter().map(|&x| x as i64).collect(),
            A::I8(v) => v.iter().map(|&x| x as i64).collect(),
            A::U16(v) => v.iter().map(|&x| x as i64).collect(),
            A::I16(v) => v.iter().map(|&x| x as i64).collect(),
            A::U32(v) => v.iter().map(|&x| x as i64).collect(),
            A::I32(v) => v.iter().map(|&x| x as i64).collect(),
            A::U64(v) => v.iter().map(|&x| x.min(i64::MAX as u64) as i64).collect(),
            A::I64(v) => v.clone(),
            other => {
                self.errors.push(MetaError::WrongType {
                    key,
                    expected: "an array of integers",
                    found: format!("an array of {}", other.elem_type().name()),
                });
                return None;
            }
        };
        Some(v)
    }

    /// An array of bools, when the file has the key.
    pub fn opt_bools(&mut self, k: Key) -> Option<Vec<bool>> {
        let key = k.name(&self.arch);
        match self.f.get(&key)?.as_array()? {
            crate::gguf::Array::Bool(b) => Some(b.clone()),
            other => {
                self.errors.push(MetaError::WrongType {
                    key,
                    expected: "an array of bools",
                    found: format!("an array of {}", other.elem_type().name()),
                });
                None
            }
        }
    }

    pub fn push(&mut self, e: MetaError) {
        self.errors.push(e);
    }

    pub fn finish<T>(self, value: T) -> Result<T, HparamsError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(HparamsError(self.errors))
        }
    }
}

impl Reader<'_> {
    /// A key that llama.cpp also accepts as an array of one value per layer: such an array
    /// must have `n_layer` entries (else this reports both counts and gives the default);
    /// Ember reads one value for all layers, so `read` still refuses an array of the right
    /// length as the wrong type.
    pub(super) fn scalar_of_layers<T: Default>(
        &mut self,
        k: Key,
        n_layer: u32,
        read: impl FnOnce(&mut Self, Key) -> T,
    ) -> T {
        let key = k.name(&self.arch);
        if let Some(a) = self.f.get(&key).and_then(|v| v.as_array()) {
            if let Some(e) = self.per_layer_count(&key, a.len(), n_layer) {
                self.push(e);
                return T::default();
            }
        }
        read(self, k)
    }

    /// The error for a per-layer array of `len` entries in a model of `n_layer` layers, if
    /// they differ (none when `n_layer` is 0: a missing or bad block count is reported
    /// already).
    fn per_layer_count(&self, key: &str, len: usize, n_layer: u32) -> Option<MetaError> {
        (n_layer != 0 && len != n_layer as usize).then(|| MetaError::WrongType {
            key: key.to_string(),
            expected: "one entry per layer",
            found: format!(
                "{len} entries ({} is {n_layer})",
                Key::BlockCount.name(&self.arch)
            ),
        })
    }

    /// Sliding-window attention as llama.cpp reads it: the window from
    /// `attention.sliding_window` (absent or 0: none); the local layers from
    /// `attention.sliding_window_pattern`, either a bool per layer or a period `n` (every n-th
    /// layer global, the others local), `default_period` when absent.
    pub fn swa(&mut self, n_layer: u32, default_period: u32) -> Option<Swa> {
        self.swa_or(n_layer, default_period, 0)
    }

    /// [`Reader::swa`] with a window of `default_window` when the file gives none (Gemma 2:
    /// 4096; 0 for no sliding window).
    pub fn swa_or(
        &mut self,
        n_layer: u32,
        default_period: u32,
        default_window: u32,
    ) -> Option<Swa> {
        let window = self.opt_u32(Key::SlidingWindow).unwrap_or(default_window);
        let window = Some(window).filter(|&w| w > 0)?;
        let key = Key::SlidingWindowPattern.name(&self.arch);
        let f = self.f;
        let layers = match f.get(&key).and_then(|v| v.as_array()) {
            Some(arr) => {
                let found = match arr {
                    crate::gguf::Array::Bool(b) if b.len() == n_layer as usize => Ok(b.clone()),
                    crate::gguf::Array::Bool(b) => {
                        Err(self.per_layer_count(&key, b.len(), n_layer))
                    }
                    other => Err(Some(MetaError::WrongType {
                        key,
                        expected: "one bool per layer",
                        found: format!("an array of {}", other.elem_type().name()),
                    })),
                };
                found.unwrap_or_else(|e| {
                    self.errors.extend(e);
                    vec![false; n_layer as usize]
                })
            }
            None => {
                let n = self
                    .opt_u32(Key::SlidingWindowPattern)
                    .unwrap_or(default_period);
                (0..n_layer).map(|il| n == 0 || il % n < n - 1).collect()
            }
        };
        let freq_base = self.opt_f32(Key::RopeFreqBaseSwa).unwrap_or(10_000.0);
        Some(Swa {
            window,
            layers,
            freq_base,
            freq_scale: 1.0,
            plain_rope: false,
        })
    }
}
