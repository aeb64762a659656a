//! Objects watched: one LIST, then one WATCH from its `resourceVersion`. Pods (those of one
//! node, or one pod by name) as a new snapshot at each change, instead of a LIST a second while
//! a drain waits for pods to go or a GET every poll while the probe runs; every node as a
//! stream of changes, for the run's node cache ([`crate::cached`]); one object by name (the
//! agent DaemonSet during a rollout) as its state at each change.
//!
//! ```text
//! LIST (fieldSelector spec.nodeName=N) ─► Listed ─► WATCH from its resourceVersion
//!   ADDED / MODIFIED ─► Applied        DELETED ─► Deleted
//!   (pods: each change folded into a snapshot, yielded when it differs)
//!   BOOKMARK ─► resourceVersion kept
//!   the watch ends (server timeout) ─► WATCH again from the last resourceVersion
//!   410 Gone ─► LIST again
//!   any other error ─► yielded, and the stream ends (the caller polls instead)
//! ```

use std::collections::BTreeMap;

use futures::{StreamExt as _, stream::BoxStream};
use kube::{
    api::{ListParams, WatchEvent, WatchParams},
    core::Request,
};
use planner::snapshot::{NodeInfo, PodInfo};
use serde::{Deserialize, de::DeserializeOwned};

use crate::ClusterError;

/// What a watch saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Change<T> {
    /// Everything, from a LIST (the first, or again after `410 Gone`).
    Listed(Vec<T>),
    /// Added or modified.
    Applied(T),
    /// Deleted (its last state).
    Deleted(T),
}

/// An object a watch keeps by key.
pub trait Watched: DeserializeOwned + Clone + PartialEq + Send + 'static {
    /// The resource's plural, for messages.
    const RESOURCE: &'static str;
    /// Its key in a snapshot (`namespace/name`, or the name of a cluster-scoped object).
    fn watch_key(&self) -> String;
}

impl Watched for PodInfo {
    const RESOURCE: &'static str = "pods";
    fn watch_key(&self) -> String {
        self.key()
    }
}

impl Watched for NodeInfo {
    const RESOURCE: &'static str = "nodes";
    fn watch_key(&self) -> String {
        self.name.clone()
    }
}

/// Any object, kept whole (a watch of one object by name).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Object(pub serde_json::Value);

impl Watched for Object {
    const RESOURCE: &'static str = "objects";
    fn watch_key(&self) -> String {
        let meta = &self.0["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        match meta["namespace"].as_str() {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_owned(),
        }
    }
}

enum Phase {
    List,
    Open,
    Watch(BoxStream<'static, Result<WatchEvent<serde_json::Value>, kube::Error>>),
    Done,
}

struct State {
    client: kube::Client,
    /// e.g. `/api/v1/pods`, `/api/v1/namespaces/NS/pods`, `/api/v1/nodes`.
    path: String,
    /// The field selector, e.g. `spec.nodeName=N` or `metadata.name=P` (may be empty).
    fields: String,
    rv: String,
    phase: Phase,
}

/// What a watch's request was about: the resource (the last part of `path`, or `T`'s), and
/// its field selector.
fn api_error<T: Watched>(
    verb: &'static str,
    path: &str,
    what: &str,
    source: kube::Error,
) -> ClusterError {
    let resource = path
        .rsplit('/')
        .next()
        .filter(|r| !r.is_empty())
        .unwrap_or(T::RESOURCE);
    ClusterError::Api {
        verb,
        what: if what.is_empty() {
            resource.to_owned()
        } else {
            format!("{resource} ({what})")
        },
        source,
    }
}

impl State {
    /// The LIST, in pages ([`crate::discovery::list_versioned`]); the watch goes on from its
    /// resourceVersion.
    async fn list<T: Watched>(&mut self) -> Result<Vec<T>, ClusterError> {
        let mut params = ListParams::default();
        if !self.fields.is_empty() {
            params = params.fields(&self.fields);
        }
        let (items, rv) = crate::discovery::list_versioned(&self.client, &self.path, &params)
            .await
            .map_err(|e| match e {
                ClusterError::Api { source, .. } => {
                    api_error::<T>("list", &self.path, &self.fields, source)
                }
                other => other,
            })?;
        self.rv = rv;
        Ok(items)
    }

    async fn open<T: Watched>(&mut self) -> Result<(), ClusterError> {
        let mut params = WatchParams::default().timeout(290);
        if !self.fields.is_empty() {
            params = params.fields(&self.fields);
        }
        let request = Request::new(&self.path)
            .watch(&params, &self.rv)
            .map_err(|source| ClusterError::BuildRequest {
                what: T::RESOURCE.into(),
                source,
            })?;
        let events = self
            .client
            .request_events::<serde_json::Value>(request)
            .await
            .map_err(|e| api_error::<T>("watch", &self.path, &self.fields, e))?;
        self.phase = Phase::Watch(events.boxed());
        Ok(())
    }

    /// The object of an event (its resourceVersion kept), `None` when it does not decode.
    fn decode<T: Watched>(&mut self, object: serde_json::Value) -> Option<T> {
        if let Some(rv) = object
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
        {
            rv.clone_into(&mut self.rv);
        }
        serde_json::from_value::<T>(object).ok()
    }

    /// The next change, `None` once the stream ended (after an error it yielded).
    async fn next<T: Watched>(&mut self) -> Option<Result<Change<T>, ClusterError>> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::List => {
                    let items = match self.list().await {
                        Ok(items) => items,
                        Err(e) => return Some(Err(e)),
                    };
                    self.phase = Phase::Open;
                    return Some(Ok(Change::Listed(items)));
                }
                Phase::Open => {
                    if let Err(e) = self.open::<T>().await {
                        return Some(Err(e));
                    }
                }
                Phase::Watch(mut events) => {
                    let event = events.next().await;
                    self.phase = Phase::Watch(events);
                    match event {
                        None => self.phase = Phase::Open,
                        Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                            if let Some(t) = self.decode(o) {
                                return Some(Ok(Change::Applied(t)));
                            }
                        }
                        Some(Ok(WatchEvent::Deleted(o))) => {
                            if let Some(t) = self.decode(o) {
                                return Some(Ok(Change::Deleted(t)));
                            }
                        }
                        Some(Ok(WatchEvent::Bookmark(b))) => {
                            self.rv = b.metadata.resource_version;
                        }
                        Some(Ok(WatchEvent::Error(e))) if e.code == 410 => {
                            self.phase = Phase::List;
                        }
                        Some(Ok(WatchEvent::Error(e))) => {
                            self.phase = Phase::Done;
                            return Some(Err(api_error::<T>(
                                "watch",
                                &self.path,
                                &self.fields,
                                kube::Error::Api(e),
                            )));
                        }
                        Some(Err(e)) => {
                            self.phase = Phase::Done;
                            return Some(Err(api_error::<T>("watch", &self.path, &self.fields, e)));
                        }
                    }
                }
            }
        }
    }
}

/// The changes of the objects at `path` matching a field selector (empty: all of them): the
/// first item is the LIST, then one for each change. The stream ends after an error it yields.
pub fn changes<T: Watched>(
    client: kube::Client,
    path: String,
    field_selector: &str,
) -> BoxStream<'static, Result<Change<T>, ClusterError>> {
    let state = State {
        client,
        path,
        fields: field_selector.to_owned(),
        rv: String::new(),
        phase: Phase::List,
    };
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next::<T>().await?;
        Some((item, s))
    })
    .boxed()
}

/// Folds a change into a snapshot kept by key; `true` when the snapshot changed.
pub fn fold<T: Watched>(snapshot: &mut BTreeMap<String, T>, change: Change<T>) -> bool {
    match change {
        Change::Listed(items) => {
            let new: BTreeMap<String, T> = items.into_iter().map(|t| (t.watch_key(), t)).collect();
            let changed = new != *snapshot;
            *snapshot = new;
            changed
        }
        Change::Applied(t) => snapshot.insert(t.watch_key(), t.clone()).as_ref() != Some(&t),
        Change::Deleted(t) => snapshot.remove(&t.watch_key()).is_some(),
    }
}

/// The objects a stream of changes describes, as a snapshot: the first item is the LIST's,
/// then one for each change that alters it.
fn snapshots<T: Watched>(
    changes: BoxStream<'static, Result<Change<T>, ClusterError>>,
) -> BoxStream<'static, Result<Vec<T>, ClusterError>> {
    futures::stream::unfold(
        (changes, BTreeMap::new(), true),
        |(mut changes, mut objects, first)| async move {
            loop {
                match changes.next().await? {
                    Err(e) => return Some((Err(e), (changes, objects, false))),
                    Ok(change) => {
                        if fold(&mut objects, change) || first {
                            let snapshot = objects.values().cloned().collect();
                            return Some((Ok(snapshot), (changes, objects, false)));
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

/// The pods in `namespace` (every namespace with `None`) matching a field selector such as
/// `spec.nodeName=N` or `metadata.name=P`: the first item is the LIST's snapshot, then one for
/// each change.
pub fn pods(
    client: kube::Client,
    namespace: Option<&str>,
    field_selector: &str,
) -> BoxStream<'static, Result<Vec<PodInfo>, ClusterError>> {
    let path = namespace.map_or_else(
        || "/api/v1/pods".to_owned(),
        |ns| format!("/api/v1/namespaces/{ns}/pods"),
    );
    snapshots(changes::<PodInfo>(client, path, field_selector))
}

/// The object `name` in the collection at `path` (e.g.
/// `/apis/apps/v1/namespaces/kube-system/daemonsets`), whole: its state from one LIST
/// (`metadata.name=NAME`), then at each change; `None` while it does not exist.
pub fn object(
    client: kube::Client,
    path: String,
    name: &str,
) -> BoxStream<'static, Result<Option<serde_json::Value>, ClusterError>> {
    let changes = changes::<Object>(client, path, &format!("metadata.name={name}"));
    snapshots(changes)
        .map(|r| r.map(|objects| objects.into_iter().next().map(|o| o.0)))
        .boxed()
}

/// Every node: the LIST, then each change.
pub fn nodes(client: kube::Client) -> BoxStream<'static, Result<Change<NodeInfo>, ClusterError>> {
    changes::<NodeInfo>(client, "/api/v1/nodes".to_owned(), "")
}

/// Why a followed watch stopped answering (see [`follow`]).
pub enum Lost<'a> {
    /// The stream failed with this error.
    Failed(&'a ClusterError),
    /// The stream ended (on its own, or after a failure): it is opened again after a pause.
    Ended,
}

/// Whether a watch's failure is RBAC's (403): opening it again cannot help.
pub fn forbidden(e: &ClusterError) -> bool {
    match e {
        ClusterError::Forbidden { .. } => true,
        ClusterError::Api { source, .. } => crate::error::status_code(source) == Some(403),
        _ => false,
    }
}

/// Follows a watch for as long as the task runs: `first`, then `reopen()` after each end, 5 s
/// after the first failure, doubling to 60 s, back to 5 s once a LIST is in. Each change goes
/// to `apply`; each failure and each end to `lost`. It returns on a 403 (after `lost` heard
/// it) or when `reopen` has no watch to give.
pub async fn follow<T: Watched>(
    first: BoxStream<'static, Result<Change<T>, ClusterError>>,
    mut reopen: impl FnMut() -> Option<BoxStream<'static, Result<Change<T>, ClusterError>>>,
    mut apply: impl FnMut(Change<T>),
    mut lost: impl FnMut(Lost<'_>),
) {
    let mut stream = Some(first);
    let mut backoff = std::time::Duration::from_secs(5);
    loop {
        if let Some(mut changes) = stream.take() {
            while let Some(item) = changes.next().await {
                match item {
                    Ok(change) => {
                        if matches!(change, Change::Listed(_)) {
                            backoff = std::time::Duration::from_secs(5);
                        }
                        apply(change);
                    }
                    Err(e) => {
                        lost(Lost::Failed(&e));
                        if forbidden(&e) {
                            return;
                        }
                        break;
                    }
                }
            }
        }
        lost(Lost::Ended);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
        stream = reopen();
        if stream.is_none() {
            return;
        }
    }
}
