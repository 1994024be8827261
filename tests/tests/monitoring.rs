//! Monitoring: the real binary's /metrics passes `promtool check metrics` and exports
//! every metric the alert rules and the Grafana dashboard use; the alert rules pass
//! `promtool check rules` and their unit tests. promtool is Debian's `prometheus`
//! package, which scripts/setup.sh installs.

use std::collections::BTreeSet;

use blyan_e2e::{Server, deploy, families_named, promtool};

#[test]
fn the_alert_rules_are_valid_and_pass_their_unit_tests() {
    let dir = deploy().join("prometheus");
    let (ok, output) = promtool(&dir, &["check", "rules", "alerts.yml"], b"");
    assert!(ok && output.contains("SUCCESS: 8 rules found"), "{output}");
    let (ok, output) = promtool(&dir, &["test", "rules", "alerts_test.yml"], b"");
    assert!(ok && output.contains("SUCCESS"), "{output}");
}

#[tokio::test]
async fn metrics_pass_promtool_and_export_what_the_alerts_and_the_dashboard_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (ok, output) = promtool(dir.path(), &["check", "metrics"], text.as_bytes());
    assert!(ok, "{output}\n{text}");

    let exported: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split(' ').next())
        .map(str::to_string)
        .collect();
    let alerts = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(deploy().join("grafana/blyan-ledger.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    for (source, used) in [("alerts.yml", &alerts), ("the dashboard", &dashboard)] {
        // The projector exports its own (tests/tests/projector.rs checks them).
        let used: BTreeSet<String> = families_named(used)
            .into_iter()
            .filter(|family| !family.starts_with("blyan_projector_"))
            .collect();
        assert!(!used.is_empty(), "{source} uses no metric");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{source} uses {missing:?}, which /metrics lacks"
        );
    }
    // The genesis is the first synced write; nothing has stopped or runs yet.
    assert!(text.contains("blyan_write_seconds_count 1"), "{text}");
    assert!(text.contains("blyan_writer_stopped 0"), "{text}");
    assert!(text.contains("blyan_round_overdue_seconds 0"), "{text}");
}
