//! What every preflight check shares: how a finding is built and how long its lists may get.
//!
//! ```text
//! check ─► finding(code, severity, message, objects, fix)
//!            message: named(...) spells out at most MAX_NAMED names, "and N more" after
//!            objects: at most MAX_OBJECTS
//! ```

use ipnet::IpNet;

use crate::{
    findings::{Finding, FindingCode, Severity},
    snapshot::ObjectRef,
};

/// How many objects a finding lists before it says "and N more" (a 150,000-pod cluster must
/// not produce a 150,000-entry finding).
pub const MAX_OBJECTS: usize = 50;
/// How many names a message spells out.
pub(super) const MAX_NAMED: usize = 10;

/// A finding from its parts: every check builds several, so the struct literal gets a shorthand.
pub(super) fn finding(
    code: FindingCode,
    severity: Severity,
    message: String,
    objects: Vec<ObjectRef>,
    fix: String,
) -> Finding {
    Finding {
        code,
        severity,
        message,
        objects,
        fix,
    }
}

/// CIDRs, comma-separated.
pub(super) fn cidrs(list: &[IpNet]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names, the first MAX_NAMED of them, then how many more.
pub(super) fn named(list: &[String]) -> String {
    if list.len() <= MAX_NAMED {
        list.join(", ")
    } else {
        format!(
            "{} and {} more",
            list[..MAX_NAMED].join(", "),
            list.len() - MAX_NAMED
        )
    }
}

/// Whether two networks share an address.
pub(super) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}
