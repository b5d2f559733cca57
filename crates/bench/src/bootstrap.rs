//! `daftar-bootstrap-bench`: a new device joining a workspace of many invoices through the real
//! relay on loopback, beside a floor measured in the same run: the same number of bytes in the
//! same number of requests from a bare HTTP server on loopback.
//!
//! ```text
//! cargo build --release -p daftar-relay -p daftar-bench
//! "$CARGO_TARGET_DIR"/release/daftar-bootstrap-bench [--invoices 100000] [--write docs/BENCHMARKS.md]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use daftar_domain::{Customer, Invoice};
use daftar_store::{InvoiceQuery, KeyChoice, Store, SystemClock};

#[path = "relay_process.rs"]
mod relay_process;
use relay_process::start_relay;

#[path = "report.rs"]
mod report;

#[path = "fixtures.rs"]
mod fixtures;
use fixtures::{PASSPHRASE, customer, init_options, invoice};

struct Args {
    invoices: usize,
    write: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { invoices: 100_000, write: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--invoices" => args.invoices = value.parse()?,
            "--write" => args.write = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The floor: `parts` GETs of `part_bytes` each from a bare axum server on loopback.
fn floor(parts: usize, part_bytes: usize) -> Result<Duration> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let body = axum::body::Bytes::from(vec![0x5A; part_bytes]);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route("/part", axum::routing::get(move || std::future::ready(body.clone())));
    runtime.spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    let mut received = 0;
    for _ in 0..parts {
        received += client.get(format!("http://{address}/part")).send()?.bytes()?.len();
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(received == parts * part_bytes, "the floor server sent {received} bytes");
    Ok(elapsed)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Device B syncs live (`watch`, on its own thread); device A edits an invoice and syncs, `count`
/// times. Each sample is from A's edit to B having applied it. Sorted.
fn propagation(a: &mut Store, b: Store, count: usize) -> Result<Vec<Duration>> {
    let (applied, heard) = std::sync::mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        let mut b = b;
        let _ = daftar_sync_driver::watch(&mut b, |event| {
            if let daftar_sync_driver::WatchEvent::Synced { relays } = event
                && relays.iter().any(|r| r.applied > 0)
            {
                let _ = applied.send(Instant::now());
            }
        });
    });
    let id: daftar_domain::InvoiceId =
        a.list_invoices(&InvoiceQuery { limit: Some(1), ..Default::default() })?[0].id.parse()?;
    // Let B's subscription open and its first round finish.
    std::thread::sleep(Duration::from_millis(500));
    while heard.try_recv().is_ok() {}
    let mut samples = Vec::with_capacity(count);
    for n in 0..count {
        let started = Instant::now();
        a.edit_invoice(id, vec![daftar_store::InvoiceEdit::Notes(format!("edit {n}"))])?;
        daftar_sync_driver::sync_once(a)?;
        let at = heard.recv_timeout(Duration::from_secs(10)).context("device B never heard of the edit")?;
        samples.push(at - started);
        std::thread::sleep(Duration::from_millis(20));
        while heard.try_recv().is_ok() {}
    }
    samples.sort();
    Ok(samples)
}

/// The floor for propagation: bare HTTP round trips on loopback. Sorted.
fn round_trip(count: usize) -> Result<Vec<Duration>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let app = axum::Router::new().route("/ping", axum::routing::get(|| std::future::ready("ok")));
    runtime.spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::blocking::Client::new();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        client.get(format!("http://{address}/ping")).send()?.bytes()?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    let (mut relay, url) = start_relay(scratch.path())?;
    let result = run(&args, scratch.path(), &url);
    let _ = relay.kill();
    let _ = relay.wait();
    result
}

fn run(args: &Args, scratch: &Path, url: &str) -> Result<()> {
    // The office: one device with many invoices, synced to the relay.
    let (mut a, _) = Store::init(&scratch.join("a"), init_options("office"), Arc::new(SystemClock))?;
    let customers: Vec<Customer> = (0..100).map(customer).collect();
    a.create_many(&customers, "import")?;
    for start in (0..args.invoices).step_by(10_000) {
        let batch: Vec<Invoice> =
            (start..(start + 10_000).min(args.invoices)).map(|n| invoice(n, &customers)).collect();
        a.create_many(&batch, "import")?;
    }
    daftar_sync_driver::add_relay(&mut a, url)?;
    let started = Instant::now();
    let reports = daftar_sync_driver::sync_once(&mut a)?;
    let upload = started.elapsed();
    let snapshot = match reports[0].snapshot.clone() {
        Some(made) => made,
        None => daftar_sync_driver::make_snapshots(&mut a)?.remove(0),
    };
    println!(
        "office: {} envelopes pushed in {}; snapshot of {} documents, {} parts, {:.1} MB",
        reports[0].pushed,
        secs(upload),
        snapshot.documents,
        snapshot.parts,
        snapshot.bytes as f64 / 1e6
    );
    // A few changes after the snapshot: the tail a new device pulls.
    let tail: Vec<Invoice> = (0..50).map(|n| invoice(args.invoices + n, &customers)).collect();
    a.create_many(&tail, "import")?;
    daftar_sync_driver::sync_once(&mut a)?;

    // The key file's KDF is part of setting up any new data directory; measured alone.
    let started = Instant::now();
    Store::init(&scratch.join("kdf"), init_options("kdf"), Arc::new(SystemClock))?;
    let set_up_alone = started.elapsed();

    // Owners need a second factor for invites and approvals: set up and confirmed as a person
    // would, with the code an authenticator app would show.
    let enrolment = daftar_sync_driver::mfa_enroll(&a, "bench", None)?;
    let secret = daftar_sync::mfa::TotpSecret::from_base32(&enrolment.secret).context("the enrolment's secret")?;
    let step = chrono::Utc::now().timestamp() as u64 / 30;
    daftar_sync_driver::mfa_verify(&a, &format!("{:06}", secret.code_at(step)))?;
    let invite = daftar_sync_driver::invite(&a, "clerk", None, 24, chrono::Utc::now().timestamp_millis(), None)?;
    // Joining and the first sync after approval are timed; the owner's approval between them
    // (a person's decision) is not.
    let started = Instant::now();
    let mut joined =
        daftar_sync_driver::join(&scratch.join("b"), &invite.code, KeyChoice::Passphrase(PASSPHRASE.into()))?;
    let enrolled = started.elapsed();
    daftar_sync_driver::approve(&mut a, joined.store.info().device_id, Some("bench"), None)?;
    let started = Instant::now();
    let first =
        daftar_sync_driver::complete_join(&mut joined.store)?.context("the new device had nothing to finish")?;
    let bootstrap = enrolled + started.elapsed();
    joined.report = first.report;
    let taken = first.snapshot.context("the new device did not start from the snapshot")?;
    let listed = joined.store.list_invoices(&InvoiceQuery { limit: Some(usize::MAX), ..Default::default() })?.len();
    anyhow::ensure!(listed == args.invoices + 50, "the new device lists {listed} invoices");
    let bytes = taken.bytes + joined.report.pulled_bytes;
    println!(
        "new device: snapshot {} documents in {} parts ({:.1} MB), then {} envelopes of the tail, in {}",
        taken.documents,
        taken.parts,
        taken.bytes as f64 / 1e6,
        joined.report.pulled,
        secs(bootstrap)
    );
    let propagation = propagation(&mut a, joined.store, 100)?;
    let rtt = round_trip(200)?;
    let parts = taken.parts as usize + 1;
    let floor = floor(parts, bytes.div_ceil(parts))?;
    let mut rows = Vec::new();
    let mut row = |name: &str, ours: String, floor: String, ratio: String, goal: &str| {
        println!("{name:<56} {ours:>12} {floor:>12} {ratio:>10}  {goal}");
        rows.push(format!("| {name} | {ours} | {floor} | {ratio} | {goal} |"));
    };
    println!("{:<56} {:>12} {:>12} {:>10}  goal", "figure", "ours", "floor", "ratio");
    row(
        &format!("bootstrap of a new device, {} invoices, snapshot + tail", args.invoices),
        secs(bootstrap),
        secs(floor),
        format!("{:.0}×", bootstrap.as_secs_f64() / floor.as_secs_f64()),
        "< 20 s",
    );
    row("of which: setting up an empty data directory (key-file KDF)", secs(set_up_alone), "-".into(), "-".into(), "");
    row(
        &format!("bytes moved ({} parts + tail)", taken.parts),
        format!("{:.1} MB", taken.bytes as f64 / 1e6),
        format!("{:.1} MB", (bytes / parts * parts) as f64 / 1e6),
        "-".into(),
        "",
    );
    row(
        &format!("initial upload of {} envelopes from the office, with its snapshot", reports[0].pushed),
        secs(upload),
        "-".into(),
        "-".into(),
        "",
    );
    row(
        "propagation of one edit, device A → relay → device B (live), p50",
        ms(propagation[propagation.len() / 2]),
        ms(rtt[rtt.len() / 2]),
        format!("{:.0}×", propagation[propagation.len() / 2].as_secs_f64() / rtt[rtt.len() / 2].as_secs_f64()),
        "< 50 ms",
    );
    row(
        "propagation of one edit, p99",
        ms(propagation[propagation.len() * 99 / 100]),
        ms(rtt[rtt.len() * 99 / 100]),
        format!(
            "{:.0}×",
            propagation[propagation.len() * 99 / 100].as_secs_f64() / rtt[rtt.len() * 99 / 100].as_secs_f64()
        ),
        "< 200 ms",
    );
    if let Some(path) = &args.write {
        let section = format!(
            "Measured {} with `cargo build --release -p daftar-relay -p daftar-bench && \"$CARGO_TARGET_DIR\"/release/daftar-bootstrap-bench --invoices {} --write docs/BENCHMARKS.md` (relay and devices on the same 2 cores). The floor moves the same bytes in the same number of requests from a bare axum server on loopback; the ratio is how many times longer the bootstrap takes.\n\n| figure | ours | floor (bare HTTP) | ratio | goal |\n|---|---|---|---|---|\n{}",
            chrono::Utc::now().format("%Y-%m-%d"),
            args.invoices,
            rows.join("\n")
        );
        report::write_section(path, "bootstrap-bench", "Bootstrap of a new device", &section)?;
    }
    Ok(())
}
