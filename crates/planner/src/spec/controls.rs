//! The operational controls under `rollout`: maintenance windows, the Prometheus alert gate
//! and the health budget, with their checks and the window arithmetic every consumer shares
//! (`plan` shows the windows, `rehearse` estimates the calendar duration, the executor admits
//! only inside them).
//!
//! ```yaml
//! rollout:
//!   windows:
//!     - {days: [Mon, Tue, Wed, Thu], start: "22:00", end: "04:00", timeZone: Europe/Berlin}
//!   gates:
//!     prometheus:
//!       url: http://prometheus.monitoring:9090
//!       alerts: {matchRegexp: "^(KubeNodeNotReady|CiliumAgentDown)$", firingOnly: true}
//!       holdTimeout: 30m
//!   healthBudget: {maxNotReadyNodes: "2%", maxFailedNodes: 1}
//! ```
//!
//! A window's `days` are the days it *opens*: `Fri 22:00-04:00` runs from Friday 22:00 to
//! Saturday 04:00. None of these controls is part of the plan's fingerprint: they can change
//! between `resume`s without `--ignore-fingerprint`.

use std::fmt;

use jiff::{
    Timestamp, Zoned,
    civil::{Time, Weekday},
    tz::TimeZone,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::scalars::HumanDuration;
use crate::snapshot::IntOrString;

/// A day of the week, written `Mon` … `Sun`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    fn of(w: Weekday) -> Self {
        match w {
            Weekday::Monday => Day::Mon,
            Weekday::Tuesday => Day::Tue,
            Weekday::Wednesday => Day::Wed,
            Weekday::Thursday => Day::Thu,
            Weekday::Friday => Day::Fri,
            Weekday::Saturday => Day::Sat,
            Weekday::Sunday => Day::Sun,
        }
    }
}

/// A time of day, `HH:MM` (`24:00` is the end of the day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime {
    /// Minutes since midnight, 0..=1440.
    pub minutes: u16,
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl std::str::FromStr for ClockTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a time of day: write it as HH:MM, e.g. \"22:00\"");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 || h > 24 || (h == 24 && m != 0) || h.to_string().len() > 2 {
            return Err(bad());
        }
        Ok(Self {
            minutes: h * 60 + m,
        })
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_yaml::Value::deserialize(d)?;
        match &raw {
            serde_yaml::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "expected a time of day as HH:MM, such as \"22:00\"",
            )),
        }
    }
}

fn every_day() -> Vec<Day> {
    vec![
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ]
}

fn utc() -> String {
    "UTC".to_owned()
}

/// `rollout.windows[]`: when nodes may be admitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// The days the window opens (every day when left out).
    #[serde(default = "every_day")]
    pub days: Vec<Day>,
    /// When it opens.
    pub start: ClockTime,
    /// When it closes; earlier than `start` crosses midnight.
    pub end: ClockTime,
    /// An IANA time zone such as `Europe/Berlin` (`UTC` when left out).
    #[serde(default = "utc")]
    pub time_zone: String,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = if self.days.len() == 7 {
            "every day".to_owned()
        } else {
            self.days
                .iter()
                .map(|d| format!("{d:?}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let next = if self.end <= self.start {
            " (next day)"
        } else {
            ""
        };
        write!(
            f,
            "{days} {}-{}{next} {}",
            self.start, self.end, self.time_zone
        )
    }
}

impl Window {
    fn tz(&self) -> Option<TimeZone> {
        TimeZone::get(&self.time_zone).ok()
    }

    /// The window's occurrences (open, close) in Unix seconds that overlap `[from, from + 8
    /// days)`, in order: the one open at `from` (opened the day before) included.
    fn occurrences(&self, from: i64) -> Vec<(i64, i64)> {
        let Some(tz) = self.tz() else {
            return Vec::new();
        };
        let Ok(ts) = Timestamp::from_second(from) else {
            return Vec::new();
        };
        let here = ts.to_zoned(tz.clone());
        let mut out = Vec::new();
        for offset in -1..8_i64 {
            let Ok(day) = here.date().checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            if !self.days.contains(&Day::of(day.weekday())) {
                continue;
            }
            let at = |minutes: u16, day: jiff::civil::Date| -> Option<i64> {
                let (day, minutes) = if minutes == 1440 {
                    (day.tomorrow().ok()?, 0)
                } else {
                    (day, minutes)
                };
                let time = Time::new(
                    i8::try_from(minutes / 60).ok()?,
                    i8::try_from(minutes % 60).ok()?,
                    0,
                    0,
                )
                .ok()?;
                let z: Zoned = day.to_datetime(time).to_zoned(tz.clone()).ok()?;
                Some(z.timestamp().as_second())
            };
            let end_day = if self.end <= self.start {
                day.tomorrow().ok()
            } else {
                Some(day)
            };
            if let (Some(open), Some(close)) = (
                at(self.start.minutes, day),
                end_day.and_then(|d| at(self.end.minutes, d)),
            ) && close > from
                && close > open
            {
                out.push((open, close));
            }
        }
        out.sort_unstable();
        out
    }
}

/// Where `now` (Unix seconds) stands against a set of windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowState {
    /// No window is set: always open.
    Always,
    /// Inside a window that closes at this Unix second.
    OpenUntil(i64),
    /// Outside every window; the next opens at this Unix second (`None`: never, within a week).
    ClosedUntil(Option<i64>),
}

/// Where `now` stands against `windows`.
pub fn window_state(windows: &[Window], now: i64) -> WindowState {
    if windows.is_empty() {
        return WindowState::Always;
    }
    let mut occ: Vec<(i64, i64)> = windows.iter().flat_map(|w| w.occurrences(now)).collect();
    occ.sort_unstable();
    // Merge overlapping occurrences, so "open until" is the end of the whole open stretch.
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (o, c) in occ {
        match merged.last_mut() {
            Some(last) if o <= last.1 => last.1 = last.1.max(c),
            _ => merged.push((o, c)),
        }
    }
    for (o, c) in &merged {
        if *o <= now && now < *c {
            return WindowState::OpenUntil(*c);
        }
    }
    WindowState::ClosedUntil(merged.iter().map(|(o, _)| *o).find(|o| *o > now))
}

/// When `work` seconds of admitting, started at `start`, are done when admissions happen only
/// inside `windows` (nodes in flight finish after a window closes, which this ignores: an
/// estimate). `None` when the windows never open.
pub fn calendar_end(windows: &[Window], start: i64, work: i64) -> Option<i64> {
    let mut now = start;
    let mut left = work.max(0);
    for _ in 0..10_000 {
        match window_state(windows, now) {
            WindowState::Always => return Some(now + left),
            WindowState::OpenUntil(close) => {
                if close - now >= left {
                    return Some(now + left);
                }
                left -= close - now;
                now = close;
            }
            WindowState::ClosedUntil(Some(open)) => now = open,
            WindowState::ClosedUntil(None) => return None,
        }
    }
    None
}

/// A Unix second as `Mon 2026-12-07 22:00 Europe/Berlin`, in the first window's time zone.
pub fn describe_instant(windows: &[Window], at: i64) -> String {
    let tz = windows
        .first()
        .and_then(Window::tz)
        .unwrap_or(TimeZone::UTC);
    let name = windows.first().map_or("UTC", |w| w.time_zone.as_str());
    match Timestamp::from_second(at) {
        Ok(ts) => format!("{} {name}", ts.to_zoned(tz).strftime("%a %Y-%m-%d %H:%M")),
        Err(_) => format!("{at}"),
    }
}

/// `rollout.gates`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gates {
    /// Ask Prometheus before each admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusGate>,
}

impl Gates {
    /// No gate set.
    pub fn is_empty(&self) -> bool {
        self.prometheus.is_none()
    }
}

fn default_hold_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3600))
}

/// `rollout.gates.prometheus`: a non-empty query result or a matching alert holds admissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusGate {
    /// The Prometheus server, e.g. `http://prometheus.monitoring:9090`.
    pub url: String,
    /// A PromQL instant query: any series in its result holds admissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Alerts from `/api/v1/alerts` that hold admissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertFilter>,
    /// How long the gate may hold before the run stops (naming what held it).
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout: HumanDuration,
}

/// `rollout.gates.prometheus.alerts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertFilter {
    /// Only alerts whose name matches this regular expression (every alert when left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_regexp: Option<String>,
    /// Only firing alerts (pending ones are ignored).
    #[serde(default)]
    pub firing_only: bool,
}

/// `rollout.healthBudget`: how much unhealth the run tolerates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthBudget {
    /// More nodes NotReady than this (a count or a percentage of the cluster's nodes, for any
    /// reason) holds admissions until they recover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_not_ready_nodes: Option<IntOrString>,
    /// More failed nodes than this stops the run (0, the default: the first failure stops
    /// it). A canary's failure always stops it.
    #[serde(default)]
    pub max_failed_nodes: u32,
}

/// Checks the controls. Returns the field path and the message.
pub(super) fn validate(
    windows: &[Window],
    gates: &Gates,
    budget: Option<&HealthBudget>,
) -> Result<(), (String, String)> {
    for (i, w) in windows.iter().enumerate() {
        let at = |f: &str| format!("rollout.windows[{i}].{f}");
        if w.days.is_empty() {
            return Err((
                at("days"),
                "lists no day: leave it out for every day, or write e.g. [Mon, Tue]".into(),
            ));
        }
        if w.start == w.end {
            return Err((
                at("end"),
                format!(
                    "equals start ({}): a window must have a length (\"00:00\" to \"24:00\" is the whole day)",
                    w.start
                ),
            ));
        }
        if w.start.minutes == 1440 {
            return Err((at("start"), "24:00 is the end of a day: write 00:00".into()));
        }
        if w.tz().is_none() {
            return Err((
                at("timeZone"),
                format!(
                    "`{}` is not an IANA time zone: write one such as Europe/Berlin, America/New_York or UTC",
                    w.time_zone
                ),
            ));
        }
    }
    if let Some(p) = &gates.prometheus {
        let at = |f: &str| format!("rollout.gates.prometheus.{f}");
        let url = p.url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err((
                at("url"),
                format!(
                    "`{}` is not an http(s) URL of a Prometheus server, e.g. http://prometheus.monitoring:9090",
                    p.url
                ),
            ));
        }
        if p.query.is_none() && p.alerts.is_none() {
            return Err((
                "rollout.gates.prometheus".into(),
                "needs `query` (a PromQL expression: any result holds admissions) or `alerts` (e.g. {firingOnly: true})"
                    .into(),
            ));
        }
        if p.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
            return Err((at("query"), "must not be empty".into()));
        }
        if let Some(re) = p.alerts.as_ref().and_then(|a| a.match_regexp.as_deref())
            && let Err(e) = regex::Regex::new(re)
        {
            return Err((
                at("alerts.matchRegexp"),
                format!("`{re}` is not a regular expression: {e}"),
            ));
        }
        if p.hold_timeout.0.is_zero() {
            return Err((
                at("holdTimeout"),
                "must be more than 0s: how long an alert may hold admissions before the run stops"
                    .into(),
            ));
        }
    }
    if let Some(n) = budget.and_then(|b| b.max_not_ready_nodes.as_ref())
        && n.resolve(100, false).is_none_or(|v| v < 0)
    {
        return Err((
            "rollout.healthBudget.maxNotReadyNodes".into(),
            format!("`{n}` is neither a count nor a percentage such as \"2%\""),
        ));
    }
    Ok(())
}

impl HealthBudget {
    /// `maxNotReadyNodes` against the cluster's node count (`None`: no limit).
    pub fn not_ready_limit(&self, nodes: usize) -> Option<usize> {
        let total = i64::try_from(nodes).unwrap_or(i64::MAX);
        let n = self.max_not_ready_nodes.as_ref()?.resolve(total, false)?;
        usize::try_from(n.max(0)).ok()
    }
}
