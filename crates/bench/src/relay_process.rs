//! Starting the real `daftar-relay` next to the benchmark binaries, shared by the benchmarks.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

/// Starts the release relay on a free loopback port with its database in `dir`; returns the
/// process and its URL. The per-device rate limit is raised: the benchmarks measure throughput,
/// not the limits.
pub fn start_relay(dir: &Path) -> Result<(Child, String)> {
    let exe = std::env::current_exe()?.with_file_name("daftar-relay");
    if !exe.exists() {
        bail!("{} is missing; run `cargo build --release -p daftar-relay` first", exe.display());
    }
    let mut child = Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--database"])
        .arg(dir.join("relay.db"))
        .env("DAFTAR_RELAY_LOG", "warn")
        .env("DAFTAR_RELAY_RATE_PER_SECOND", "1000000")
        .env("DAFTAR_RELAY_RATE_BURST", "1000000")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("relay stdout")?).read_line(&mut line)?;
    let url = line.trim().strip_prefix("daftar-relay listening on ").context("relay did not start")?.to_owned();
    Ok((child, url))
}
