//! The Python SDK (`sdk/python`): its unit tests, and one Python node (the SDK's light
//! numpy trainer) in real rounds beside the demo's Rust nodes and validators, through
//! the real binary. Its delta is measured, scored, accepted and paid, its receipt
//! verifies in Python and in Rust to the same claims, and any altered byte fails both.
//!
//! The interpreter is `target/python/bin/python`, the virtual environment that
//! `scripts/setup.sh` makes with the SDK's dependencies.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blyan_e2e::binary;
use blyan_sdk::client::Client;
use blyan_sdk::crypto::{Keypair, PublicKey};
use blyan_sdk::model::Phase;
use blyan_sdk::receipt::{self, RoundReceipt};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

fn python() -> Command {
    let interpreter = root().join("target/python/bin/python");
    assert!(
        interpreter.exists(),
        "{} is missing: run scripts/setup.sh",
        interpreter.display()
    );
    let mut command = Command::new(interpreter);
    command
        .current_dir(root())
        .env("PYTHONPATH", root().join("sdk/python/src"));
    command
}

#[test]
fn the_python_sdks_unit_tests_pass() {
    let mut tests = python();
    tests.args(["-m", "unittest", "discover", "-v", "-s", "sdk/python/tests"]);
    let output = output_within(tests, Duration::from_secs(120));
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    let ran: usize = report
        .lines()
        .find_map(|line| line.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test count in {report}"));
    assert!(ran >= 11, "{report}");
}

/// `blyan-ledger demo` waiting for external nodes; interrupted (SIGINT, its clean end
/// once its rounds are done) when dropped, and killed if it does not end.
struct Demo {
    child: Child,
    url: String,
    dir: PathBuf,
    /// What it printed on stderr, line by line, as it comes.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Demo {
    fn start(dir: &Path, rounds: usize) -> Demo {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = dir.join("demo");
        let mut child = Command::new(binary("blyan-ledger"))
            .args([
                "demo",
                "--nodes",
                "3",
                "--validators",
                "3",
                "--external-nodes",
                "1",
            ])
            .args(["--rounds", &rounds.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, stderr) = std::sync::mpsc::channel();
        let from = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(from).map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        Demo {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            stderr,
        }
    }

    /// Waits for the line that says the demo's rounds are done (their merges on the
    /// chain, their rows printed): from then on SIGINT is its clean end.
    fn wait_done(&self) -> String {
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("the rounds are done") {
                    return seen;
                }
            }
        }
        panic!("the demo's rounds never ended:\n{seen}");
    }

    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // It ignored SIGINT: kill it. (Its server child outlives a SIGKILL; the test
        // fails here anyway, with its data directory removed under it.)
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.interrupt();
        }
    }
}

/// Runs `command` to its end, within `limit`; its output.
fn output_within(mut command: Command, limit: Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|pipe| Box::new(pipe) as _));
    let stderr = read(child.stderr.take().map(|pipe| Box::new(pipe) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not end within {limit:?}: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The Python CLI's offline check of `file`: its claims, or `None` if it refused.
fn python_verify(file: &Path, operator: &PublicKey) -> Option<serde_json::Value> {
    let mut verify = python();
    verify
        .args(["-m", "blyan", "verify-receipt"])
        .arg(file)
        .args(["--checkpoint-key", &operator.to_hex()]);
    let output = output_within(verify, Duration::from_secs(60));
    if output.status.success() {
        return Some(serde_json::from_slice(&output.stdout).unwrap());
    }
    // A refusal, not a crash of the verifier.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("the receipt does not verify: "),
        "{stderr}"
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_node_beside_rust_nodes_is_measured_paid_and_verifies_its_receipt() {
    const ROUNDS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(dir.path(), ROUNDS);
    // A key file the Rust SDK wrote, which the Python SDK reads.
    let key = Keypair::from_secret(*blake3::hash(b"python node").as_bytes());
    let key_file = dir.path().join("python-node.json");
    key.write_file(&key_file).unwrap();
    let receipts = dir.path().join("receipts");
    let client = Client::new(&demo.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.head().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the demo's server never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut node = python();
    node.args(["-m", "blyan", "--server", &demo.url, "node", "--key"])
        .arg(&key_file)
        .args(["--trainer", "light", "--rounds", &ROUNDS.to_string()])
        .arg("--receipts")
        .arg(&receipts);
    let ran = Instant::now();
    let node = output_within(node, Duration::from_secs(300));
    let ran = ran.elapsed();
    let stdout = String::from_utf8_lossy(&node.stdout).into_owned();
    assert!(
        node.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&node.stderr)
    );
    // Every heartbeat it sent (one each 5 s, into the window open then) was held.
    let stderr = String::from_utf8_lossy(&node.stderr);
    assert!(!stderr.contains("heartbeat:"), "{stderr}");
    let view = client.node(&key.public()).await.unwrap();
    if ran > Duration::from_secs(7) {
        assert!(
            view.last_seen_ms > view.node.registered_ms,
            "a window logged its heartbeat: {view:?}"
        );
    }
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), ROUNDS, "{stdout}");

    let operator = client.state().await.unwrap().genesis.unwrap().operator_key;
    for (line, round) in lines.iter().zip(1u64..) {
        assert_eq!(line["round"], round, "{line}");
        assert_eq!(line["error"], serde_json::Value::Null, "{line}");
        let proven = &line["proven"];
        // The Rust SDK's verification of the receipt the Python node kept claims
        // exactly what the Python node's did; so does today's receipt, against a
        // later checkpoint.
        let file = receipts.join(format!("round-{round}.json"));
        let kept: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let rust =
            receipt::verify(&serde_json::from_value(kept.clone()).unwrap(), &operator).unwrap();
        assert_eq!(serde_json::to_value(&rust).unwrap(), *proven);
        let answer = client.receipt(round, &key.public()).await.unwrap();
        let today = receipt::verify(&answer, &operator).unwrap();
        assert!(today.tree_size >= rust.tree_size);
        assert_eq!(
            receipt::Proven {
                tree_size: rust.tree_size,
                ..today
            },
            rust
        );
        // It was measured beside the Rust nodes and helped: scored, accepted, paid.
        assert_eq!(rust.ending, receipt::Ending::Finalized);
        assert!(rust.score.is_some_and(|score| score > 0), "{proven}");
        assert!(rust.accepted, "{proven}");
        assert!(
            rust.node_reward.is_some_and(|amount| amount > 0),
            "{proven}"
        );
        let view = client.round(round).await.unwrap();
        assert_eq!(view.summary.phase, Phase::Finalized);
        assert_eq!(view.deltas.len(), 4, "three Rust nodes and the Python one");
        let delta = view
            .deltas
            .iter()
            .find(|delta| delta.node == key.public())
            .expect("the Python node's delta is in the round");
        assert_eq!(delta.score, rust.score);
        assert_eq!(
            Some(delta.delta_hash.clone()),
            proven["delta_hash"].as_str().map(str::to_owned)
        );

        // Offline: the kept file verifies, and every altered copy fails in Python and
        // in Rust alike.
        assert_eq!(python_verify(&file, &operator).as_ref(), Some(proven));
        let flip = |text: &str| {
            let mut bytes = text.to_owned().into_bytes();
            bytes[10] = if bytes[10] == b'0' { b'1' } else { b'0' };
            serde_json::Value::String(String::from_utf8(bytes).unwrap())
        };
        let mut altered = Vec::new();
        for pointer in [
            "/checkpoint/signature",
            "/checkpoint/merkle_root",
            "/records/0/body",
            "/records/0/prev_hash",
            "/assignment/hashes/0",
            "/score/hashes/0",
            "/payouts/0/hashes/0",
        ] {
            let mut copy = kept.clone();
            let text = copy.pointer(pointer).unwrap().as_str().unwrap().to_owned();
            *copy.pointer_mut(pointer).unwrap() = flip(&text);
            altered.push((pointer, copy));
        }
        let mut copy = kept.clone();
        copy["score"]["index"] = (copy["score"]["index"].as_u64().unwrap() + 1).into();
        altered.push(("/score/index", copy));
        let mut copy = kept.clone();
        copy["payouts"] = serde_json::json!([]);
        altered.push(("/payouts", copy));
        for (pointer, copy) in altered {
            let file = dir.path().join("altered.json");
            std::fs::write(&file, serde_json::to_vec(&copy).unwrap()).unwrap();
            assert_eq!(python_verify(&file, &operator), None, "{pointer}");
            let parsed: Result<RoundReceipt, _> = serde_json::from_value(copy);
            assert!(
                parsed.is_err() || receipt::verify(&parsed.unwrap(), &operator).is_err(),
                "{pointer}"
            );
        }
    }
    // The demo printed a row per round, each with every delta scored, and ends
    // cleanly on SIGINT once its rounds are done.
    let log = demo.wait_done();
    let status = demo.interrupt().expect("the demo ends on SIGINT");
    assert!(status.success(), "{status}\n{log}");
    let mut table = String::new();
    std::io::Read::read_to_string(demo.child.stdout.as_mut().unwrap(), &mut table).unwrap();
    let rows: Vec<&str> = table
        .lines()
        .filter(|line| line.trim_end().ends_with("finalized"))
        .collect();
    assert_eq!(rows.len(), ROUNDS, "{table}");
    assert!(rows.iter().all(|row| row.contains(" 4/4 ")), "{table}");
    assert!(demo.dir.join("data").exists());
}
