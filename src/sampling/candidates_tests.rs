//! Unit tests for the candidate-list steps.

use super::*;

fn ids(c: &Candidates) -> Vec<u32> {
    let mut v: Vec<u32> = c.data.iter().map(|c| c.id).collect();
    v.sort_unstable();
    v
}

#[test]
fn top_k_keeps_best_sorted() {
    let mut c = Candidates::default();
    c.load(&[0.1, 3.0, -1.0, 2.0, 3.0, 0.5]);
    c.top_k(3);
    let order: Vec<u32> = c.data.iter().map(|c| c.id).collect();
    assert_eq!(order, vec![1, 4, 3]);
    assert!(c.sorted);
    c.load(&[1.0, 2.0]);
    c.top_k(0);
    assert_eq!(c.len(), 2);
    assert!(!c.sorted);
}

#[test]
fn heap_top_k_matches_select() {
    let mut rows: Vec<Vec<f32>> = vec![
        (0..5000)
            .map(|i| ((i * 7919) % 5003) as f32 * 1e-3)
            .collect(),
        (0..5000).map(|i| i as f32).collect(), // ascending: worst case
        (0..5000).map(|i| -(i as f32)).collect(),
        vec![1.0; 5000],
        (0..5000).map(|i| ((i % 7) as f32).floor()).collect(),
    ];
    let mut signed = vec![0.0f32; 1000];
    for (i, v) in signed.iter_mut().enumerate() {
        *v = match i % 3 {
            0 => -0.0,
            1 => 0.0,
            _ => f32::NAN,
        };
    }
    rows.push(signed);
    for row in &rows {
        for k in [1, 2, 40, 100, 249] {
            let mut a = Candidates::default();
            a.load_top_k(row, k);
            let mut b = Candidates::default();
            b.load(row);
            b.top_k(k);
            assert_eq!(a.data.len(), k as usize);
            let ida: Vec<u32> = a.data.iter().map(|c| c.id).collect();
            let idb: Vec<u32> = b.data.iter().map(|c| c.id).collect();
            assert_eq!(ida, idb, "k = {k}");
            assert!(a.sorted && b.sorted);
        }
    }
    let mut c = Candidates::default();
    c.load_top_k(&[1.0, 2.0, 3.0], 0);
    assert_eq!(c.len(), 3);
    assert!(!c.sorted);
}

#[test]
fn top_p_large_vocab_matches_small_path() {
    // > 1024 candidates exercise the adaptive (buffered) path, including
    // the fallback to a full sort when 256 tokens are not enough.
    let logits: Vec<f32> = (0..3000)
        .map(|i| ((i * 7919) % 3001) as f32 * 1e-4)
        .collect();
    for p in [0.05f32, 0.5, 0.95] {
        let mut big = Candidates::default();
        big.load(&logits);
        big.top_p(p, 0);
        let mut reference = Candidates::default();
        reference.load(&logits);
        reference.data.sort_unstable_by(by_logit_desc);
        reference.sorted = true;
        reference.top_p(p, 0);
        assert_eq!(ids(&big), ids(&reference), "p = {p}");
        assert!(big.sorted);
    }
}

#[test]
fn min_p_unsorted_and_sorted_agree() {
    let logits = [0.0f32, 1.0, 2.0, -3.0, 1.9];
    let mut a = Candidates::default();
    a.load(&logits);
    a.min_p(0.5, 0);
    let mut b = Candidates::default();
    b.load(&logits);
    b.top_k(5);
    b.min_p(0.5, 0);
    assert_eq!(ids(&a), ids(&b));
    // exp(1.9-2) = 0.905 >= 0.5; exp(1-2) = 0.37 < 0.5
    assert_eq!(ids(&a), vec![2, 4]);
}

#[test]
fn temperature_zero_keeps_first_max() {
    let mut c = Candidates::default();
    c.load(&[1.0, 5.0, 5.0, 2.0]);
    c.temperature(0.0);
    let l: Vec<f32> = c.data.iter().map(|c| c.logit).collect();
    assert_eq!(l[1], 5.0);
    assert!(l[0].is_infinite() && l[2].is_infinite() && l[3].is_infinite());
    let mut rng = Mt19937::new(1);
    assert_eq!(c.draw(&mut rng), 1);
}
