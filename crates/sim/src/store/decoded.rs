//! The objects read last (through `Stored::shared`), kept decoded: a pod the model and the server look at
//! several times in a row (its event, the actions it starts, a budget's status) is inflated and
//! parsed once. Bounded (oldest out first), shared by every store in the process, and keyed by
//! the stored bytes' address, which the entry holds on to so it cannot be reused for other
//! bytes while the entry lives.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use serde_json::Value;

/// How many decoded objects are kept: a pod's event and the actions it starts follow each
/// other closely, so a few hundred suffice (at 2,048 the 150,000-pod `sim-bench` cluster held
/// 1.39 GiB instead of 0.98: a realistic pod decodes to far more than its 7 KB of JSON).
const CAPACITY: usize = 512;

#[derive(Default)]
struct Cache {
    entries: HashMap<usize, (Arc<[u8]>, Arc<Value>)>,
    order: VecDeque<usize>,
}

impl Cache {
    fn get(&self, packed: &Arc<[u8]>) -> Option<Arc<Value>> {
        let (bytes, v) = self.entries.get(&key(packed))?;
        Arc::ptr_eq(bytes, packed).then(|| v.clone())
    }

    fn put(&mut self, packed: &Arc<[u8]>, v: Arc<Value>, capacity: usize) {
        let k = key(packed);
        if self.entries.insert(k, (packed.clone(), v)).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn key(packed: &Arc<[u8]>) -> usize {
    Arc::as_ptr(packed).cast::<u8>() as usize
}

/// The decoded object of these stored bytes, if it is kept.
pub(super) fn get(packed: &Arc<[u8]>) -> Option<Arc<Value>> {
    let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache.as_ref()?.get(packed)
}

/// Keeps the decoded object of these stored bytes, dropping the oldest past the capacity.
pub(super) fn put(packed: &Arc<[u8]>, v: Arc<Value>) {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .get_or_insert_with(Cache::default)
        .put(packed, v, CAPACITY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_objects_come_back_and_the_oldest_go() {
        let mut cache = Cache::default();
        let first: Arc<[u8]> = Arc::from(&b"first"[..]);
        cache.put(&first, Arc::new(serde_json::json!({"n": 0})), 3);
        assert_eq!(
            cache.get(&first).as_deref(),
            Some(&serde_json::json!({"n": 0}))
        );
        // Other bytes with the same content are another object.
        let twin: Arc<[u8]> = Arc::from(&b"first"[..]);
        assert!(cache.get(&twin).is_none());
        let others: Vec<Arc<[u8]>> = (0..3)
            .map(|i| Arc::from(format!("o{i}").as_bytes()))
            .collect();
        for (i, o) in others.iter().enumerate() {
            cache.put(o, Arc::new(serde_json::json!({"n": i})), 3);
        }
        assert!(cache.get(&first).is_none(), "the oldest is dropped");
        assert_eq!(
            cache.get(&others[2]).as_deref(),
            Some(&serde_json::json!({"n": 2}))
        );
        assert_eq!(cache.entries.len(), 3);
    }
}
