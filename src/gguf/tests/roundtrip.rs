//! Writer → reader round trips, type tables, getters, describe output, open().

use super::*;

fn every_value() -> Vec<(String, Value)> {
    let s = |x: &str| Value::String(x.to_string());
    let arr = |t: ValueType, v: Vec<Value>| Value::array(t, v);
    vec![
        ("t.u8".into(), Value::U8(200)),
        ("t.i8".into(), Value::I8(-100)),
        ("t.u16".into(), Value::U16(60000)),
        ("t.i16".into(), Value::I16(-30000)),
        ("t.u32".into(), Value::U32(4_000_000_000)),
        ("t.i32".into(), Value::I32(-2_000_000_000)),
        ("t.u64".into(), Value::U64(u64::MAX)),
        ("t.i64".into(), Value::I64(i64::MIN)),
        ("t.f32".into(), Value::F32(-1.5e-3)),
        ("t.f64".into(), Value::F64(std::f64::consts::PI)),
        ("t.bool.true".into(), Value::Bool(true)),
        ("t.bool.false".into(), Value::Bool(false)),
        ("t.string".into(), s("héllo, 世界 \n\"quoted\"")),
        ("t.string.empty".into(), s("")),
        (
            "t.arr.u8".into(),
            arr(ValueType::U8, vec![Value::U8(0), Value::U8(255)]),
        ),
        (
            "t.arr.i8".into(),
            arr(ValueType::I8, vec![Value::I8(-128), Value::I8(127)]),
        ),
        ("t.arr.u16".into(), arr(ValueType::U16, vec![Value::U16(1)])),
        (
            "t.arr.i16".into(),
            arr(ValueType::I16, vec![Value::I16(-1)]),
        ),
        (
            "t.arr.u32".into(),
            arr(ValueType::U32, vec![Value::U32(1), Value::U32(2)]),
        ),
        (
            "t.arr.i32".into(),
            arr(ValueType::I32, (0..100).map(Value::I32).collect()),
        ),
        (
            "t.arr.u64".into(),
            arr(ValueType::U64, vec![Value::U64(1 << 40)]),
        ),
        (
            "t.arr.i64".into(),
            arr(ValueType::I64, vec![Value::I64(-(1 << 40))]),
        ),
        (
            "t.arr.f32".into(),
            arr(ValueType::F32, vec![Value::F32(0.5), Value::F32(-2.0)]),
        ),
        (
            "t.arr.f64".into(),
            arr(ValueType::F64, vec![Value::F64(1e300)]),
        ),
        (
            "t.arr.bool".into(),
            arr(ValueType::Bool, vec![Value::Bool(true), Value::Bool(false)]),
        ),
        (
            "t.arr.string".into(),
            arr(ValueType::String, vec![s("x"), s(""), s("zz")]),
        ),
        ("t.arr.empty".into(), arr(ValueType::U32, vec![])),
        (
            "t.arr.nested".into(),
            arr(
                ValueType::Array,
                vec![
                    arr(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
                    arr(ValueType::I32, vec![]),
                    arr(
                        ValueType::Array,
                        vec![arr(ValueType::String, vec![s("deep")])],
                    ),
                ],
            ),
        ),
    ]
}

fn nested(depth: usize) -> Value {
    let mut v = Value::array(ValueType::U8, vec![Value::U8(1)]);
    for _ in 1..depth {
        v = Value::array(ValueType::Array, vec![v]);
    }
    v
}

#[test]
fn round_trip_every_value_type_v2_and_v3() {
    for version in [2, 3] {
        let mut w = GgufWriter::new().version(version);
        for (k, v) in every_value() {
            w.add(&k, v);
        }
        let f = ok(w.to_bytes());
        assert_eq!(f.version(), version);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.metadata(), every_value().as_slice());
        assert!(
            f.get(ALIGNMENT_KEY).is_none(),
            "default alignment is not written"
        );
        for (k, v) in every_value() {
            assert_eq!(f.get(&k), Some(&v));
        }
        assert!(f.tensors().is_empty());
    }
}

#[test]
fn nan_and_infinities_round_trip_bitwise() {
    let mut w = GgufWriter::new();
    w.add("nan", Value::F32(f32::NAN))
        .add("inf", Value::F64(f64::NEG_INFINITY));
    let f = ok(w.to_bytes());
    assert!(matches!(f.get("nan"), Some(Value::F32(x)) if x.is_nan()));
    assert_eq!(f.get("inf"), Some(&Value::F64(f64::NEG_INFINITY)));
}

#[test]
fn nesting_up_to_the_cap_is_accepted() {
    let mut w = GgufWriter::new();
    w.add("deep", nested(MAX_ARRAY_DEPTH));
    assert_eq!(ok(w.to_bytes()).get("deep"), Some(&nested(MAX_ARRAY_DEPTH)));
}

#[test]
fn tensors_of_several_types_round_trip() {
    for (version, align) in [(3u32, 32u64), (2, 32), (3, 64), (3, 1), (3, 4096)] {
        let specs: Vec<(&str, GgmlType, Vec<u64>)> = vec![
            ("f32", GgmlType::F32, vec![3, 5]),
            ("f16", GgmlType::F16, vec![7]),
            ("q4_0", GgmlType::Q4_0, vec![64, 3]),
            ("q8_0", GgmlType::Q8_0, vec![32, 2, 2]),
            ("q4_k", GgmlType::Q4_K, vec![256, 2]),
            ("q6_k", GgmlType::Q6_K, vec![512, 1, 1, 2]),
            ("i32", GgmlType::I32, vec![9]),
            ("empty", GgmlType::F32, vec![0, 4]),
            ("bf16", GgmlType::BF16, vec![2, 2]),
        ];
        let mut w = GgufWriter::new().version(version).alignment(align);
        w.add("general.architecture", Value::String("test".into()));
        let mut datas = Vec::new();
        for (i, (name, ty, dims)) in specs.iter().enumerate() {
            let n: u64 = dims.iter().product();
            let data = pseudo_random(ty.row_bytes(n).unwrap() as usize, i as u64 + 7);
            w.add_tensor(name, *ty, dims, data.clone());
            datas.push(data);
        }
        let f = ok(w.to_bytes());
        assert_eq!((f.version(), f.alignment()), (version, align));
        let expected_key = (align != 32).then_some(Value::U32(align as u32));
        assert_eq!(f.get(ALIGNMENT_KEY).cloned(), expected_key);
        assert_eq!(f.data_offset() % align, 0);
        assert_eq!(f.tensors().len(), specs.len());
        for ((name, ty, dims), data) in specs.iter().zip(&datas) {
            let t = f.tensor(name).expect("tensor present");
            assert_eq!(
                (&t.name, t.ggml_type, &t.dims),
                (&name.to_string(), *ty, dims)
            );
            assert_eq!(t.size, data.len() as u64);
            assert_eq!(t.n_elements(), dims.iter().product::<u64>());
            assert_eq!((t.offset - f.data_offset()) % align, 0);
            assert_eq!(f.tensor_data(t), data.as_slice());
        }
        assert!(f.tensor("missing").is_none());
    }
}

#[test]
fn writer_replaces_duplicate_keys_in_place() {
    let mut w = GgufWriter::new().alignment(64);
    w.add("a", Value::U8(1))
        .add(ALIGNMENT_KEY, Value::U64(7))
        .add("a", Value::U8(2));
    let f = ok(w.to_bytes());
    let keys: Vec<&str> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", ALIGNMENT_KEY]);
    assert_eq!(f.get("a"), Some(&Value::U8(2)));
    assert_eq!(f.get(ALIGNMENT_KEY), Some(&Value::U32(64)));
}

#[test]
#[should_panic(expected = "needs Some(18) bytes")]
fn writer_rejects_wrong_data_length() {
    GgufWriter::new().add_tensor("t", GgmlType::Q4_0, &[32], vec![0; 17]);
}

#[test]
#[should_panic(expected = "array declared as u8 holds a i32")]
fn writer_rejects_mixed_array() {
    GgufWriter::new().add("k", Value::array(ValueType::U8, vec![Value::I32(1)]));
}

#[test]
fn ggml_type_table() {
    for (i, ty) in GgmlType::ALL.iter().enumerate() {
        assert_eq!(*ty as usize, i, "declaration order matches the table");
        assert_eq!(GgmlType::from_u32(ty.as_u32()), Some(*ty));
        assert_eq!(GgmlType::from_name(ty.name()), Some(*ty));
        assert_eq!(GgmlType::from_name(&ty.name().to_uppercase()), Some(*ty));
        assert!(ty.block_size() >= 1 && ty.type_size() >= 1);
    }
    for retired in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
        assert_eq!(GgmlType::from_u32(retired), None);
    }
    let t = GgmlType::Q4_1;
    assert_eq!(
        (t.as_u32(), t.name(), t.block_size(), t.type_size()),
        (3, "q4_1", 32, 20)
    );
    assert_eq!(GgmlType::Q4_K.name(), "q4_K");
    assert_eq!(GgmlType::MXFP4.as_u32(), 39);
    assert_eq!(GgmlType::Q4_0.row_bytes(64), Some(36));
    assert_eq!(GgmlType::Q4_0.row_bytes(33), None);
    assert_eq!(GgmlType::F64.row_bytes(u64::MAX), None);
    assert_eq!(GgmlType::F16.row_bytes(0), Some(0));
    assert_eq!(GgmlType::from_name("q4_2"), None);
}

#[test]
fn value_types_and_accessors() {
    for (i, t) in ValueType::ALL.iter().enumerate() {
        assert_eq!(t.as_u32() as usize, i);
        assert_eq!(ValueType::from_u32(i as u32), Some(*t));
    }
    assert_eq!(ValueType::from_u32(13), None);
    assert_eq!(Value::I8(-1).as_u64(), None);
    assert_eq!(Value::I64(5).as_u64(), Some(5));
    assert_eq!(Value::U64(u64::MAX).as_i64(), None);
    assert_eq!(Value::U16(9).as_f64(), Some(9.0));
    assert_eq!(Value::F32(0.5).as_f64(), Some(0.5));
    assert_eq!(Value::Bool(true).as_u64(), None);
    assert_eq!(Value::String("x".into()).as_str(), Some("x"));
    assert_eq!(Value::Bool(false).as_bool(), Some(false));
    assert_eq!(
        Value::array(ValueType::U8, vec![]).as_array(),
        Some(&crate::gguf::Array::U8(vec![]))
    );
    assert_eq!(
        every_value().last().unwrap().1.type_description(),
        "array[array[i32]]"
    );
}

#[test]
fn typed_getters() {
    let mut w = GgufWriter::new();
    for (k, v) in every_value() {
        w.add(&k, v);
    }
    let f = ok(w.to_bytes());
    assert_eq!(f.get_u32("t.u8"), Ok(200));
    assert_eq!(f.get_u32("t.u32"), Ok(4_000_000_000));
    assert_eq!(f.get_u64("t.u64"), Ok(u64::MAX));
    assert_eq!(f.get_f32("t.f64"), Ok(std::f32::consts::PI));
    assert_eq!(f.get_f32("t.u16"), Ok(60000.0));
    assert_eq!(f.get_bool("t.bool.true"), Ok(true));
    assert_eq!(f.get_str("t.string.empty"), Ok(""));
    assert_eq!(f.get_str_array("t.arr.string"), Ok(vec!["x", "", "zz"]));
    assert_eq!(f.get_f32_array("t.arr.f32"), Ok(vec![0.5, -2.0]));
    assert_eq!(f.get_i32_array("t.arr.i8"), Ok(vec![-128, 127]));
    assert_eq!(f.get_i32_array("t.arr.i32").map(|v| v.len()), Ok(100));

    assert_eq!(
        f.get_u32("nope"),
        Err(MetaError::Missing { key: "nope".into() })
    );
    let e = f.get_u32("t.i8").unwrap_err();
    assert_eq!(e.key(), "t.i8");
    assert_eq!(
        e.to_string(),
        "metadata key 't.i8' should be u32 (an integer in 0..=u32::MAX), found i8 -100"
    );
    assert!(f
        .get_u32("t.u64")
        .unwrap_err()
        .to_string()
        .contains("found u64 18446744073709551615"));
    assert!(matches!(
        f.get_str("t.u8"),
        Err(MetaError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_bool("t.u8"),
        Err(MetaError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_f32("t.string"),
        Err(MetaError::WrongType { .. })
    ));
    let e = f.get_str_array("t.arr.i32").unwrap_err();
    assert!(e.to_string().contains("found array[i32]"), "{e}");
    assert!(f.get_f32_array("t.arr.i32").is_err());
    assert!(f.get_i32_array("t.arr.u64").is_err()); // 2^40 out of i32 range
    assert!(f.get_i32_array("t.arr.f32").is_err());
}

#[test]
fn describe_json_of_written_file() {
    let mut w = sample_writer();
    w.add(
        "long",
        Value::array(ValueType::U32, (0..100).map(Value::U32).collect()),
    )
    .add("short", Value::array(ValueType::U8, vec![Value::U8(3)]))
    .add("x", Value::F32(0.1));
    let f = ok(w.to_bytes());
    let j = describe_json(&f);
    assert_eq!(j["version"], 3);
    assert_eq!(j["alignment"], 32);
    assert_eq!(j["metadata"]["general.architecture"], "llama");
    assert_eq!(j["metadata"]["llama.context_length"], 2048);
    assert_eq!(j["metadata"]["x"], 0.1);
    assert_eq!(j["metadata"]["short"], serde_json::json!([3]));
    assert_eq!(j["metadata"]["long"]["type"], "array[u32]");
    assert_eq!(j["metadata"]["long"]["len"], 100);
    assert_eq!(
        j["metadata"]["long"]["head"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7])
    );
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 2);
    assert_eq!(tensors[1]["name"], "b.weight");
    assert_eq!(tensors[1]["type"], "q4_0");
    assert_eq!(tensors[1]["dims"], serde_json::json!([32, 1]));
    assert_eq!(tensors[1]["offset"], f.tensor("b.weight").unwrap().offset);
    assert_eq!(tensors[1]["bytes"], 18);
    assert_eq!(j["n_params"], 8 + 32);
    assert_eq!(j["total_bytes"], 32 + 18);
}

#[test]
fn describe_text_of_written_file() {
    let mut w = sample_writer();
    w.add(
        "long",
        Value::array(ValueType::U32, (0..100).map(Value::U32).collect()),
    )
    .add("template", Value::String("x".repeat(500)));
    let f = ok(w.to_bytes());
    let mut out = Vec::new();
    describe_text(&f, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("GGUF v3: 9 metadata keys, 2 tensors"),
        "{text}"
    );
    assert!(
        text.contains("[0, 1, 2, 3, 4, 5, 6, 7 …] (100 items)"),
        "{text}"
    );
    assert!(text.contains("…\" (500 bytes)"), "{text}");
    assert!(text.contains("\"llama\""), "{text}");
    assert!(text.contains("b.weight") && text.contains("q4_0") && text.contains("[32, 1]"));
    assert!(text.contains("40 params"), "{text}");
}

#[test]
fn open_from_disk_is_page_aligned() {
    let dir = std::env::temp_dir().join(format!("ember-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sample.gguf");
    let w = sample_writer();
    w.write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.bytes(), w.to_bytes().as_slice());
    assert_eq!(f.file_size(), w.to_bytes().len() as u64);
    assert_eq!(f.bytes().as_ptr() as usize % 4096, 0);
    let t = f.tensor("a.weight").unwrap();
    assert_eq!(f.tensor_data(t), pseudo_random(32, 1).as_slice());

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(GgufFile::open(&empty), Err(GgufError::Empty)));
    let missing = dir.join("missing.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }) && e.to_string().contains("missing.gguf"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn foreign_tensor_info_gives_empty_slice() {
    let f = ok(sample_writer().to_bytes());
    let mut t = f.tensors()[0].clone();
    t.offset = u64::MAX - 1;
    assert!(f.tensor_data(&t).is_empty());
}
