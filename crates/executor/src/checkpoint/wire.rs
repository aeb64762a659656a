//! The checkpoint's compact storage encoding of a node's record (private to the checkpoint
//! module): one letter a step, times flattened, prior state as flags.
//!
//! ```text
//! {"s": "DDRPPPP", "t": [3,9,9,41,...], "p": "cle", "u": [...], "m": ..., "r": ...,
//!  "b": "DDP...", "bt": [...], "j": 40, "l": 90, "w": true, "i": "UID"}
//! ```
//!
//! Every field but `s` is optional, so a record written before a field existed still reads.

use serde::{Deserialize, Serialize};

use super::{NodePrior, NodeRecord, StepRecord, StepState};

/// A node's record as stored: one letter a step, times flattened.
#[derive(Serialize, Deserialize)]
pub(super) struct NodeWire {
    #[serde(rename = "s")]
    states: String,
    #[serde(rename = "t", default)]
    times: Vec<u32>,
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

impl From<NodeWire> for NodeRecord {
    fn from(w: NodeWire) -> Self {
        let agent_uids = if w.agent_uids.is_empty() {
            None
        } else {
            Some(w.agent_uids.into_iter().filter(|u| u != NO_AGENT).collect())
        };
        NodeRecord {
            steps: steps_from(&w.states, &w.times),
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
            times,
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
