//! Reading a spec: YAML in, a validated [`MigrationSpec`] or a [`SpecError`] out that names
//! the file, line, column and field.
//!
//! ```text
//! text ─► serde (strict, with the field's path) ─► validate ─► MigrationSpec
//!           │ error: the parser's location             │ error: the field's path, located
//!           │ (or the path, located in the text);      │ in the text by indentation
//!           │ unknown fields get a did-you-mean        │
//!           └──────────────────────────────────────────┴─► SpecError::Invalid
//! ```

use std::path::Path;

use super::types::MigrationSpec;
use crate::yaml;

/// Why a spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec {path}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid spec: parse error, unknown field, wrong type or bad value.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Line, from 1 (0 when unknown).
        line: usize,
        /// Column, from 1 (0 when unknown).
        column: usize,
        /// The field's path, e.g. `rollout.drain.timeout` (`.` for the document).
        field: String,
        /// What was expected, and what to do.
        message: String,
    },
}

impl MigrationSpec {
    /// Reads and validates a spec file.
    ///
    /// # Errors
    /// [`SpecError::Read`] when the file cannot be read; [`SpecError::Invalid`] naming the file,
    /// line, column and field otherwise.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates a spec from YAML text; `origin` names it in errors.
    ///
    /// # Errors
    /// [`SpecError::Invalid`] naming the origin, line, column and field.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, SpecError> {
        let spec: MigrationSpec = yaml::from_str_with_path(text).map_err(|err| {
            let field = err.path().to_string();
            let inner = err.inner();
            let loc = yaml::location(inner);
            let mut message = strip_location(&inner.to_string());
            if let Some(hint) = unknown_field_hint(&message) {
                message = hint;
            }
            let (line, column) = match loc {
                Some(l) => (l.line, l.column),
                None => locate(text, &field).unwrap_or((0, 0)),
            };
            SpecError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        spec.validate().map_err(|(field, message)| {
            let (line, column) = locate(text, &field).unwrap_or((0, 0));
            SpecError::Invalid {
                path: origin.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        Ok(spec)
    }
}

/// serde_yaml appends " at line L column C" to its messages; the CLI prints the location
/// in front instead.
fn strip_location(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    // serde_yaml also puts the path in front ("rollout: unknown field"); the error names the
    // full path already.
    match msg.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && !head.contains(' ') && !head.contains('`') => {
            rest.to_owned()
        }
        _ => msg.to_owned(),
    }
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" into a message that also
/// suggests the closest known field.
fn unknown_field_hint(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = known
        .iter()
        .map(|k| {
            (
                strsim::jaro_winkler(&field.to_lowercase(), &k.to_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(match best {
        Some((_, k)) => format!("unknown field `{field}`: did you mean `{k}`? (known: {list})"),
        None => format!("unknown field `{field}` (known: {list})"),
    })
}

/// Finds the line and column of a field path such as `rollout.drain.timeout` or
/// `target.podCIDRs[1]` in block or flow YAML, by following indentation. A best effort for
/// errors found after parsing, when the YAML parser no longer knows where a value came from.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    // Each key with the index of a sequence item under it (`windows[1]` → ("windows", 1)).
    let keys: Vec<(&str, Option<usize>)> = path
        .split('.')
        .map(|k| {
            let mut parts = k.split('[');
            let key = parts.next().unwrap_or(k);
            let index = parts
                .next()
                .and_then(|i| i.trim_end_matches(']').parse().ok());
            (key, index)
        })
        .filter(|(k, _)| !k.is_empty())
        .collect();
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut min_indent = 0;
    let mut found = None;
    for (key, index) in keys {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(start) {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim_start().trim_start_matches("- ");
            if i > start && !trimmed.is_empty() && !trimmed.starts_with('#') && indent < min_indent
            {
                break;
            }
            // Block style `key:` at the start of the line, or flow style `{..., key: ...}`.
            if trimmed.starts_with(&format!("{key}:")) {
                hit = Some((i, indent));
                break;
            }
            if let Some(col) = line.find(&format!("{key}:")) {
                let before = line[..col].chars().last();
                if matches!(before, Some('{' | ' ' | ',')) && line[..col].contains('{') {
                    hit = Some((i, col));
                    break;
                }
            }
        }
        let (mut i, mut col) = hit?;
        // A block sequence item: move to the line of its `- ` (its fields follow it).
        if let Some(index) = index {
            let items: Vec<(usize, usize)> = lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .take_while(|(_, l)| {
                    let t = l.trim_start();
                    t.is_empty()
                        || t.starts_with('#')
                        || l.len() - t.len() > col
                        || t.starts_with("- ")
                })
                .filter(|(_, l)| l.trim_start().starts_with("- "))
                .map(|(n, l)| (n, l.len() - l.trim_start().len()))
                .collect();
            let first_indent = items.first().map(|(_, ind)| *ind);
            if let Some(&(n, ind)) = items
                .iter()
                .filter(|(_, ind)| Some(*ind) == first_indent)
                .nth(index)
            {
                i = n;
                col = ind;
                found = Some((i + 1, col + 1));
                start = i;
                // The item's own fields are indented past its dash.
                min_indent = col + 1;
                continue;
            }
        }
        found = Some((i + 1, col + 1));
        start = i;
        min_indent = col + 1;
    }
    found
}
