//! Loading a [`ClusterSnapshot`] from a `kubectl get ... -o json|yaml` dump.
//!
//! ```text
//!  file ─► sniff first byte ─┬─ `{` / `[` ─► JSON, streamed from a buffered reader:
//!                            │              one object (a List or not), a top-level array,
//!                            │              or several concatenated objects
//!                            └─ otherwise ─► YAML, document by document
//!                                     │
//!        every object ─► dispatch on `kind` ─► projection (Pod, Node, ...) or whole object
//!                                               (ConfigMap, DaemonSet, kept custom kinds);
//!                                               unknown kinds skipped; `items` streamed
//! ```
//!
//! A JSON dump is never held in memory, as text or as a tree: one thread cuts it into objects
//! (`dump/items.rs`: where each object ends, found without parsing it), the other parses each
//! object from its bytes (serde_json from a slice, several times faster than through
//! `io::Read`), decoding only the fields a projection needs. kubectl writes `apiVersion` and `kind` before `metadata`, `spec` and
//! `status`, so the kind is normally known before the big fields arrive; fields that come
//! earlier are buffered and replayed, so any key order is correct, only slower.
//! YAML dumps (the small-cluster path) are parsed one document at a time.

use std::{
    fmt,
    fs::File,
    io::{BufRead, BufReader, Read},
    path::Path,
};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use serde::{
    Deserializer,
    de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::Value;

use crate::snapshot::{ClusterSnapshot, CustomObject, KEPT_CUSTOM_KINDS, raw::Parts};

/// Why a dump could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The file could not be read.
    #[error("cannot read dump {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is malformed, or an object in it does not have the shape of its kind.
    #[error("{origin}: {message}")]
    Json {
        /// The file.
        origin: String,
        /// What is wrong, where (item, kind, name, field, line and column).
        message: String,
    },
    /// The YAML is malformed, or an object in it does not have the shape of its kind.
    #[error("{origin}: document {document}: {message}")]
    Yaml {
        /// The file.
        origin: String,
        /// The document's index, from 1.
        document: usize,
        /// What is wrong, where.
        message: String,
    },
}

/// Loads a dump file.
///
/// # Errors
/// [`DumpError::Read`] when the file cannot be read; [`DumpError::Json`] / [`DumpError::Yaml`]
/// naming the item, its kind and name, and the field when an object is malformed.
pub fn load_path(path: &Path) -> Result<ClusterSnapshot, DumpError> {
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|source| DumpError::Read {
        path: origin.clone(),
        source,
    })?;
    load_reader(file, &origin)
}

/// Loads a dump from text.
///
/// # Errors
/// As [`load_path`].
pub fn load_str(text: &str, origin: &str) -> Result<ClusterSnapshot, DumpError> {
    load_reader(text.as_bytes(), origin)
}

/// Loads a dump from a reader; `origin` names it in errors.
///
/// # Errors
/// As [`load_path`].
pub fn load_reader(reader: impl Read + Send, origin: &str) -> Result<ClusterSnapshot, DumpError> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let first = loop {
        let buf = reader.fill_buf().map_err(|source| DumpError::Read {
            path: origin.to_owned(),
            source,
        })?;
        if buf.is_empty() {
            break None;
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                break Some(b);
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    let mut sink = Sink::default();
    match first {
        None => {}
        Some(b'{' | b'[') => load_json(reader, origin, &mut sink)?,
        Some(_) => load_yaml(reader, origin, &mut sink)?,
    }
    let mut snap = sink.snapshot;
    snap.normalize();
    Ok(snap)
}

/// Cuts the dump into objects on one thread ([`items::scan`]) while parser threads (one a core
/// besides the scanner's, at least one, at most three) parse batches of them from their bytes; their results are put back in file
/// order, so the snapshot is what a single parser would have built. Memory holds a few batches.
fn load_json(reader: impl Read + Send, origin: &str, sink: &mut Sink) -> Result<(), DumpError> {
    type Parsed = (usize, Result<Sink, DumpError>);
    // The scanner keeps a core busy; the others parse. On two cores a second parser only
    // competes with the scanner (measured: no faster, and more memory in per-thread arenas).
    let parsers = std::thread::available_parallelism().map_or(1, |n| (n.get() - 1).clamp(1, 3));
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, usize, items::Batch)>(4);
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Parsed>();
    let first_item = sink.items;
    std::thread::scope(|scope| {
        let scanner = scope.spawn(move || {
            let (mut seq, mut first) = (0, first_item);
            items::scan(reader, |b| {
                let n = b.items.len();
                let sent = tx.send((seq, first, b)).is_ok();
                seq += 1;
                first += n;
                sent
            })
        });
        for _ in 0..parsers {
            let rx = rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = rx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv();
                    let Ok((seq, first, batch)) = next else {
                        break;
                    };
                    let mut part = Sink {
                        snapshot: ClusterSnapshot::default(),
                        items: first,
                    };
                    // Most items are pods: room for them all at once, not grown item by item.
                    part.snapshot.pods.reserve(batch.items.len());
                    let parsed = parse_batch(&batch, origin, &mut part).map(|()| part);
                    let failed = parsed.is_err();
                    if done_tx.send((seq, parsed)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        // Once every parser is gone, so is the receiver, and the scanner stops.
        drop(rx);
        drop(done_tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0;
        let mut parsed = Ok(());
        'results: for (seq, result) in &done_rx {
            waiting.insert(seq, result);
            while let Some(result) = waiting.remove(&next) {
                next += 1;
                match result {
                    Ok(part) => absorb(sink, part),
                    Err(e) => {
                        parsed = Err(e);
                        break 'results;
                    }
                }
            }
        }
        // A parse error stops the parsers at their next batch, and so the scanner.
        drop(done_rx);
        let scanned = scanner.join().unwrap_or_else(|_| {
            Err(items::ScanError::Io(std::io::Error::other(
                "the dump's scanner thread panicked",
            )))
        });
        parsed?;
        scanned.map_err(|e| match e {
            items::ScanError::Io(source) => DumpError::Read {
                path: origin.to_owned(),
                source,
            },
            items::ScanError::Syntax {
                message,
                line,
                column,
            } => DumpError::Json {
                origin: origin.to_owned(),
                message: format!("{message} at line {line} column {column}"),
            },
        })
    })
}

/// Appends what a batch's parser found, in file order.
fn absorb(sink: &mut Sink, part: Sink) {
    let ClusterSnapshot {
        nodes,
        pods,
        pdbs,
        workloads,
        daemonsets,
        configmaps,
        services,
        network_policies,
        custom,
        node_config_versions,
        namespaces,
    } = part.snapshot;
    let s = &mut sink.snapshot;
    s.nodes.extend(nodes);
    s.pods.extend(pods);
    s.pdbs.extend(pdbs);
    s.workloads.extend(workloads);
    s.daemonsets.extend(daemonsets);
    s.configmaps.extend(configmaps);
    s.services.extend(services);
    s.network_policies.extend(network_policies);
    s.custom.extend(custom);
    if node_config_versions.is_some() {
        s.node_config_versions = node_config_versions;
    }
    s.namespaces.extend(namespaces);
    sink.items = sink.items.max(part.items);
}

fn parse_batch(batch: &items::Batch, origin: &str, sink: &mut Sink) -> Result<(), DumpError> {
    for item in &batch.items {
        if item.start == item.end {
            sink.items += 1;
            continue;
        }
        let mut de = serde_json::Deserializer::from_slice(&batch.bytes[item.start..item.end]);
        ItemSeed { sink: &mut *sink }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| DumpError::Json {
                origin: origin.to_owned(),
                message: relocate(&e.to_string(), item),
            })?;
    }
    Ok(())
}

/// Positions in a message about one item (`at line L column C`, relative to the item's bytes)
/// made positions in the file.
fn relocate(message: &str, item: &items::Item) -> String {
    const AT: &str = " at line ";
    let mut out = String::with_capacity(message.len() + 8);
    let mut rest = message;
    while let Some(i) = rest.find(AT) {
        out.push_str(&rest[..i]);
        let after = &rest[i + AT.len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let l_end = digits(after);
        let tail = &after[l_end..];
        let Some(col_part) = tail.strip_prefix(" column ") else {
            out.push_str(AT);
            rest = after;
            continue;
        };
        let c_end = digits(col_part);
        match (
            after[..l_end].parse::<usize>(),
            col_part[..c_end].parse::<usize>(),
        ) {
            (Ok(line), Ok(column)) if line > 0 => {
                let (l, c) = if line == 1 {
                    (item.line, item.column + column.saturating_sub(1))
                } else {
                    (item.line + line - 1, column)
                };
                out.push_str(&format!("{AT}{l} column {c}"));
            }
            _ => out.push_str(&rest[i..i + AT.len() + l_end + 8 + c_end]),
        }
        rest = &col_part[c_end..];
    }
    out.push_str(rest);
    out
}

fn load_yaml(mut reader: impl Read, origin: &str, sink: &mut Sink) -> Result<(), DumpError> {
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|source| DumpError::Read {
            path: origin.to_owned(),
            source,
        })?;
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        TopSeed { sink: &mut *sink }
            .deserialize(doc)
            .map_err(|e| DumpError::Yaml {
                origin: origin.to_owned(),
                document: i + 1,
                message: e.to_string(),
            })?;
    }
    Ok(())
}

#[derive(Default)]
struct Sink {
    snapshot: ClusterSnapshot,
    items: usize,
}

/// A top-level value: an object, an array of objects, or nothing (an empty YAML document).
struct TopSeed<'a> {
    sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object, a List of objects, or an array of objects")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ItemSeed {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        ItemSeed { sink: self.sink }.visit_map(map)
    }
}

/// Items of a List.
struct ItemsSeed<'a> {
    sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of Kubernetes objects in `items`")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(ItemSeed {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One object. Dispatches on `kind` as soon as it is known.
struct ItemSeed<'a> {
    sink: &'a mut Sink,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// What is being built for the current object.
enum Builder {
    /// A projected kind, decoded field by field.
    Projection(Box<Parts>),
    /// Kept whole: ConfigMap, DaemonSet, Namespace, kept custom kinds.
    Whole(WholeKind, serde_json::Map<String, Value>),
    /// A kind the planner does not use.
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WholeKind {
    ConfigMap,
    DaemonSet,
    Namespace,
    Custom,
    /// Only `ciliumnodeconfigs.cilium.io`, for the versions it serves.
    Crd,
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Which builder a kind needs; `None` when the API version is needed and not known yet.
fn builder_for(kind: &str, api_version: Option<&str>) -> Option<Builder> {
    let whole = |k| Some(Builder::Whole(k, serde_json::Map::new()));
    match kind {
        "ConfigMap" => return whole(WholeKind::ConfigMap),
        "DaemonSet" => return whole(WholeKind::DaemonSet),
        "Namespace" => return whole(WholeKind::Namespace),
        "CustomResourceDefinition" => return whole(WholeKind::Crd),
        "Node"
        | "Pod"
        | "PodDisruptionBudget"
        | "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "Service" => return Parts::for_kind(kind, "").map(|p| Builder::Projection(Box::new(p))),
        _ => {}
    }
    let group = group_of(api_version?);
    if let Some(parts) = Parts::for_kind(kind, group) {
        Some(Builder::Projection(Box::new(parts)))
    } else if KEPT_CUSTOM_KINDS
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
    {
        whole(WholeKind::Custom)
    } else {
        Some(Builder::Skip)
    }
}

/// Decodes one field of a projected object, from the input or from a buffered value.
struct FieldSeed<'a> {
    parts: &'a mut Parts,
    key: &'a str,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.parts.set(self.key, d)
    }
}

fn whole_name(fields: &serde_json::Map<String, Value>) -> String {
    let meta = fields.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

fn describe(index: usize, kind: Option<&str>, builder: &Builder) -> String {
    let name = match builder {
        Builder::Projection(p) => p.name(),
        Builder::Whole(_, fields) => whole_name(fields),
        Builder::Skip => "?".to_owned(),
    };
    format!("item {index} ({} {name})", kind.unwrap_or("?"))
}

/// Decodes one field of the current object straight from the input.
fn add_field<'de, A: MapAccess<'de>>(
    b: &mut Builder,
    key: &str,
    map: &mut A,
    index: usize,
    kind: Option<&str>,
) -> Result<(), A::Error> {
    match b {
        Builder::Skip => {
            map.next_value::<IgnoredAny>()?;
        }
        Builder::Projection(parts) => {
            // What the object is, only when it is needed: an error message.
            if let Err(e) = map.next_value_seed(FieldSeed { parts, key }) {
                let what = describe(index, kind, b);
                return Err(de::Error::custom(format!("{what}: field `{key}`: {e}")));
            }
        }
        Builder::Whole(_, fields) => {
            let v: Value = map.next_value()?;
            fields.insert(key.to_owned(), v);
        }
    }
    Ok(())
}

/// Replays a field that arrived before `kind`.
fn add_value<E: de::Error>(
    b: &mut Builder,
    key: String,
    value: Value,
    index: usize,
    kind: Option<&str>,
) -> Result<(), E> {
    match b {
        Builder::Skip => {}
        Builder::Projection(parts) => {
            if let Err(e) = (FieldSeed { parts, key: &key }).deserialize(value) {
                let what = describe(index, kind, b);
                return Err(E::custom(format!("{what}: field `{key}`: {e}")));
            }
        }
        Builder::Whole(_, fields) => {
            fields.insert(key, value);
        }
    }
    Ok(())
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let index = self.sink.items;
        self.sink.items += 1;
        let mut kind: Option<String> = None;
        let mut api_version: Option<String> = None;
        let mut builder: Option<Builder> = None;
        let mut early: Vec<(String, Value)> = Vec::new();
        let mut had_items = false;
        // Keys borrowed from the input where they can be (no allocation for each).
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "kind" => {
                    let k: Option<String> = map.next_value()?;
                    kind = k;
                }
                "apiVersion" => {
                    let v: Option<String> = map.next_value()?;
                    api_version = v;
                }
                // A List's items are streamed one by one, whatever the order of the keys.
                "items" => {
                    had_items = true;
                    map.next_value_seed(ItemsSeed {
                        sink: &mut *self.sink,
                    })?;
                }
                _ => match &mut builder {
                    Some(b) => add_field(b, &key, &mut map, index, kind.as_deref())?,
                    None => early.push((key.into_owned(), map.next_value::<Value>()?)),
                },
            }
            if builder.is_none()
                && let Some(k) = &kind
                && let Some(b) = builder_for(k, api_version.as_deref())
            {
                let mut b = b;
                for (key, value) in early.drain(..) {
                    add_value(&mut b, key, value, index, kind.as_deref())?;
                }
                builder = Some(b);
            }
        }
        let Some(kind) = kind else {
            if had_items {
                return Ok(());
            }
            return Err(de::Error::custom(format!(
                "item {index}: object has no `kind` (expected output of `kubectl get ... -o json|yaml`)"
            )));
        };
        if kind.ends_with("List") {
            return Ok(());
        }
        let builder = match builder {
            Some(b) => b,
            // A kind that needs an API version and got none: a custom kind we cannot place.
            None => match builder_for(&kind, Some("")) {
                Some(mut b) => {
                    for (key, value) in early.drain(..) {
                        add_value(&mut b, key, value, index, Some(&kind))?;
                    }
                    b
                }
                None => Builder::Skip,
            },
        };
        finish(
            self.sink,
            builder,
            &kind,
            api_version.as_deref().unwrap_or_default(),
            index,
        )
    }
}

/// Old manifests (Flannel v0.11) ship `extensions/v1beta1` DaemonSets, whose fields are the
/// same as `apps/v1` for what the planner reads, but whose `spec.selector` was optional
/// (defaulted from the template's labels). Read them as `apps/v1`.
fn upgrade_daemonset(fields: &mut serde_json::Map<String, Value>) {
    fields.insert("apiVersion".to_owned(), Value::String("apps/v1".to_owned()));
    if let Some(Value::Object(spec)) = fields.get_mut("spec")
        && spec.get("selector").is_none_or(Value::is_null)
    {
        let labels = spec
            .get("template")
            .and_then(|t| t.get("metadata"))
            .and_then(|m| m.get("labels"))
            .cloned()
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        spec.insert(
            "selector".to_owned(),
            serde_json::json!({ "matchLabels": labels }),
        );
    }
}

fn finish<E: de::Error>(
    sink: &mut Sink,
    builder: Builder,
    kind: &str,
    api_version: &str,
    index: usize,
) -> Result<(), E> {
    let snap = &mut sink.snapshot;
    match builder {
        Builder::Skip => Ok(()),
        Builder::Projection(parts) => {
            (*parts).push_into(snap);
            Ok(())
        }
        Builder::Whole(wk, mut fields) => {
            // Whole objects are few: what they are is worked out for each, in case of error.
            let what = format!("item {index} ({kind} {})", whole_name(&fields));
            fields.insert("kind".to_owned(), Value::String(kind.to_owned()));
            fields.insert(
                "apiVersion".to_owned(),
                Value::String(api_version.to_owned()),
            );
            if wk == WholeKind::DaemonSet {
                upgrade_daemonset(&mut fields);
            }
            let value = Value::Object(fields);
            let bad = |e: serde_json::Error| E::custom(format!("{what}: {e}"));
            match wk {
                WholeKind::ConfigMap => {
                    snap.configmaps
                        .push(serde_json::from_value::<ConfigMap>(value).map_err(bad)?);
                }
                WholeKind::DaemonSet => {
                    snap.daemonsets
                        .push(serde_json::from_value::<DaemonSet>(value).map_err(bad)?);
                }
                WholeKind::Namespace => {
                    let name = value["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    if name.is_empty() {
                        return Err(E::custom(format!(
                            "{what}: a Namespace needs metadata.name"
                        )));
                    }
                    snap.namespaces.push(name);
                }
                WholeKind::Crd => {
                    if value["metadata"]["name"] == "ciliumnodeconfigs.cilium.io" {
                        let served: Vec<String> = value["spec"]["versions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|v| v["served"] == true)
                            .filter_map(|v| v["name"].as_str().map(str::to_owned))
                            .collect();
                        snap.node_config_versions = Some(served);
                    }
                }
                WholeKind::Custom => {
                    let meta = &value["metadata"];
                    let name = meta["name"].as_str().unwrap_or_default().to_owned();
                    if name.is_empty() {
                        return Err(E::custom(format!("{what}: metadata.name is missing")));
                    }
                    let namespace = meta["namespace"].as_str().map(str::to_owned);
                    snap.custom.push(CustomObject {
                        api_version: api_version.to_owned(),
                        kind: kind.to_owned(),
                        namespace,
                        name,
                        object: value,
                    });
                }
            }
            Ok(())
        }
    }
}

mod items;

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::snapshot::PodPhase;

    const POD: &str = r#"{"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
            "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Other", "name": "x", "uid": "ux"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d", "uid": "rs1", "controller": true}]},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1", "args": ["-x"],
                  "env": [{"name": "A", "value": "b"}], "livenessProbe": {"httpGet": {"port": 80}}}],
                 "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
                 "terminationGracePeriodSeconds": 45},
        "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "c", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}"#;

    #[test]
    fn a_pod_projects_only_what_is_needed() {
        let snap = load_str(&format!(r#"{{"kind": "List", "items": [{POD}]}}"#), "d").unwrap();
        let p = &snap.pods[0];
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.uid.as_str()),
            ("shop", "web-1", "u1")
        );
        assert_eq!(p.owner.as_ref().map(|o| o.name.as_str()), Some("web-7d"));
        assert!(p.empty_dir && !p.mirror && p.ready && !p.host_network);
        assert_eq!(p.phase, PodPhase::Running);
        assert_eq!(
            p.pod_ips,
            vec![
                "10.244.1.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        assert_eq!(p.grace_period_seconds, Some(45));
        assert!(
            p.containers.is_empty(),
            "only kube-system pods keep their containers"
        );
        assert_eq!(p.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(p.restarts, 3);
    }

    #[test]
    fn kind_after_the_fields_is_still_understood() {
        let reordered = r#"{"metadata": {"name": "n1", "labels": {"a": "b"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                            "spec": {"podCIDR": "10.244.0.0/24"}, "kind": "Node", "apiVersion": "v1"}"#;
        let snap = load_str(reordered, "d").unwrap();
        assert_eq!(snap.nodes[0].name, "n1");
        assert_eq!(snap.nodes[0].pod_cidrs, ["10.244.0.0/24"]);
        assert!(snap.nodes[0].ready);
    }

    #[test]
    fn yaml_documents_lists_and_single_objects_all_load() {
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n---\n";
        let snap = load_str(yaml, "d.yaml").unwrap();
        assert_eq!(snap.namespaces, ["a", "b"]);
        let json = r#"{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}} {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "y"}}"#;
        assert_eq!(load_str(json, "d").unwrap().namespaces, ["x", "y"]);
        let array = r#"[{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "z"}}]"#;
        assert_eq!(load_str(array, "d").unwrap().namespaces, ["z"]);
        assert!(load_str("", "d").unwrap().nodes.is_empty());
        assert!(load_str("  \n ", "d").unwrap().nodes.is_empty());
    }

    #[test]
    fn unknown_kinds_are_ignored_and_kept_kinds_are_kept() {
        let text = r#"{"kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []},
            {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"}},
            {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "192.168.0.0/16"}},
            {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy", "metadata": {"name": "cnp", "namespace": "a"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "a"}},
            {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "b", "namespace": "a"},
             "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "x"}}}, "status": {"disruptionsAllowed": 0}}]}"#;
        let snap = load_str(text, "d").unwrap();
        assert_eq!(snap.custom.len(), 1);
        assert_eq!(snap.custom[0].kind, "IPPool");
        assert_eq!(snap.network_policies.len(), 1);
        assert_eq!(
            snap.pdbs[0].min_available,
            Some(crate::snapshot::IntOrString::String("50%".into()))
        );
        assert_eq!(snap.pdbs[0].disruptions_allowed, Some(0));
    }

    #[test]
    fn malformed_objects_are_named() {
        let text = r#"{"kind": "List", "items": [{"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "ok"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": "ns"}, "spec": {"hostNetwork": "yes"}}]}"#;
        let err = load_str(text, "dump.json").unwrap_err().to_string();
        assert!(
            err.contains("dump.json") && err.contains("item 2") && err.contains("Pod ns/bad"),
            "{err}"
        );
        assert!(
            err.contains("field `spec`") && err.contains("line"),
            "{err}"
        );
        let err = load_str(r#"{"items": [{"metadata": {"name": "x"}}]}"#, "d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `kind`"), "{err}");
        let err = load_str("kind: Pod\nspec: [\n", "d.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d.yaml") && err.contains("document 1"),
            "{err}"
        );
        let err = load_str(r#"{"kind": "Node", "metadata": {"name": 5}}"#, "d")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Node") && err.contains("metadata"), "{err}");
    }

    #[test]
    fn nulls_and_missing_sections_are_tolerated() {
        let text = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n", "labels": null,
            "annotations": null, "ownerReferences": null}, "spec": {"volumes": null, "containers": null}, "status": null}"#;
        let snap = load_str(text, "d").unwrap();
        assert_eq!(snap.pods[0].phase, PodPhase::Unknown);
        let mirror = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kube-apiserver-n", "namespace": "kube-system",
            "annotations": {"kubernetes.io/config.mirror": "abc"}}}"#;
        assert!(load_str(mirror, "d").unwrap().pods[0].mirror);
        // Conditions are read without being kept: nulls, escapes and other fields still count.
        let conditions = |c: &str| {
            let text = format!(
                r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "p", "namespace": "n"}}, "status": {{"conditions": {c}}}}}"#
            );
            load_str(&text, "d").unwrap().pods[0].ready
        };
        assert!(conditions(
            r#"[{"type": "PodScheduled", "status": null}, {"lastProbeTime": null, "type": "Ready", "status": "True"}]"#
        ));
        assert!(!conditions(r#"[{"type": "Ready", "status": "False"}]"#));
        assert!(!conditions("null"));
    }

    #[test]
    fn whole_objects_keep_their_content() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-flannel-cfg, namespace: kube-flannel}\n\
                    data:\n  net-conf.json: '{\"Network\": \"10.244.0.0/16\"}'\n";
        let snap = load_str(text, "d").unwrap();
        let cm = snap.configmap("kube-flannel", "kube-flannel-cfg").unwrap();
        assert!(cm.data.as_ref().unwrap()["net-conf.json"].contains("10.244.0.0/16"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = load_reader(bytes.as_slice(), "fuzz");
        }

        #[test]
        fn mutated_dumps_never_panic(cut in 0usize..4000, insert in "[ -~]{0,8}", json in proptest::bool::ANY) {
            let base = if json { format!(r#"{{"kind": "List", "items": [{POD}]}}"#) } else {
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: b}\nspec: {nodeName: n}\n---\nkind: Node\nmetadata: {name: n}\n".to_owned()
            };
            let at = base.char_indices().map(|(i, _)| i).nth(cut % base.len()).unwrap_or(0);
            let mut text = base.clone();
            text.insert_str(at, &insert);
            let _ = load_str(&text, "fuzz");
            text.truncate(at);
            let _ = load_str(&text, "fuzz");
        }
    }
}
