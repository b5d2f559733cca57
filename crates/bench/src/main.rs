//! `daftar-bench`: measures the store against floors taken in the same run on the same machine,
//! and writes the figures into `docs/BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p daftar-bench -- [--invoices 100000] [--creates 2000] [--write docs/BENCHMARKS.md]
//! ```
//! Floors: raw rusqlite (no key, so plain SQLite pages) single-row commits of the same bytes in
//! WAL with `synchronous = FULL`; building and saving the same invoices as fresh Automerge
//! documents with nothing else. Each figure of ours is printed beside its floor, as a ratio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use automerge::transaction::Transactable;
use chrono::Utc;
use daftar_domain::{Customer, Invoice, SellerProfile};
use daftar_store::{InitOptions, InvoiceQuery, KeyChoice, NewInvoice, Store, SystemClock};

#[path = "report.rs"]
mod report;

#[path = "fixtures.rs"]
mod fixtures;
use fixtures::{WORDS, customer, invoice, line_input};

const PASSPHRASE: &str = "benchmark passphrase";

struct Args {
    invoices: usize,
    creates: usize,
    write: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { invoices: 100_000, creates: 2_000, write: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--invoices" => args.invoices = value()?.parse()?,
            "--creates" => args.creates = value()?.parse()?,
            "--write" => args.write = Some(PathBuf::from(value()?)),
            "--probe" => {
                // Child process: open a store cold and list the first page (see `cold_open`).
                let dir = PathBuf::from(value()?);
                let key = value()?;
                return probe(&dir, &key).map(|()| std::process::exit(0));
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

/// Floor: a fresh Automerge document built from the invoice's JSON and saved. Returns its bytes.
fn automerge_only(invoice: &Invoice) -> Vec<u8> {
    fn put(tx: &mut automerge::transaction::Transaction<'_>, obj: &automerge::ObjId, value: &serde_json::Value) {
        use serde_json::Value as J;
        if let J::Object(map) = value {
            for (k, v) in map {
                match v {
                    J::Object(_) => {
                        let child = tx.put_object(obj, k.as_str(), automerge::ObjType::Map).unwrap();
                        put(tx, &child, v);
                    }
                    J::Array(items) => {
                        let list = tx.put_object(obj, k.as_str(), automerge::ObjType::List).unwrap();
                        for (i, item) in items.iter().enumerate() {
                            let child = tx.insert_object(&list, i, automerge::ObjType::Map).unwrap();
                            put(tx, &child, item);
                        }
                    }
                    J::String(s) => tx.put(obj, k.as_str(), s.as_str()).unwrap(),
                    J::Bool(b) => tx.put(obj, k.as_str(), *b).unwrap(),
                    J::Number(n) => tx.put(obj, k.as_str(), n.as_i64().unwrap_or_default()).unwrap(),
                    J::Null => tx.put(obj, k.as_str(), automerge::ScalarValue::Null).unwrap(),
                }
            }
        }
    }
    let json = serde_json::to_value(invoice).unwrap();
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    put(&mut tx, &automerge::ROOT, &json);
    tx.commit();
    doc.save()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn raw_connection(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, doc TEXT NOT NULL, bytes BLOB NOT NULL);",
    )?;
    Ok(conn)
}

/// Floor: one raw single-row commit per blob, durable.
fn raw_commits(dir: &Path, blobs: &[Vec<u8>]) -> Result<Duration> {
    let conn = raw_connection(&dir.join("raw-single.db"))?;
    let start = Instant::now();
    for (i, blob) in blobs.iter().enumerate() {
        conn.execute("INSERT INTO t (doc, bytes) VALUES (?1, ?2)", rusqlite::params![i.to_string(), blob])?;
    }
    Ok(start.elapsed())
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The cold-open probe, run in a fresh process: open, list the first page, report.
fn probe(dir: &Path, key_hex: &str) -> Result<()> {
    let start = Instant::now();
    let bytes: [u8; 32] = hex::decode(key_hex)?.try_into().map_err(|_| anyhow::anyhow!("key must be 32 bytes"))?;
    let store = Store::open_with_key(dir, &daftar_keys::DatabaseKey::new(bytes), Arc::new(SystemClock))?;
    let page = store.list_invoices(&InvoiceQuery { limit: Some(50), ..Default::default() })?;
    let elapsed = start.elapsed();
    println!("{} {} {}", elapsed.as_micros(), page.len(), peak_rss_kib());
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path().join("store");
    let (mut store, _recovery) = Store::init(
        &dir,
        InitOptions {
            seller: SellerProfile {
                name: "Bench Co".into(),
                vat_number: "300000000000003".into(),
                ..Default::default()
            },
            series: None,
            key: KeyChoice::Passphrase(PASSPHRASE.into()),
            device_name: "bench".into(),
            member: None,
            existing: None,
        },
        Arc::new(SystemClock),
    )?;
    let key = daftar_keys::key_file::open(&dir.join(daftar_store::KEY_FILE), PASSPHRASE)?;
    let customers: Vec<Customer> = (0..100).map(customer).collect();
    store.create_many(&customers, "import")?;
    let mut report = Vec::<String>::new();
    let mut row = |name: &str, ours: String, floor: String, ratio: String, goal: &str| {
        println!("{name:<52} {ours:>16} {floor:>16} {ratio:>8}  {goal}");
        report.push(format!("| {name} | {ours} | {floor} | {ratio} | {goal} |"));
    };
    println!("{:<52} {:>16} {:>16} {:>8}  goal", "figure", "ours", "floor", "ratio");

    // 1. Durable single creates of 10-line invoices.
    let n = args.creates;
    let samples: Vec<Invoice> = (0..n).map(|i| invoice(i, &customers)).collect();
    let start = Instant::now();
    let blobs: Vec<Vec<u8>> = samples.iter().map(automerge_only).collect();
    let automerge_time = start.elapsed();
    let raw_time = raw_commits(scratch.path(), &blobs)?;
    let floor_time = automerge_time + raw_time;
    let start = Instant::now();
    for i in 0..n {
        store.create_invoice(NewInvoice {
            customer: Some(customers[i % customers.len()].id),
            lines: (0..10).map(|l| line_input(i, l)).collect(),
            notes: format!("order {i} by phone"),
            ..Default::default()
        })?;
    }
    let ours = start.elapsed();
    let per_s = |count: usize, d: Duration| count as f64 / d.as_secs_f64();
    row(
        "durable single creates (10-line invoice), per s",
        format!("{:.0}/s", per_s(n, ours)),
        format!("{:.0}/s", per_s(n, floor_time)),
        format!("{:.2}", floor_time.as_secs_f64() / ours.as_secs_f64()),
        "≥ 1000/s and ratio ≥ 0.70",
    );
    let avg_bytes = blobs.iter().map(Vec::len).sum::<usize>() / blobs.len().max(1);
    row(
        "  floor parts: Automerge build+save / raw FULL commit",
        format!("{:.0}/s", per_s(n, automerge_time)),
        format!("{:.0}/s", per_s(n, raw_time)),
        "-".into(),
        &format!("{avg_bytes} B per document"),
    );

    // 2. Bulk import.
    let count = args.invoices;
    let bulk: Vec<Invoice> = (0..count).map(|i| invoice(i, &customers)).collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in bulk.chunks(count.div_ceil(threads).max(1)) {
            s.spawn(move || part.iter().map(|i| automerge_only(i).len()).sum::<usize>());
        }
    });
    let floor = start.elapsed();
    let start = Instant::now();
    store.create_many(&bulk, "import")?;
    let ours = start.elapsed();
    row(
        &format!("bulk import of {count} 10-line invoices"),
        format!("{:.1} s", ours.as_secs_f64()),
        format!("{:.1} s", floor.as_secs_f64()),
        format!("{:.2}", floor.as_secs_f64() / ours.as_secs_f64()),
        &format!("< 40 s and ratio ≥ 0.60 ({threads} threads)"),
    );
    drop(bulk);

    // 3. Lists and search.
    let total = count + n;
    let mut list = Vec::new();
    let mut search = Vec::new();
    let mut drafts = Vec::new();
    for i in 0..300 {
        let start = Instant::now();
        store.list_invoices(&InvoiceQuery {
            status: Some(daftar_domain::InvoiceStatus::Draft),
            limit: Some(50),
            ..Default::default()
        })?;
        drafts.push(start.elapsed());
        let start = Instant::now();
        let page = store.list_invoices(&InvoiceQuery { limit: Some(50), ..Default::default() })?;
        list.push(start.elapsed());
        assert_eq!(page.len(), 50);
        let text = format!("{} customer {}", WORDS[i % WORDS.len()], i % 100);
        let start = Instant::now();
        store.list_invoices(&InvoiceQuery { text: Some(text), limit: Some(50), ..Default::default() })?;
        search.push(start.elapsed());
    }
    let (list50, list99) = (percentile(&mut list, 0.5), percentile(&mut list, 0.99));
    let (search50, search99) = (percentile(&mut search, 0.5), percentile(&mut search, 0.99));
    row(
        &format!("list first 50 of {total}, p50 / p99"),
        format!("{} / {}", ms(list50), ms(list99)),
        "-".into(),
        "-".into(),
        "p99 < 10 ms",
    );
    let (drafts50, drafts99) = (percentile(&mut drafts, 0.5), percentile(&mut drafts, 0.99));
    row(
        &format!("list first 50 drafts of {total}, p50 / p99"),
        format!("{} / {}", ms(drafts50), ms(drafts99)),
        "-".into(),
        "-".into(),
        "p99 < 10 ms",
    );
    row(
        &format!("full-text search over {total}, p50 / p99"),
        format!("{} / {}", ms(search50), ms(search99)),
        "-".into(),
        "-".into(),
        "p99 < 10 ms",
    );
    // Sorted by another column than creation order: no index, the matches are sorted.
    let mut sorted = Vec::new();
    let mut deep = Vec::new();
    for i in 0..30 {
        let start = Instant::now();
        let page = store.list_invoices(&InvoiceQuery {
            sort: daftar_store::InvoiceSort::Total,
            ascending: i % 2 == 0,
            limit: Some(100),
            ..Default::default()
        })?;
        sorted.push(start.elapsed());
        assert_eq!(page.len(), 100);
        let start = Instant::now();
        store.list_invoices(&InvoiceQuery {
            sort: daftar_store::InvoiceSort::Customer,
            offset: total / 2,
            limit: Some(100),
            ..Default::default()
        })?;
        deep.push(start.elapsed());
    }
    let (sorted50, sorted99) = (percentile(&mut sorted, 0.5), percentile(&mut sorted, 0.99));
    row(
        &format!("list first 100 of {total} sorted by total, p50 / p99"),
        format!("{} / {}", ms(sorted50), ms(sorted99)),
        "-".into(),
        "-".into(),
        "p99 < 100 ms (a click)",
    );
    let (deep50, deep99) = (percentile(&mut deep, 0.5), percentile(&mut deep, 0.99));
    row(
        &format!("page at row {} of {total} sorted by customer, p50 / p99", total / 2),
        format!("{} / {}", ms(deep50), ms(deep99)),
        "-".into(),
        "-".into(),
        "p99 < 100 ms (a scroll)",
    );
    drop(store);

    // 4. Cold open in a fresh process.
    let exe = std::env::current_exe()?;
    let mut opens = Vec::new();
    let mut rss = 0;
    for _ in 0..5 {
        let out = Command::new(&exe)
            .args(["--probe", dir.to_str().unwrap(), &hex::encode(key.expose_secret_bytes())])
            .output()?;
        if !out.status.success() {
            bail!("probe failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8(out.stdout)?;
        let fields: Vec<u64> = text.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        opens.push(Duration::from_micros(fields[0]));
        rss = rss.max(fields[2]);
    }
    let open = percentile(&mut opens, 0.5);
    row(
        &format!("cold process: open {total}-invoice store + first page"),
        ms(open),
        "-".into(),
        "-".into(),
        "< 150 ms",
    );
    row("  peak RSS of that process", format!("{:.1} MB", rss as f64 / 1024.0), "-".into(), "-".into(), "< 100 MB");

    // 5. Bytes on disk.
    let disk: u64 = std::fs::read_dir(&dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    let raw_single = std::fs::metadata(scratch.path().join("raw-single.db"))?.len();
    row(
        "bytes on disk per invoice (database + WAL)",
        format!("{}", disk / total as u64),
        format!("{}", raw_single / n as u64),
        "-".into(),
        "floor: raw table of the Automerge bytes",
    );

    if let Some(path) = args.write {
        write_report(&path, &report, count, n)?;
    }
    Ok(())
}

fn write_report(path: &Path, rows: &[String], count: usize, creates: usize) -> Result<()> {
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_owned()))
            .unwrap_or_default()
    );
    let section = format!(
        "Measured {} on {machine} with\n`cargo run --release -p daftar-bench -- --invoices {count} --creates {creates} --write docs/BENCHMARKS.md`.\n\n| figure | ours | floor | floor/ours | goal |\n|---|---|---|---|---|\n{}",
        Utc::now().format("%Y-%m-%d"),
        rows.join("\n")
    );
    report::write_section(path, "store-bench", "Store", &section)?;
    Ok(())
}
