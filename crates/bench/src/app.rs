//! `daftar-app-bench`: start of the real desktop app to an interactive invoice list, with
//! 100,000 invoices in its store, beside a floor measured in the same run: the same app
//! starting on an empty workspace. The app reports when its first page of invoices is on screen
//! (`DAFTAR_APP_EXIT_AFTER_READY`); the time is taken from spawning the process to that report.
//!
//! ```text
//! cargo build --release -p daftar-app -p daftar-bench
//! xvfb-run -a dbus-run-session -- "$CARGO_TARGET_DIR"/release/daftar-app-bench [--invoices 100000] [--runs 5] [--write docs/BENCHMARKS.md]
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use daftar_domain::{Customer, Invoice};
use daftar_store::{Store, SystemClock};

#[path = "report.rs"]
mod report;

#[path = "fixtures.rs"]
mod fixtures;
use fixtures::{PASSPHRASE, customer, init_options, invoice};

fn workspace(dir: &Path, invoices: usize) -> Result<()> {
    let (mut store, _) = Store::init(dir, init_options("bench"), Arc::new(SystemClock))?;
    let customers: Vec<Customer> = (0..100).map(customer).collect();
    store.create_many(&customers, "import")?;
    for start in (0..invoices).step_by(10_000) {
        let batch: Vec<Invoice> = (start..(start + 10_000).min(invoices)).map(|n| invoice(n, &customers)).collect();
        store.create_many(&batch, "import")?;
    }
    Ok(())
}

/// Spawns the app on `dir` and waits for its ready report; returns the wall time.
fn start(app: &Path, dir: &Path) -> Result<Duration> {
    let started = Instant::now();
    let mut child = Command::new(app)
        .env("DAFTAR_DATA_DIR", dir)
        .env("DAFTAR_PASSPHRASE", PASSPHRASE)
        .env("DAFTAR_APP_EXIT_AFTER_READY", "1")
        .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
        .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("app stdout")?).read_line(&mut line)?;
    let elapsed = started.elapsed();
    let _ = child.wait();
    if !line.starts_with("ready") {
        bail!("the app did not report a ready list (is there a display? run under xvfb-run): {line:?}");
    }
    Ok(elapsed)
}

fn main() -> Result<()> {
    let mut invoices = 100_000;
    let mut runs = 5;
    let mut write: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--invoices" => invoices = value.parse()?,
            "--runs" => runs = value.parse()?,
            "--write" => write = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let app = std::env::current_exe()?.with_file_name("daftar-app");
    if !app.exists() {
        bail!("{} is missing; run `cargo build --release -p daftar-app` first", app.display());
    }
    let scratch = tempfile::tempdir()?;
    let (full, empty) = (scratch.path().join("full"), scratch.path().join("empty"));
    workspace(&full, invoices)?;
    workspace(&empty, 0)?;
    // One unmeasured start each, so both runs find the same warm page cache.
    start(&app, &full)?;
    start(&app, &empty)?;
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..runs {
        ours.push(start(&app, &full)?);
        floor.push(start(&app, &empty)?);
    }
    ours.sort();
    floor.sort();
    let (median, floor_median, worst) = (ours[runs / 2], floor[runs / 2], ours[runs - 1]);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let rows = [
        format!(
            "| start to an interactive invoice list, {invoices} invoices, median of {runs} | {} | {} | {:.2} | < 1.5 s |",
            ms(median),
            ms(floor_median),
            median.as_secs_f64() / floor_median.as_secs_f64()
        ),
        format!("| slowest of the {runs} starts | {} | {} | - | |", ms(worst), ms(floor[runs - 1])),
    ];
    for row in &rows {
        println!("{row}");
    }
    if let Some(path) = write {
        let section = format!(
            "Measured {} with `cargo build --release -p daftar-app -p daftar-bench && xvfb-run -a dbus-run-session -- \"$CARGO_TARGET_DIR\"/release/daftar-app-bench --invoices {invoices} --runs {runs} --write docs/BENCHMARKS.md` (2 cores, Xvfb, WebKitGTK without compositing). The floor is the same app starting on an empty workspace; time runs from spawning the process to the UI reporting its first page of invoices on screen.\n\n| figure | ours | floor (empty workspace) | ratio | goal |\n|---|---|---|---|---|\n{}",
            chrono::Utc::now().format("%Y-%m-%d"),
            rows.join("\n")
        );
        report::write_section(&path, "app-bench", "Desktop app start", &section)?;
    }
    Ok(())
}
