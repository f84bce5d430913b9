//! GGUF metadata arrays, held compactly: numbers and flags as typed vectors, strings in one
//! text buffer. A vocabulary is the largest metadata a model has (Gemma 3: 262,144 token
//! texts, scores and types); one [`Value`] per element would take 32 bytes each plus a heap
//! block per string, some 30 MiB for Gemma 3 kept as long as the file is open.

use super::value::{Value, ValueType};

/// A GGUF array; all elements have the array's element type.
#[derive(Clone, PartialEq, Debug)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    String(Strings),
    /// Arrays of arrays (each inner array has its own element type).
    Array(Vec<Array>),
}

/// Strings stored end to end in one buffer.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Strings {
    text: String,
    /// `ends[i]`: end of string i in `text` (its start is the previous end).
    ends: Vec<usize>,
}

impl Strings {
    /// Room for `count` strings (their text grows as they come).
    pub fn with_capacity(count: usize) -> Self {
        Strings {
            text: String::new(),
            ends: Vec::with_capacity(count),
        }
    }

    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.text[start..end])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index in range"))
    }
}

impl<'a> FromIterator<&'a str> for Strings {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut s = Strings::default();
        for x in iter {
            s.push(x);
        }
        s
    }
}

impl Array {
    /// The type of the elements.
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F32(_) => ValueType::F32,
            Array::F64(_) => ValueType::F64,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`Value`] (strings and inner arrays are copied).
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Array::U8(v) => Value::U8(*v.get(i)?),
            Array::I8(v) => Value::I8(*v.get(i)?),
            Array::U16(v) => Value::U16(*v.get(i)?),
            Array::I16(v) => Value::I16(*v.get(i)?),
            Array::U32(v) => Value::U32(*v.get(i)?),
            Array::I32(v) => Value::I32(*v.get(i)?),
            Array::U64(v) => Value::U64(*v.get(i)?),
            Array::I64(v) => Value::I64(*v.get(i)?),
            Array::F32(v) => Value::F32(*v.get(i)?),
            Array::F64(v) => Value::F64(*v.get(i)?),
            Array::Bool(v) => Value::Bool(*v.get(i)?),
            Array::String(v) => Value::String(v.get(i)?.to_string()),
            Array::Array(v) => Value::Array(v.get(i)?.clone()),
        })
    }

    /// The elements as [`Value`]s, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Value> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("index in range"))
    }

    /// String `i`, without copying, for an array of strings.
    pub fn str(&self, i: usize) -> Option<&str> {
        match self {
            Array::String(v) => v.get(i),
            _ => None,
        }
    }

    /// The strings, for an array of strings.
    pub fn strings(&self) -> Option<&Strings> {
        match self {
            Array::String(v) => Some(v),
            _ => None,
        }
    }

    /// An array of `elem` from values that must all be of that type (`Err` names the first
    /// that is not).
    pub fn from_values(elem: ValueType, items: Vec<Value>) -> Result<Array, ValueType> {
        fn all<T>(
            items: Vec<Value>,
            f: impl Fn(Value) -> Result<T, ValueType>,
        ) -> Result<Vec<T>, ValueType> {
            items.into_iter().map(f).collect()
        }
        let bad = |v: &Value| v.value_type();
        Ok(match elem {
            ValueType::U8 => Array::U8(all(items, |v| {
                if let Value::U8(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::I8 => Array::I8(all(items, |v| {
                if let Value::I8(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::U16 => Array::U16(all(items, |v| {
                if let Value::U16(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::I16 => Array::I16(all(items, |v| {
                if let Value::I16(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::U32 => Array::U32(all(items, |v| {
                if let Value::U32(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::I32 => Array::I32(all(items, |v| {
                if let Value::I32(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::U64 => Array::U64(all(items, |v| {
                if let Value::U64(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::I64 => Array::I64(all(items, |v| {
                if let Value::I64(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::F32 => Array::F32(all(items, |v| {
                if let Value::F32(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::F64 => Array::F64(all(items, |v| {
                if let Value::F64(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::Bool => Array::Bool(all(items, |v| {
                if let Value::Bool(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
            ValueType::String => {
                let mut s = Strings::default();
                for v in items {
                    match v {
                        Value::String(x) => s.push(&x),
                        other => return Err(other.value_type()),
                    }
                }
                Array::String(s)
            }
            ValueType::Array => Array::Array(all(items, |v| {
                if let Value::Array(x) = v {
                    Ok(x)
                } else {
                    Err(bad(&v))
                }
            })?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_index() {
        let s: Strings = ["", "ab", "ünï", ""].into_iter().collect();
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().collect::<Vec<_>>(), ["", "ab", "ünï", ""]);
        assert_eq!(s.get(4), None);
        let a = Array::String(s);
        assert_eq!(a.str(2), Some("ünï"));
        assert_eq!(a.get(1), Some(Value::String("ab".into())));
        assert_eq!(a.elem_type(), ValueType::String);
    }

    #[test]
    fn from_values_checks_the_element_type() {
        let a = Array::from_values(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]).unwrap();
        assert_eq!(a, Array::I32(vec![1, -2]));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [Value::I32(1), Value::I32(-2)]
        );
        assert_eq!(
            Array::from_values(ValueType::I32, vec![Value::I32(1), Value::U8(2)]),
            Err(ValueType::U8)
        );
        let nested = Array::from_values(ValueType::Array, vec![Value::Array(a.clone())]).unwrap();
        assert_eq!(nested.get(0), Some(Value::Array(a)));
    }
}
