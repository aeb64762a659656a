//! How a checkpoint is laid out over ConfigMaps (format 2): the head object the store is named
//! after holds a small index in `data`, and the compressed checkpoint either beside it in
//! `binaryData` (one object) or, past [`PART_BYTES`], in part objects the index names.
//!
//! ```text
//! head cni-migrate-state   data.checkpoint.json = {"version":2,"generation":41,"bytes":N,
//!                                                  "sha256":"…","parts":[…]}
//!                          binaryData.checkpoint.zz = the compressed checkpoint (no parts)
//! part cni-migrate-state-part-41-3f9a0c1e-0   binaryData.chunk = bytes [0, PART_BYTES)
//!      cni-migrate-state-part-41-3f9a0c1e-1   binaryData.chunk = bytes [PART_BYTES, N)
//!      labels cni-migrate.io/checkpoint-of=cni-migrate-state, …/checkpoint-generation=41
//! ```
//!
//! Parts are written first, each under a name no other save uses (the generation and a
//! nonce), then the head, conditionally on the resourceVersion read: a save killed between
//! two parts leaves the previous head and its parts whole, and its own parts unreferenced.
//! Parts are never rewritten, so a reader that finds the head finds the very parts it names
//! (checked by length and SHA-256).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The largest compressed checkpoint kept beside the index in the head, and the size of each
/// part past it: 768 KiB, well under the 1 MiB a ConfigMap's data may hold (the API server
/// and etcd need room for metadata and encoding too).
pub const PART_BYTES: usize = 768 * 1024;

/// The head's key holding the index (format 2) or, in format 1, the whole checkpoint's JSON:
/// a reader of format 1 finds `"version": 2` there and says which release to use.
pub const INDEX_KEY: &str = "checkpoint.json";
/// The head's binary key holding the compressed checkpoint when it has no parts.
pub const INLINE_KEY: &str = "checkpoint.zz";
/// A part's binary key.
pub const CHUNK_KEY: &str = "chunk";
/// The label naming the head a part belongs to.
pub const PART_OF_LABEL: &str = "cni-migrate.io/checkpoint-of";
/// The label holding the generation a part was written for.
pub const PART_GENERATION_LABEL: &str = "cni-migrate.io/checkpoint-generation";

/// The head's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The checkpoint format version (2).
    pub version: u32,
    /// The checkpoint's generation, so a writer that lost a race can tell another generation
    /// from its own without reading the parts.
    pub generation: u64,
    /// The compressed checkpoint's length.
    pub bytes: usize,
    /// The compressed checkpoint's SHA-256, hex.
    pub sha256: String,
    /// The part objects, in order; empty when the head holds the checkpoint itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

/// What a head's `checkpoint.json` holds, told apart by its `version` without parsing a
/// format 1 checkpoint twice.
#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    version: u64,
}

/// The version a head's `checkpoint.json` declares (0 when it declares none).
///
/// # Errors
/// When it is not JSON.
pub fn declared_version(text: &str) -> Result<u64, serde_json::Error> {
    serde_json::from_str::<Peek>(text).map(|p| p.version)
}

/// The hex SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A nonce that no other save (of this process, or of another at the same generation) uses:
/// the time, the process and a counter, hashed.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{now}/{}/{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    sha256(seed.as_bytes())[..8].to_owned()
}

/// The name of part `i` of a save: `HEAD-part-GENERATION-NONCE-I` (at most 253 characters
/// for any head name the store accepts).
pub fn part_name(head: &str, generation: u64, nonce: &str, i: usize) -> String {
    format!("{head}-part-{generation}-{nonce}-{i}")
}

/// The generation a part was written for, from its label.
pub fn part_generation(labels: Option<&std::collections::BTreeMap<String, String>>) -> Option<u64> {
    labels?.get(PART_GENERATION_LABEL)?.parse().ok()
}

/// Splits the compressed checkpoint into parts of at most `part_bytes` each; none when it fits
/// the head.
pub fn split(bytes: &[u8], part_bytes: usize) -> Vec<&[u8]> {
    if bytes.len() <= part_bytes {
        return Vec::new();
    }
    bytes.chunks(part_bytes.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_that_fits_the_head_has_no_parts() {
        assert!(split(&[1; 10], 10).is_empty());
        let parts = split(&[1; 25], 10);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [10, 10, 5]
        );
    }

    #[test]
    fn nonces_differ_and_part_names_are_valid_object_names() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        let name = part_name("cni-migrate-state", 41, &a, 3);
        assert!(name.starts_with("cni-migrate-state-part-41-"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn the_declared_version_tells_the_formats_apart() {
        assert_eq!(
            declared_version(r#"{"version":1,"nodes":{}}"#).ok(),
            Some(1)
        );
        assert_eq!(declared_version(r#"{"generation":3}"#).ok(), Some(0));
        assert!(declared_version("{").is_err());
    }
}
