//! The harness of the end-to-end tests: starts the real `blyan-ledger` binary on a
//! fresh data directory and a free loopback port, waits until it serves, and kills it
//! with SIGKILL when asked or dropped.
//!
//! The binaries are those cargo built next to the test executables
//! (`target/<profile>/`); build them first with `cargo build --workspace --bins`.

pub mod postgres;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blyan_sdk::client::Client;
use blyan_sdk::crypto::Keypair;

/// Path of a workspace binary built alongside the running test.
pub fn binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A running `blyan-ledger serve`.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub url: String,
    extra_args: Vec<String>,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts the server on `data_dir` with the dev genesis and waits until it serves.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> Server {
        let port = free_port();
        let mut server = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            port,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        // Every test client registers from the same loopback source: the rate per
        // source is lifted but where a test sets it.
        let rate = "--registrations-per-source-per-hour";
        let unlimited = (!self.extra_args.iter().any(|arg| arg == rate))
            .then_some([rate, "1048576"])
            .into_iter()
            .flatten();
        let child = Command::new(binary("blyan-ledger"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(unlimited)
            .args(&self.extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start blyan-ledger");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            if let Ok(response) = http.get(format!("{}/healthz", self.url)).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().unwrap())
            {
                panic!("blyan-ledger exited before serving: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "blyan-ledger did not serve within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, no shutdown of any kind.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the server");
            child.wait().expect("reap the server");
        }
    }

    /// Starts the same data directory again on the same port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    pub async fn network_id(&self) -> String {
        self.client().head().await.expect("GET /v1/head").network_id
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    /// A dev-genesis role key written by the server (`operator`, `burn-oracle`,
    /// `governance-1`, ...).
    pub fn dev_key(&self, role: &str) -> Keypair {
        Keypair::read_file(&self.data_dir.join("dev-keys").join(format!("{role}.json")))
            .expect("dev key file")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a workspace binary to completion and returns (exit success, stdout, stderr).
pub fn run_binary(name: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary(name))
        .args(args)
        .output()
        .expect("run binary");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `GET /v1/head` as JSON.
pub async fn head(url: &str) -> serde_json::Value {
    reqwest::get(format!("{url}/v1/head"))
        .await
        .expect("GET /v1/head")
        .json()
        .await
        .expect("head JSON")
}

/// `POST /v1/commands` with `body` as it is: the status and the JSON answer.
pub async fn post_raw(url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/commands"))
        .body(body)
        .send()
        .await
        .expect("POST /v1/commands");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the answer's body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// Sends `body`, expects `status` and `code` with a message, and checks that the head
/// did not move.
pub async fn expect_refused(server: &Server, body: Vec<u8>, status: u16, code: &str) {
    let before = head(&server.url).await;
    let (got_status, answer) = post_raw(&server.url, body).await;
    assert_eq!(
        (got_status, answer["code"].as_str().unwrap()),
        (status, code),
        "answer: {answer}"
    );
    assert!(!answer["message"].as_str().unwrap().is_empty());
    assert_eq!(
        head(&server.url).await,
        before,
        "a refused command changed the head"
    );
}

/// The value of one series of `GET /metrics`, named as the text names it (with its
/// labels, `name{label="value"}`); `None` when the server exports no such series.
pub async fn metric(url: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a metric's value is a number"))
}

/// The repository's `deploy/` folder: the alert rules and the dashboard.
pub fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs promtool (Debian's `prometheus` package) with `args` in `dir`, feeding it
/// `stdin`: (success, its output).
pub fn promtool(dir: &Path, args: &[&str], stdin: &[u8]) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: scripts/setup.sh installs Debian's prometheus package");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The `blyan_*` metric families `text` names, a histogram's series by its family.
pub fn families_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("blyan_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        names.insert(family.to_string());
    }
    names
}

/// A log of `rounds` real learning rounds (4 nodes, 3 validators): `blyan-ledger demo`
/// trains and measures them and keeps the log in `dir`, which a server then serves.
pub async fn demo_server(dir: &Path, rounds: usize) -> Server {
    let demo = dir.join("demo");
    let (ok, stdout, stderr) = run_binary(
        "blyan-ledger",
        &[
            "demo",
            "--nodes",
            "4",
            "--validators",
            "3",
            "--rounds",
            &rounds.to_string(),
            "--data-dir",
            demo.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    Server::start(
        &demo.join("data"),
        &[
            "--genesis",
            demo.join("genesis.json").to_str().unwrap(),
            "--operator-key",
            demo.join("operator.json").to_str().unwrap(),
        ],
    )
    .await
}
