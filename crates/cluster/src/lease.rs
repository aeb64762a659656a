//! The run lock: a `coordination.k8s.io/v1` Lease, so that two `apply`/`resume` runs never
//! drive the same cluster at once.
//!
//! ```text
//! acquire ─► no Lease ─────────────► create (holder run-id@host) ─► held
//!        ├─► Lease held by us ──────► renew ──────────────────────► held
//!        ├─► held by another, fresh ► refuse, naming the holder
//!        └─► held by another, stale ► refuse, unless --force-unlock ─► take over
//! renew (every duration/3) ─► PUT with the resourceVersion we hold; a conflict means someone
//!                             else wrote it: re-read, and if it is no longer ours the lock is lost
//! ```
//!
//! A stale Lease is never taken over silently: the run that held it may have stopped half-way
//! through a node, and the operator should look before another run goes on (kured #137, #822;
//! kube-hetzner #1182).

use std::time::{Duration, SystemTime};

use kube::core::Request;
use serde_json::{Value, json};

use crate::{ClusterError, status_code};

/// Namespace of the Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Name of the Lease.
pub const LEASE_NAME: &str = "cni-migrate";

/// Why the lock could not be taken or kept.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds a fresh lock.
    #[error(
        "another cni-migrate run holds the lock: Lease {LEASE_NAMESPACE}/{LEASE_NAME} is held by {holder} (renewed {age}s ago, expires in {expires_in}s); wait for it to finish, or check `cni-migrate status`"
    )]
    Held {
        /// `run-id@host` of the holder.
        holder: String,
        /// Seconds since its last renewal.
        age: u64,
        /// Seconds until it would be stale.
        expires_in: u64,
    },
    /// The lock is held by a run that stopped renewing it.
    #[error(
        "the lock is stale: Lease {LEASE_NAMESPACE}/{LEASE_NAME} is held by {holder}, last renewed {age}s ago; that run may have stopped half-way. Check `cni-migrate status`, make sure it is not running, then pass --force-unlock"
    )]
    Stale {
        /// `run-id@host` of the holder.
        holder: String,
        /// Seconds since its last renewal.
        age: u64,
    },
    /// We held the lock and someone else took it.
    #[error(
        "lost the lock: Lease {LEASE_NAMESPACE}/{LEASE_NAME} is now held by {holder}; stopping"
    )]
    Lost {
        /// The new holder.
        holder: String,
    },
    /// The API failed.
    #[error("cannot read or write the Lease {LEASE_NAMESPACE}/{LEASE_NAME}")]
    Cluster(#[source] ClusterError),
}

/// A held (or to-be-held) lock.
pub struct LeaseLock {
    client: kube::Client,
    holder: String,
    duration: Duration,
    resource_version: Option<String>,
}

fn rfc3339_micros(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z'))
        .ok()
        .or_else(|| humantime::parse_rfc3339(s).ok())
}

fn api(source: kube::Error, verb: &'static str) -> LockError {
    LockError::Cluster(ClusterError::Api {
        verb,
        what: format!("lease {LEASE_NAMESPACE}/{LEASE_NAME}"),
        source,
    })
}

/// Who holds the Lease, as `cni-migrate status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// `run-id@host`.
    pub holder: String,
    /// Seconds since its last renewal, when it has one.
    pub renewed_seconds_ago: Option<u64>,
    /// Renewed within its duration.
    pub fresh: bool,
}

async fn read_lease(client: &kube::Client) -> Result<Option<Value>, LockError> {
    let req = Request::new(LeaseLock::path())
        .get(LEASE_NAME, &kube::api::GetParams::default())
        .map_err(|source| {
            LockError::Cluster(ClusterError::BuildRequest {
                what: "lease".into(),
                source,
            })
        })?;
    match client.request::<Value>(req).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(api(e, "get")),
    }
}

/// The Lease's holder, when it is held.
///
/// # Errors
/// [`LockError::Cluster`] when the API fails.
pub async fn holder(client: &kube::Client) -> Result<Option<Holder>, LockError> {
    let Some(v) = read_lease(client).await? else {
        return Ok(None);
    };
    let spec = &v["spec"];
    let Some(holder) = spec["holderIdentity"].as_str().filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let duration = spec["leaseDurationSeconds"].as_u64().unwrap_or(0);
    let age = spec["renewTime"]
        .as_str()
        .and_then(parse_time)
        .and_then(|r| SystemTime::now().duration_since(r).ok())
        .map(|a| a.as_secs());
    Ok(Some(Holder {
        holder: holder.to_owned(),
        renewed_seconds_ago: age,
        fresh: age.is_some_and(|a| a < duration),
    }))
}

impl LeaseLock {
    /// A lock for `holder` (`run-id@host`) with a lease duration.
    pub fn new(client: kube::Client, holder: impl Into<String>, duration: Duration) -> Self {
        Self {
            client,
            holder: holder.into(),
            duration,
            resource_version: None,
        }
    }

    /// The holder identity.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often to renew: a third of the duration.
    pub fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    fn path() -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases")
    }

    fn body(&self, now: SystemTime, acquire: Option<SystemTime>, transitions: i64) -> Value {
        let mut v = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE,
                         "labels": {"app.kubernetes.io/managed-by": "cni-migrate"}},
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration.as_secs(),
                "renewTime": rfc3339_micros(now),
                "acquireTime": rfc3339_micros(acquire.unwrap_or(now)),
                "leaseTransitions": transitions,
            }
        });
        if let Some(rv) = &self.resource_version {
            v["metadata"]["resourceVersion"] = json!(rv);
        }
        v
    }

    async fn read(&self) -> Result<Option<Value>, LockError> {
        read_lease(&self.client).await
    }

    async fn write(&mut self, body: &Value, create: bool) -> Result<bool, LockError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let req = if create {
            Request::new(Self::path()).create(&kube::api::PostParams::default(), bytes)
        } else {
            Request::new(Self::path()).replace(LEASE_NAME, &kube::api::PostParams::default(), bytes)
        }
        .map_err(|source| {
            LockError::Cluster(ClusterError::BuildRequest {
                what: "lease".into(),
                source,
            })
        })?;
        match self.client.request::<Value>(req).await {
            Ok(v) => {
                self.resource_version =
                    v["metadata"]["resourceVersion"].as_str().map(str::to_owned);
                Ok(true)
            }
            // Someone else created or updated it between our read and our write.
            Err(e) if matches!(status_code(&e), Some(409)) => Ok(false),
            Err(e) => Err(api(e, if create { "create" } else { "update" })),
        }
    }

    /// Takes the lock, or explains who holds it.
    ///
    /// # Errors
    /// [`LockError::Held`] / [`LockError::Stale`] when another run holds it (stale only without
    /// `force_unlock`); [`LockError::Cluster`] when the API fails.
    pub async fn acquire(&mut self, force_unlock: bool) -> Result<(), LockError> {
        for _ in 0..5 {
            let now = SystemTime::now();
            let Some(current) = self.read().await? else {
                self.resource_version = None;
                if self.write(&self.body(now, None, 0), true).await? {
                    return Ok(());
                }
                continue;
            };
            let spec = &current["spec"];
            let holder = spec["holderIdentity"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let duration = Duration::from_secs(spec["leaseDurationSeconds"].as_u64().unwrap_or(0));
            let renewed = spec["renewTime"].as_str().and_then(parse_time);
            let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
            self.resource_version = current["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            let age = renewed
                .and_then(|r| now.duration_since(r).ok())
                .unwrap_or(Duration::ZERO);
            let released = holder.is_empty();
            if !released && holder != self.holder {
                if age < duration {
                    return Err(LockError::Held {
                        holder,
                        age: age.as_secs(),
                        expires_in: duration.saturating_sub(age).as_secs(),
                    });
                }
                if !force_unlock {
                    return Err(LockError::Stale {
                        holder,
                        age: age.as_secs(),
                    });
                }
                tracing::warn!(%holder, age = age.as_secs(), "taking over a stale lock (--force-unlock)");
            }
            let acquire = if holder == self.holder {
                spec["acquireTime"].as_str().and_then(parse_time)
            } else {
                None
            };
            let transitions = if holder == self.holder {
                transitions
            } else {
                transitions + 1
            };
            if self
                .write(&self.body(now, acquire, transitions), false)
                .await?
            {
                return Ok(());
            }
        }
        let holder = self
            .read()
            .await?
            .and_then(|v| v["spec"]["holderIdentity"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Err(LockError::Held {
            holder,
            age: 0,
            expires_in: self.duration.as_secs(),
        })
    }

    /// Renews the lock we hold.
    ///
    /// # Errors
    /// [`LockError::Lost`] when another run took it; [`LockError::Cluster`] when the API fails.
    pub async fn renew(&mut self) -> Result<(), LockError> {
        for _ in 0..3 {
            let now = SystemTime::now();
            if self.write(&self.body(now, None, 0), false).await? {
                return Ok(());
            }
            // Conflict: re-read and check it is still ours.
            match self.read().await? {
                Some(v) if v["spec"]["holderIdentity"].as_str() == Some(self.holder.as_str()) => {
                    self.resource_version =
                        v["metadata"]["resourceVersion"].as_str().map(str::to_owned);
                }
                Some(v) => {
                    return Err(LockError::Lost {
                        holder: v["spec"]["holderIdentity"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                None => {
                    return Err(LockError::Lost {
                        holder: "nobody (the Lease was deleted)".to_owned(),
                    });
                }
            }
        }
        Err(LockError::Lost {
            holder: "unknown (renewal kept conflicting)".to_owned(),
        })
    }

    /// Releases the lock (empties the holder), if we still hold it.
    ///
    /// # Errors
    /// [`LockError::Cluster`] when the API fails.
    pub async fn release(&mut self) -> Result<(), LockError> {
        if let Some(v) = self.read().await?
            && v["spec"]["holderIdentity"].as_str() == Some(self.holder.as_str())
        {
            self.resource_version = v["metadata"]["resourceVersion"].as_str().map(str::to_owned);
            let mut body = self.body(
                SystemTime::now(),
                None,
                v["spec"]["leaseTransitions"].as_i64().unwrap_or(0),
            );
            body["spec"]["holderIdentity"] = Value::Null;
            self.write(&body, false).await?;
        }
        Ok(())
    }
}
