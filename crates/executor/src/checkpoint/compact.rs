//! The checkpoint's compressed form (format 2), what the ConfigMap store keeps in `binaryData`:
//! the compact JSON of [`Checkpoint`] (per-node records as in `wire.rs`) deflated with zlib.
//!
//! ```text
//! Checkpoint ─► to_json (compact records) ─► zlib (level 6) ─► bytes   ~10% of the JSON
//! bytes ─► inflate (at most MAX_JSON bytes) ─► from_json (format 1 or 2) ─► Checkpoint
//! ```
//!
//! The JSON keeps its `version` field, so the inflated text is judged as any checkpoint is.

use std::io::{Read as _, Write as _};

use super::{Checkpoint, CheckpointError};

/// The largest checkpoint JSON inflated: far past 20,000 nodes (about 3 MB), it stops a
/// damaged or hostile object from exhausting memory.
const MAX_JSON: u64 = 512 * 1024 * 1024;

impl Checkpoint {
    /// The checkpoint compressed (zlib over its compact JSON).
    pub fn to_compressed(&self) -> Vec<u8> {
        let json = self.to_json();
        let mut z = flate2::write::ZlibEncoder::new(
            Vec::with_capacity(json.len() / 8),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        let _ = z.write_all(json.as_bytes());
        z.finish().unwrap_or_default()
    }

    /// Reads a checkpoint from [`Checkpoint::to_compressed`]'s bytes.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] when the bytes do not inflate to a checkpoint's JSON, or
    /// [`CheckpointError::Version`].
    pub fn from_compressed(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let mut json = String::new();
        flate2::read::ZlibDecoder::new(bytes)
            .take(MAX_JSON)
            .read_to_string(&mut json)
            .map_err(|e| {
                CheckpointError::Malformed(format!(
                    "the compressed checkpoint does not inflate: {e}"
                ))
            })?;
        Self::from_json(&json)
    }
}
