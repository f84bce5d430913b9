//! The compute roof of `ember bench --plot`: this CPU's int8 dot-product peak.

#[cfg(target_arch = "x86_64")]
use super::{x86, Machine};

/// The int8 compute peak of this CPU in operations per second (a multiply-add is two) on
/// `threads` threads: VNNI dot products back to back, the instruction Ember's prompt and tile
/// kernels are built on. `None` without AVX-512 VNNI.
pub fn int8_peak_ops(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        let m = Machine::get();
        if !(m.vnni && m.avx512f) {
            return None;
        }
        const ITERS: usize = 20_000_000;
        let run = || {
            let t0 = std::time::Instant::now();
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads.max(1))
                    // SAFETY: AVX-512 F and VNNI were detected above.
                    .map(|_| s.spawn(|| unsafe { x86::vnni_spin(ITERS) }))
                    .collect();
                for h in hs {
                    std::hint::black_box(h.join().unwrap_or(0));
                }
            });
            (threads.max(1) * ITERS * 8 * 64 * 2) as f64 / t0.elapsed().as_secs_f64()
        };
        run();
        Some((0..3).map(|_| run()).fold(0.0, f64::max))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = threads;
        None
    }
}
