//! The object store behind the simulated API server, and the API the model builds on.
//!
//! ```text
//! request ─► Store::{create, update, delete, get, list} ─► objects held serialized (JSON bytes)
//!                     │                                     with small indexes beside them
//!                     └─► event log (bounded) + broadcast ─► WATCH streams, model controllers
//! ```
//!
//! Objects are held as deflated JSON bytes, not as trees of values: a 7 KB pod costs about
//! 1.5 KB, where a `serde_json::Value` of it costs several times 7 KB; a read inflates it
//! (tens of microseconds). Labels, `spec.nodeName` and
//! `status.phase` are kept beside the bytes so selectors never decode an object that does not
//! match. Every change gets the next cluster-wide `resourceVersion` and is appended to a bounded
//! event log; a watch from a version older than the log's floor gets `410 Gone`, as from a real
//! API server whose watch cache has moved on.
//!
//! The model (kubelets, controllers, the Cilium agent and operator) uses the same methods as
//! the HTTP handlers, and [`Store::subscribe`] to react to changes.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::SystemTime,
};

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The storage key of PodDisruptionBudgets.
const BUDGETS: &str = "policy/poddisruptionbudgets";

/// How many events the log keeps for watches that resume from a resourceVersion.
pub const EVENT_LOG: usize = 200_000;

/// A stored object.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Its resourceVersion.
    pub rv: u64,
    /// The object, serialized and deflated (a pod's 7 KB of JSON keeps about 1.5 KB): read it
    /// with [`Stored::bytes`] or [`Stored::value`].
    packed: Arc<[u8]>,
    /// `metadata.labels` (shared: the event log holds the same objects).
    pub labels: Arc<BTreeMap<String, String>>,
    /// `spec.nodeName` (pods).
    pub node_name: Option<String>,
    /// `status.phase` (pods, namespaces).
    pub phase: Option<String>,
    /// The kind and name of the controller in `metadata.ownerReferences` (pods, ReplicaSets).
    pub controller: Option<Arc<(String, String)>>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Whether `status.conditions` has `Ready` `True` (pods and nodes).
    pub ready: bool,
    /// `status.podIP` (pods).
    pub pod_ip: Option<String>,
    /// `spec.selector.matchLabels` (budgets, controllers), when the object has one.
    pub match_labels: Option<Arc<BTreeMap<String, String>>>,
}

impl Stored {
    /// Whether `spec.selector.matchLabels` may select these labels: each of its labels is among
    /// them (true when the selector has no `matchLabels`: its expressions must be looked at).
    pub fn may_select(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .as_deref()
            .is_none_or(|ml| ml.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }

    /// The pod's node, "" when it is not bound yet.
    pub fn node(&self) -> &str {
        self.node_name.as_deref().unwrap_or_default()
    }

    /// The object, decoded (a copy of the one [`Stored::shared`] read recently, when it is still
    /// kept).
    pub fn value(&self) -> Value {
        match decoded::get(&self.packed) {
            Some(v) => (*v).clone(),
            None => serde_json::from_slice(&self.bytes()).unwrap_or(Value::Null),
        }
    }

    /// The object, decoded and shared, for a reader that changes nothing: the objects read last
    /// this way are kept decoded (a bounded number), so the controllers that look at an object
    /// one after the other decode it once.
    pub fn shared(&self) -> Arc<Value> {
        decoded::get(&self.packed).unwrap_or_else(|| {
            let v = Arc::new(serde_json::from_slice(&self.bytes()).unwrap_or(Value::Null));
            decoded::put(&self.packed, v.clone());
            v
        })
    }

    /// The object's JSON.
    pub fn bytes(&self) -> Vec<u8> {
        use std::io::Read as _;
        let mut out = Vec::with_capacity(self.packed.len() * 5);
        // The store deflated these bytes itself: they inflate.
        let _ = flate2::read::DeflateDecoder::new(&self.packed[..]).read_to_end(&mut out);
        out
    }

    fn pack(json: &[u8]) -> Arc<[u8]> {
        use std::io::Write as _;
        let mut z = flate2::write::DeflateEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        let _ = z.write_all(json);
        z.finish().unwrap_or_default().into()
    }
}

/// A change, as a watch sees it.
#[derive(Clone, Debug)]
pub struct Event {
    /// The resourceVersion of the change.
    pub rv: u64,
    /// The storage key of the resource (`/pods`, `apps/daemonsets`).
    pub key: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub type_: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The object after the change (before it, for deletions, with the deletion's version).
    pub object: Stored,
}

/// Why a store operation failed; each maps to the Status the real API server sends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// 404.
    #[error("{kind} \"{name}\" not found")]
    NotFound {
        /// Resource plural.
        kind: String,
        /// Name.
        name: String,
    },
    /// 409 AlreadyExists.
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists {
        /// Resource plural.
        kind: String,
        /// Name.
        name: String,
    },
    /// 409 Conflict.
    #[error("Operation cannot be fulfilled on {kind} \"{name}\": {reason}")]
    Conflict {
        /// Resource plural.
        kind: String,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
    /// 422 Invalid.
    #[error("{kind} \"{name}\" is invalid: {reason}")]
    Invalid {
        /// Resource kind.
        kind: String,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
    /// 410 Gone.
    #[error("too old resource version: {requested} ({floor})")]
    Gone {
        /// The version asked for.
        requested: u64,
        /// The oldest version still in the log.
        floor: u64,
    },
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: HashMap<String, BTreeMap<(String, String), Stored>>,
    log: VecDeque<Arc<Event>>,
    floor: u64,
    logs: HashMap<(String, String), String>,
    uid_counter: u64,
    /// Pods by `spec.nodeName`: a field-selected LIST of one node's pods reads only them.
    by_node: HashMap<String, std::collections::BTreeSet<(String, String)>>,
    /// Pods by namespace and label: a selector reads only the pods with its first label.
    by_label: HashMap<(String, String, String), std::collections::BTreeSet<String>>,
    /// Objects by storage key, namespace and controller (kind, name).
    by_controller: HashMap<(String, String, String, String), std::collections::BTreeSet<String>>,
    /// Budgets by namespace and the first label of their `matchLabels` (`("", "")` for those
    /// without: they select by expressions).
    by_selector: HashMap<(String, String, String), std::collections::BTreeSet<String>>,
    /// The watches' channels, by storage key: a watch hears only its resource's changes (and
    /// a watch of one node's pods only theirs), as the API server's watch cache keeps one
    /// per resource. With one channel for everything, each of a few hundred watches woke for
    /// each of thousands of changes a second (the kubelets' Leases among them).
    channels: HashMap<String, Channels>,
}

/// The channels of one resource's watches.
#[derive(Default)]
struct Channels {
    /// Every change of the resource.
    all: Option<broadcast::Sender<Arc<Event>>>,
    /// The changes of the pods bound to a node, by node.
    by_node: HashMap<String, broadcast::Sender<Arc<Event>>>,
}

/// Resources whose changes no controller of the model reacts to, left out of
/// [`Store::subscribe`]: the kubelets' Leases (at 1,000 nodes and 20 times real speed, 2,000
/// renewals a second, more than half of what the model was handed during a wave) and Events.
pub const UNWATCHED_BY_CONTROLLERS: &[&str] = &[
    "coordination.k8s.io/leases",
    "/events",
    "events.k8s.io/events",
];

/// Changes a watch of one resource may fall behind by before it is closed.
const WATCH_BUFFER: usize = 65_536;
/// The same, for a watch of one node's pods (a channel for each node watched).
const NODE_WATCH_BUFFER: usize = 4_096;

impl Inner {
    fn index_node(
        &mut self,
        key: &str,
        k: &(String, String),
        old: Option<&Stored>,
        new: Option<&Stored>,
    ) {
        let (ns, name) = k;
        for (o, add) in [(old, false), (new, true)] {
            let Some(o) = o else { continue };
            if let Some((kind, owner)) = o.controller.as_deref() {
                let entry = (key.to_owned(), ns.clone(), kind.clone(), owner.clone());
                if add {
                    self.by_controller
                        .entry(entry)
                        .or_default()
                        .insert(name.clone());
                } else if let Some(set) = self.by_controller.get_mut(&entry) {
                    set.remove(name);
                    if set.is_empty() {
                        self.by_controller.remove(&entry);
                    }
                }
            }
            if key == BUDGETS {
                let (l, v) = o
                    .match_labels
                    .as_deref()
                    .and_then(|ml| ml.iter().next())
                    .map(|(l, v)| (l.clone(), v.clone()))
                    .unwrap_or_default();
                let entry = (ns.clone(), l, v);
                if add {
                    self.by_selector
                        .entry(entry)
                        .or_default()
                        .insert(name.clone());
                } else {
                    remove_from(&mut self.by_selector, entry, name);
                }
            }
        }
        if key != "/pods" {
            return;
        }
        // Pods not bound yet are indexed under "" (what `spec.nodeName=` selects, and what
        // the scheduler looks at again when a node comes or changes).
        if let Some(o) = old
            && let Some(set) = self.by_node.get_mut(o.node())
        {
            set.remove(k);
        }
        if let Some(n) = new {
            self.by_node
                .entry(n.node().to_owned())
                .or_default()
                .insert(k.clone());
        }
        if let Some(o) = old {
            for (l, v) in o.labels.iter() {
                remove_from(&mut self.by_label, (ns.clone(), l.clone(), v.clone()), name);
            }
        }
        if let Some(o) = new {
            for (l, v) in o.labels.iter() {
                self.by_label
                    .entry((ns.clone(), l.clone(), v.clone()))
                    .or_default()
                    .insert(name.clone());
            }
        }
    }
}

fn remove_from(
    index: &mut HashMap<(String, String, String), std::collections::BTreeSet<String>>,
    key: (String, String, String),
    name: &str,
) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(name);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

/// A page of a LIST: the list's resourceVersion, `((namespace, name), object)` pairs, and
/// whether more remain.
pub type Page = (u64, Vec<((String, String), Stored)>, bool);

/// The backlog of a watch and the receiver for what follows.
pub type WatchStart = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// The store.
pub struct Store {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Now, as the API server writes timestamps.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Now as a `MicroTime` (RFC 3339 with microseconds), as Leases carry it.
pub fn now_rfc3339_micro() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

fn index(v: &Value) -> (BTreeMap<String, String>, Option<String>, Option<String>) {
    let labels = v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    (
        labels,
        v["spec"]["nodeName"].as_str().map(str::to_owned),
        v["status"]["phase"].as_str().map(str::to_owned),
    )
}

fn stored(rv: u64, v: &Value) -> Stored {
    let (labels, node_name, phase) = index(v);
    let controller = v["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true)
        .and_then(|o| {
            Some((
                o["kind"].as_str()?.to_owned(),
                o["name"].as_str()?.to_owned(),
            ))
        });
    let packed = Stored::pack(&serde_json::to_vec(v).unwrap_or_default());
    Stored {
        rv,
        packed,
        labels: Arc::new(labels),
        node_name,
        phase,
        controller: controller.map(Arc::new),
        terminating: !v["metadata"]["deletionTimestamp"].is_null(),
        ready: v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        pod_ip: v["status"]["podIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned),
        match_labels: v["spec"]["selector"]["matchLabels"].as_object().map(|m| {
            Arc::new(
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect(),
            )
        }),
    }
}

fn meta_key(v: &Value) -> (String, String) {
    (
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(65_536);
        Self {
            inner: RwLock::new(Inner {
                floor: 1,
                ..Inner::default()
            }),
            events,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.read().rv
    }

    /// Every change from now on, except those of [`UNWATCHED_BY_CONTROLLERS`] (a watch of
    /// them hears them).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    fn record(
        &self,
        inner: &mut Inner,
        key: &str,
        type_: &'static str,
        ns: &str,
        name: &str,
        object: Stored,
    ) {
        let ev = Arc::new(Event {
            rv: object.rv,
            key: key.to_owned(),
            type_,
            namespace: ns.to_owned(),
            name: name.to_owned(),
            object,
        });
        inner.log.push_back(ev.clone());
        while inner.log.len() > EVENT_LOG {
            if let Some(old) = inner.log.pop_front() {
                inner.floor = old.rv + 1;
            }
        }
        if let Some(channels) = inner.channels.get_mut(key) {
            if let Some(tx) = &channels.all {
                if tx.receiver_count() == 0 {
                    channels.all = None;
                } else {
                    let _ = tx.send(ev.clone());
                }
            }
            let node = ev.object.node();
            if let Some(tx) = channels.by_node.get(node) {
                if tx.receiver_count() == 0 {
                    channels.by_node.remove(node);
                } else {
                    let _ = tx.send(ev.clone());
                }
            }
        }
        if !UNWATCHED_BY_CONTROLLERS.contains(&key) {
            let _ = self.events.send(ev);
        }
    }

    fn next_uid(inner: &mut Inner) -> String {
        inner.uid_counter += 1;
        let n = inner.uid_counter;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            n.wrapping_mul(2_654_435_761) & 0xffff_ffff,
            n & 0xffff,
            (n >> 16) & 0xfff,
            (n >> 28) & 0xfff,
            n
        )
    }

    /// One object.
    pub fn get(&self, key: &str, namespace: &str, name: &str) -> Option<Stored> {
        self.read()
            .objects
            .get(key)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of a resource (in a namespace, or all), sorted by namespace and name, that pass
    /// `filter`, starting after `after` (a continue token's key), at most `limit`. Returns the
    /// list's resourceVersion, the objects, and whether more remain.
    pub fn list(
        &self,
        key: &str,
        namespace: Option<&str>,
        after: Option<&(String, String)>,
        limit: Option<usize>,
        filter: &dyn Fn(&(String, String), &Stored) -> bool,
    ) -> Page {
        let inner = self.read();
        let mut out = Vec::new();
        let mut more = false;
        if let Some(map) = inner.objects.get(key) {
            let start = match (after, namespace) {
                (Some(a), _) => std::ops::Bound::Excluded(a.clone()),
                (None, Some(ns)) => std::ops::Bound::Included((ns.to_owned(), String::new())),
                (None, None) => std::ops::Bound::Unbounded,
            };
            for (k, v) in map.range((start, std::ops::Bound::Unbounded)) {
                if namespace.is_some_and(|ns| k.0 != ns) {
                    break;
                }
                if !filter(k, v) {
                    continue;
                }
                if limit.is_some_and(|l| out.len() >= l) {
                    more = true;
                    break;
                }
                out.push((k.clone(), v.clone()));
            }
        }
        (inner.rv, out, more)
    }

    /// The pods of a namespace with a label, through the label index (sorted by name).
    pub fn pods_with_label(
        &self,
        namespace: &str,
        label: (&str, &str),
        filter: &dyn Fn(&(String, String), &Stored) -> bool,
    ) -> Page {
        let key = (namespace.to_owned(), label.0.to_owned(), label.1.to_owned());
        self.named("/pods", |inner| inner.by_label.get(&key), namespace, filter)
    }

    /// The pods of a namespace a `matchLabels` selects, through the label index by its first
    /// label (every pod of the namespace for an empty one).
    pub fn pods_matching(
        &self,
        namespace: &str,
        match_labels: &serde_json::Map<String, Value>,
    ) -> Page {
        let selects = |_: &(String, String), s: &Stored| {
            match_labels
                .iter()
                .all(|(k, v)| s.labels.get(k).map(String::as_str) == v.as_str())
        };
        match match_labels.iter().next() {
            Some((k, v)) => {
                self.pods_with_label(namespace, (k, v.as_str().unwrap_or_default()), &selects)
            }
            None => self.list("/pods", Some(namespace), None, None, &selects),
        }
    }

    /// The pods of a namespace whose controller is the `kind` named `name`, through the
    /// controller index (sorted by name).
    pub fn pods_of_controller(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        filter: &dyn Fn(&(String, String), &Stored) -> bool,
    ) -> Page {
        self.controlled("/pods", namespace, kind, name, filter)
    }

    /// The objects under `key` in a namespace whose controller is the `kind` named `name`
    /// (the ReplicaSets of a Deployment), through the controller index (sorted by name).
    pub fn controlled(
        &self,
        key: &str,
        namespace: &str,
        kind: &str,
        name: &str,
        filter: &dyn Fn(&(String, String), &Stored) -> bool,
    ) -> Page {
        let entry = (
            key.to_owned(),
            namespace.to_owned(),
            kind.to_owned(),
            name.to_owned(),
        );
        self.named(
            key,
            |inner| inner.by_controller.get(&entry),
            namespace,
            filter,
        )
    }

    /// The budgets of a namespace that may select a pod with these labels: those whose first
    /// `matchLabels` label it has, and those without `matchLabels` (through the selector
    /// index; the caller judges the whole selector).
    pub fn budgets_for(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Page {
        let mut keys: Vec<(String, String, String)> = labels
            .iter()
            .map(|(l, v)| (namespace.to_owned(), l.clone(), v.clone()))
            .collect();
        keys.push((namespace.to_owned(), String::new(), String::new()));
        let inner = self.read();
        let budgets = inner.objects.get(BUDGETS);
        let mut items: Vec<((String, String), Stored)> = keys
            .iter()
            .filter_map(|k| inner.by_selector.get(k))
            .flatten()
            .filter_map(|name| {
                let k = (namespace.to_owned(), name.clone());
                let s = budgets?.get(&k)?.clone();
                s.may_select(labels).then_some((k, s))
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|a, b| a.0 == b.0);
        (inner.rv, items, false)
    }

    /// The objects of a namespace named by one of the indexes.
    fn named(
        &self,
        key: &str,
        names: impl FnOnce(&Inner) -> Option<&std::collections::BTreeSet<String>>,
        namespace: &str,
        filter: &dyn Fn(&(String, String), &Stored) -> bool,
    ) -> Page {
        let inner = self.read();
        let pods = inner.objects.get(key);
        let items = names(&inner)
            .into_iter()
            .flatten()
            .filter_map(|name| {
                let k = (namespace.to_owned(), name.clone());
                let s = pods?.get(&k)?.clone();
                Some((k, s))
            })
            .filter(|(k, s)| filter(k, s))
            .collect();
        (inner.rv, items, false)
    }

    /// The pods bound to a node, through the node index (sorted by namespace and name).
    pub fn pods_on_node(
        &self,
        node: &str,
        filter: &dyn Fn(&(String, String), &Stored) -> bool,
    ) -> Page {
        let inner = self.read();
        let pods = inner.objects.get("/pods");
        let items = inner
            .by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| Some((k.clone(), pods?.get(k)?.clone())))
            .filter(|(k, s)| filter(k, s))
            .collect();
        (inner.rv, items, false)
    }

    /// How many pods each of `nodes` has (the node index, under one lock).
    pub fn pod_counts(&self, nodes: &[&str]) -> Vec<usize> {
        let inner = self.read();
        nodes
            .iter()
            .map(|n| {
                inner
                    .by_node
                    .get(*n)
                    .map_or(0, std::collections::BTreeSet::len)
            })
            .collect()
    }

    /// Creates an object, filling uid, creationTimestamp, resourceVersion and `generateName`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] or [`StoreError::Invalid`] (no name).
    pub fn create(&self, key: &str, mut v: Value, dry_run: bool) -> Result<Value, StoreError> {
        let mut inner = self.write();
        if v["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            match v["metadata"]["generateName"].as_str() {
                Some(prefix) if !prefix.is_empty() => {
                    // As the API server does since `RetryGenerateName` (GA in 1.32): a generated
                    // name that is taken is generated again, a few times, before the create
                    // fails as AlreadyExists (at 1,000 nodes the agents' names collided).
                    let ns = v["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    let mut name = String::new();
                    for _ in 0..8 {
                        inner.uid_counter += 1;
                        let suffix: String = format!(
                            "{:05x}",
                            inner.uid_counter.wrapping_mul(0x9E37_79B9) & 0xfffff
                        )
                        .chars()
                        .map(|c| {
                            if c.is_ascii_digit() {
                                char::from(b'a' + (c as u8 - b'0'))
                            } else {
                                c
                            }
                        })
                        .collect();
                        name = format!("{prefix}{suffix}");
                        let taken = inner
                            .objects
                            .get(key)
                            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())));
                        if !taken {
                            break;
                        }
                    }
                    v["metadata"]["name"] = json!(name);
                }
                _ => {
                    return Err(StoreError::Invalid {
                        kind: v["kind"].as_str().unwrap_or_default().to_owned(),
                        name: String::new(),
                        reason: "metadata.name: Required value: name or generateName is required"
                            .into(),
                    });
                }
            }
        }
        let (ns, name) = meta_key(&v);
        if inner
            .objects
            .get(key)
            .is_some_and(|m| m.contains_key(&(ns.clone(), name.clone())))
        {
            return Err(StoreError::AlreadyExists {
                kind: key.rsplit('/').next().unwrap_or(key).to_owned(),
                name,
            });
        }
        if dry_run {
            return Ok(v);
        }
        inner.rv += 1;
        let rv = inner.rv;
        let uid = Self::next_uid(&mut inner);
        let meta = &mut v["metadata"];
        if meta["uid"].as_str().is_none_or(str::is_empty) {
            meta["uid"] = json!(uid);
        }
        if meta["creationTimestamp"].as_str().is_none() {
            meta["creationTimestamp"] = json!(now_rfc3339());
        }
        meta["resourceVersion"] = json!(rv.to_string());
        if meta.get("generation").is_none() && v.get("spec").is_some() {
            v["metadata"]["generation"] = json!(1);
        }
        let s = stored(rv, &v);
        let k = (ns.clone(), name.clone());
        inner.index_node(key, &k, None, Some(&s));
        inner
            .objects
            .entry(key.to_owned())
            .or_default()
            .insert(k, s.clone());
        self.record(&mut inner, key, "ADDED", &ns, &name, s);
        Ok(v)
    }

    /// Replaces an object. When `expected_rv` is given it must match (optimistic concurrency).
    /// Bumps `metadata.generation` when `spec` changed.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Conflict`].
    pub fn update(
        &self,
        key: &str,
        mut v: Value,
        expected_rv: Option<u64>,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let mut inner = self.write();
        let (ns, name) = meta_key(&v);
        let plural = key.rsplit('/').next().unwrap_or(key).to_owned();
        let Some(old) = inner
            .objects
            .get(key)
            .and_then(|m| m.get(&(ns.clone(), name.clone())))
            .cloned()
        else {
            return Err(StoreError::NotFound { kind: plural, name });
        };
        if let Some(want) = expected_rv
            && want != old.rv
        {
            return Err(StoreError::Conflict {
                kind: plural,
                name,
                reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
        let old_v = old.value();
        // Identity and bookkeeping fields are the server's, not the client's.
        for k in ["uid", "creationTimestamp"] {
            if !old_v["metadata"][k].is_null() {
                v["metadata"][k] = old_v["metadata"][k].clone();
            }
        }
        let generation = old_v["metadata"]["generation"].as_i64().unwrap_or(0);
        let new_generation = if old_v.get("spec") != v.get("spec") {
            generation + 1
        } else {
            generation
        };
        if new_generation > 0 {
            v["metadata"]["generation"] = json!(new_generation);
        }
        if dry_run {
            v["metadata"]["resourceVersion"] = json!(old.rv.to_string());
            return Ok(v);
        }
        inner.rv += 1;
        let rv = inner.rv;
        v["metadata"]["resourceVersion"] = json!(rv.to_string());
        let s = stored(rv, &v);
        let k = (ns.clone(), name.clone());
        inner.index_node(key, &k, Some(&old), Some(&s));
        inner
            .objects
            .entry(key.to_owned())
            .or_default()
            .insert(k, s.clone());
        self.record(&mut inner, key, "MODIFIED", &ns, &name, s);
        Ok(v)
    }

    /// Deletes an object now (graceful deletion is the handlers' and the model's business).
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    pub fn delete(
        &self,
        key: &str,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let mut inner = self.write();
        let k = (namespace.to_owned(), name.to_owned());
        let Some(old) = inner.objects.get(key).and_then(|m| m.get(&k)).cloned() else {
            return Err(StoreError::NotFound {
                kind: key.rsplit('/').next().unwrap_or(key).to_owned(),
                name: name.to_owned(),
            });
        };
        let value = old.value();
        if dry_run {
            return Ok(value);
        }
        if let Some(m) = inner.objects.get_mut(key) {
            m.remove(&k);
        }
        inner.index_node(key, &k, Some(&old), None);
        inner.logs.remove(&k);
        inner.rv += 1;
        let rv = inner.rv;
        let mut gone = value.clone();
        gone["metadata"]["resourceVersion"] = json!(rv.to_string());
        let s = stored(rv, &gone);
        self.record(&mut inner, key, "DELETED", namespace, name, s);
        Ok(value)
    }

    /// Events after `rv` for a resource (all resources with `None`, as [`Store::subscribe`]
    /// hears them; only the pods bound to
    /// `node` when it is given), and a receiver for what comes next, which hears no other
    /// resource's changes (and with `node`, only that node's pods'; the backlog is for the
    /// caller to filter). Subscribing and reading the log happen under one lock, so nothing
    /// is lost or seen twice.
    ///
    /// # Errors
    /// [`StoreError::Gone`] when `rv` is older than the log keeps.
    pub fn watch_from(
        &self,
        key: Option<&str>,
        node: Option<&str>,
        rv: u64,
    ) -> Result<WatchStart, StoreError> {
        let mut inner = self.write();
        if rv + 1 < inner.floor {
            return Err(StoreError::Gone {
                requested: rv,
                floor: inner.floor,
            });
        }
        let rx = match key {
            None => self.events.subscribe(),
            Some(key) => {
                let channels = inner.channels.entry(key.to_owned()).or_default();
                match node {
                    None => channels
                        .all
                        .get_or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
                        .subscribe(),
                    Some(node) => channels
                        .by_node
                        .entry(node.to_owned())
                        .or_insert_with(|| broadcast::channel(NODE_WATCH_BUFFER).0)
                        .subscribe(),
                }
            }
        };
        // The log is in resourceVersion order: what is newer than `rv` is its tail.
        let from = inner.log.partition_point(|e| e.rv <= rv);
        let backlog = inner
            .log
            .range(from..)
            .filter(|e| key.is_none_or(|k| e.key == k))
            .cloned()
            .collect();
        Ok((backlog, rx))
    }

    /// Sets the text `GET pods/NAME/log` returns.
    pub fn set_log(&self, namespace: &str, name: &str, text: impl Into<String>) {
        self.write()
            .logs
            .insert((namespace.to_owned(), name.to_owned()), text.into());
    }

    /// The text `GET pods/NAME/log` returns.
    pub fn log(&self, namespace: &str, name: &str) -> Option<String> {
        self.read()
            .logs
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// How many objects of a resource are stored.
    pub fn count(&self, key: &str) -> usize {
        self.read().objects.get(key).map_or(0, BTreeMap::len)
    }

    /// Drops the event log up to now (tests use it to provoke `410 Gone`).
    pub fn compact(&self) {
        let mut inner = self.write();
        inner.log.clear();
        inner.floor = inner.rv + 1;
    }
}

mod decoded;
#[cfg(test)]
mod tests;
