//! What the sim's own tests share: a raw HTTP/1.1 exchange with the simulated server, so that
//! status lines, headers and chunked bodies are seen exactly as a client gets them; and the
//! tool's own client, connected as the CLI connects. Each test binary uses a part of it.
#![allow(dead_code)]

use sim::Sim;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One answer, as sent.
pub struct Reply {
    /// The status code.
    pub code: u16,
    /// The status line and headers, as sent.
    pub headers: String,
    /// The body, de-chunked.
    pub body: String,
}

/// Sends one request and reads the whole answer.
pub async fn http(sim: &Sim, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
    http_as(sim, None, method, path, content_type, body).await
}

/// [`http`] with a bearer token (a ServiceAccount's, from a TokenRequest), or as the admin.
pub async fn http_as(
    sim: &Sim,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    let addr = sim.url().trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        code,
        headers: head.to_owned(),
        body,
    }
}

/// A chunked body's content.
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The tool's client for the sim (through a kubeconfig, as the CLI connects), and the
/// directory holding that kubeconfig.
pub async fn connected(sim: &Sim) -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc).expect("kubeconfig");
    let client = cluster::connect(&cluster::ClusterArgs {
        kubeconfig: Some(kc),
        context: None,
    })
    .await
    .expect("client");
    (client, dir)
}
