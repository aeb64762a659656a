//! The schedule arithmetic `exec-bench` prints: percentiles, hours-minutes-seconds, the ideal
//! list schedule, the slots' hand-overs.

use tokio::time::Instant;

/// The `p` quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Seconds as `0h00m00s`.
pub fn hms(s: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let t = s.max(0.0).round() as u64;
    format!("{}h{:02}m{:02}s", t / 3600, (t / 60) % 60, t % 60)
}

/// The makespan of `durations` run in order on `slots` slots, each started when a slot frees.
pub fn list_schedule(durations: &[f64], slots: usize) -> f64 {
    let mut free = vec![0.0_f64; slots.max(1)];
    for d in durations {
        let (i, start) = free
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((0, 0.0));
        free[i] = start + d;
    }
    free.into_iter().fold(0.0, f64::max)
}

/// The slots' hand-overs in seconds, sorted: the j-th node to start after the first `slots`
/// took the slot the (j−slots)-th node to finish freed.
pub fn hand_over(mut starts: Vec<Instant>, mut ends: Vec<Instant>, slots: usize) -> Vec<f64> {
    starts.sort();
    ends.sort();
    let mut out: Vec<f64> = starts
        .iter()
        .skip(slots)
        .zip(&ends)
        .map(|(s, e)| s.saturating_duration_since(*e).as_secs_f64())
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_schedule_starts_each_job_when_a_slot_frees() {
        assert!((list_schedule(&[3.0, 1.0, 1.0, 1.0], 2) - 3.0).abs() < 1e-9);
        assert!((list_schedule(&[1.0, 1.0, 1.0, 3.0], 2) - 4.0).abs() < 1e-9);
        assert!((list_schedule(&[], 4)).abs() < 1e-9);
        assert_eq!(hms(3723.4), "1h02m03s");
        assert!((pct(&[1.0, 2.0, 3.0], 0.5) - 2.0).abs() < 1e-9);
    }
}
