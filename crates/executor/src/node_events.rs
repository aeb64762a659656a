//! Kubernetes Events on Nodes, posted off the steps' path.
//!
//! ```text
//! step started / done / failed ─► NodeEvents::post ─► bounded queue (4,096) ─► one task posts
//!   them in order, each under its step (the audit names it) ─► Runner waits for the queue at
//!   the end of a pass (NodeEvents::flush, at most 10 s)
//! ```
//!
//! A node's chain wrote seven Events and waited for each: seven round trips of write latency on
//! every node's critical path, for what is only a record for `kubectl describe node`. They are
//! best effort as before (a failure is logged at debug and changes nothing); a full queue drops
//! the Event and counts it, rather than hold a step.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use cluster::Cluster;
use tokio::sync::{mpsc, oneshot};

/// Events waiting to be posted at most.
const QUEUE: usize = 4096;

enum Item {
    Post {
        step: String,
        node: String,
        reason: &'static str,
        message: String,
        warning: bool,
    },
    Flush(oneshot::Sender<()>),
}

/// The queue of Events to post, and the task posting them (started at the first Event).
pub struct NodeEvents {
    cluster: Arc<dyn Cluster>,
    tx: OnceLock<mpsc::Sender<Item>>,
    dropped: AtomicU64,
}

impl NodeEvents {
    pub fn new(cluster: Arc<dyn Cluster>) -> Self {
        Self {
            cluster,
            tx: OnceLock::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn sender(&self) -> &mpsc::Sender<Item> {
        self.tx.get_or_init(|| {
            let (tx, mut rx) = mpsc::channel(QUEUE);
            let cluster = self.cluster.clone();
            tokio::spawn(async move {
                while let Some(item) = rx.recv().await {
                    match item {
                        Item::Post {
                            step,
                            node,
                            reason,
                            message,
                            warning,
                        } => {
                            let post = cluster.node_event(&node, reason, &message, warning);
                            if let Err(e) = cluster::telemetry::in_step(&step, post).await {
                                tracing::debug!(node, error = %e, "cannot record an event on the node");
                            }
                        }
                        Item::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            tx
        })
    }

    /// Queues an Event on `node` for `step`; returns at once.
    pub fn post(&self, step: &str, node: &str, reason: &'static str, message: &str, warning: bool) {
        let item = Item::Post {
            step: step.to_owned(),
            node: node.to_owned(),
            reason,
            message: message.to_owned(),
            warning,
        };
        if self.sender().try_send(item).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(node, reason, dropped = n, "event queue full: event dropped");
        }
    }

    /// Waits until what was queued before is posted, at most `within`.
    pub async fn flush(&self, within: Duration) {
        let Some(tx) = self.tx.get() else {
            return;
        };
        let (done, posted) = oneshot::channel();
        let _ = tokio::time::timeout(within, async {
            if tx.send(Item::Flush(done)).await.is_ok() {
                let _ = posted.await;
            }
        })
        .await;
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
