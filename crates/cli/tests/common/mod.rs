//! Drives the real `daftar` binary on a real temporary data directory. The OS keyring must be
//! reachable (the README's test command runs the suite inside a D-Bus session with an unlocked
//! gnome-keyring).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Daftar {
    pub dir: tempfile::TempDir,
    /// The key file's passphrase, for a device whose database key is in a key file (so the
    /// test can open the database itself); `None` keeps it in the OS keyring.
    pub passphrase: Option<String>,
}

impl Daftar {
    /// A fresh, not yet initialised data directory.
    pub fn new() -> Self {
        Daftar { dir: tempfile::tempdir().expect("temporary directory"), passphrase: None }
    }

    /// A fresh data directory whose commands run with `passphrase` for a key file (`init
    /// --key-file`).
    pub fn with_passphrase(passphrase: &str) -> Self {
        Daftar { passphrase: Some(passphrase.to_owned()), ..Self::new() }
    }

    /// The device's database, opened with the key from its key file.
    pub fn database(&self) -> rusqlite::Connection {
        open_database(&self.data_dir(), self.passphrase.as_deref().expect("a device made with_passphrase"))
    }

    /// A data directory with a workspace.
    pub fn init() -> Self {
        let d = Self::new();
        d.json(&[
            "init",
            "--seller-name",
            "Acme Trading",
            "--seller-name-ar",
            "شركة أكمي",
            "--vat-number",
            "300000000000003",
        ]);
        d
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self) -> Command {
        self.command_for(env!("CARGO_BIN_EXE_daftar"))
    }

    /// `program` with this device's environment (for running `daftar` under another program).
    pub fn command_for(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DAFTAR_DATA_DIR", self.data_dir()).env_remove("DAFTAR_PASSPHRASE");
        if let Some(passphrase) = &self.passphrase {
            command.env("DAFTAR_PASSPHRASE", passphrase);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("daftar runs")
    }

    /// Runs with `--json`, insists on success, and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let output = self.command().arg("--json").args(args).output().expect("daftar runs");
        assert!(output.status.success(), "daftar {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("daftar {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&output.stdout))
        })
    }

    /// Runs with `--json`, insists on failure, and returns the error object from stderr.
    pub fn fails(&self, args: &[&str]) -> Value {
        let output = self.command().arg("--json").args(args).output().expect("daftar runs");
        assert!(!output.status.success(), "daftar {args:?} should have failed");
        assert!(output.stdout.is_empty(), "a failed command prints nothing on stdout");
        let error: Value = serde_json::from_slice(&output.stderr)
            .unwrap_or_else(|_| panic!("stderr is not a JSON error: {}", String::from_utf8_lossy(&output.stderr)));
        error["error"].clone()
    }

    /// Joins with `code` and waits (`join --wait`) while `approver` approves the device, as an
    /// owner or admin would; returns what `join --json` printed once the workspace arrived.
    pub fn join_approved(&self, code: &str, approver: &Daftar) -> Value {
        let mut child = self
            .command()
            .args(["--json", "join", "--wait", code])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("daftar runs");
        let deadline = Instant::now() + STUCK;
        let pending = loop {
            let list = approver.json(&["devices", "list"]);
            if let Some(d) = list.as_array().unwrap().iter().find(|d| d["status"] == "pending") {
                break d["device_id"].as_str().unwrap().to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                let output = child.wait_with_output().unwrap();
                panic!("join ended ({status}) before approval: {}", String::from_utf8_lossy(&output.stderr));
            }
            assert!(Instant::now() < deadline, "the joining device never showed up as pending");
            std::thread::sleep(Duration::from_millis(100));
        };
        approver.json(&["devices", "approve", &pending]);
        let output = child.wait_with_output().expect("join finishes");
        assert!(output.status.success(), "join failed: {}", String::from_utf8_lossy(&output.stderr));
        let joined: Value = serde_json::from_slice(&output.stdout).expect("join printed JSON");
        assert_eq!(joined["status"], "approved", "{joined}");
        assert_eq!(joined["device_id"].as_str(), Some(pending.as_str()), "the approved device is the one that joined");
        joined
    }

    /// Sets up and confirms the second factor of this (owner or admin) device's member, as a
    /// person would with an authenticator app; the relays then let its privileged requests
    /// through for their window (300 s). Returns the secret, for later codes.
    pub fn second_factor(&self) -> daftar_sync::mfa::TotpSecret {
        let enrolment = self.json(&["mfa", "enroll", "--account", "tests"]);
        let secret = daftar_sync::mfa::TotpSecret::from_base32(enrolment["secret"].as_str().unwrap()).unwrap();
        let step = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30;
        self.json(&["mfa", "verify", &format!("{:06}", secret.code_at(step))]);
        secret
    }

    pub fn customer(&self, name: &str, vat: Option<&str>) -> String {
        let mut args = vec!["customer", "add", "--name", name];
        if let Some(vat) = vat {
            args.extend(["--vat-number", vat]);
        }
        self.json(&args)["id"].as_str().expect("customer id").to_owned()
    }
}

/// A data directory's database, opened with the key from its key file (`init --key-file`).
pub fn open_database(data_dir: &Path, passphrase: &str) -> rusqlite::Connection {
    let key = daftar_keys::key_file::open(&data_dir.join("key.json"), passphrase).unwrap();
    let conn = rusqlite::Connection::open(data_dir.join("daftar.db")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"x'{}'\"; PRAGMA cipher_hmac_algorithm = HMAC_SHA256;",
        hex::encode(key.expose_secret_bytes())
    ))
    .unwrap();
    conn
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out
}

/// How long a test waits for a process to show progress before calling it stuck: far beyond
/// any machine's speed, so reaching it is a failure, never a slow machine.
pub const STUCK: Duration = Duration::from_secs(120);

/// A process whose output lines are read as they come, each with the moment it arrived.
pub struct Watched {
    child: Child,
    lines: mpsc::Receiver<(String, Instant)>,
    /// The lines [`Watched::next`] has handed out.
    seen: Vec<String>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    /// Spawns `command`, reading complete lines of its stdout (or stderr) as they arrive; a torn
    /// last line (no newline) is never delivered: it was not acknowledged.
    pub fn spawn(command: &mut Command, from_stderr: bool) -> Watched {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("daftar starts");
        let stream: Box<dyn Read + Send> =
            if from_stderr { Box::new(child.stderr.take().unwrap()) } else { Box::new(child.stdout.take().unwrap()) };
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut stream = BufReader::new(stream);
            loop {
                let mut line = String::new();
                match stream.read_line(&mut line) {
                    Ok(n) if n > 0 && line.ends_with('\n') => {
                        if send.send((line.trim_end().to_owned(), Instant::now())).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        Watched { child, lines, seen: Vec::new(), reader }
    }

    /// The next complete line; panics (naming `what`) if the process ends or shows nothing for
    /// [`STUCK`].
    pub fn next(&mut self, what: &str) -> (String, Instant) {
        match self.lines.recv_timeout(STUCK) {
            Ok((line, at)) => {
                self.seen.push(line.clone());
                (line, at)
            }
            Err(_) => {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                panic!("{what}: no further line ({status}): {}", self.rest());
            }
        }
    }

    /// What the process wrote on the stream that is not read line by line.
    fn rest(&mut self) -> String {
        let mut rest = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut rest);
        }
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut rest);
        }
        rest
    }

    /// Sends SIGKILL, then returns how the process ended, every line it completed (read or
    /// not), and what it wrote on its other stream.
    pub fn kill(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().unwrap();
        let rest = self.rest();
        self.reader.join().unwrap();
        self.seen.extend(self.lines.try_iter().map(|(line, _)| line));
        (status, self.seen, rest)
    }
}

/// A small deterministic generator, so a failing random schedule can be replayed with its seed.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The real relay on loopback, killed when dropped.
pub struct Relay {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Relay {
    pub fn start() -> Relay {
        Relay::start_in(tempfile::tempdir().unwrap(), "127.0.0.1:0")
    }

    /// Starts a relay with extra environment (its `DAFTAR_RELAY_*` settings).
    pub fn start_with_env(env: &[(&str, &str)]) -> Relay {
        Relay::spawn(tempfile::tempdir().unwrap(), "127.0.0.1:0", env)
    }

    /// Starts the relay on `listen` with the database in `dir` (kept by the returned relay).
    pub fn start_in(dir: tempfile::TempDir, listen: &str) -> Relay {
        Relay::spawn(dir, listen, &[])
    }

    fn spawn(dir: tempfile::TempDir, listen: &str, env: &[(&str, &str)]) -> Relay {
        let binary = std::path::Path::new(env!("CARGO_BIN_EXE_daftar")).with_file_name("daftar-relay");
        assert!(
            binary.exists(),
            "{} is missing: build every binary first (cargo build --workspace --all-targets; scripts/test does)",
            binary.display()
        );
        let mut child = Command::new(binary)
            .args(["--listen", listen, "--database"])
            .arg(dir.path().join("relay.db"))
            .env("DAFTAR_RELAY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("daftar-relay listening on ").unwrap().to_owned();
        Relay { child, url, dir }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of a device as canonical JSON (sorted keys), by file name.
pub fn export(d: &Daftar) -> std::collections::BTreeMap<String, Value> {
    let out = d.dir.path().join(format!("export-{}", uuid::Uuid::now_v7()));
    d.json(&["export", "json", out.to_str().unwrap()]);
    files(&out)
        .into_iter()
        .map(|f| {
            let name = f.strip_prefix(&out).unwrap().display().to_string();
            (name, serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap())
        })
        .collect()
}

/// Two devices of one workspace on one relay, sharing a customer.
pub fn two_devices(relay: &Relay) -> (Daftar, Daftar, String) {
    let a = Daftar::new();
    a.json(&["init", "--seller-name", "Acme Trading", "--vat-number", "300000000000003"]);
    let customer = a.customer("Nour Bakery", Some("311111111111113"));
    a.json(&["relay", "add", &relay.url]);
    a.json(&["sync"]);
    a.second_factor();
    let code = a.json(&["invite", "--role", "accountant"])["code"].as_str().unwrap().to_owned();
    let b = Daftar::new();
    b.join_approved(&code, &a);
    (a, b, customer)
}
