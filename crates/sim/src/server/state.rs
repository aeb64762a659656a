//! What the server holds besides the store: the faults injected into requests and the
//! random draws that decide them.

#![allow(clippy::result_large_err)] // handlers return ready HTTP responses as their errors

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::store::Store;

/// Faults injected into requests (not into discovery), per test or per run.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added latency, drawn uniformly from `[min, max]`, by verb: `GET`, `LIST`, `WATCH`,
    /// `POST`, `PUT`, `PATCH`, `DELETE`, `EVICT`, or `*` for every verb without its own entry.
    pub latency: BTreeMap<String, (Duration, Duration)>,
    /// Share of requests answered 500.
    pub error_500: f64,
    /// Share of requests answered 503.
    pub error_503: f64,
    /// Share of requests answered 429 (API priority and fairness).
    pub error_429: f64,
    /// Share of updates (PUT/PATCH) answered 409 Conflict.
    pub conflict: f64,
    /// Watches are closed after this long (a dropped connection).
    pub drop_watch_after: Option<Duration>,
    /// Nodes that go NotReady this long after the faults are set (`cni-migrate sim` only).
    pub not_ready: Vec<(String, Duration)>,
    /// Node faults of the model (`agent-stuck`, `cnc-ignored`), by node (`cni-migrate sim` only).
    pub node_faults: Vec<(String, String)>,
    /// Nodes that join this long after the faults are set: copies of a worker under these
    /// names (`cni-migrate sim` and `rehearse` only; see [`crate::churn`]).
    pub node_join: Vec<(String, Duration)>,
    /// Nodes deleted this long after the faults are set, their pods with them.
    pub node_leave: Vec<(String, Duration)>,
}

impl std::str::FromStr for Faults {
    type Err = String;

    /// `error-500=0.05,error-503=0.01,error-429=0.05,conflict=0.05,latency=0ms-200ms,
    /// latency.EVICT=50ms-1s,drop-watch=5s,not-ready=kind-worker@30s,
    /// node-join=kind-worker9@30s,node-leave=kind-worker2@60s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Faults::default();
        let dur = |v: &str, what: &str| {
            humantime::parse_duration(v)
                .map_err(|e| format!("faults `{what}={v}`: not a duration like 200ms ({e})"))
        };
        let share = |v: &str, what: &str| match v.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
            _ => Err(format!(
                "faults `{what}={v}`: expected a share between 0 and 1, e.g. 0.05"
            )),
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("faults `{part}`: expected KEY=VALUE"))?;
            match k {
                "error-500" => f.error_500 = share(v, k)?,
                "error-503" => f.error_503 = share(v, k)?,
                "error-429" => f.error_429 = share(v, k)?,
                "conflict" => f.conflict = share(v, k)?,
                "drop-watch" => f.drop_watch_after = Some(dur(v, k)?),
                "not-ready" | "node-join" | "node-leave" => {
                    let (node, at) = v
                        .split_once('@')
                        .filter(|(n, a)| !n.is_empty() && !a.is_empty())
                        .ok_or_else(|| {
                            let (what, e) = match k {
                                "node-join" => ("NAME", "kind-worker9@30s"),
                                "node-leave" => ("NAME", "kind-worker2@60s"),
                                _ => ("NODE", "kind-worker@30s"),
                            };
                            format!("faults `{part}`: expected {k}={what}@DELAY, e.g. {k}={e}")
                        })?;
                    let list = match k {
                        "node-join" => &mut f.node_join,
                        "node-leave" => &mut f.node_leave,
                        _ => &mut f.not_ready,
                    };
                    list.push((node.to_owned(), dur(at, k)?));
                }
                "agent-stuck" | "cnc-ignored" => {
                    if v.is_empty() {
                        return Err(format!("faults `{part}`: expected {k}=NODE"));
                    }
                    f.node_faults.push((v.to_owned(), k.to_owned()));
                }
                _ if k == "latency" || k.starts_with("latency.") => {
                    let verb = k.strip_prefix("latency.").unwrap_or("*").to_uppercase();
                    let (lo, hi) = v.split_once('-').unwrap_or((v, v));
                    let (lo, hi) = (dur(lo, k)?, dur(hi, k)?);
                    if hi < lo {
                        return Err(format!("faults `{part}`: the range goes down"));
                    }
                    f.latency.insert(verb, (lo, hi));
                }
                other => {
                    return Err(format!(
                        "faults: unknown key `{other}` (known: error-500, error-503, error-429, conflict, latency, latency.VERB, drop-watch, not-ready, node-join, node-leave, agent-stuck, cnc-ignored)"
                    ));
                }
            }
        }
        Ok(f)
    }
}

/// What the server shares between requests.
pub struct State {
    /// The objects.
    pub store: Arc<Store>,
    /// Injected faults.
    pub faults: Mutex<Faults>,
    rng: Mutex<u64>,
    /// How long a gracefully deleted pod stays terminating when no model is attached;
    /// `None` deletes at once.
    pub pod_termination: Mutex<Option<Duration>>,
    /// Log-normal sigma of termination times around `pod_termination` (0: exact).
    pub termination_spread: Mutex<f64>,
    /// Every request, as `VERB path` (for the RBAC sync test).
    pub requests: Mutex<Vec<(String, String)>>,
    /// When each of `requests` arrived.
    pub arrivals: Mutex<Vec<std::time::Instant>>,
    /// Evictions are decided one at a time, as the API server makes them atomic through the
    /// budget's status (two concurrent evictions must not both spend the last disruption).
    pub(super) evictions: Mutex<()>,
    /// Every eviction granted, as `namespace/name` (ground truth for reports).
    pub evicted: Mutex<Vec<String>>,
}

impl State {
    /// A new state over a store, with a seed for fault decisions.
    pub fn new(store: Arc<Store>, seed: u64) -> Self {
        Self {
            store,
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(seed | 1),
            pod_termination: Mutex::new(None),
            termination_spread: Mutex::new(0.0),
            requests: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            evictions: Mutex::new(()),
            evicted: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn roll(&self) -> f64 {
        let mut s = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        #[allow(clippy::cast_precision_loss)]
        let x = (*s >> 11) as f64 / (1u64 << 53) as f64;
        x
    }

    pub(super) fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn fault_specs_parse_and_bad_ones_say_why() {
        let f: Faults = "error-500=0.05,error-429=0.1,conflict=0.05,latency=0ms-200ms,latency.evict=1s,drop-watch=5s,not-ready=kind-worker@30s,agent-stuck=kind-worker2,cnc-ignored=kind-worker2"
            .parse()
            .expect("parses");
        assert_eq!(
            f.node_faults,
            [
                ("kind-worker2".to_owned(), "agent-stuck".to_owned()),
                ("kind-worker2".to_owned(), "cnc-ignored".to_owned())
            ]
        );
        assert_eq!((f.error_500, f.error_429, f.conflict), (0.05, 0.1, 0.05));
        assert_eq!(f.latency["*"], (Duration::ZERO, Duration::from_millis(200)));
        assert_eq!(
            f.latency["EVICT"],
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!(f.drop_watch_after, Some(Duration::from_secs(5)));
        assert_eq!(
            f.not_ready,
            [("kind-worker".to_owned(), Duration::from_secs(30))]
        );
        let f: Faults = "node-join=kind-worker9@30s,node-leave=kind-worker2@1m"
            .parse()
            .expect("parses");
        assert_eq!(
            f.node_join,
            [("kind-worker9".to_owned(), Duration::from_secs(30))]
        );
        assert_eq!(
            f.node_leave,
            [("kind-worker2".to_owned(), Duration::from_secs(60))]
        );
        for (bad, says) in [
            ("error-500=2", "between 0 and 1"),
            ("latency=1s-1ms", "goes down"),
            ("nope=1", "unknown key"),
            ("not-ready=kind-worker", "NODE@DELAY"),
            ("node-join=kind-worker9", "expected node-join=NAME@DELAY"),
            ("node-join=@30s", "expected node-join=NAME@DELAY"),
            ("node-leave=kind-worker2@soon", "not a duration"),
            ("node-leave=kind-worker2", "expected node-leave=NAME@DELAY"),
            ("error-429", "KEY=VALUE"),
            ("agent-stuck=", "agent-stuck=NODE"),
        ] {
            let err = bad.parse::<Faults>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
