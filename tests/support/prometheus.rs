//! A real Prometheus server for the tests (Debian's `prometheus` package, which `.ci/run`
//! installs), scraping a test target whose one metric the test flips, and the tool's own
//! metrics endpoint. `None` where the binary is absent: the tests that need it say so and skip.

#![allow(dead_code)] // each test binary uses a different part of it

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// A free loopback port (bound, then released for the server that will use it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The `prometheus` binary: `$PROMETHEUS`, else on `PATH`, else `/usr/bin/prometheus`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("prometheus"))
        .chain([PathBuf::from("/usr/bin/prometheus")])
        .find(|p| p.is_file())
}

/// A test target: serves `test_gate_blocker VALUE` at `/metrics`.
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    value: Arc<AtomicU64>,
}

impl Target {
    /// Starts the target with the blocker at `value`.
    pub async fn start(value: u64) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let value = Arc::new(AtomicU64::new(value));
        let v = value.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let v = v.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let body = format!(
                        "# TYPE test_gate_blocker gauge\ntest_gate_blocker {}\n",
                        v.load(Ordering::SeqCst)
                    );
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        Self { addr, value }
    }

    /// Sets the blocker.
    pub fn set(&self, value: u64) {
        self.value.store(value, Ordering::SeqCst);
    }
}

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    /// Its base URL.
    pub url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job name, address) every second, with the alert
    /// `MigrationBlocker` firing while `test_gate_blocker > 0`. `None` without the binary.
    pub async fn start(targets: &[(&str, SocketAddr)]) -> Option<Self> {
        let Some(bin) = binary() else {
            eprintln!(
                "note: no `prometheus` binary (Debian's package, installed by .ci/run): skipping the part that needs a real Prometheus"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 900ms}\n\
             rule_files: [rules.yml]\nscrape_configs:\n",
        );
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{targets: [\"{addr}\"]}}]\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        std::fs::write(
            dir.path().join("rules.yml"),
            "groups:\n  - name: test\n    rules:\n      - alert: MigrationBlocker\n        expr: test_gate_blocker > 0\n        labels: {severity: critical}\n",
        )
        .expect("rules");
        let child = std::process::Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus starts");
        let p = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let ready = wait_for(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/-/ready", p.url))
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(ready, "Prometheus did not become ready");
        Some(p)
    }

    /// An instant query's result (the `data.result` array).
    pub async fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The first value of an instant query, as a number.
    pub async fn value(&self, q: &str) -> Option<f64> {
        self.query(q)
            .await
            .first()
            .and_then(|s| s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()))
    }

    /// Whether an alert of that name is firing.
    pub async fn firing(&self, name: &str) -> bool {
        let v: serde_json::Value = match reqwest::get(format!("{}/api/v1/alerts", self.url)).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return false,
        };
        v["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["labels"]["alertname"] == name && x["state"] == "firing")
        })
    }
}

/// Polls `check` every 200 ms until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, check: F) -> bool
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
