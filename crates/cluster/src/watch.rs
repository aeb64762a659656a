//! Pods watched (those of one node, or one pod by name): one LIST, then one WATCH from its
//! `resourceVersion`, each change a new snapshot (instead of a LIST a second while a drain
//! waits for pods to go, or a GET every poll while the probe runs).
//!
//! ```text
//! LIST (fieldSelector spec.nodeName=N) ─► snapshot ─► WATCH from its resourceVersion
//!   ADDED / MODIFIED / DELETED ─► the snapshot changed ─► yielded
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
use planner::snapshot::PodInfo;
use serde::Deserialize;

use crate::ClusterError;

#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<PodInfo>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: String,
}

enum Phase {
    List,
    Open,
    Watch(BoxStream<'static, Result<WatchEvent<serde_json::Value>, kube::Error>>),
    Done,
}

struct State {
    client: kube::Client,
    /// `/api/v1/pods` or `/api/v1/namespaces/NS/pods`.
    path: String,
    /// The field selector, e.g. `spec.nodeName=N` or `metadata.name=P`.
    fields: String,
    pods: BTreeMap<String, PodInfo>,
    rv: String,
    phase: Phase,
}

fn api_error(verb: &'static str, what: &str, source: kube::Error) -> ClusterError {
    ClusterError::Api {
        verb,
        what: format!("pods ({what})"),
        source,
    }
}

impl State {
    fn snapshot(&self) -> Vec<PodInfo> {
        self.pods.values().cloned().collect()
    }

    async fn list(&mut self) -> Result<(), ClusterError> {
        let params = ListParams::default().fields(&self.fields);
        let request = Request::new(&self.path).list(&params).map_err(|source| {
            ClusterError::BuildRequest {
                what: "pods".into(),
                source,
            }
        })?;
        let list: PodList = self
            .client
            .request(request)
            .await
            .map_err(|e| api_error("list", &self.fields, e))?;
        self.pods = list.items.into_iter().map(|p| (p.key(), p)).collect();
        self.rv = list.metadata.resource_version;
        Ok(())
    }

    async fn open(&mut self) -> Result<(), ClusterError> {
        let params = WatchParams::default().fields(&self.fields).timeout(290);
        let request = Request::new(&self.path)
            .watch(&params, &self.rv)
            .map_err(|source| ClusterError::BuildRequest {
                what: "pods".into(),
                source,
            })?;
        let events = self
            .client
            .request_events::<serde_json::Value>(request)
            .await
            .map_err(|e| api_error("watch", &self.fields, e))?;
        self.phase = Phase::Watch(events.boxed());
        Ok(())
    }

    /// Applies an object of an event; `true` when the snapshot changed.
    fn apply(&mut self, object: serde_json::Value, deleted: bool) -> bool {
        if let Some(rv) = object
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
        {
            rv.clone_into(&mut self.rv);
        }
        let Ok(pod) = serde_json::from_value::<PodInfo>(object) else {
            return false;
        };
        if deleted {
            self.pods.remove(&pod.key()).is_some()
        } else {
            self.pods.insert(pod.key(), pod.clone()).as_ref() != Some(&pod)
        }
    }

    /// The next snapshot, `None` once the stream ended.
    async fn next(&mut self) -> Option<Result<Vec<PodInfo>, ClusterError>> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::List => {
                    if let Err(e) = self.list().await {
                        return Some(Err(e));
                    }
                    self.phase = Phase::Open;
                    return Some(Ok(self.snapshot()));
                }
                Phase::Open => {
                    if let Err(e) = self.open().await {
                        return Some(Err(e));
                    }
                }
                Phase::Watch(mut events) => {
                    let event = events.next().await;
                    self.phase = Phase::Watch(events);
                    match event {
                        None => self.phase = Phase::Open,
                        Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                            if self.apply(o, false) {
                                return Some(Ok(self.snapshot()));
                            }
                        }
                        Some(Ok(WatchEvent::Deleted(o))) => {
                            if self.apply(o, true) {
                                return Some(Ok(self.snapshot()));
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
                            return Some(Err(api_error(
                                "watch",
                                &self.fields,
                                kube::Error::Api(e),
                            )));
                        }
                        Some(Err(e)) => {
                            self.phase = Phase::Done;
                            return Some(Err(api_error("watch", &self.fields, e)));
                        }
                    }
                }
            }
        }
    }
}

/// The pods in `namespace` (every namespace with `None`) matching a field selector such as
/// `spec.nodeName=N` or `metadata.name=P`: the first item is the LIST's snapshot, then one for
/// each change.
pub fn pods(
    client: kube::Client,
    namespace: Option<&str>,
    field_selector: &str,
) -> BoxStream<'static, Result<Vec<PodInfo>, ClusterError>> {
    let state = State {
        client,
        path: namespace.map_or_else(
            || "/api/v1/pods".to_owned(),
            |ns| format!("/api/v1/namespaces/{ns}/pods"),
        ),
        fields: field_selector.to_owned(),
        pods: BTreeMap::new(),
        rv: String::new(),
        phase: Phase::List,
    };
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    })
    .boxed()
}
