//! `ember bench`: the tests it runs and the formats it prints (figures are not judged here).

use crate::common;

#[test]
fn bench_runs_every_combination_and_prints_json() {
    let (_d, p) = common::tiny_model(4);
    let p = p.to_str().unwrap();
    let args = [
        "bench", "-m", p, "-p", "16,32", "-n", "8", "-r", "2", "-t", "1", "-ctk", "f16,f32", "-o",
        "json",
    ];
    let o = common::run_ember(&args, None, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", common::show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON array");
    let recs = v.as_array().unwrap();
    let tests: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["type_k"].as_str().unwrap().into(),
                r["test"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = ["f16", "f32"]
        .iter()
        .flat_map(|k| ["pp16", "pp32", "tg8"].map(|t| (k.to_string(), t.to_string())))
        .collect();
    assert_eq!(tests, want);
    for r in recs {
        assert_eq!(r["samples_ns"].as_array().unwrap().len(), 2);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        if r["n_prompt"].as_u64().unwrap() > 0 {
            assert!(r["ttft_ms"].as_f64().unwrap() > 0.0, "{r}");
        } else {
            // The roof is measured (slowly in a debug build) and the rate put against it.
            assert!(r["tpot_ms"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["bandwidth_gbs"].as_f64().unwrap() > 0.0, "{r}");
            assert!(r["bytes_per_token"].as_u64().unwrap() > 0, "{r}");
            assert!(r["bw_pct"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
}

#[test]
fn bench_markdown_and_csv_have_one_row_per_test() {
    let (_d, p) = common::tiny_model(4);
    let p = p.to_str().unwrap();
    for (fmt, header_lines) in [("md", 2), ("csv", 1)] {
        let args = ["bench", "-m", p, "-p", "8", "-n", "4", "-r", "1", "-o", fmt];
        let o = common::run_ember(&args, None, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", common::show(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        assert_eq!(text.lines().count(), header_lines + 2, "{text}");
        assert!(text.contains("pp8") && text.contains("tg4"), "{text}");
    }
}

#[test]
fn bench_rejects_impossible_settings() {
    let (_d, p) = common::tiny_model(4);
    let p = p.to_str().unwrap();
    let o = common::run_ember(&["bench", "-m", p, "-ctv", "q4_0", "-fa", "0"], None, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", common::show(&o));
    let o = common::run_ember(&["bench", "-m", p, "-p", "0", "-n", "0"], None, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", common::show(&o));
}
