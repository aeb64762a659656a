//! The spec's scalars written as strings: a Cilium version (`1.17.3`) and a duration (`30s`,
//! `10m`, `1h30m`), each with its own parser and error message.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Cilium release version, `MAJOR.MINOR.PATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CiliumVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl CiliumVersion {
    /// The `CiliumNodeConfig` API version this release serves and prefers: `cilium.io/v2` from
    /// 1.16, `cilium.io/v2alpha1` before.
    pub fn node_config_api_version(self) -> &'static str {
        if (self.major, self.minor) >= (1, 16) {
            "cilium.io/v2"
        } else {
            "cilium.io/v2alpha1"
        }
    }

    /// Whether this release is one the migration procedure supports (1.14 and later: the
    /// `routingMode`/`tunnelProtocol` values).
    pub fn is_supported(self) -> bool {
        (self.major, self.minor) >= (1, 14)
    }
}

impl fmt::Display for CiliumVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for CiliumVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().trim_start_matches('v');
        let parts: Vec<&str> = t.split('.').collect();
        let bad =
            || format!("`{s}` is not a Cilium version: expected MAJOR.MINOR.PATCH such as 1.17.3");
        if parts.len() != 3 {
            return Err(bad());
        }
        let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(Self {
            major: n(parts[0])?,
            minor: n(parts[1])?,
            patch: n(parts[2])?,
        })
    }
}

impl Serialize for CiliumVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CiliumVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_yaml::Value::deserialize(d)?;
        let text = match &raw {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "expected a version string such as \"1.17.3\"",
                ));
            }
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written as `30s`, `10m`, `1h30m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_yaml::Value::deserialize(d)?;
        match &raw {
            serde_yaml::Value::String(s) => humantime::parse_duration(s.trim())
                .map(HumanDuration)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a duration ({e}): write it like 30s, 10m or 1h30m"
                    ))
                }),
            serde_yaml::Value::Number(n) if n.as_u64() == Some(0) => Ok(HumanDuration::default()),
            _ => Err(serde::de::Error::custom(
                "expected a duration with a unit, like 30s, 10m or 1h30m",
            )),
        }
    }
}
