//! The model's index of the budgets' selectors (a leaf: the model and the disruption
//! controller both use it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// The budgets' selectors, indexed by their first label (a pod's change looks only at the
/// budgets that may select it, not at every budget of its namespace).
#[derive(Default)]
pub(super) struct BudgetIndex {
    /// (namespace, label, value) → budget names.
    by_label: HashMap<(String, String, String), BTreeSet<String>>,
    /// (namespace, name) → `spec.selector.matchLabels` (empty: selects nothing here).
    selectors: HashMap<(String, String), BTreeMap<String, String>>,
}

impl BudgetIndex {
    /// A budget as it is now.
    pub(super) fn put(&mut self, namespace: &str, name: &str, pdb: &Value) {
        self.remove(namespace, name);
        let selector: BTreeMap<String, String> = pdb["spec"]["selector"]["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        if let Some((k, v)) = selector.iter().next() {
            self.by_label
                .entry((namespace.to_owned(), k.clone(), v.clone()))
                .or_default()
                .insert(name.to_owned());
        }
        self.selectors
            .insert((namespace.to_owned(), name.to_owned()), selector);
    }

    /// A budget that is gone.
    pub(super) fn remove(&mut self, namespace: &str, name: &str) {
        let Some(old) = self
            .selectors
            .remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        if let Some((k, v)) = old.iter().next() {
            let key = (namespace.to_owned(), k.clone(), v.clone());
            if let Some(set) = self.by_label.get_mut(&key) {
                set.remove(name);
                if set.is_empty() {
                    self.by_label.remove(&key);
                }
            }
        }
    }

    /// The budgets of a namespace that select a pod with these labels.
    pub(super) fn selecting(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in labels {
            let key = (namespace.to_owned(), k.clone(), v.clone());
            for name in self.by_label.get(&key).into_iter().flatten() {
                let selects = self
                    .selectors
                    .get(&(namespace.to_owned(), name.clone()))
                    .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
                if selects {
                    out.push(name.clone());
                }
            }
        }
        out
    }
}
