//! Where the checkpoint lives while a run goes on: ConfigMaps in the cluster (the default, so
//! `cni-migrate status` works from any machine) or a local file (`--state file:PATH`).
//!
//! ```text
//! save ─► compressed checkpoint ─► fits 768 KiB? ─yes─► head kube-system/cni-migrate-state:
//!                                    │                    index + binaryData checkpoint.zz
//!                                    no
//!                                    ▼
//!          parts cni-migrate-state-part-GEN-NONCE-I first, then the head naming them
//!          (PUT at the resourceVersion last read or written ─► 409: re-read; another
//!          generation means another writer: a `pause`, or a second run, reported), then
//!          the previous generation's parts deleted
//! load ─► head ─► format 1 (checkpoint JSON in data) or 2 (index ─► inline or parts,
//!          checked by length and SHA-256) ─► Checkpoint
//! ```
//!
//! A save returns once every object it wrote was accepted; one killed between its writes
//! leaves the previous checkpoint whole (its head and parts are never rewritten in place) and
//! its own parts unreferenced, removed by the next run's first save. Both stores refuse to
//! overwrite a checkpoint another writer changed since it was read: the runner then re-reads
//! it and merges the only change another writer may make (`paused`). The file store keeps the
//! checkpoint's JSON (format 2, uncompressed: a file has no size limit).

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use cluster::{Cluster, ClusterError};
use tokio::sync::Mutex;

use crate::checkpoint::{Checkpoint, CheckpointError};

/// Why a checkpoint store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("cannot {verb} checkpoint file {path}")]
    Io {
        /// `read` or `write`.
        verb: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The stored checkpoint is not readable.
    #[error("checkpoint file {path} is not usable")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: CheckpointError,
    },
    /// Reading or writing the checkpoint in the cluster failed.
    #[error("cannot {verb} the checkpoint in {what}")]
    Cluster {
        /// `read` or `write`.
        verb: &'static str,
        /// Where.
        what: String,
        /// The error.
        #[source]
        source: Box<cluster::ClusterError>,
    },
    /// The stored checkpoint is incomplete or does not match its index.
    #[error("the checkpoint in {what} is damaged: {why}")]
    Damaged {
        /// Where.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// Another writer changed the checkpoint since it was read.
    #[error(
        "the checkpoint was changed by another run (generation {found}, expected {expected}): is another cni-migrate running?"
    )]
    Conflict {
        /// The generation read.
        expected: u64,
        /// The generation found.
        found: u64,
    },
}

impl StoreError {
    /// Whether trying again may succeed: the cluster failed for a passing reason.
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Cluster { source, .. } if source.is_retriable())
    }
}

/// Namespace of the default checkpoint ConfigMap.
pub const STATE_NAMESPACE: &str = "kube-system";
/// Name of the default checkpoint ConfigMap.
pub const STATE_NAME: &str = "cni-migrate-state";
/// The ConfigMap key holding the checkpoint's index (format 2) or, in format 1, the
/// checkpoint's JSON.
pub const STATE_KEY: &str = parts::INDEX_KEY;
/// The largest checkpoint a ConfigMap could hold in format 1, with room for metadata.
pub const CONFIGMAP_LIMIT: usize = 1024 * 1024 - 16 * 1024;

/// A checkpoint store the runner can use from async code.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Reads the checkpoint, if there is one.
    ///
    /// # Errors
    /// When it cannot be read or parsed.
    async fn load(&self) -> Result<Option<Checkpoint>, StoreError>;
    /// Writes the checkpoint, bumping its generation, unless another writer changed it since it
    /// was read ([`StoreError::Conflict`]).
    ///
    /// # Errors
    /// [`StoreError::Conflict`], or the store's own failures.
    async fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), StoreError>;
    /// Where it is, for messages (`configmap kube-system/cni-migrate-state`, `file ./x.json`).
    fn describe(&self) -> String;
    /// The size in bytes of what the last successful write stored (metrics), when known.
    fn last_size(&self) -> Option<usize> {
        None
    }
}

/// A checkpoint in a local file (`--state file:PATH`), replaced atomically on every write.
pub struct FileStore {
    path: std::path::PathBuf,
    /// The generation this store wrote last, and the bytes it wrote: while the file still
    /// holds them, nobody else wrote, and a save need not parse the file to know its
    /// generation (parsing a 1,000-node checkpoint at every step's start and end took a third
    /// of the executor's time in a 1,000-node rehearsal).
    written: std::sync::Mutex<Option<(u64, Vec<u8>)>>,
}

impl FileStore {
    /// A store at a path.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            written: std::sync::Mutex::default(),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, Option<(u64, Vec<u8>)>> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The generation of the checkpoint in the file (`None` when there is none): known
    /// without parsing while the file holds what this store wrote last.
    fn generation(&self) -> Result<Option<u64>, StoreError> {
        let path = self.path.display().to_string();
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    verb: "read",
                    path,
                    source,
                });
            }
        };
        if let Some((generation, last)) = self.written().as_ref()
            && *last == bytes
        {
            return Ok(Some(*generation));
        }
        let text = String::from_utf8_lossy(&bytes);
        Checkpoint::from_json(&text)
            .map(|c| Some(c.generation))
            .map_err(|source| StoreError::Parse { path, source })
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn read(&self) -> Result<Option<Checkpoint>, StoreError> {
        let path = self.path.display().to_string();
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Checkpoint::from_json(&text)
                .map(Some)
                .map_err(|source| StoreError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                verb: "read",
                path,
                source,
            }),
        }
    }
}

#[async_trait]
impl StateStore for FileStore {
    async fn load(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read()
    }

    async fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), StoreError> {
        use std::io::Write as _;
        let path = self.path.display().to_string();
        if let Some(found) = self.generation()?
            && found != checkpoint.generation
        {
            return Err(StoreError::Conflict {
                expected: checkpoint.generation,
                found,
            });
        }
        checkpoint.generation += 1;
        let tmp = self.path.with_extension("tmp~");
        let bytes = checkpoint.to_json().into_bytes();
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        match write() {
            Ok(()) => {
                *self.written() = Some((checkpoint.generation, bytes));
                Ok(())
            }
            Err(source) => {
                checkpoint.generation -= 1;
                *self.written() = None;
                Err(StoreError::Io {
                    verb: "write",
                    path,
                    source,
                })
            }
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path().display())
    }

    fn last_size(&self) -> Option<usize> {
        std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| usize::try_from(m.len()).ok())
    }
}

/// The checkpoint in ConfigMaps: a head object (the store's name) holding an index and, while
/// it fits, the compressed checkpoint; past [`parts::PART_BYTES`], parts the index names
/// (see [`parts`]). A head of format 1 (the checkpoint's JSON in `data`) is still read.
pub struct ConfigMapStore {
    cluster: Arc<dyn Cluster>,
    namespace: String,
    name: String,
    part_bytes: usize,
    seen: Mutex<Seen>,
    /// Bytes of the last checkpoint written, compressed (metrics).
    written: std::sync::atomic::AtomicUsize,
}

/// What the store last read or wrote of its head.
#[derive(Default)]
struct Seen {
    /// The head's resourceVersion.
    resource_version: Option<String>,
    /// The parts that head names.
    parts: Vec<String>,
    /// Unreferenced parts of earlier generations (a save killed between its writes) were
    /// removed: once per store, after its first write.
    swept: bool,
}

/// A head as read.
struct Head {
    resource_version: Option<String>,
    generation: u64,
    parts: Vec<String>,
    body: Body,
}

enum Body {
    /// Format 1: the checkpoint itself.
    Whole(Box<Checkpoint>),
    /// Format 2: the index, and the compressed checkpoint when it has no parts.
    Indexed(parts::Index, Option<Vec<u8>>),
}

impl ConfigMapStore {
    /// The default store, `kube-system/cni-migrate-state`.
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self::at(cluster, STATE_NAMESPACE, STATE_NAME)
    }

    /// A store in another ConfigMap.
    pub fn at(cluster: Arc<dyn Cluster>, namespace: &str, name: &str) -> Self {
        Self {
            cluster,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            part_bytes: parts::PART_BYTES,
            seen: Mutex::new(Seen::default()),
            written: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The same store splitting the checkpoint into parts of at most `bytes` (tests split
    /// small checkpoints with it).
    #[must_use]
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }

    fn what(&self) -> String {
        format!("configmap {}/{}", self.namespace, self.name)
    }

    fn cluster_err(
        &self,
        verb: &'static str,
        name: &str,
    ) -> impl FnOnce(ClusterError) -> StoreError {
        let what = format!("configmap {}/{name}", self.namespace);
        move |source| StoreError::Cluster {
            verb,
            what,
            source: Box::new(source),
        }
    }

    fn damaged(&self, why: String) -> StoreError {
        StoreError::Damaged {
            what: self.what(),
            why,
        }
    }

    async fn read_head(&self) -> Result<Option<Head>, StoreError> {
        let cm = self
            .cluster
            .configmap(&self.namespace, &self.name)
            .await
            .map_err(self.cluster_err("read", &self.name))?;
        let Some(mut cm) = cm else {
            return Ok(None);
        };
        let resource_version = cm.metadata.resource_version.take();
        let parse = |source| StoreError::Parse {
            path: format!("{} key {}", self.what(), parts::INDEX_KEY),
            source,
        };
        let text = cm
            .data
            .as_mut()
            .and_then(|d| d.remove(parts::INDEX_KEY))
            .ok_or_else(|| self.damaged(format!("it has no key {}", parts::INDEX_KEY)))?;
        let version = parts::declared_version(&text)
            .map_err(|e| parse(CheckpointError::Malformed(e.to_string())))?;
        if version < u64::from(crate::checkpoint::VERSION) {
            let ck = Checkpoint::from_json(&text).map_err(parse)?;
            return Ok(Some(Head {
                resource_version,
                generation: ck.generation,
                parts: Vec::new(),
                body: Body::Whole(Box::new(ck)),
            }));
        }
        if version > u64::from(crate::checkpoint::VERSION) {
            return Err(parse(CheckpointError::Version {
                found: u32::try_from(version).unwrap_or(u32::MAX),
            }));
        }
        let index: parts::Index = serde_json::from_str(&text)
            .map_err(|e| parse(CheckpointError::Malformed(format!("the index: {e}"))))?;
        let inline = cm
            .binary_data
            .as_mut()
            .and_then(|b| b.remove(parts::INLINE_KEY))
            .map(|b| b.0);
        Ok(Some(Head {
            resource_version,
            generation: index.generation,
            parts: index.parts.clone(),
            body: Body::Indexed(index, inline),
        }))
    }

    /// The compressed checkpoint an index names: beside it, or gathered from its parts.
    async fn gather(
        &self,
        index: &parts::Index,
        inline: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, StoreError> {
        let bytes = if index.parts.is_empty() {
            inline.ok_or_else(|| {
                self.damaged(format!(
                    "its index names no parts and it has no binary key {}",
                    parts::INLINE_KEY
                ))
            })?
        } else {
            let mut bytes = Vec::with_capacity(index.bytes);
            for name in &index.parts {
                let part = self
                    .cluster
                    .configmap(&self.namespace, name)
                    .await
                    .map_err(self.cluster_err("read", name))?
                    .ok_or_else(|| {
                        self.damaged(format!(
                            "part {name} of generation {} is missing",
                            index.generation
                        ))
                    })?;
                let chunk = part
                    .binary_data
                    .and_then(|mut b| b.remove(parts::CHUNK_KEY))
                    .ok_or_else(|| {
                        self.damaged(format!(
                            "part {name} has no binary key {}",
                            parts::CHUNK_KEY
                        ))
                    })?;
                bytes.extend_from_slice(&chunk.0);
            }
            bytes
        };
        if bytes.len() != index.bytes || parts::sha256(&bytes) != index.sha256 {
            return Err(self.damaged(format!(
                "generation {}: {} bytes with SHA-256 {}, the index expects {} bytes with {}",
                index.generation,
                bytes.len(),
                parts::sha256(&bytes),
                index.bytes,
                index.sha256
            )));
        }
        Ok(bytes)
    }

    async fn read(&self) -> Result<Option<(Checkpoint, Head)>, StoreError> {
        let Some(mut head) = self.read_head().await? else {
            return Ok(None);
        };
        let ck = match std::mem::replace(&mut head.body, Body::Indexed(empty_index(), None)) {
            Body::Whole(ck) => *ck,
            Body::Indexed(index, inline) => {
                let bytes = self.gather(&index, inline).await?;
                let ck =
                    Checkpoint::from_compressed(&bytes).map_err(|source| StoreError::Parse {
                        path: self.what(),
                        source,
                    })?;
                if ck.generation != index.generation {
                    return Err(self.damaged(format!(
                        "the index says generation {}, the checkpoint {}",
                        index.generation, ck.generation
                    )));
                }
                ck
            }
        };
        Ok(Some((ck, head)))
    }

    /// Deletes parts no head names any more (best effort: a part left behind is swept later).
    async fn remove(&self, names: &[String]) {
        for name in names {
            if let Err(e) = self
                .cluster
                .delete("v1", "configmaps", Some(&self.namespace), name)
                .await
            {
                tracing::warn!(part = %name, error = %e, "cannot delete a stale checkpoint part");
            }
        }
    }

    /// Deletes the parts of generations up to `generation` that the head does not name: what
    /// saves killed between their writes left. A part of a later generation may belong to a
    /// save under way elsewhere, and is left alone.
    async fn sweep(&self, seen: &Seen, generation: u64) {
        let selector = format!("{}={}", parts::PART_OF_LABEL, label_value(&self.name));
        let found = match self
            .cluster
            .configmaps_labelled(&self.namespace, &selector)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list checkpoint parts to remove stale ones");
                return;
            }
        };
        let stale: Vec<String> = found
            .into_iter()
            .filter(|cm| {
                parts::part_generation(cm.metadata.labels.as_ref()).is_some_and(|g| g <= generation)
            })
            .filter_map(|cm| cm.metadata.name)
            .filter(|n| n != &self.name && !seen.parts.contains(n))
            .collect();
        self.remove(&stale).await;
    }

    /// Writes `checkpoint` (its generation already bumped): parts first, then the head at the
    /// resourceVersion seen. `Ok(false)`: another writer changed the head first.
    async fn write(&self, seen: &mut Seen, checkpoint: &Checkpoint) -> Result<bool, StoreError> {
        let generation = checkpoint.generation;
        let payload = checkpoint.to_compressed();
        let chunks = parts::split(&payload, self.part_bytes);
        let nonce = parts::nonce();
        let names: Vec<String> = (0..chunks.len())
            .map(|i| parts::part_name(&self.name, generation, &nonce, i))
            .collect();
        let part_labels: BTreeMap<String, String> = [
            (MANAGED_BY.to_owned(), "cni-migrate".to_owned()),
            (parts::PART_OF_LABEL.to_owned(), label_value(&self.name)),
            (
                parts::PART_GENERATION_LABEL.to_owned(),
                generation.to_string(),
            ),
        ]
        .into();
        for (i, (name, chunk)) in names.iter().zip(&chunks).enumerate() {
            let binary = [(parts::CHUNK_KEY.to_owned(), chunk.to_vec())].into();
            let written = self
                .cluster
                .write_configmap(
                    &self.namespace,
                    name,
                    &part_labels,
                    &BTreeMap::new(),
                    &binary,
                    None,
                )
                .await;
            match written {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    // Nothing names these parts: take back what was written.
                    self.remove(&names[..i]).await;
                    return match written {
                        Err(e) => Err(self.cluster_err("write", name)(e)),
                        _ => Ok(false),
                    };
                }
            }
        }
        let index = parts::Index {
            version: crate::checkpoint::VERSION,
            generation,
            bytes: payload.len(),
            sha256: parts::sha256(&payload),
            parts: names.clone(),
        };
        let data = [(
            parts::INDEX_KEY.to_owned(),
            serde_json::to_string(&index).unwrap_or_default(),
        )]
        .into();
        let binary = if chunks.is_empty() {
            [(parts::INLINE_KEY.to_owned(), payload)].into()
        } else {
            BTreeMap::new()
        };
        let labels: BTreeMap<String, String> = [
            (MANAGED_BY.to_owned(), "cni-migrate".to_owned()),
            (
                "cni-migrate.io/plan".to_owned(),
                label_value(&checkpoint.plan),
            ),
        ]
        .into();
        let written = self
            .cluster
            .write_configmap(
                &self.namespace,
                &self.name,
                &labels,
                &data,
                &binary,
                seen.resource_version.as_deref(),
            )
            .await;
        tracing::debug!(generation, parts = names.len(), ok = ?written.as_ref().map(|w| w.is_some()), "checkpoint write");
        match written {
            Ok(Some(rv)) => {
                seen.resource_version = Some(rv);
                self.written
                    .store(index.bytes, std::sync::atomic::Ordering::Relaxed);
                let old = std::mem::replace(&mut seen.parts, names);
                let stale: Vec<String> = old
                    .into_iter()
                    .filter(|n| !seen.parts.contains(n))
                    .collect();
                self.remove(&stale).await;
                Ok(true)
            }
            Ok(None) => {
                self.remove(&names).await;
                Ok(false)
            }
            // The head may have been written all the same (a lost answer): its parts stay.
            Err(e) => Err(self.cluster_err("write", &self.name)(e)),
        }
    }
}

fn empty_index() -> parts::Index {
    parts::Index {
        version: 0,
        generation: 0,
        bytes: 0,
        sha256: String::new(),
        parts: Vec::new(),
    }
}

/// The label every object the store writes carries.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

#[async_trait]
impl StateStore for ConfigMapStore {
    async fn load(&self) -> Result<Option<Checkpoint>, StoreError> {
        let mut seen = self.seen.lock().await;
        match self.read().await? {
            Some((ck, head)) => {
                seen.resource_version = head.resource_version;
                seen.parts = head.parts;
                Ok(Some(ck))
            }
            None => {
                seen.resource_version = None;
                seen.parts.clear();
                Ok(None)
            }
        }
    }

    async fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), StoreError> {
        let mut seen = self.seen.lock().await;
        for _ in 0..5 {
            checkpoint.generation += 1;
            match self.write(&mut seen, checkpoint).await {
                Ok(true) => {
                    if !seen.swept {
                        seen.swept = true;
                        self.sweep(&seen, checkpoint.generation).await;
                    }
                    return Ok(());
                }
                Ok(false) => {
                    checkpoint.generation -= 1;
                    // Someone wrote since we read: only a write of another generation is a
                    // conflict (a label edit by a human is not).
                    match self.read_head().await? {
                        Some(head) if head.generation == checkpoint.generation => {
                            seen.resource_version = head.resource_version;
                            seen.parts = head.parts;
                        }
                        Some(head) => {
                            return Err(StoreError::Conflict {
                                expected: checkpoint.generation,
                                found: head.generation,
                            });
                        }
                        None => {
                            seen.resource_version = None;
                            seen.parts.clear();
                        }
                    }
                }
                Err(e) => {
                    checkpoint.generation -= 1;
                    return Err(e);
                }
            }
        }
        Err(StoreError::Conflict {
            expected: checkpoint.generation,
            found: checkpoint.generation,
        })
    }

    fn describe(&self) -> String {
        self.what()
    }

    fn last_size(&self) -> Option<usize> {
        Some(self.written.load(std::sync::atomic::Ordering::Relaxed)).filter(|b| *b > 0)
    }
}

/// A label value from any string: at most 63 characters of `[A-Za-z0-9._-]`.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

pub mod parts;

#[cfg(test)]
mod tests {
    use planner::snapshot::{ClusterSnapshot, NodeInfo};

    use super::*;

    #[tokio::test]
    async fn the_file_store_writes_atomically_and_refuses_a_lost_race() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = FileStore::new(dir.path().join("state.json"));
        assert!(store.load().await.expect("load").is_none());
        let spec = planner::MigrationSpec::from_yaml(
            "apiVersion: cni-migrate.io/v1alpha1\nkind: MigrationSpec\nmetadata: {name: t}\n\
             target: {ciliumVersion: 1.17.3, podCIDRs: [100.64.0.0/10], tunnel: {port: 8473}}\n",
            "t",
        )
        .expect("spec");
        let snap = ClusterSnapshot {
            nodes: (0..2)
                .map(|i| NodeInfo {
                    name: format!("n{i}"),
                    ready: true,
                    ..NodeInfo::default()
                })
                .collect(),
            ..ClusterSnapshot::default()
        };
        let p = planner::plan(&spec, &snap);
        let mut a = Checkpoint::new(&p, "a", 1);
        store.save(&mut a).await.expect("first write");
        let mut b = store.load().await.expect("load").expect("exists");
        store.save(&mut a).await.expect("a writes again");
        assert!(matches!(
            store.save(&mut b).await,
            Err(StoreError::Conflict {
                expected: 1,
                found: 2
            })
        ));
        assert_eq!(
            store
                .load()
                .await
                .expect("load")
                .expect("exists")
                .generation,
            2
        );
        // Another process's store writes: this one, which knows what it wrote last, sees that
        // the file no longer holds it.
        let other = FileStore::new(dir.path().join("state.json"));
        let mut c = other.load().await.expect("load").expect("exists");
        other.save(&mut c).await.expect("the other writes");
        assert!(matches!(
            store.save(&mut a).await,
            Err(StoreError::Conflict {
                expected: 2,
                found: 3
            })
        ));
        std::fs::write(dir.path().join("state.json"), "garbage").expect("write");
        assert!(matches!(
            store.save(&mut c).await,
            Err(StoreError::Parse { .. })
        ));
        assert!(matches!(store.load().await, Err(StoreError::Parse { .. })));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("kind-flannel"), "kind-flannel");
        assert_eq!(label_value("-a b/c-"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(100)).len(), 63);
    }
}
