//! Helpers shared by the end-to-end tests: where the workspace is, and how to run the real
//! `cni-migrate` binary.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
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

/// The `cni-migrate` binary: `$CNI_MIGRATE_BIN` if set, else built once with cargo (a no-op
/// when `cargo test --workspace` already built it).
///
/// # Panics
/// When the binary cannot be built: the tests cannot run without it.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CNI_MIGRATE_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "cni-migrate",
                "--bin",
                "cni-migrate",
            ])
            .current_dir(workspace())
            .status()
            .expect("cargo must be runnable to build cni-migrate for the end-to-end tests");
        assert!(status.success(), "building cni-migrate failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace().join("target"), PathBuf::from);
        target.join("debug").join("cni-migrate")
    })
    .clone()
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
