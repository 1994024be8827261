//! The explorer page at `/`, in a real browser: `blyan-ledger demo` runs two learning
//! rounds with nodes that train and validators that measure for real, a server serves
//! its log, then Debian's
//! Chromium (headless) loads the page, which replays the whole log itself with the
//! sdk's audit (its WebAssembly module) and checks the head's state root against it,
//! and the DOM it renders is checked against the API: the round count, a node's reward
//! in a round, the chain and state-root checks and the plot of the merged versions. A screenshot is kept
//! as `target/test-artifacts/explorer.png`.
//!
//! Needs Debian's `chromium` package (`/usr/bin/chromium`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use blyan_e2e::demo_server;
use blyan_sdk::model::Phase;

const ROUNDS: usize = 2;
const CHROMIUM: &str = "/usr/bin/chromium";
/// Past this, a browser run is killed: the test can't hang on it.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// The cargo target folder of the running test (`target/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test knows its own path");
    test_exe
        .ancestors()
        .nth(3)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// What one headless browser run printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium on a fresh profile with `args` (and the page last), and
/// kills it if it takes longer than [`CHROMIUM_TIMEOUT`].
fn chromium(dir: &Path, name: &str, args: &[String], url: &str) -> Run {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package"
    );
    let profile = dir.join(format!("{name}-profile"));
    std::fs::create_dir_all(&profile).unwrap();
    // To files: a pipe that nobody reads would stall a large DOM dump.
    let stdout_path = dir.join(format!("{name}.stdout"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("chromium ({name}) ran past {CHROMIUM_TIMEOUT:?} and was killed:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&stdout_path).unwrap(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// The text of the element whose opening tag holds `marker` (up to its first child
/// tag or its end).
fn text_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("the page has no {marker}"));
    let rest = &dom[at..];
    let start = rest.find('>').expect("the tag closes") + 1;
    let end = rest[start..].find('<').expect("the text ends");
    &rest[start..start + end]
}

/// The opening tag of `<body ...>`.
fn body_tag(dom: &str) -> &str {
    let at = dom.find("<body").expect("the page has a body");
    let end = dom[at..].find('>').expect("the body tag closes");
    &dom[at..at + end + 1]
}

/// The value of attribute `name` in `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')?;
    Some(&tag[start..start + end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_explorer_shows_the_rounds_rewards_and_a_verified_chain_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    // Honest nodes that train and validators that measure for real, all through the
    // real binary.
    let server = demo_server(dir.path(), ROUNDS).await;

    // What the API says, once the ledger is still.
    let client = server.client();
    let rounds = client.rounds(0, 1_000).await.unwrap();
    assert_eq!(rounds.len(), ROUNDS);
    for summary in &rounds {
        let view = client.round(summary.round).await.unwrap();
        assert_eq!(
            view.summary.phase,
            Phase::Finalized,
            "round {}",
            summary.round
        );
        assert!(
            !view.node_rewards.is_empty(),
            "round {} paid no node",
            summary.round
        );
        assert!(
            view.deltas.iter().any(|delta| delta.score > Some(0)),
            "round {} accepted no delta",
            summary.round
        );
    }
    // Every round merged a version.
    let mut merged = 0;
    for newest in client.experts().await.unwrap().versions {
        merged += newest.version as usize;
    }
    assert_eq!(merged, ROUNDS);
    let round = rounds.last().unwrap().round;
    let view = client.round(round).await.unwrap();
    let paid = view.node_rewards.first().expect("the round paid its nodes");
    let events = client.head().await.unwrap().events;

    // The page is served at `/` as HTML.
    let url = format!("{}/", server.url);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    // Its audit module, revalidated by its ETag for nothing.
    let module = reqwest::get(format!("{}/explorer/audit.wasm", server.url))
        .await
        .unwrap();
    assert_eq!(module.status(), 200);
    assert_eq!(
        module.headers()[reqwest::header::CONTENT_TYPE],
        "application/wasm"
    );
    let etag = module.headers()[reqwest::header::ETAG].clone();
    let bytes = module.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\0asm"), "a WebAssembly module");
    assert_eq!(
        etag.to_str().unwrap(),
        format!("\"{}\"", blake3::hash(&bytes).to_hex())
    );
    let again = reqwest::Client::new()
        .get(format!("{}/explorer/audit.wasm", server.url))
        .header(reqwest::header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Virtual time does not advance while a fetch is pending, so the budget is spent
    // only once the page's first full load (every fetch of it) is done.
    let budget = "--virtual-time-budget=20000".to_string();
    let dump = tokio::task::block_in_place(|| {
        chromium(
            dir.path(),
            "dump",
            &[budget.clone(), "--dump-dom".into()],
            &url,
        )
    });
    assert!(dump.status.success(), "chromium: {}", dump.stderr);
    let dom = dump.stdout;
    let body = body_tag(&dom);
    assert_eq!(attribute(body, "data-ready"), Some("1"), "{body}\n{dom}");
    let verified: u64 = attribute(body, "data-events")
        .expect("the body counts the verified events")
        .parse()
        .unwrap();
    assert!(verified >= events, "{verified} of {events} events verified");
    let status = text_after(&dom, "id=\"chain-status\"");
    assert!(status.starts_with("verified"), "chain status: {status}");
    assert_eq!(status, format!("verified: {verified} events"));
    // The page replayed the log with the sdk's audit (its WebAssembly module) and got
    // the state root the server publishes.
    let head = client.head().await.unwrap();
    assert_eq!(attribute(body, "data-root"), Some("match"), "{body}");
    assert_eq!(
        text_after(&dom, "id=\"root-status\""),
        format!("matches the replay here ({} events)", head.events)
    );
    assert!(
        dom.contains(&head.state_root[..16]),
        "the state root is shown"
    );
    assert_eq!(
        text_after(&dom, "id=\"round-count\""),
        rounds.len().to_string(),
        "the round count"
    );
    // The node's reward in that round, exactly as the API gives it.
    let row = format!(
        "<tr data-round=\"{round}\" data-key=\"{}\" data-role=\"node\">",
        paid.key
    );
    let at = dom
        .find(&row)
        .unwrap_or_else(|| panic!("no reward row {row}"));
    let row_end = at + dom[at..].find("</tr>").expect("the row ends");
    let cell = text_after(&dom[at..row_end], "class=\"amount\"");
    assert_eq!(cell, paid.amount.to_string(), "{}", &dom[at..row_end]);
    // The loss plot draws the merged versions.
    let plot = dom
        .find("id=\"loss-plot\"")
        .expect("the page has the loss plot");
    assert!(
        dom[plot..].contains("<polyline data-expert="),
        "the plot draws no line"
    );

    // A screenshot, kept for a person to look at.
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("explorer.png");
    let _ = std::fs::remove_file(&png);
    let shot = tokio::task::block_in_place(|| {
        chromium(
            dir.path(),
            "screenshot",
            &[
                budget,
                format!("--screenshot={}", png.display()),
                "--window-size=1280,2200".into(),
            ],
            &url,
        )
    });
    assert!(shot.status.success(), "chromium: {}", shot.stderr);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "a screenshot of {} bytes is blank",
        bytes.len()
    );
}
