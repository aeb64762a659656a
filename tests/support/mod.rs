//! Helpers shared by the end-to-end tests: where the workspace is, and how to run the real
//! `cni-migrate` binary.

#![allow(dead_code)] // each test binary uses a different part of it

pub mod cluster;
pub mod prometheus;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The workspace root (this module is compiled into the tests of crates/cli).
pub fn workspace() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The `plans/` directory.
pub fn plans_dir() -> PathBuf {
    workspace().join("plans")
}

/// Every example in `plans/`: `(name, spec, dump)` for each `NAME.yaml` that has a
/// `NAME.dump.yaml` or `NAME.dump.json` beside it, sorted by name.
pub fn examples() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = plans_dir();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".yaml") else {
            continue;
        };
        if stem.contains(".dump") {
            continue;
        }
        for ext in ["dump.yaml", "dump.json"] {
            let dump = dir.join(format!("{stem}.{ext}"));
            if dump.exists() {
                out.push((stem.to_owned(), path.clone(), dump));
            }
        }
    }
    out.sort();
    out
}

/// The `cni-migrate` binary cargo built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cni-migrate"))
}

/// Runs `cni-migrate` with arguments, from the workspace root.
///
/// # Panics
/// When the binary cannot be started.
pub fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("cni-migrate must start")
}

/// The shared reference material (`../shared` beside the project), when present.
pub fn shared() -> Option<PathBuf> {
    let p = workspace().join("../shared");
    p.is_dir().then_some(p)
}
