//! `daftar-backup-bench`: backing up, checking and restoring a store of many invoices, beside
//! a floor measured in the same run: a plain copy (read, write, `fsync`) of a file of the same
//! size as the backup.
//!
//! ```text
//! cargo build --release -p daftar-bench
//! "$CARGO_TARGET_DIR"/release/daftar-backup-bench [--invoices 100000] [--write docs/BENCHMARKS.md]
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use daftar_domain::{Customer, Invoice};
use daftar_store::{InvoiceQuery, KeyChoice, Store, SystemClock, Unlock};

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

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

/// The floor: copying a file of `bytes` random bytes to another on the same disk, made
/// durable like a backup is, the best of three.
fn copy_floor(dir: &Path, bytes: u64) -> Result<Duration> {
    let source = dir.join("floor-source");
    let mut file = std::fs::File::create(&source)?;
    let mut block = vec![0u8; 1 << 20];
    let random = ring::rand::SystemRandom::new();
    let mut left = bytes;
    while left > 0 {
        ring::rand::SecureRandom::fill(&random, &mut block).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    let mut best = Duration::MAX;
    for round in 0..3 {
        let target = dir.join(format!("floor-copy-{round}"));
        let started = Instant::now();
        std::fs::copy(&source, &target)?;
        std::fs::File::open(&target)?.sync_all()?;
        best = best.min(started.elapsed());
        std::fs::remove_file(&target)?;
    }
    std::fs::remove_file(&source)?;
    Ok(best)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let (mut store, _) = Store::init(&dir.join("office"), init_options("office"), Arc::new(SystemClock))?;
    // Keep every backup made here (all within one hour, which the default retention thins).
    let mut settings = store.backup_settings()?;
    settings.keep.last = 100;
    store.set_backup_settings(&settings)?;
    let customers: Vec<Customer> = (0..100).map(customer).collect();
    store.create_many(&customers, "import")?;
    // A backup with the customers only: restoring it and merging the big one into that store
    // is a merge-restore in which every invoice is missing.
    let early = daftar_backup::create(&mut store, "bench", Some(&dir.join("early")))?;
    for start in (0..args.invoices).step_by(10_000) {
        let batch: Vec<Invoice> =
            (start..(start + 10_000).min(args.invoices)).map(|n| invoice(n, &customers)).collect();
        store.create_many(&batch, "import")?;
    }
    let database_bytes = std::fs::metadata(dir.join("office/daftar.db"))?.len();
    println!("store: {} invoices, database {:.1} MB", args.invoices, database_bytes as f64 / 1e6);

    let started = Instant::now();
    let made = daftar_backup::create(&mut store, "bench", Some(&dir.join("backups")))?;
    let create = started.elapsed();
    let file = PathBuf::from(&made.file);
    let started = Instant::now();
    daftar_backup::verify(&mut store, &file, None)?;
    let verify = started.elapsed();
    let write = create.saturating_sub(verify);
    let bytes = made.bytes;
    let floor = copy_floor(dir, bytes)?;
    println!(
        "backup: {:.1} MB in {} (write {}, check {}); plain copy {}",
        bytes as f64 / 1e6,
        secs(create),
        secs(write),
        secs(verify),
        secs(floor)
    );

    let started = Instant::now();
    let unchanged = daftar_backup::merge(&mut store, &file, None)?;
    let merge_live = started.elapsed();
    anyhow::ensure!(unchanged.brought_back.is_empty(), "a merge into the live store brought documents back");

    let started = Instant::now();
    let restored = daftar_backup::restore_into(
        &file,
        &dir.join("restored"),
        None,
        Some(&store),
        KeyChoice::Passphrase(PASSPHRASE.into()),
    )?;
    let restore_into = started.elapsed();
    drop(restored);

    let mut bare = daftar_backup::restore_into(
        Path::new(&early.file),
        &dir.join("bare"),
        None,
        Some(&store),
        KeyChoice::Passphrase(PASSPHRASE.into()),
    )?
    .store;
    let started = Instant::now();
    let merged = daftar_backup::merge(&mut bare, &file, None)?;
    let merge_missing = started.elapsed();
    anyhow::ensure!(merged.brought_back.len() == args.invoices, "{} brought back", merged.brought_back.len());
    drop(bare);
    let reopened =
        Store::open(&dir.join("bare"), &Unlock { passphrase: Some(PASSPHRASE.into()) }, Arc::new(SystemClock))?;
    let listed = reopened.list_invoices(&InvoiceQuery { limit: Some(usize::MAX), ..Default::default() })?.len();
    anyhow::ensure!(listed == args.invoices, "the merged store lists {listed} invoices");

    let mut rows = Vec::new();
    let mut row = |name: &str, ours: String, floor: String, ratio: String, goal: &str| {
        println!("{name:<64} {ours:>12} {floor:>12} {ratio:>8}  {goal}");
        rows.push(format!("| {name} | {ours} | {floor} | {ratio} | {goal} |"));
    };
    println!("{:<64} {:>12} {:>12} {:>8}  goal", "figure", "ours", "floor", "ratio");
    let copy_rate = rate(bytes, floor);
    row(
        &format!("backup of {} invoices ({:.1} MB file), written", args.invoices, bytes as f64 / 1e6),
        format!("{:.1} MB/s", rate(bytes, write)),
        format!("{copy_rate:.0} MB/s"),
        format!("{:.2}", rate(bytes, write) / copy_rate),
        "",
    );
    row(
        "backup check: every chunk decrypted, every document loaded",
        format!("{:.1} MB/s", rate(bytes, verify)),
        format!("{copy_rate:.0} MB/s"),
        format!("{:.2}", rate(bytes, verify) / copy_rate),
        "",
    );
    row("`backup create` as a whole (write + full check + record)", secs(create), secs(floor), "-".into(), "");
    row(
        &format!("merge-restore of {} missing invoices (`restore --merge`)", args.invoices),
        secs(merge_missing),
        "-".into(),
        "-".into(),
        "",
    );
    row(
        "merge into the live store, nothing missing (every document compared)",
        secs(merge_live),
        "-".into(),
        "-".into(),
        "",
    );
    row("`restore --into` a new data directory", secs(restore_into), "-".into(), "-".into(), "");
    if let Some(path) = &args.write {
        let section = format!(
            "Measured {} with `cargo build --release -p daftar-bench && \"$CARGO_TARGET_DIR\"/release/daftar-backup-bench --invoices {} --write docs/BENCHMARKS.md` (10-line drafts, database {:.1} MB). The floor is a plain copy of a file of the backup's size on the same disk, `fsync`ed, best of three; the ratio is our rate over the copy's (1.00 = as fast as copying).\n\n| figure | ours | floor (file copy) | ratio | goal |\n|---|---|---|---|---|\n{}",
            chrono::Utc::now().format("%Y-%m-%d"),
            args.invoices,
            database_bytes as f64 / 1e6,
            rows.join("\n")
        );
        report::write_section(path, "backup-bench", "Backups", &section)?;
    }
    Ok(())
}
