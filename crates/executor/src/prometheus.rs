//! Asking Prometheus whether a node may start: its HTTP API's instant query
//! (`/api/v1/query`) and alert list (`/api/v1/alerts`).
//!
//! ```text
//! query:  any series in the result ─► Held("query `q` returned 2 series: {alertname="X", ...}")
//! alerts: an alert whose name matches (and is firing, with firingOnly) ─► Held("alert X firing")
//! no answer (refused, timeout, not 200, not JSON, status error) ─► Unreachable(why)
//! ```

use std::time::Duration;

use planner::spec::{AlertFilter, PrometheusGate};
use serde::Deserialize;

/// What Prometheus said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Nothing holds admissions.
    Clear,
    /// Something holds them (what).
    Held(String),
    /// No usable answer (why).
    Unreachable(String),
}

/// A client for one gate.
pub struct Prometheus {
    base: String,
    query: Option<String>,
    alerts: Option<(Option<regex::Regex>, bool)>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<Alert>,
}

#[derive(Deserialize)]
struct Alert {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    state: String,
}

fn labels(metric: &serde_json::Value) -> String {
    let Some(map) = metric.as_object() else {
        return "{}".into();
    };
    let inner: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map_or_else(|| v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect();
    format!("{{{}}}", inner.join(", "))
}

impl Prometheus {
    /// A client for the gate (the spec checked its URL and regular expression).
    pub fn new(gate: &PrometheusGate) -> Self {
        let alerts = gate.alerts.as_ref().map(
            |AlertFilter {
                 match_regexp,
                 firing_only,
             }| {
                (
                    match_regexp
                        .as_deref()
                        .and_then(|re| regex::Regex::new(re).ok()),
                    *firing_only,
                )
            },
        );
        Self {
            base: gate.url.trim().trim_end_matches('/').to_owned(),
            query: gate.query.clone(),
            alerts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .user_agent(cluster::USER_AGENT)
                .build()
                .unwrap_or_default(),
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, String> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|e| format!("Prometheus at {} did not answer ({e})", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("Prometheus at {} broke off its answer ({e})", self.base))?;
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "Prometheus at {} answered {path} with HTTP {status} and no API answer ({e}): {}",
                self.base,
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            )
        })?;
        if envelope.status != "success" {
            return Err(format!(
                "Prometheus at {} refused {path} (HTTP {status}): {}",
                self.base,
                envelope.error.unwrap_or_default()
            ));
        }
        envelope
            .data
            .ok_or_else(|| format!("Prometheus at {} answered {path} without data", self.base))
    }

    /// Asks the query, then the alerts.
    pub async fn ask(&self) -> Answer {
        if let Some(q) = &self.query {
            match self
                .get::<QueryData>("/api/v1/query", &[("query", q)])
                .await
            {
                Err(e) => return Answer::Unreachable(e),
                Ok(d) => {
                    let series: Vec<String> = match d.result_type.as_str() {
                        "vector" | "matrix" => d
                            .result
                            .as_array()
                            .map(|a| a.iter().map(|s| labels(&s["metric"])).collect())
                            .unwrap_or_default(),
                        // A scalar or string result holds unless it is 0 or empty.
                        _ => match d.result.get(1).and_then(|v| v.as_str()) {
                            Some("0" | "") | None => Vec::new(),
                            Some(v) => vec![format!("{} {v}", d.result_type)],
                        },
                    };
                    if !series.is_empty() {
                        let shown: Vec<&str> = series.iter().take(3).map(String::as_str).collect();
                        return Answer::Held(format!(
                            "query `{q}` returned {} series: {}{}",
                            series.len(),
                            shown.join(" "),
                            if series.len() > 3 { " ..." } else { "" }
                        ));
                    }
                }
            }
        }
        if let Some((re, firing_only)) = &self.alerts {
            match self.get::<AlertsData>("/api/v1/alerts", &[]).await {
                Err(e) => return Answer::Unreachable(e),
                Ok(d) => {
                    let hits: Vec<String> = d
                        .alerts
                        .iter()
                        .filter(|a| !firing_only || a.state == "firing")
                        .filter_map(|a| {
                            let name = a.labels.get("alertname").map_or("", String::as_str);
                            re.as_ref()
                                .is_none_or(|re| re.is_match(name))
                                .then(|| format!("{name} ({})", a.state))
                        })
                        .collect();
                    if !hits.is_empty() {
                        let mut names = hits.clone();
                        names.dedup();
                        return Answer::Held(format!(
                            "alert{} {}",
                            if names.len() == 1 { "" } else { "s" },
                            names.join(", ")
                        ));
                    }
                }
            }
        }
        Answer::Clear
    }
}
