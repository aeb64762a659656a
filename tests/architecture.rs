//! The shape of the code, checked: no import cycle between the files of any crate, and no
//! source file in `crates/*/src` longer than 1,000 lines.
//!
//! ```text
//! every crates/NAME/src/**/*.rs ─► syn ─► paths that start with crate::, super::, self::
//!   (use trees and qualified paths in code; `#[cfg(test)]` modules are left out: they test a
//!   file, they are not part of the structure)
//!   ─► resolved to the file that defines the module they name, following `pub use`
//!      re-exports (lib.rs re-exporting `plan::Plan` is an edge to plan.rs, not to lib.rs)
//!   ─► a graph of files per crate ─► strongly connected components: each one of more than a
//!      file is a cycle, printed with the paths that make it
//! ```
//!
//! `mod child;` alone is not an edge (Rust needs it); a parent that uses its child's items and
//! a child that uses its parent's is a cycle, and the fix is a third module below both.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// The longest a source file may be.
const MAX_LINES: usize = 1000;

fn crates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A crate's source files, by module path (`[]` is the crate root).
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            let rel = path.strip_prefix(src).expect("under src");
            if rel.starts_with("bin") {
                // Binaries are crates of their own that reach the library by its name.
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut segs: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if segs == ["lib"] || segs == ["main"] {
                if segs == ["main"] && src.join("lib.rs").exists() {
                    // A binary beside a library: its own crate.
                    continue;
                }
                segs.clear();
            } else if segs.last().is_some_and(|s| s == "mod") {
                segs.pop();
            }
            out.insert(segs, path);
        }
    }
    out
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().contains("test"))
    })
}

/// The paths one file names, as written (with `crate`, `super`, `self` first).
#[derive(Default)]
struct Paths {
    /// Every path that starts with `crate`, `super` or `self`.
    paths: Vec<Vec<String>>,
    /// `pub use` re-exports: the name as seen from this module and the path it stands for.
    reexports: BTreeMap<String, Vec<String>>,
    /// Names brought in by `use` (so that `name::item` counts as a path through them).
    imported: BTreeMap<String, Vec<String>>,
}

fn use_tree(prefix: &mut Vec<String>, tree: &syn::UseTree, public: bool, out: &mut Paths) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_tree(prefix, &p.tree, public, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let mut full = prefix.clone();
            let name = n.ident.to_string();
            if name != "self" {
                full.push(name.clone());
            }
            let alias = if name == "self" {
                prefix.last().cloned().unwrap_or_default()
            } else {
                name
            };
            record_use(full, alias, public, out);
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            record_use(full, r.rename.to_string(), public, out);
        }
        syn::UseTree::Glob(_) => {
            out.paths.push(prefix.clone());
        }
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_tree(prefix, t, public, out);
            }
        }
    }
}

fn record_use(full: Vec<String>, alias: String, public: bool, out: &mut Paths) {
    if public {
        out.reexports.insert(alias.clone(), full.clone());
    }
    out.imported.insert(alias, full.clone());
    out.paths.push(full);
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_cfg_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_cfg_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if is_cfg_test(&u.attrs) {
            return;
        }
        let public = matches!(
            u.vis,
            syn::Visibility::Public(_) | syn::Visibility::Restricted(_)
        );
        let mut prefix = Vec::new();
        if u.leading_colon.is_none() {
            use_tree(&mut prefix, &u.tree, public, self);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        if segs.len() > 1 && p.leading_colon.is_none() {
            self.paths.push(segs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro calls (format!, matches!, json!) are tokens: read them as paths.
        let text = m.tokens.to_string();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == ' '))
        {
            let w: String = word.split_whitespace().collect();
            if (w.starts_with("crate::") || w.starts_with("super::")) && w.contains("::") {
                self.paths.push(
                    w.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

/// A path as written in the module `here`, made absolute (from the crate root); `None` for
/// paths into other crates.
fn absolute(
    here: &[String],
    path: &[String],
    imported: &BTreeMap<String, Vec<String>>,
    files: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => {
            let mut b = here.to_vec();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                b.pop()?;
                rest = &rest[1..];
            }
            let mut out = b;
            out.extend(rest.iter().cloned());
            return Some(out);
        }
        other => {
            let mut child = here.to_vec();
            child.push(other.to_owned());
            if files.contains_key(&child) {
                // `child::item`: a path relative to this module, into one of its own files.
                let mut out = here.to_vec();
                out.extend(path.iter().cloned());
                return Some(out);
            }
            // `name::item` where `name` came in by `use crate::...`.
            let via = imported.get(other)?;
            let resolved = absolute(here, via, &BTreeMap::new(), files)?;
            let mut out = resolved;
            out.extend(path[1..].iter().cloned());
            return Some(out);
        }
    };
    base.extend(path[1..].iter().cloned());
    Some(base)
}

struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    parsed: BTreeMap<Vec<String>, Paths>,
}

impl Crate {
    fn load(src: &Path) -> Self {
        let files = modules(src);
        let mut parsed = BTreeMap::new();
        for (m, path) in &files {
            let text = std::fs::read_to_string(path).expect("read source");
            let file = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: does not parse: {e}", path.display()));
            let mut p = Paths::default();
            p.visit_file(&file);
            parsed.insert(m.clone(), p);
        }
        Self { files, parsed }
    }

    /// The file an absolute path lands in, following re-exports (a few levels deep).
    fn resolve(&self, abs: &[String], depth: usize) -> Option<Vec<String>> {
        let module = (0..=abs.len())
            .rev()
            .map(|n| abs[..n].to_vec())
            .find(|m| self.files.contains_key(m))?;
        if depth < 4
            && let Some(item) = abs.get(module.len())
            && let Some(target) = self.parsed.get(&module).and_then(|p| p.reexports.get(item))
            && let Some(target_abs) = absolute(&module, target, &BTreeMap::new(), &self.files)
        {
            let mut rest = target_abs;
            rest.extend(abs[module.len() + 1..].iter().cloned());
            if let Some(r) = self.resolve(&rest, depth + 1) {
                return Some(r);
            }
        }
        Some(module)
    }

    /// Edges between files, each with one path that makes it.
    fn edges(&self) -> BTreeMap<(Vec<String>, Vec<String>), String> {
        let mut out = BTreeMap::new();
        for (m, p) in &self.parsed {
            for path in &p.paths {
                let Some(abs) = absolute(m, path, &p.imported, &self.files) else {
                    continue;
                };
                let Some(target) = self.resolve(&abs, 0) else {
                    continue;
                };
                if target != *m {
                    out.entry((m.clone(), target))
                        .or_insert_with(|| path.join("::"));
                }
            }
        }
        out
    }
}

/// Tarjan's strongly connected components.
fn components(nodes: &[Vec<String>], edges: &BTreeSet<(usize, usize)>) -> Vec<Vec<usize>> {
    struct T<'a> {
        adj: Vec<Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
        _n: std::marker::PhantomData<&'a ()>,
    }
    fn strong(t: &mut T<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for w in t.adj[v].clone() {
            match t.index[w] {
                None => {
                    strong(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(i) if t.on[w] => t.low[v] = t.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut c = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                c.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(c);
        }
    }
    let mut adj = vec![Vec::new(); nodes.len()];
    for (a, b) in edges {
        adj[*a].push(*b);
    }
    let mut t = T {
        adj,
        index: vec![None; nodes.len()],
        low: vec![0; nodes.len()],
        on: vec![false; nodes.len()],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
        _n: std::marker::PhantomData,
    };
    for v in 0..nodes.len() {
        if t.index[v].is_none() {
            strong(&mut t, v);
        }
    }
    t.out
}

fn crate_srcs() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(crates_dir())
        .expect("crates dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                p.join("src"),
            )
        })
        .collect();
    out.sort();
    out
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "lib.rs".into()
    } else {
        m.join("/") + ".rs"
    }
}

#[test]
fn no_import_cycle_between_the_files_of_any_crate() {
    let mut problems = Vec::new();
    for (name, src) in crate_srcs() {
        let c = Crate::load(&src);
        let nodes: Vec<Vec<String>> = c.files.keys().cloned().collect();
        let at: BTreeMap<&Vec<String>, usize> =
            nodes.iter().enumerate().map(|(i, m)| (m, i)).collect();
        let edges = c.edges();
        let idx: BTreeSet<(usize, usize)> = edges.keys().map(|(a, b)| (at[a], at[b])).collect();
        for comp in components(&nodes, &idx) {
            if comp.len() < 2 {
                continue;
            }
            let set: BTreeSet<usize> = comp.iter().copied().collect();
            let mut why: Vec<String> = edges
                .iter()
                .filter(|((a, b), _)| set.contains(&at[a]) && set.contains(&at[b]))
                .map(|((a, b), via)| format!("    {} → {} (via {via})", show(a), show(b)))
                .collect();
            why.sort();
            problems.push(format!(
                "crate {name}: a cycle between {}:\n{}",
                comp.iter()
                    .map(|i| show(&nodes[*i]))
                    .collect::<Vec<_>>()
                    .join(", "),
                why.join("\n")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_longer_than_a_thousand_lines() {
    let mut long = Vec::new();
    for (name, src) in crate_srcs() {
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("dir").filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let lines = std::fs::read_to_string(&path)
                        .expect("read")
                        .lines()
                        .count();
                    if lines > MAX_LINES {
                        long.push(format!(
                            "crates/{name}/src/{}: {lines} lines",
                            path.strip_prefix(&src).expect("under src").display()
                        ));
                    }
                }
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by what they do):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_through_a_parent_and_its_child() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub use b::Thing;\n",
    )
    .expect("write");
    std::fs::write(
        src.join("a.rs"),
        "mod inner;\npub use inner::f;\npub struct S;\n",
    )
    .expect("write");
    std::fs::write(
        src.join("a/inner.rs"),
        "pub fn f() -> super::S { super::S }\n",
    )
    .expect("write");
    std::fs::write(src.join("b.rs"), "pub struct Thing;\npub fn g() { crate::a::f(); }\n#[cfg(test)]\nmod tests { use crate::Thing; }\n").expect("write");
    let c = Crate::load(&src);
    let edges: BTreeSet<(String, String)> =
        c.edges().keys().map(|(a, b)| (show(a), show(b))).collect();
    assert!(
        edges.contains(&("a.rs".into(), "a/inner.rs".into())),
        "{edges:?}"
    );
    assert!(
        edges.contains(&("a/inner.rs".into(), "a.rs".into())),
        "{edges:?}"
    );
    // b.rs → a.rs (the re-export of inner::f resolves to inner.rs)
    assert!(
        edges.contains(&("b.rs".into(), "a/inner.rs".into())),
        "{edges:?}"
    );
}
