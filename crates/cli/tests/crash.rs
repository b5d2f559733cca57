//! Every acknowledged write survives `kill -9`: a writing `daftar` process is killed at random
//! moments, again and again, and afterwards every invoice it reported as written is present,
//! loads, and the store verifies (including gapless numbering).

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use common::{Daftar, SplitMix};
use serde_json::Value;

#[test]
fn acknowledged_writes_survive_kill_9_at_random_moments() {
    let rounds: usize = std::env::var("DAFTAR_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200);
    let seed: u64 = std::env::var("DAFTAR_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x00DA_F7A2);
    eprintln!("crash test: {rounds} rounds, seed {seed} (DAFTAR_CRASH_SEED to replay)");
    let mut rng = SplitMix(seed);
    let d = Daftar::init();
    let customer = d.customer("Crash Test Customer", Some("311111111111113"));
    let mut created: Vec<String> = Vec::new();
    let mut issued: HashMap<String, String> = HashMap::new();
    let mut killed_while_writing = 0;
    for round in 0..rounds {
        let mut child = d
            .command()
            .args(["debug", "write-loop", "--customer", &customer])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("writer starts");
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 60));
        child.kill().expect("SIGKILL");
        let mut stdout = String::new();
        child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_while_writing += 1;
        }
        // Only complete lines are acknowledgements; a torn last line was not acknowledged.
        let complete = match stdout.rfind('\n') {
            Some(end) => &stdout[..end],
            None => "",
        };
        for line in complete.lines() {
            let ack: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("round {round}: bad ack {line:?}: {e}"));
            if let Some(id) = ack["created"].as_str() {
                created.push(id.to_owned());
            } else if let Some(id) = ack["issued"].as_str() {
                issued.insert(id.to_owned(), ack["number"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(
        killed_while_writing >= rounds * 9 / 10,
        "the writer must be killed, not finish ({killed_while_writing}/{rounds})"
    );
    assert!(created.len() >= rounds, "the schedule must give writers time to write ({} acknowledged)", created.len());

    let written_by_loop = created.clone();
    // Compaction killed part-way must lose nothing either: each batch is one transaction.
    let mut compactions_killed = 0;
    for _ in 0..20 {
        let mut child =
            d.command().args(["store", "compact"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 150));
        child.kill().expect("SIGKILL");
        if child.wait().unwrap().code().is_none() {
            compactions_killed += 1;
        }
        // More changes on top, so the next compaction has work to do.
        let inv = d.json(&["invoice", "create", "--customer", &customer, "--line", "After compaction|1|1"]);
        created.push(inv["id"].as_str().unwrap().to_owned());
    }
    assert!(compactions_killed > 0, "at least one compaction must be interrupted");

    let verify = d.json(&["store", "verify"]);
    assert_eq!(verify["ok"], true, "after {rounds} kills the store must verify: {verify}");
    let listed = d.json(&["invoice", "list"]);
    let present: HashMap<String, Value> =
        listed.as_array().unwrap().iter().map(|s| (s["id"].as_str().unwrap().to_owned(), s.clone())).collect();
    for id in &created {
        assert!(present.contains_key(id), "acknowledged invoice {id} is missing after kill -9");
    }
    for (id, number) in &issued {
        assert_eq!(
            present[id]["number"].as_str(),
            Some(number.as_str()),
            "acknowledged issue of {id} as {number} was lost"
        );
    }
    // Search text is queued in the same transaction as the invoice, so every acknowledged
    // invoice is also found by search after the kills.
    let found: std::collections::HashSet<String> = d
        .json(&["invoice", "list", "--query", "crash test item"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &written_by_loop {
        assert!(found.contains(id), "acknowledged invoice {id} is not found by search after kill -9");
    }
    // Every acknowledged invoice loads in full, not just its index row.
    for id in created.iter().step_by(created.len().div_ceil(20).max(1)) {
        let invoice = d.json(&["invoice", "show", id]);
        assert_eq!(invoice["lines"].as_array().map(Vec::len), Some(1));
    }
    eprintln!(
        "crash test: {} creates and {} issues acknowledged, {} invoices stored, {} issued in the store",
        created.len(),
        issued.len(),
        present.len(),
        verify["issued"]
    );
}
