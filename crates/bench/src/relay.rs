//! `daftar-relay-bench`: the relay under load from many devices, beside floors measured in the
//! same run (a bare axum server on loopback answering the same requests without any work).
//!
//! ```text
//! cargo build --release -p daftar-relay -p daftar-bench
//! "$CARGO_TARGET_DIR"/release/daftar-relay-bench [--devices 20] [--pushes 200] [--batch 1] [--write docs/BENCHMARKS.md]
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "report.rs"]
mod report;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use daftar_domain::{DeviceId, DocumentId, WorkspaceId};
use daftar_keys::Secret;
use daftar_sync::relay_auth;
use daftar_sync::{DeviceSigningKey, RecoveryKey, Sealer};
use serde_json::{Value, json};
use uuid::Uuid;

#[path = "relay_process.rs"]
mod relay_process;
use relay_process::start_relay;

struct Args {
    devices: usize,
    pushes: usize,
    batch: usize,
    write: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { devices: 20, pushes: 200, batch: 1, write: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--devices" => args.devices = value.parse()?,
            "--pushes" => args.pushes = value.parse()?,
            "--batch" => args.batch = value.parse()?,
            "--write" => args.write = Some(PathBuf::from(value)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

struct Device {
    id: DeviceId,
    key: DeviceSigningKey,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn signed(
    client: &reqwest::Client,
    url: &str,
    device: &Device,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let headers = relay_auth::sign(&device.key, device.id, method, path, now(), &body);
    let builder = match method {
        "GET" => client.get(format!("{url}{path}")),
        _ => client.post(format!("{url}{path}")).header("content-type", "application/json").body(body),
    };
    builder
        .header(relay_auth::DEVICE_HEADER, headers.device)
        .header(relay_auth::TIMESTAMP_HEADER, headers.timestamp)
        .header(relay_auth::NONCE_HEADER, headers.nonce)
        .header(relay_auth::SIGNATURE_HEADER, headers.signature)
}

async fn call(
    client: &reqwest::Client,
    url: &str,
    device: &Device,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value> {
    let bytes = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body)? };
    let response = signed(client, url, device, method, path, bytes).send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{method} {path}: {status} {value}");
    }
    Ok(value)
}

fn new_device() -> Device {
    Device {
        id: DeviceId::from_uuid(Uuid::now_v7()),
        key: DeviceSigningKey::from_seed(&DeviceSigningKey::generate_seed().unwrap()),
    }
}

/// A push body of `batch` envelopes of a typical edit's size.
fn push_body(device: &Device, workspace: WorkspaceId, batch: usize) -> Vec<u8> {
    let key = Secret::new([3; 32]);
    let sealer = Sealer { workspace, sender: device.id, epoch: 1, epoch_key: &key, signing_key: &device.key };
    let envelopes: Vec<Value> = (0..batch)
        .map(|_| {
            let bytes = sealer.seal(DocumentId::from_uuid(Uuid::now_v7()), 2, &[7u8; 600]).unwrap();
            json!({ "id": Uuid::now_v7().to_string(), "data": BASE64.encode(bytes) })
        })
        .collect();
    serde_json::to_vec(&json!({ "envelopes": envelopes })).unwrap()
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `devices` clients each sending `pushes` requests built by `request`, concurrently.
async fn load<F, Fut>(devices: usize, pushes: usize, request: F) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in 0..devices {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(pushes);
            for _ in 0..pushes {
                let t = Instant::now();
                request(d).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((start.elapsed(), all))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    let (mut relay, url) = start_relay(scratch.path())?;
    let client = reqwest::Client::new();

    // The floor: an axum server on loopback that reads the body and answers at once.
    let floor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let floor_url = format!("http://{}", floor_listener.local_addr()?);
    let floor_app = axum::Router::new()
        .route(
            "/push",
            axum::routing::post(|body: axum::body::Bytes| async move { format!("{{\"seqs\":[{}]}}", body.len()) }),
        )
        .route("/ping", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(floor_listener, floor_app).await });

    // A workspace with `devices` members.
    let owner = new_device();
    let workspace = WorkspaceId::from_uuid(Uuid::now_v7());
    let recovery = RecoveryKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    call(
        &client,
        &url,
        &owner,
        "POST",
        "/v1/workspaces",
        json!({
            "workspace_id": workspace.to_string(),
            "device_id": owner.id.to_string(),
            "public_key": hex::encode(owner.key.public_key()),
            "recovery_wrapped_key": BASE64.encode([0u8; 60]),
            "recovery_public_key": hex::encode(recovery.relay_signing_key().public_key()),
        }),
    )
    .await?;
    // The owner's second factor, which invites and approvals need: enrolled and confirmed with
    // the code an authenticator would show.
    let secret = daftar_sync::mfa::TotpSecret::generate()?;
    let (_, hashes) = daftar_sync::mfa::recovery_codes()?;
    let mfa = format!("/v1/workspaces/{workspace}/mfa");
    let recovery: Vec<String> = hashes.iter().map(hex::encode).collect();
    call(&client, &url, &owner, "POST", &mfa, json!({ "secret": secret.to_base32(), "recovery": recovery })).await?;
    let code = format!("{:06}", secret.code_at((now() / 1000 / 30) as u64));
    call(&client, &url, &owner, "POST", &format!("{mfa}/verify"), json!({ "code": code })).await?;
    let mut devices = vec![owner];
    while devices.len() < args.devices {
        let token = Uuid::new_v4().as_bytes().to_vec();
        call(
            &client,
            &url,
            &devices[0],
            "POST",
            &format!("/v1/workspaces/{workspace}/invites"),
            json!({
                "token_hash": hex::encode(relay_auth::token_hash(&token)),
                "role": "clerk",
                "expires_at": now() + 3_600_000,
                "wrapped_key": BASE64.encode([0u8; 60]),
            }),
        )
        .await?;
        let device = new_device();
        call(&client, &url, &device, "POST", &format!("/v1/workspaces/{workspace}/enrol"), json!({
            "device_id": device.id.to_string(), "public_key": hex::encode(device.key.public_key()), "token": hex::encode(&token),
        }))
        .await?;
        let approve = format!("/v1/workspaces/{workspace}/devices/{}/approve", device.id);
        call(&client, &url, &devices[0], "POST", &approve, json!({})).await?;
        devices.push(device);
    }
    let devices = std::sync::Arc::new(devices);
    let path = format!("/v1/workspaces/{workspace}/envelopes");
    let body_size = push_body(&devices[0], workspace, args.batch).len();

    // 1. Push throughput, against the floor of the same requests to the bare server.
    let (floor_time, mut floor_latencies) = {
        let (client, floor_url) = (client.clone(), floor_url.clone());
        load(args.devices, args.pushes, move |_| {
            let (client, floor_url) = (client.clone(), floor_url.clone());
            async move {
                client.post(format!("{floor_url}/push")).body(vec![b'x'; body_size]).send().await?.bytes().await?;
                Ok(())
            }
        })
        .await?
    };
    let (relay_time, mut relay_latencies) = {
        let (client, url, devices, path) = (client.clone(), url.clone(), devices.clone(), path.clone());
        load(args.devices, args.pushes, move |d| {
            let (client, url, devices, path) = (client.clone(), url.clone(), devices.clone(), path.clone());
            async move {
                let body = push_body(&devices[d], workspace, args.batch);
                let response = signed(&client, &url, &devices[d], "POST", &path, body).send().await?;
                if !response.status().is_success() {
                    bail!("push failed: {}", response.status());
                }
                response.bytes().await?;
                Ok(())
            }
        })
        .await?
    };
    let envelopes = args.devices * args.pushes * args.batch;
    let mut rows = Vec::new();
    let mut row = |name: String, ours: String, floor: String, goal: &str| {
        println!("{name:<60} {ours:>22} {floor:>22}  {goal}");
        rows.push(format!("| {name} | {ours} | {floor} | {goal} |"));
    };
    println!("{:<60} {:>22} {:>22}  goal", "figure", "relay", "floor (bare HTTP)");
    row(
        format!("push throughput, {} devices × {} pushes of {} envelope(s)", args.devices, args.pushes, args.batch),
        format!("{:.0} envelopes/s", envelopes as f64 / relay_time.as_secs_f64()),
        format!("{:.0} requests/s", (args.devices * args.pushes) as f64 / floor_time.as_secs_f64()),
        "≥ 2,000 envelopes/s",
    );
    row(
        "  push latency p50 / p99".into(),
        format!("{} / {}", ms(percentile(&mut relay_latencies, 0.5)), ms(percentile(&mut relay_latencies, 0.99))),
        format!("{} / {}", ms(percentile(&mut floor_latencies, 0.5)), ms(percentile(&mut floor_latencies, 0.99))),
        "p99 < 50 ms",
    );

    // 2. Propagation: device 1 subscribed, device 0 pushes one envelope at a time.
    let subscriber = &devices[1 % devices.len()];
    let mut events =
        signed(&client, &url, subscriber, "GET", &format!("/v1/workspaces/{workspace}/events"), Vec::new())
            .send()
            .await?;
    let mut buffer = String::new();
    let mut next_seq = async || -> Result<i64> {
        loop {
            if let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                if let Some(data) = line.trim().strip_prefix("data:")
                    && let Ok(seq) = data.trim().parse()
                {
                    return Ok(seq);
                }
                continue;
            }
            let chunk = events.chunk().await?.context("event stream ended")?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let mut head = next_seq().await?;
    let mut propagation = Vec::new();
    let mut round_trips = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        client.get(format!("{floor_url}/ping")).send().await?.bytes().await?;
        round_trips.push(t.elapsed());
        let body = push_body(&devices[0], workspace, 1);
        let t = Instant::now();
        let response = signed(&client, &url, &devices[0], "POST", &path, body).send().await?;
        let pushed: Value = response.json().await?;
        let target = pushed["seqs"][0].as_i64().context("push returned no seq")?;
        while head < target {
            head = next_seq().await?;
        }
        propagation.push(t.elapsed());
    }
    row(
        "propagation of one edit, push → subscriber's event, p50 / p99".into(),
        format!("{} / {}", ms(percentile(&mut propagation, 0.5)), ms(percentile(&mut propagation, 0.99))),
        format!("{} / {}", ms(percentile(&mut round_trips, 0.5)), ms(percentile(&mut round_trips, 0.99))),
        "p50 < 50 ms, p99 < 200 ms",
    );

    // 3. The relay's peak memory.
    let status = std::fs::read_to_string(format!("/proc/{}/status", relay.id()))?;
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    row("relay peak RSS".into(), format!("{:.1} MB", rss_kib as f64 / 1024.0), "-".into(), "< 50 MB");
    let _ = relay.kill();
    let _ = relay.wait();

    if let Some(path) = args.write {
        let section = format!(
            "Measured {} with `cargo build --release -p daftar-relay -p daftar-bench && \"$CARGO_TARGET_DIR\"/release/daftar-relay-bench --devices {} --pushes {} --batch {} --write docs/BENCHMARKS.md` (relay and clients on the same 2 cores).\n\n| figure | relay | floor (bare HTTP) | goal |\n|---|---|---|---|\n{}",
            chrono::Utc::now().format("%Y-%m-%d"),
            args.devices,
            args.pushes,
            args.batch,
            rows.join("\n")
        );
        report::write_section(&path, "relay-bench", "Relay", &section)?;
    }
    Ok(())
}
