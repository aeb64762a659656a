//! The one place that knows which YAML crate the workspace uses, so it can be swapped here alone.

use serde::{Serialize, de::DeserializeOwned};

pub use serde_yaml::{Error, Value};

/// A position in a YAML text, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// Parses one YAML document.
///
/// # Errors
/// When the text is not YAML or does not fit `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_yaml::from_str(text)
}

/// Parses one YAML document into `T`, reporting the path of the field that failed.
///
/// # Errors
/// The failing path (e.g. `rollout.drain.timeout`) and the YAML error with its location.
pub fn from_str_with_path<T: DeserializeOwned>(
    text: &str,
) -> Result<T, serde_path_to_error::Error<Error>> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Splits a multi-document YAML stream and parses each document as `T`. Empty documents
/// (e.g. a trailing `---`) are skipped.
///
/// # Errors
/// The index (from 0) of the first document that fails, with its error.
pub fn documents<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, (usize, Error)> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| (i, e))?;
        if value.is_null() {
            continue;
        }
        out.push(serde_yaml::from_value(value).map_err(|e| (i, e))?);
    }
    Ok(out)
}

/// The location an error points at, if it has one.
pub fn location(err: &Error) -> Option<Location> {
    err.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    })
}

/// Serializes to YAML.
///
/// # Errors
/// When `T` cannot be represented (e.g. a map with non-string keys).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_yaml::to_string(value)
}
