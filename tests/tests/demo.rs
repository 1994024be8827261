//! `blyan-ledger demo`: the whole local network, as README.md shows it, learns.

use blyan_e2e::run_binary;

#[test]
fn the_demo_runs_its_rounds_and_the_held_out_loss_falls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let (ok, stdout, stderr) = run_binary(
        "blyan-ledger",
        &[
            "demo",
            "--nodes",
            "4",
            "--validators",
            "3",
            "--rounds",
            "4",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    // A header, one row per round (round, expert, then the held-out loss), and the
    // summary.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| {
            words
                .first()
                .is_some_and(|word| word.parse::<u64>().is_ok())
        })
        .collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for (index, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (index + 1).to_string(), "{stdout}");
        // Experts take turns.
        assert_eq!(row[1], index.to_string(), "{stdout}");
        assert_eq!(row.last(), Some(&"finalized"), "{stdout}");
    }
    // The progress went to stderr, phase by phase.
    assert!(stderr.contains("round 1 (expert 0): finalized"), "{stderr}");
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("held-out loss"))
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    let losses: Vec<f64> = summary
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    assert!(losses[1] < losses[0] * 0.5, "{summary}");
    // The data folder it was given holds the log the demo wrote, which replays.
    let (ok, stdout, stderr) = run_binary(
        "blyan-ledger",
        &[
            "replay",
            "--json",
            "--data-dir",
            data.join("data").to_str().unwrap(),
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
}
