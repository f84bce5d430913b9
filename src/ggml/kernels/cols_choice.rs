//! Which of the decode op's column kernels this CPU runs fastest, timed once per process
//! when the weights load (about 3 ms): the 256-bit VNNI kernels ([`vnni`](super::cols::vnni),
//! one column's eight lanes per vector), the 512-bit ones ([`wide`](super::cols_wide), two
//! columns per vector) and the one-column-per-lane ones ([`pairs`](super::cols_lanes::pairs),
//! two rows by eight columns per vector). All give every column ggml's one-column result bit
//! for bit, so the choice changes the speed only. Where they compete is the instruction mix:
//! the 512-bit kernels issue half the instructions (a win where 512-bit operations run at
//! full clock, AMD Zen 4; parity on Intel Ice Lake), the lane kernels drop the per-column
//! scale permutes and share each column load between two pairs of rows.

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use super::cols::{Packing, COLS};
#[cfg(target_arch = "x86_64")]
use super::x86::{F16Table, Q5_0_BYTES, Q8_0_BYTES};

/// The kernels' times, ns per row, column and block (eight columns, Q5_0 and Q8_0 averaged).
#[derive(Clone, Copy, Debug)]
pub struct Timings {
    /// The 256-bit kernels.
    pub narrow: f64,
    /// The 512-bit kernels, two columns per vector.
    pub wide: f64,
    /// The one-column-per-lane kernels.
    pub lanes: f64,
}

impl Timings {
    /// Whether the 512-bit kernels beat the 256-bit ones (by 5%).
    pub fn wide_pays(&self) -> bool {
        self.wide < 0.95 * self.narrow
    }

    /// Whether the one-column-per-lane kernels beat both others (by 5%).
    pub fn lanes_pay(&self) -> bool {
        self.lanes < 0.95 * self.narrow.min(self.wide)
    }
}

/// The timings, where all three kinds run (AVX-512 VNNI, `EMBER_NO_WIDE` unset): best of 7
/// alternating runs of each, weights and columns in the first-level cache.
pub fn timings() -> Option<Timings> {
    static T: OnceLock<Option<Timings>> = OnceLock::new();
    *T.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let m = super::Machine::get();
            if !m.vnni || !super::KernelSwitches::get().wide_tiles {
                return None;
            }
            let f16 = super::f16_table()?;
            // SAFETY: VNNI (with F, BW, VL) and AVX2 were detected just above.
            Some(unsafe { time_all(f16) })
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    })
}

/// Whether the op takes the 512-bit kernels.
pub fn wide() -> bool {
    timings().is_some_and(|t| t.wide_pays())
}

/// Whether the op may take the one-column-per-lane kernels: 5% faster than both others at
/// eight columns, and `EMBER_NO_LANES` unset.
pub fn lanes() -> bool {
    super::KernelSwitches::get().lane_columns && timings().is_some_and(|t| t.lanes_pay())
}

/// Whether the op takes the one-column-per-lane kernels for a product of `n` columns: where
/// they may (`lanes`: timed faster, not switched off) and cost less than the other kind
/// taken. They do eight columns' work whatever the count (so 5 columns cost them what 8 do),
/// the 512-bit kernels an even count's,
/// the 256-bit ones n columns' (on the Zen 4 EPYC: the 256-bit kernels at 5 columns, about
/// even at 6, the lane kernels from 7).
pub fn lanes_for(n: usize) -> bool {
    if n == 0 || !lanes() {
        return false;
    }
    let Some(t) = timings() else { return false };
    let lanes = (n.div_ceil(8) * 8) as f64 * t.lanes;
    let other = if t.wide_pays() {
        (n.div_ceil(2) * 2) as f64 * t.wide
    } else {
        n as f64 * t.narrow
    };
    lanes < other
}

/// # Safety
/// The CPU has AVX-512 F, BW, VL, VNNI and AVX2, FMA, F16C.
#[cfg(target_arch = "x86_64")]
unsafe fn time_all(f16: &F16Table) -> Timings {
    use super::x86::Isa;
    use super::Format;
    const NB: usize = 28;
    const ROWS: usize = 16;
    const REPS: usize = 40;
    // Deterministic bytes, below 64: as scales, small finite f16 values.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut byte = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let act: Vec<u8> = (0..COLS * NB * Q8_0_BYTES).map(|_| byte() % 64).collect();
    let ys: Vec<*const u8> = (0..COLS)
        .map(|c| act.as_ptr().wrapping_add(c * NB * Q8_0_BYTES))
        .collect();
    let packings = [Packing::Offset, Packing::OffsetWide, Packing::LanesPair];
    let packs: Vec<(Vec<u8>, usize)> = packings
        .iter()
        .map(|&packing| {
            let mut buf = vec![0u8; NB * packing.block(COLS) + 64];
            let start = buf.as_ptr().align_offset(64);
            // SAFETY: `act` holds COLS columns of NB Q8_0 blocks, the buffer room for NB
            // packed blocks after `start`.
            unsafe { super::cols::pack(f16, packing, &ys, NB, buf.as_mut_ptr().add(start)) };
            (buf, start)
        })
        .collect();
    let mut total = [0.0; 3];
    for (fmt, bytes) in [(Format::Q8_0, Q8_0_BYTES), (Format::Q5_0, Q5_0_BYTES)] {
        let w: Vec<u8> = (0..ROWS * NB * bytes).map(|_| byte() % 64).collect();
        let row = |r: usize| w.as_ptr().wrapping_add(r * NB * bytes);
        let mut out = [0.0f32; COLS * ROWS];
        let mut best = [f64::MAX; 3];
        for _ in 0..7 {
            for (k, best) in best.iter_mut().enumerate() {
                let p = packs[k].0.as_ptr().wrapping_add(packs[k].1);
                let t0 = std::time::Instant::now();
                for _ in 0..REPS {
                    // SAFETY: each row holds NB blocks, `p` NB packed blocks of COLS columns
                    // in the kernel's layout, `out` room for ROWS rows of COLS; the caller's
                    // features.
                    unsafe {
                        if k == 2 {
                            for r in (0..ROWS).step_by(4) {
                                let at = out.as_mut_ptr().add(r);
                                super::lane_rows(
                                    COLS,
                                    4,
                                    f16,
                                    fmt,
                                    row(r),
                                    NB * bytes,
                                    p,
                                    NB,
                                    at,
                                    ROWS,
                                )
                            }
                        } else {
                            for r in 0..ROWS {
                                let at = out.as_mut_ptr().add(r);
                                super::packed_row_n(
                                    COLS,
                                    Isa::Vnni,
                                    k == 1,
                                    f16,
                                    fmt,
                                    row(r),
                                    p,
                                    NB,
                                    at,
                                    ROWS,
                                )
                            }
                        }
                    }
                    std::hint::black_box(&out);
                }
                let ns = t0.elapsed().as_secs_f64() * 1e9 / (REPS * ROWS * NB * COLS) as f64;
                *best = best.min(ns);
            }
        }
        for (t, b) in total.iter_mut().zip(best) {
            *t += b / 2.0;
        }
    }
    Timings {
        narrow: total[0],
        wide: total[1],
        lanes: total[2],
    }
}
