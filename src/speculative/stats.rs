//! What speculation did, counted by the loop and reported on stderr (or in `--json`).

use std::time::Duration;

/// What speculation did, for the report.
#[derive(Clone, Debug, Default)]
pub struct SpecStats {
    pub drafted: usize,
    pub accepted: usize,
    /// Target evaluations after the prompt.
    pub target_passes: usize,
    /// How often each draft length was chosen (index = k).
    pub k_hist: Vec<usize>,
    /// Target decode rate alone (one token per pass), as measured.
    pub target_alone_tps: Option<f64>,
    pub draft_time: Duration,
    /// The pass times the cost model measured (where it decided), to keep for the next run.
    pub costs: Option<super::cost::Costs>,
}

impl SpecStats {
    pub fn report(&self, generated: usize, decode: Duration) -> String {
        let pct = if self.drafted > 0 {
            100.0 * self.accepted as f64 / self.drafted as f64
        } else {
            0.0
        };
        let per_pass = if self.target_passes > 0 {
            generated.saturating_sub(1) as f64 / self.target_passes as f64
        } else {
            0.0
        };
        let hist: Vec<String> = self
            .k_hist
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        let tps = generated.saturating_sub(1) as f64 / decode.as_secs_f64().max(1e-9);
        format!(
            "speculation: drafted {} accepted {} ({pct:.1}%) | {per_pass:.2} tokens per target pass ({} passes) | draft length chosen {{{}}} | decode {tps:.1} tokens/s, target alone {}",
            self.drafted,
            self.accepted,
            self.target_passes,
            hist.join(" "),
            self.target_alone_tps
                .map_or("not measured".to_string(), |t| format!("{t:.1} tokens/s")),
        )
    }

    pub fn json(&self, generated: usize, decode: Duration) -> serde_json::Value {
        serde_json::json!({
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance": if self.drafted > 0 { self.accepted as f64 / self.drafted as f64 } else { 0.0 },
            "target_passes": self.target_passes,
            "tokens_per_pass": if self.target_passes > 0 {
                generated.saturating_sub(1) as f64 / self.target_passes as f64 } else { 0.0 },
            "k_hist": self.k_hist,
            "decode_tps": generated.saturating_sub(1) as f64 / decode.as_secs_f64().max(1e-9),
            "target_alone_tps": self.target_alone_tps,
        })
    }
}
