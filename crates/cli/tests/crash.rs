//! Every acknowledged write survives `kill -9`: a writing `daftar` process is killed at random
//! moments, again and again, and afterwards every invoice it reported as written is present,
//! loads, and the store verifies (including gapless numbering).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daftar, SplitMix, Watched};
use serde_json::Value;

/// A random moment within `span`: `span` times a fraction in `0..=1`, to the microsecond.
fn within(rng: &mut SplitMix, span: Duration) -> Duration {
    span.mul_f64(rng.below(1_000_001) as f64 / 1_000_000.0)
}

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
    // The kill is timed by the writer's own progress, never by the clock: wait for its first
    // acknowledgement (however long starting takes on this machine), let it acknowledge one to
    // three more, then kill at a random moment within the time its last write took, so kills
    // land anywhere in a write (inside the transaction, during commit, before the
    // acknowledgement is printed) whatever the machine's speed.
    for round in 0..rounds {
        let mut writer = Watched::spawn(d.command().args(["debug", "write-loop", "--customer", &customer]), false);
        let what = format!("round {round}: the writer");
        let (_, mut last) = writer.next(&what);
        let mut write_took = Duration::ZERO;
        for _ in 0..1 + rng.below(3) {
            let (_, at) = writer.next(&what);
            write_took = at - last;
            last = at;
        }
        std::thread::sleep(within(&mut rng, write_took));
        let (status, acks, stderr) = writer.kill();
        assert!(status.code().is_none(), "round {round}: the writer ended by itself ({status}): {stderr}");
        assert!(!acks.is_empty(), "round {round}: the writer was killed after acknowledging, yet no line was read");
        for line in &acks {
            let ack: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("round {round}: bad ack {line:?}: {e}"));
            if let Some(id) = ack["created"].as_str() {
                created.push(id.to_owned());
            } else if let Some(id) = ack["issued"].as_str() {
                issued.insert(id.to_owned(), ack["number"].as_str().unwrap().to_owned());
            }
        }
    }

    let written_by_loop = created.clone();
    // Compaction killed part-way must lose nothing either: each batch is one transaction. Each
    // round first gives it more than one batch of documents to fold (256 a batch), then kills it
    // once it reports its first batch committed: at once in half the rounds (so the kill surely
    // lands while later batches are still to come), at a random moment within the time the
    // first batch took in the others (so it lands inside a batch's transaction too).
    let mut compactions_interrupted = 0;
    for round in 0..8 {
        let more = d.run(&["--json", "debug", "write-loop", "--customer", &customer, "--count", "300", "--drafts"]);
        assert!(more.status.success(), "{}", String::from_utf8_lossy(&more.stderr));
        for line in String::from_utf8(more.stdout).unwrap().lines() {
            let ack: Value = serde_json::from_str(line).unwrap();
            created.push(ack["created"].as_str().unwrap().to_owned());
        }
        let started = Instant::now();
        let mut compaction = Watched::spawn(d.command().args(["store", "compact"]), true);
        let (progress, at) = compaction.next(&format!("compaction round {round}"));
        assert!(progress.contains("to go"), "compaction round {round}: progress reads {progress:?}");
        if round % 2 == 1 {
            std::thread::sleep(within(&mut rng, at - started));
        }
        let (status, _, output) = compaction.kill();
        if status.code().is_none() && !output.contains("change rows folded") {
            compactions_interrupted += 1;
        }
    }
    assert!(compactions_interrupted > 0, "no compaction was interrupted mid-way");

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
        "crash test: {} creates and {} issues acknowledged, {} invoices stored, {} issued in the store, \
         {compactions_interrupted} of 8 compactions interrupted",
        created.len(),
        issued.len(),
        present.len(),
        verify["issued"]
    );
}
