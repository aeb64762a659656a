//! Where the checkpoint lives while a run goes on: a ConfigMap in the cluster (the default, so
//! `cni-migrate status` works from any machine) or a local file (`--state file:PATH`).
//!
//! ```text
//! save ─► ConfigMap kube-system/cni-migrate-state, key checkpoint.json
//!          PUT at the resourceVersion last read or written ─► 409: re-read; another
//!          generation means another writer (a `pause`, or a second run) and is reported
//! ```
//!
//! Both stores refuse to overwrite a checkpoint another writer changed since it was read: the
//! runner then re-reads it and merges the only change another writer may make (`paused`).

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
    /// The checkpoint outgrew its store.
    #[error("the checkpoint is {bytes} bytes, more than {what} can hold: use --state file:PATH")]
    TooLarge {
        /// Where.
        what: String,
        /// Its size.
        bytes: usize,
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
/// The ConfigMap key holding the checkpoint.
pub const STATE_KEY: &str = "checkpoint.json";
/// The largest checkpoint a ConfigMap can hold, with room for metadata.
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
}

impl FileStore {
    /// A store at a path.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self { path: path.into() }
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
        if let Some(current) = self.read()?
            && current.generation != checkpoint.generation
        {
            return Err(StoreError::Conflict {
                expected: checkpoint.generation,
                found: current.generation,
            });
        }
        checkpoint.generation += 1;
        let tmp = self.path.with_extension("tmp~");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(checkpoint.to_json().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| {
            checkpoint.generation -= 1;
            StoreError::Io {
                verb: "write",
                path,
                source,
            }
        })
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

/// The checkpoint in a ConfigMap.
pub struct ConfigMapStore {
    cluster: Arc<dyn Cluster>,
    namespace: String,
    name: String,
    /// The resourceVersion last read or written.
    resource_version: Mutex<Option<String>>,
    /// Bytes of the last checkpoint written (metrics).
    written: std::sync::atomic::AtomicUsize,
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
            resource_version: Mutex::new(None),
            written: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn what(&self) -> String {
        format!("configmap {}/{}", self.namespace, self.name)
    }

    fn cluster_err(&self, verb: &'static str) -> impl FnOnce(ClusterError) -> StoreError + '_ {
        move |source| StoreError::Cluster {
            verb,
            what: self.what(),
            source: Box::new(source),
        }
    }

    async fn read(&self) -> Result<Option<(Checkpoint, Option<String>)>, StoreError> {
        let cm = self
            .cluster
            .configmap(&self.namespace, &self.name)
            .await
            .map_err(self.cluster_err("read"))?;
        let Some(cm) = cm else {
            return Ok(None);
        };
        let rv = cm.metadata.resource_version.clone();
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(STATE_KEY))
            .cloned()
            .unwrap_or_default();
        let ck = Checkpoint::from_json(&text).map_err(|source| StoreError::Parse {
            path: format!("{} key {STATE_KEY}", self.what()),
            source,
        })?;
        Ok(Some((ck, rv)))
    }
}

#[async_trait]
impl StateStore for ConfigMapStore {
    async fn load(&self) -> Result<Option<Checkpoint>, StoreError> {
        let mut rv = self.resource_version.lock().await;
        match self.read().await? {
            Some((ck, found)) => {
                *rv = found;
                Ok(Some(ck))
            }
            None => {
                *rv = None;
                Ok(None)
            }
        }
    }

    async fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), StoreError> {
        let mut rv = self.resource_version.lock().await;
        let labels: BTreeMap<String, String> = [
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "cni-migrate".to_owned(),
            ),
            (
                "cni-migrate.io/plan".to_owned(),
                label_value(&checkpoint.plan),
            ),
        ]
        .into_iter()
        .collect();
        for _ in 0..5 {
            checkpoint.generation += 1;
            let text = checkpoint.to_json();
            if text.len() > CONFIGMAP_LIMIT {
                checkpoint.generation -= 1;
                return Err(StoreError::TooLarge {
                    what: self.what(),
                    bytes: text.len(),
                });
            }
            let data: BTreeMap<String, String> = [(STATE_KEY.to_owned(), text)].into();
            let written = self
                .cluster
                .write_configmap(&self.namespace, &self.name, &labels, &data, rv.as_deref())
                .await;
            tracing::debug!(generation = checkpoint.generation, ok = ?written.as_ref().map(|w| w.is_some()), "checkpoint write");
            match written {
                Ok(Some(new_rv)) => {
                    *rv = Some(new_rv);
                    let bytes = data.values().map(String::len).sum();
                    self.written
                        .store(bytes, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                Ok(None) => {
                    checkpoint.generation -= 1;
                    // Someone wrote since we read: only a write of another generation is a
                    // conflict (a label edit by a human is not).
                    match self.read().await? {
                        Some((stored, found)) if stored.generation == checkpoint.generation => {
                            *rv = found;
                        }
                        Some((stored, _)) => {
                            return Err(StoreError::Conflict {
                                expected: checkpoint.generation,
                                found: stored.generation,
                            });
                        }
                        None => *rv = None,
                    }
                }
                Err(source) => {
                    checkpoint.generation -= 1;
                    return Err(self.cluster_err("write")(source));
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
        std::fs::write(dir.path().join("state.json"), "garbage").expect("write");
        assert!(matches!(store.load().await, Err(StoreError::Parse { .. })));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("kind-flannel"), "kind-flannel");
        assert_eq!(label_value("-a b/c-"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(100)).len(), 63);
    }
}
