//! Shared helpers for the benchmark binaries: peak memory, medians, formatting, and a fake
//! cluster for running the executor in virtual time ([`fake`]).

pub mod fake;
pub mod schedule;

use std::time::Duration;

/// Peak resident set size of this process (VmHWM), in bytes, when Linux reports it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Current resident set size (VmRSS), in bytes.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak RSS counter so each run is measured on its own (Linux `clear_refs` 5).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The median of some durations (the mean of the middle two for an even count).
pub fn median(mut xs: Vec<Duration>) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.sort();
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}

/// `123.4 MiB`.
pub fn mib(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)] // display only
    let m = bytes as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

/// Seconds with millisecond precision.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(ms(&[3, 1, 2])), Duration::from_millis(2));
        assert_eq!(median(ms(&[4, 1, 2, 3])), Duration::from_micros(2500));
        assert_eq!(median(vec![]), Duration::ZERO);
    }
}
