//! The checkpoint's compact storage encoding of a node's record (private to the checkpoint
//! module): one letter a step, times flattened, prior state as flags.
//!
//! ```text
//! {"s": "DDRPPPP", "d": [3,6,0,32,...], "p": "cle", "u": [...], "m": ..., "r": ...,
//!  "b": "DDP...", "bt": [...], "j": 40, "l": 90, "w": true, "i": "UID"}
//! ```
//!
//! `d` holds each step's start and finish as the difference from the time before it (format
//! 2); format 1 wrote the times themselves as `t`, still read. Every field but `s` is
//! optional, so a record written before a field existed still reads.

use serde::{Deserialize, Serialize};

use super::{NodePrior, NodeRecord, StepRecord, StepState};

/// A node's record as stored: one letter a step, times flattened.
#[derive(Serialize, Deserialize)]
pub(super) struct NodeWire {
    #[serde(rename = "s")]
    states: String,
    /// Format 1: the times themselves (0 for none).
    #[serde(rename = "t", default, skip_serializing_if = "Vec::is_empty")]
    times: Vec<u32>,
    /// Format 2: each time as the difference from the one before (the first from 0), trailing
    /// nones left out: a step's few seconds cost a digit or two where its time cost seven.
    #[serde(rename = "d", default, skip_serializing_if = "Vec::is_empty")]
    deltas: Vec<i64>,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    prior: Option<String>,
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    agent_uids: Vec<String>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    rolled_back: Option<u32>,
    #[serde(rename = "b", default, skip_serializing_if = "String::is_empty")]
    rollback_states: String,
    #[serde(rename = "bt", default, skip_serializing_if = "Vec::is_empty")]
    rollback_times: Vec<u32>,
    #[serde(rename = "j", default, skip_serializing_if = "Option::is_none")]
    joined: Option<u32>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    left: Option<u32>,
    #[serde(rename = "w", default, skip_serializing_if = "std::ops::Not::not")]
    awaiting: bool,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
}

/// Marks "no agent pod was on the node when the label went on" in the stored UIDs.
const NO_AGENT: &str = "-";

fn steps_from(states: &str, times: &[u32]) -> Vec<StepRecord> {
    let time = |i: usize| times.get(i).copied().filter(|t| *t > 0);
    states
        .chars()
        .enumerate()
        .map(|(i, c)| StepRecord {
            // An unknown letter reads as Pending: re-running a step is always safe.
            state: StepState::from_letter(c).unwrap_or(StepState::Pending),
            started: time(2 * i),
            finished: time(2 * i + 1),
        })
        .collect()
}

fn steps_to(steps: &[StepRecord]) -> (String, Vec<u32>) {
    let states = steps.iter().map(|s| s.state.letter()).collect();
    let times = steps
        .iter()
        .flat_map(|s| [s.started.unwrap_or(0), s.finished.unwrap_or(0)])
        .collect();
    (states, times)
}

/// Times as differences, trailing nones (0) left out.
fn to_deltas(times: &[u32]) -> Vec<i64> {
    let end = times.iter().rposition(|t| *t > 0).map_or(0, |i| i + 1);
    let mut prev = 0i64;
    times[..end]
        .iter()
        .map(|t| {
            let t = i64::from(*t);
            let d = t - prev;
            prev = t;
            d
        })
        .collect()
}

/// Times from differences; one out of range reads as none (re-running a step is safe).
fn from_deltas(deltas: &[i64]) -> Vec<u32> {
    let mut at = 0i64;
    deltas
        .iter()
        .map(|d| {
            at = at.saturating_add(*d);
            u32::try_from(at).unwrap_or(0)
        })
        .collect()
}

impl From<NodeWire> for NodeRecord {
    fn from(w: NodeWire) -> Self {
        let times = if w.deltas.is_empty() {
            w.times
        } else {
            from_deltas(&w.deltas)
        };
        let agent_uids = if w.agent_uids.is_empty() {
            None
        } else {
            Some(w.agent_uids.into_iter().filter(|u| u != NO_AGENT).collect())
        };
        NodeRecord {
            steps: steps_from(&w.states, &times),
            prior: w.prior.map(|p| NodePrior {
                cordoned: p.contains('c'),
                labelled: p.contains('l'),
                guarded: p.contains('g'),
                light: p.contains('e'),
            }),
            agent_uids,
            message: w.message,
            rolled_back: w.rolled_back,
            rollback: steps_from(&w.rollback_states, &w.rollback_times),
            joined: w.joined,
            left: w.left,
            awaiting: w.awaiting,
            uid: w.uid,
        }
    }
}

impl From<NodeRecord> for NodeWire {
    fn from(r: NodeRecord) -> Self {
        let (states, times) = steps_to(&r.steps);
        let (rollback_states, rollback_times) = steps_to(&r.rollback);
        NodeWire {
            states,
            times: Vec::new(),
            deltas: to_deltas(&times),
            prior: r.prior.map(|p| {
                let mut flags = String::new();
                if p.cordoned {
                    flags.push('c');
                }
                if p.labelled {
                    flags.push('l');
                }
                if p.guarded {
                    flags.push('g');
                }
                if p.light {
                    flags.push('e');
                }
                flags
            }),
            agent_uids: match r.agent_uids {
                None => Vec::new(),
                Some(u) if u.is_empty() => vec![NO_AGENT.to_owned()],
                Some(u) => u,
            },
            message: r.message,
            rolled_back: r.rolled_back,
            rollback_states,
            rollback_times,
            joined: r.joined,
            left: r.left,
            awaiting: r.awaiting,
            uid: r.uid,
        }
    }
}

/// A step state stored as its letter.
pub(super) mod letter {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::StepState;

    pub fn serialize<S: Serializer>(s: &StepState, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.letter().to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StepState, D::Error> {
        let s = String::deserialize(d)?;
        Ok(s.chars()
            .next()
            .and_then(StepState::from_letter)
            .unwrap_or(StepState::Pending))
    }
}
