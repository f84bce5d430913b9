//! Leviathan et al.'s acceptance rule, which keeps the output distribution exactly the
//! target's: a drafted token `x` drawn from the draft distribution `q` is accepted with
//! probability `min(1, p(x)/q(x))`; on rejection the token is drawn from `max(0, p − q)`,
//! normalised. Distributions are sparse: (token, probability) pairs, probabilities summing to 1.

/// Probability of `id` in a sparse distribution (0 if absent).
pub fn prob(dist: &[(u32, f32)], id: u32) -> f64 {
    dist.iter()
        .find(|(t, _)| *t == id)
        .map_or(0.0, |(_, p)| f64::from(*p))
}

/// Whether to accept drafted token `x`, given a uniform draw `u` in [0, 1).
pub fn accept(p: &[(u32, f32)], q: &[(u32, f32)], x: u32, u: f64) -> bool {
    let (px, qx) = (prob(p, x), prob(q, x));
    if qx <= 0.0 {
        return px > 0.0 && u < px;
    }
    u < (px / qx).min(1.0)
}

/// The residual distribution `max(0, p − q)` normalised; `p` itself when the residual is
/// empty (p = q, where a rejection cannot happen).
pub fn residual(p: &[(u32, f32)], q: &[(u32, f32)]) -> Vec<(u32, f32)> {
    let mut r: Vec<(u32, f32)> = p
        .iter()
        .map(|&(t, pt)| (t, (f64::from(pt) - prob(q, t)).max(0.0) as f32))
        .filter(|&(_, v)| v > 0.0)
        .collect();
    let sum: f64 = r.iter().map(|&(_, v)| f64::from(v)).sum();
    if sum <= 0.0 {
        return p.to_vec();
    }
    for (_, v) in &mut r {
        *v = (f64::from(*v) / sum) as f32;
    }
    r
}

/// Draws from a sparse distribution with a uniform `u` in [0, 1).
pub fn draw(dist: &[(u32, f32)], u: f64) -> u32 {
    let total: f64 = dist.iter().map(|&(_, p)| f64::from(p)).sum();
    let target = u * total;
    let mut run = 0.0;
    for &(t, p) in dist {
        run += f64::from(p);
        if run > target {
            return t;
        }
    }
    dist.last().map_or(0, |&(t, _)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact output distribution of one speculative position: P(out = y) =
    /// q(y)·min(1, p(y)/q(y)) + P(reject)·residual(y). It must equal p.
    #[test]
    fn accepted_or_resampled_token_follows_the_target() {
        let p = vec![(0, 0.5), (1, 0.3), (2, 0.2)];
        let q = vec![(0, 0.2), (1, 0.6), (3, 0.2)];
        let r = residual(&p, &q);
        let reject: f64 = q
            .iter()
            .map(|&(x, qx)| f64::from(qx) * (1.0 - (prob(&p, x) / f64::from(qx)).min(1.0)))
            .sum();
        for y in 0..4u32 {
            let qy = prob(&q, y);
            let acc = if qy > 0.0 {
                qy * (prob(&p, y) / qy).min(1.0)
            } else {
                0.0
            };
            let out = acc + reject * prob(&r, y);
            assert!(
                (out - prob(&p, y)).abs() < 1e-6,
                "token {y}: {out} vs {}",
                prob(&p, y)
            );
        }
    }

    #[test]
    fn point_mass_drafts_accept_with_the_target_probability() {
        let p = vec![(4, 0.25), (5, 0.75)];
        let q = vec![(4, 1.0)];
        assert!(accept(&p, &q, 4, 0.2));
        assert!(!accept(&p, &q, 4, 0.3));
        assert_eq!(residual(&p, &q), vec![(5, 1.0)]);
    }

    #[test]
    fn draw_walks_the_cumulative_sum() {
        let d = vec![(7, 0.5), (8, 0.5)];
        assert_eq!(draw(&d, 0.0), 7);
        assert_eq!(draw(&d, 0.49), 7);
        assert_eq!(draw(&d, 0.51), 8);
        assert_eq!(draw(&d, 0.999_999), 8);
    }
}
