//! Batch-invariant products: a step of several sequences multiplies each column (one
//! sequence's token) with the arithmetic one-column decoding uses, so no sequence's result
//! depends on the others ([`Route::invariant`] says how, per weight).

use super::super::{Context, Tensor};
use super::{Invariant, Route};

impl Context {
    /// `w · x`, each column of `x` multiplied as a one-column product by `route` would multiply
    /// it, bit for bit (how: [`Route::invariant`]).
    pub fn mul_mat_invariant<'a>(
        &'a self,
        route: &Route,
        w: Tensor<'a>,
        x: Tensor<'a>,
    ) -> Tensor<'a> {
        let n = x.ne()[1];
        match route.invariant(n) {
            Invariant::Direct(k) | Invariant::Columns(k) => self.mul_mat_by(k, w, x),
            Invariant::Groups(g) => {
                let g = g.max(1) as i64;
                let mut out: Option<Tensor<'a>> = None;
                for c0 in (0..n).step_by(g as usize) {
                    let m = g.min(n - c0);
                    let xs = self.view(x, &[x.ne()[0], m], &[x.nb()[1]], c0 as usize * x.nb()[1]);
                    let part = self.mul_mat_by(route.kernel(m), w, xs);
                    out = Some(match out {
                        Some(a) => self.concat(a, part, 1),
                        None => part,
                    });
                }
                out.expect("a product has a column")
            }
        }
    }
}
