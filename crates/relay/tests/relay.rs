//! The real `daftar-relay` binary on 127.0.0.1, driven over HTTP with signed requests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use daftar_domain::{DeviceId, DocumentId, WorkspaceId};
use daftar_keys::Secret;
use daftar_sync::relay_auth;
use daftar_sync::{DeviceSigningKey, Sealer};
use reqwest::blocking::Client;
use serde_json::{Value, json};
use uuid::Uuid;

struct Relay {
    child: Child,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Relay {
    fn start() -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("relay.db");
        let mut relay = Relay::start_on(&database);
        relay._dir = Some(dir);
        relay
    }

    fn start_on(database: &std::path::Path) -> Relay {
        Relay::start_with(database, &[])
    }

    fn start_with(database: &std::path::Path, env: &[(&str, &str)]) -> Relay {
        Relay::start_args(database, env, &[])
    }

    /// These tests exercise the protocol with the second factor off (the relay's default is on):
    /// it has a test of its own below, and the CLI tests run with it on.
    fn start_args(database: &std::path::Path, env: &[(&str, &str)], args: &[&std::ffi::OsStr]) -> Relay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_daftar-relay"))
            .args(["--listen", "127.0.0.1:0", "--database"])
            .arg(database)
            .args(args)
            .env("DAFTAR_RELAY_LOG", "warn")
            .env("DAFTAR_RELAY_REQUIRE_SECOND_FACTOR", "false")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("relay starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("daftar-relay listening on ").expect("listening line").to_owned();
        Relay { child, url, _dir: None }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Device {
    id: DeviceId,
    key: DeviceSigningKey,
    http: Client,
    url: String,
}

impl Device {
    fn new(relay: &Relay) -> Device {
        Device {
            id: DeviceId::from_uuid(Uuid::now_v7()),
            key: DeviceSigningKey::from_seed(&DeviceSigningKey::generate_seed().unwrap()),
            http: Client::new(),
            url: relay.url.clone(),
        }
    }

    fn signed(&self, method: &str, path: &str, body: &[u8], timestamp: i64) -> reqwest::blocking::RequestBuilder {
        let headers = relay_auth::sign(&self.key, self.id, method, path, timestamp, body);
        let url = format!("{}{path}", self.url);
        let builder = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url).body(body.to_vec()),
            _ => self.http.post(url).header("content-type", "application/json").body(body.to_vec()),
        };
        builder
            .header(relay_auth::DEVICE_HEADER, headers.device)
            .header(relay_auth::TIMESTAMP_HEADER, headers.timestamp)
            .header(relay_auth::NONCE_HEADER, headers.nonce)
            .header(relay_auth::SIGNATURE_HEADER, headers.signature)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
        let response = self.signed(method, path, &bytes, now()).send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// [`Device::call`] with a one-time code in the second-factor header.
    fn call_with_totp(&self, method: &str, path: &str, body: Value, code: &str) -> (u16, Value) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let response = self.signed(method, path, &bytes, now()).header(relay_auth::TOTP_HEADER, code).send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn public_hex(&self) -> String {
        hex::encode(self.key.public_key())
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn create_workspace(owner: &Device) -> WorkspaceId {
    let workspace = WorkspaceId::from_uuid(Uuid::now_v7());
    let (status, body) = owner.call(
        "POST",
        "/v1/workspaces",
        Some(json!({
            "workspace_id": workspace.to_string(),
            "device_id": owner.id.to_string(),
            "public_key": owner.public_hex(),
            "recovery_wrapped_key": BASE64.encode(b"opaque wrapped key"),
            "recovery_public_key": hex::encode(recovery_key_of(workspace).relay_signing_key().public_key()),
        })),
    );
    assert_eq!(status, 201, "{body}");
    workspace
}

fn envelope(device: &Device, workspace: WorkspaceId, change: &[u8]) -> Value {
    let epoch_key = Secret::new([5; 32]);
    let bytes = Sealer { workspace, sender: device.id, epoch: 1, epoch_key: &epoch_key, signing_key: &device.key }
        .seal(DocumentId::from_uuid(Uuid::now_v7()), 2, change)
        .unwrap();
    json!({ "id": Uuid::now_v7().to_string(), "data": BASE64.encode(bytes) })
}

fn invite(owner: &Device, workspace: WorkspaceId, role: &str) -> String {
    let token = Uuid::new_v4().as_bytes().to_vec();
    let (status, body) = owner.call(
        "POST",
        &format!("/v1/workspaces/{workspace}/invites"),
        Some(json!({
            "token_hash": hex::encode(relay_auth::token_hash(&token)),
            "role": role,
            "expires_at": now() + 86_400_000,
            "wrapped_key": BASE64.encode(b"workspace key wrapped with the invite secret"),
        })),
    );
    assert_eq!(status, 201, "{body}");
    hex::encode(token)
}

fn enrol(device: &Device, workspace: WorkspaceId, token: &str) -> (u16, Value) {
    device.call(
        "POST",
        &format!("/v1/workspaces/{workspace}/enrol"),
        Some(json!({ "device_id": device.id.to_string(), "public_key": device.public_hex(), "token": token })),
    )
}

#[test]
fn push_is_idempotent_and_pull_pages_through_the_log() {
    let relay = Relay::start();
    assert_eq!(reqwest::blocking::get(format!("{}/healthz", relay.url)).unwrap().text().unwrap(), "ok");
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let path = format!("/v1/workspaces/{workspace}/envelopes");
    let batch: Vec<Value> = (0..5).map(|i| envelope(&owner, workspace, format!("change {i}").as_bytes())).collect();
    let (status, pushed) = owner.call("POST", &path, Some(json!({ "envelopes": batch })));
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["seqs"], json!([1, 2, 3, 4, 5]));
    let (_, again) = owner.call("POST", &path, Some(json!({ "envelopes": batch })));
    assert_eq!(again["seqs"], json!([1, 2, 3, 4, 5]), "an envelope pushed twice is stored once");

    let (_, page) = owner.call("GET", &format!("{path}?after=0&limit=2"), None);
    assert_eq!(page["envelopes"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], 2);
    let (_, rest) = owner.call("GET", &format!("{path}?after=2"), None);
    let seqs: Vec<i64> = rest["envelopes"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(rest["envelopes"][0]["data"], batch[2]["data"], "bytes come back unchanged");
    let (status, body) =
        owner.call("POST", &path, Some(json!({ "envelopes": [ { "id": batch[0]["id"], "data": batch[1]["data"] } ] })));
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("envelope_conflict")),
        "an id cannot be reused for other bytes"
    );
}

/// Enrols `device` with an invite for `role` and has `owner` approve it.
fn admit(owner: &Device, device: &Device, workspace: WorkspaceId, role: &str) {
    let (status, body) = enrol(device, workspace, &invite(owner, workspace, role));
    assert_eq!((status, body["status"].as_str()), (201, Some("pending")), "{body}");
    let (status, body) =
        owner.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/approve", device.id), Some(json!({})));
    assert_eq!(status, 204, "{body}");
}

#[test]
fn invites_enrol_once_and_roles_are_enforced() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let token = invite(&owner, workspace, "clerk");
    let clerk = Device::new(&relay);
    let (status, enrolled) = enrol(&clerk, workspace, &token);
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(enrolled["role"], "clerk");
    assert_eq!(
        BASE64.decode(enrolled["wrapped_key"].as_str().unwrap()).unwrap(),
        b"workspace key wrapped with the invite secret"
    );
    let late = Device::new(&relay);
    assert_eq!(enrol(&late, workspace, &token).1["code"], "invite_invalid", "a token works once");
    assert_eq!(enrol(&late, workspace, &hex::encode([1u8; 16])).1["code"], "invite_invalid");

    // Enrolled but pending: the relay serves it nothing and takes nothing from it.
    let envelopes = format!("/v1/workspaces/{workspace}/envelopes");
    for (method, path, body) in [
        ("GET", envelopes.clone(), None),
        ("POST", envelopes.clone(), Some(json!({ "envelopes": [envelope(&clerk, workspace, b"x")] }))),
        ("GET", format!("/v1/workspaces/{workspace}/events"), None),
        ("GET", format!("/v1/workspaces/{workspace}/snapshot"), None),
        ("GET", format!("/v1/workspaces/{workspace}/devices"), None),
        ("GET", format!("/v1/workspaces/{workspace}/recovery"), None),
    ] {
        let (status, answer) = clerk.call(method, &path, body);
        assert_eq!((status, answer["code"].as_str()), (403, Some("pending_approval")), "{method} {path}: {answer}");
    }
    let status_path = format!("/v1/workspaces/{workspace}/status");
    assert_eq!(clerk.call("GET", &status_path, None).1["status"], "pending", "it may ask after itself");
    // And leave its join proof, once, which the owner then sees beside its keys.
    let proof_path = format!("/v1/workspaces/{workspace}/join-proof");
    assert_eq!(clerk.call("PUT", &proof_path, Some(json!({ "proof": "1:abcd" }))).0, 204);
    let again = clerk.call("PUT", &proof_path, Some(json!({ "proof": "1:ef01" })));
    assert_eq!((again.0, again.1["code"].as_str()), (409, Some("join_proof_exists")), "{again:?}");
    let stranger = late.call("PUT", &proof_path, Some(json!({ "proof": "1:abcd" })));
    assert_eq!(stranger.1["code"], "not_a_member", "only enrolled devices leave one");
    let devices = owner.call("GET", &format!("/v1/workspaces/{workspace}/devices"), None).1;
    let listed = devices.as_array().unwrap().iter().find(|d| d["device_id"] == clerk.id.to_string()).unwrap();
    assert_eq!(listed["join_proof"], "1:abcd", "{devices}");
    let (status, _) =
        owner.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/approve", clerk.id), Some(json!({})));
    assert_eq!(status, 204);
    assert_eq!(
        clerk.call("GET", &status_path, None).1,
        json!({ "device_id": clerk.id, "role": "clerk", "status": "approved" })
    );

    let (status, _) = clerk.call("POST", &envelopes, Some(json!({ "envelopes": [envelope(&clerk, workspace, b"x")] })));
    assert_eq!(status, 200, "clerks push");
    let late_proof = clerk.call("PUT", &proof_path, Some(json!({ "proof": "1:abcd" })));
    assert_eq!(late_proof.0, 409, "an approved device leaves no proof: {late_proof:?}");
    let snapshot = format!("/v1/workspaces/{workspace}/snapshot?seq=0&part=0&parts=1");
    let (status, body) = clerk.call("PUT", &snapshot, Some(json!("a snapshot")));
    assert_eq!((status, body["code"].as_str()), (403, Some("role")), "but only owners and admins make snapshots");
    let (status, body) = clerk.call(
        "POST",
        &format!("/v1/workspaces/{workspace}/invites"),
        Some(json!({
            "token_hash": hex::encode([0u8; 32]), "role": "admin", "expires_at": now() + 1000, "wrapped_key": ""
        })),
    );
    assert_eq!((status, body["code"].as_str()), (403, Some("role")), "clerks cannot invite");

    let viewer = Device::new(&relay);
    admit(&owner, &viewer, workspace, "viewer");
    let (status, body) =
        viewer.call("POST", &envelopes, Some(json!({ "envelopes": [envelope(&viewer, workspace, b"x")] })));
    assert_eq!((status, body["code"].as_str()), (403, Some("role")), "viewers cannot push");
    let (status, _) = viewer.call("GET", &envelopes, None);
    assert_eq!(status, 200, "viewers read");

    let (status, _) =
        owner.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/revoke", clerk.id), Some(json!({})));
    assert_eq!(status, 204);
    let (status, body) = clerk.call("GET", &envelopes, None);
    assert_eq!((status, body["code"].as_str()), (403, Some("revoked")), "a revoked device is refused at once");
    let (_, devices) = owner.call("GET", &format!("/v1/workspaces/{workspace}/devices"), None);
    let revoked: Vec<bool> = devices.as_array().unwrap().iter().map(|d| d["revoked"].as_bool().unwrap()).collect();
    assert_eq!(revoked, [false, true, false]);
}

#[test]
fn only_owners_and_admins_approve_and_change_roles_and_admins_only_below_admin() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let (admin, clerk) = (Device::new(&relay), Device::new(&relay));
    admit(&owner, &admin, workspace, "admin");
    admit(&owner, &clerk, workspace, "clerk");
    let (newcomer, second_admin) = (Device::new(&relay), Device::new(&relay));
    enrol(&newcomer, workspace, &invite(&owner, workspace, "accountant"));
    enrol(&second_admin, workspace, &invite(&owner, workspace, "admin"));
    let approve = |by: &Device, device: &Device| {
        by.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/approve", device.id), Some(json!({})))
    };
    let set_role = |by: &Device, device: &Device, role: &str| {
        by.call(
            "POST",
            &format!("/v1/workspaces/{workspace}/devices/{}/role", device.id),
            Some(json!({ "role": role })),
        )
    };
    let code = |answer: (u16, Value)| (answer.0, answer.1["code"].as_str().map(str::to_owned));

    assert_eq!(code(approve(&clerk, &newcomer)), (403, Some("role".into())), "clerks do not approve");
    assert_eq!(code(approve(&admin, &second_admin)), (403, Some("role".into())), "admins do not approve admins");
    assert_eq!(approve(&admin, &newcomer).0, 204, "admins approve the roles below theirs");
    assert_eq!(approve(&admin, &newcomer).0, 204, "approving twice is harmless");
    assert_eq!(approve(&owner, &second_admin).0, 204);
    let unknown = Device::new(&relay);
    assert_eq!(code(approve(&owner, &unknown)), (404, Some("not_found".into())));
    let late = Device::new(&relay);
    enrol(&late, workspace, &invite(&owner, workspace, "clerk"));
    owner.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/revoke", late.id), Some(json!({})));
    assert_eq!(code(approve(&owner, &late)), (409, Some("revoked".into())), "a revoked device stays out");

    assert_eq!(code(set_role(&clerk, &clerk, "admin")), (403, Some("role".into())), "a clerk cannot raise itself");
    assert_eq!(set_role(&admin, &clerk, "accountant").0, 204, "admins change roles below admin");
    assert_eq!(code(set_role(&admin, &clerk, "admin")), (403, Some("role".into())), "only owners make admins");
    assert_eq!(code(set_role(&admin, &second_admin, "clerk")), (403, Some("role".into())), "or unmake them");
    assert_eq!(set_role(&owner, &clerk, "admin").0, 204);
    let (_, devices) = owner.call("GET", &format!("/v1/workspaces/{workspace}/devices"), None);
    let clerk_now =
        devices.as_array().unwrap().iter().find(|d| d["device_id"] == clerk.id.to_string()).unwrap().clone();
    assert_eq!((clerk_now["role"].as_str(), clerk_now["approved"].as_bool()), (Some("admin"), Some(true)));
    assert_eq!(
        code(set_role(&owner, &clerk, "chief")),
        (400, Some("bad_request".into())),
        "an unknown role is refused"
    );
}

#[test]
fn workspaces_are_isolated_and_requests_must_be_signed_fresh_and_once() {
    let relay = Relay::start();
    let (alice, bob) = (Device::new(&relay), Device::new(&relay));
    let (a, b) = (create_workspace(&alice), create_workspace(&bob));
    for path in [format!("/v1/workspaces/{b}/envelopes"), format!("/v1/workspaces/{b}/devices")] {
        let (status, body) = alice.call("GET", &path, None);
        assert_eq!((status, body["code"].as_str()), (403, Some("not_a_member")), "{path}");
    }
    let (status, body) = alice.call(
        "POST",
        &format!("/v1/workspaces/{b}/envelopes"),
        Some(json!({ "envelopes": [envelope(&alice, b, b"x")] })),
    );
    assert_eq!((status, body["code"].as_str()), (403, Some("not_a_member")));
    let guessed = WorkspaceId::from_uuid(Uuid::now_v7());
    assert_eq!(alice.call("GET", &format!("/v1/workspaces/{guessed}/envelopes"), None).1["code"], "not_a_member");

    let path = format!("/v1/workspaces/{a}/envelopes");
    let unsigned = reqwest::blocking::get(format!("{}{path}", relay.url)).unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);
    let stale = alice.signed("GET", &path, b"", now() - 10 * 60 * 1000).send().unwrap();
    assert_eq!(stale.json::<Value>().unwrap()["code"], "clock_skew");
    let request = alice.signed("GET", &path, b"", now());
    let replay = request.try_clone().unwrap();
    assert_eq!(request.send().unwrap().status().as_u16(), 200);
    assert_eq!(replay.send().unwrap().json::<Value>().unwrap()["code"], "replayed");
    let ts = now();
    let forged_headers = relay_auth::sign(&bob.key, alice.id, "GET", &path, ts, b"");
    let forged = Client::new()
        .get(format!("{}{path}", relay.url))
        .header(relay_auth::DEVICE_HEADER, forged_headers.device)
        .header(relay_auth::TIMESTAMP_HEADER, forged_headers.timestamp)
        .header(relay_auth::NONCE_HEADER, forged_headers.nonce)
        .header(relay_auth::SIGNATURE_HEADER, forged_headers.signature)
        .send()
        .unwrap();
    assert_eq!(forged.json::<Value>().unwrap()["code"], "bad_signature", "bob cannot sign as alice");

    let (status, body) = alice.call("POST", &path, Some(json!({ "envelopes": [envelope(&bob, a, b"x")] })));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("sender_mismatch")),
        "a device pushes only its own envelopes"
    );
    let (status, body) = alice.call(
        "POST",
        &path,
        Some(
            json!({ "envelopes": [ { "id": Uuid::now_v7().to_string(), "data": BASE64.encode(b"not an envelope") } ] }),
        ),
    );
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_envelope")));
    let big = vec![b'x'; 9 * 1024 * 1024];
    let too_large = alice.signed("POST", &path, &big, now()).send().unwrap();
    assert_eq!(too_large.status().as_u16(), 413, "bodies over the limit are refused");
}

#[test]
fn a_relay_killed_mid_push_loses_nothing_and_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("relay.db");
    let mut relay = Relay::start_on(&database);
    let mut owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let path = format!("/v1/workspaces/{workspace}/envelopes");
    let batches: Vec<Vec<Value>> = (0..20)
        .map(|b| (0..10).map(|i| envelope(&owner, workspace, format!("{b}-{i}").as_bytes())).collect())
        .collect();
    for (n, batch) in batches.iter().enumerate() {
        if n % 5 == 4 {
            // Send a push and kill the relay with SIGKILL while it may be writing it.
            let request =
                owner.signed("POST", &path, &serde_json::to_vec(&json!({ "envelopes": batch })).unwrap(), now());
            let pending = std::thread::spawn(move || request.send().map(|r| r.status().as_u16()).ok());
            std::thread::sleep(std::time::Duration::from_millis(2));
            relay.child.kill().unwrap();
            relay.child.wait().unwrap();
            let _ = pending.join();
            relay = Relay::start_on(&database);
            owner.url = relay.url.clone();
            continue;
        }
        assert_eq!(owner.call("POST", &path, Some(json!({ "envelopes": batch }))).0, 200);
    }
    // The client retries everything it is unsure of; the relay must store each envelope once.
    for batch in &batches {
        let (status, body) = owner.call("POST", &path, Some(json!({ "envelopes": batch })));
        assert_eq!(status, 200, "{body}");
    }
    let (_, all) = owner.call("GET", &format!("{path}?limit=5000"), None);
    let stored = all["envelopes"].as_array().unwrap();
    let seqs: Vec<i64> = stored.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "every envelope once, in order, without gaps");
    let mut ids: Vec<&str> = stored.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200);
}

#[test]
fn a_live_subscriber_hears_of_a_push_at_once() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let events = owner.signed("GET", &format!("/v1/workspaces/{workspace}/events"), b"", now()).send().unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let mut lines = BufReader::new(events).lines();
    let mut next_data = || loop {
        let line = lines.next().expect("stream open").unwrap();
        if let Some(data) = line.strip_prefix("data:") {
            return data.trim().to_owned();
        }
    };
    assert_eq!(next_data(), "0", "the first event is the current head");
    let started = std::time::Instant::now();
    let (status, _) = owner.call(
        "POST",
        &format!("/v1/workspaces/{workspace}/envelopes"),
        Some(json!({ "envelopes": [envelope(&owner, workspace, b"x")] })),
    );
    assert_eq!(status, 200);
    assert_eq!(next_data(), "1");
    // The relay sends head data only when something is stored (between pushes only keep-alive
    // comments), so the event arriving at all shows the push woke the subscriber; the bound is
    // far above any machine's latency and only catches a subscriber left waiting.
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(30), "push to event took {elapsed:?}");
    eprintln!("live event: {elapsed:?} after the push was sent");
}

#[test]
fn snapshots_keep_the_newest_complete_one_and_stay_within_the_log() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let path = format!("/v1/workspaces/{workspace}/snapshot");
    let put = |query: &str, bytes: &[u8]| {
        let request = format!("{path}?{query}");
        let response = owner.signed("PUT", &request, bytes, now()).send().unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    let get = |query: &str| {
        let request = format!("{path}{query}");
        let response = owner.signed("GET", &request, b"", now()).send().unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().unwrap().to_vec())
    };
    assert_eq!(owner.call("GET", &path, None).1["code"], "no_snapshot");
    let batch: Vec<Value> = (0..3).map(|i| envelope(&owner, workspace, &[i])).collect();
    owner.call("POST", &format!("/v1/workspaces/{workspace}/envelopes"), Some(json!({ "envelopes": batch })));
    assert_eq!(put("seq=2", b"snapshot at 2"), (200, json!({ "kept": true, "stored": true })));
    assert_eq!(put("seq=1", b"older"), (200, json!({ "kept": false, "stored": false })), "an older one never wins");
    assert_eq!(put("seq=9", b"future").1["code"], "bad_request", "a snapshot cannot claim more than the log holds");
    assert_eq!(put("seq=3&part=2&parts=2", b"x").1["code"], "bad_request", "parts are numbered from 0");
    let (status, headers, bytes) = get("");
    assert_eq!((status, bytes.as_slice()), (200, b"snapshot at 2".as_slice()));
    assert_eq!(headers["x-daftar-snapshot-seq"], "2");
    assert_eq!(headers["x-daftar-snapshot-parts"], "1");

    // A snapshot in two parts replaces the current one only when both have arrived.
    assert_eq!(put("seq=3&part=1&parts=2", b"second half"), (200, json!({ "kept": false, "stored": true })));
    assert_eq!(get("").2, b"snapshot at 2", "half a snapshot is never served");
    assert_eq!(put("seq=3&part=0&parts=2", b"first half"), (200, json!({ "kept": true, "stored": true })));
    let (_, headers, bytes) = get("?seq=3&part=1");
    assert_eq!(
        (bytes.as_slice(), &headers["x-daftar-snapshot-parts"]),
        (b"second half".as_slice(), &"2".parse().unwrap())
    );
    assert_eq!(get("?seq=3").2, b"first half");
    assert_eq!(owner.call("GET", &format!("{path}?manifest=true"), None).1, json!({ "seq": 3, "parts": 2 }));
    let (status, _, body) = get("?seq=2&part=0");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("snapshot_replaced"), "parts of two snapshots never mix");
}

#[test]
fn each_device_is_rate_limited_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        &dir.path().join("relay.db"),
        // One token back every 1,000 s: the seven calls below meet an empty bucket however
        // slowly this machine makes them.
        &[("DAFTAR_RELAY_RATE_PER_SECOND", "0.001"), ("DAFTAR_RELAY_RATE_BURST", "5")],
    );
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let path = format!("/v1/workspaces/{workspace}/devices");
    let statuses: Vec<u16> = (0..7).map(|_| owner.call("GET", &path, None).0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    assert_eq!(owner.call("GET", &path, None).1["code"], "rate_limited");
    let other = Device::new(&relay);
    let other_workspace = create_workspace(&other);
    assert_eq!(
        other.call("GET", &format!("/v1/workspaces/{other_workspace}/devices"), None).0,
        200,
        "limits are per device"
    );
}

/// Each test workspace's recovery key, derived deterministically so tests can recover.
fn recovery_key_of(workspace: WorkspaceId) -> daftar_sync::RecoveryKey {
    RECOVERY.with(|keys| {
        let printable = keys
            .borrow_mut()
            .entry(workspace)
            .or_insert_with(|| daftar_sync::RecoveryKey::generate().unwrap().expose_printable())
            .clone();
        daftar_sync::RecoveryKey::parse(&printable).unwrap()
    })
}

thread_local! {
    static RECOVERY: std::cell::RefCell<std::collections::HashMap<WorkspaceId, String>> = Default::default();
}

#[test]
fn the_recovery_key_enrols_a_new_owner_when_every_device_is_lost() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let path = format!("/v1/workspaces/{workspace}/envelopes");
    owner.call("POST", &path, Some(json!({ "envelopes": [envelope(&owner, workspace, b"invoice")] })));

    let replacement = Device::new(&relay);
    let body =
        serde_json::to_vec(&json!({ "device_id": replacement.id.to_string(), "public_key": replacement.public_hex() }))
            .unwrap();
    let recover_path = format!("/v1/workspaces/{workspace}/recover");
    let send = |key: &DeviceSigningKey| {
        let headers = relay_auth::sign(key, DeviceId::from_uuid(Uuid::nil()), "POST", &recover_path, now(), &body);
        let response = Client::new()
            .post(format!("{}{recover_path}", relay.url))
            .header(relay_auth::DEVICE_HEADER, "recovery")
            .header(relay_auth::TIMESTAMP_HEADER, headers.timestamp)
            .header(relay_auth::NONCE_HEADER, headers.nonce)
            .header(relay_auth::SIGNATURE_HEADER, headers.signature)
            .body(body.clone())
            .send()
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    let wrong = daftar_sync::RecoveryKey::generate().unwrap().relay_signing_key();
    let (status, refused) = send(&wrong);
    assert_eq!((status, refused["code"].as_str()), (401, Some("bad_recovery_key")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("check it for typos"));

    let (status, recovered) = send(&recovery_key_of(workspace).relay_signing_key());
    assert_eq!(status, 201, "{recovered}");
    assert_eq!(recovered["role"], "owner");
    assert_eq!(BASE64.decode(recovered["recovery_wrapped_key"].as_str().unwrap()).unwrap(), b"opaque wrapped key");
    let (status, log) = replacement.call("GET", &path, None);
    assert_eq!(status, 200);
    assert_eq!(log["envelopes"].as_array().unwrap().len(), 1, "the new device reads the whole log");

    // Members may read the (opaque) recovery material to carry it to a further relay; outsiders
    // learn nothing.
    let material = format!("/v1/workspaces/{workspace}/recovery");
    let (status, held) = owner.call("GET", &material, None);
    assert_eq!(status, 200, "{held}");
    assert_eq!(BASE64.decode(held["recovery_wrapped_key"].as_str().unwrap()).unwrap(), b"opaque wrapped key");
    let outsider = Device::new(&relay);
    assert_eq!(outsider.call("GET", &material, None).1["code"], "not_a_member");
}

#[test]
fn serves_https_only_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let relay = Relay::start_args(
        &dir.path().join("relay.db"),
        &[],
        &["--tls-cert".as_ref(), cert.as_os_str(), "--tls-key".as_ref(), key.as_os_str()],
    );
    assert!(relay.url.starts_with("https://127.0.0.1:"), "{}", relay.url);
    let url = relay.url.replace("127.0.0.1", "localhost");
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(&cert)
        .arg(format!("{url}/healthz"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok", "{}", String::from_utf8_lossy(&output.stderr));
    let plain = Client::new().get(format!("{}/healthz", url.replace("https://", "http://"))).send();
    assert!(!plain.map(|r| r.status().is_success()).unwrap_or(false), "plain HTTP must not be served");
}

#[test]
fn only_managers_register_devices_of_another_relay_and_a_registration_never_lifts_a_revocation() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let clerk = Device::new(&relay);
    admit(&owner, &clerk, workspace, "clerk");
    let admin = Device::new(&relay);
    admit(&owner, &admin, workspace, "admin");
    let elsewhere = Device::new(&relay);
    let path = format!("/v1/workspaces/{workspace}/devices/{}", elsewhere.id);
    let body = |role: &str, revoked: bool| {
        Some(json!({ "public_key": elsewhere.public_hex(), "role": role, "revoked": revoked }))
    };

    let (status, answer) = clerk.call("PUT", &path, body("clerk", false));
    assert_eq!((status, answer["code"].as_str()), (403, Some("role")), "clerks cannot register devices");
    let (status, answer) = admin.call("PUT", &path, body("owner", false));
    assert_eq!((status, answer["code"].as_str()), (403, Some("role")), "only an owner registers an owner");
    let (status, answer) = admin.call("PUT", &path, body("accountant", false));
    assert_eq!(status, 204, "{answer}");
    let envelopes = format!("/v1/workspaces/{workspace}/envelopes");
    assert_eq!(elsewhere.call("GET", &envelopes, None).0, 200, "the registered device is let in");

    let impostor = json!({ "public_key": hex::encode([9u8; 32]), "role": "accountant" });
    let (status, answer) = admin.call("PUT", &path, Some(impostor));
    assert_eq!((status, answer["code"].as_str()), (409, Some("device_exists")), "a known id keeps its key");
    assert_eq!(admin.call("PUT", &path, body("accountant", true)).0, 204);
    assert_eq!(elsewhere.call("GET", &envelopes, None).1["code"], "revoked");
    assert_eq!(admin.call("PUT", &path, body("accountant", false)).0, 204);
    assert_eq!(elsewhere.call("GET", &envelopes, None).1["code"], "revoked", "registering again lifts nothing");
}

#[test]
fn epoch_keys_go_only_to_their_holders_and_epochs_come_one_after_another() {
    let relay = Relay::start();
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let (clerk, other) = (Device::new(&relay), Device::new(&relay));
    admit(&owner, &clerk, workspace, "clerk");
    admit(&owner, &other, workspace, "clerk");
    let wrapped = |byte: u8| BASE64.encode([byte; daftar_sync::epoch::WRAPPED_LEN]);
    let key = |holder: &str, byte: u8| json!({ "holder": holder, "wrapped": wrapped(byte), "signature": "00" });
    let epochs = format!("/v1/workspaces/{workspace}/epochs");
    let new_epoch = |by: &Device, epoch: u32, keys: Vec<Value>| {
        by.call("POST", &epochs, Some(json!({ "epoch": epoch, "keys": keys })))
    };
    let code = |answer: (u16, Value)| (answer.0, answer.1["code"].as_str().map(str::to_owned));

    let keys = vec![key(&clerk.id.to_string(), 1), key(&owner.id.to_string(), 2), key("recovery", 3)];
    assert_eq!(code(new_epoch(&clerk, 2, keys.clone())), (403, Some("role".into())), "clerks do not rotate");
    assert_eq!(code(new_epoch(&owner, 3, keys.clone())), (409, Some("epoch_not_next".into())), "no gaps");
    let without_recovery = vec![key(&clerk.id.to_string(), 1)];
    assert_eq!(code(new_epoch(&owner, 2, without_recovery)), (400, Some("bad_request".into())));
    let short = vec![json!({ "holder": "recovery", "wrapped": BASE64.encode([0u8; 10]), "signature": "00" })];
    assert_eq!(code(new_epoch(&owner, 2, short)), (400, Some("bad_request".into())), "a wrapped key has one length");
    assert_eq!(new_epoch(&owner, 2, keys.clone()).0, 201);
    assert_eq!(code(new_epoch(&owner, 2, keys)), (409, Some("epoch_not_next".into())), "two rotations cannot both win");

    // Each device sees its own copy and the recovery key's, nobody else's.
    let (status, seen) = clerk.call("GET", &format!("{epochs}?after=0"), None);
    assert_eq!(status, 200, "{seen}");
    let holders: Vec<&str> = seen.as_array().unwrap().iter().map(|k| k["holder"].as_str().unwrap()).collect();
    assert_eq!(holders, [clerk.id.to_string().as_str(), "recovery"]);
    assert_eq!(seen[0]["wrapped"], wrapped(1));
    assert_eq!(seen[0]["signer"], owner.id.to_string());
    let (_, none) = other.call("GET", &format!("{epochs}?after=0"), None);
    assert_eq!(none.as_array().unwrap().len(), 1, "only the recovery copy: {none}");
    let (_, later) = clerk.call("GET", &format!("{epochs}?after=2"), None);
    assert!(later.as_array().unwrap().is_empty());

    // A device approved later is handed existing epochs' keys; not a future one's.
    let path = |epoch: u32| format!("/v1/workspaces/{workspace}/epochs/{epoch}/keys/{}", other.id);
    assert_eq!(owner.call("PUT", &path(2), Some(key(&other.id.to_string(), 4))).0, 204);
    assert_eq!(code(owner.call("PUT", &path(3), Some(key(&other.id.to_string(), 4)))), (404, Some("not_found".into())));
    assert_eq!(code(clerk.call("PUT", &path(2), Some(key(&other.id.to_string(), 4)))), (403, Some("role".into())));
    let (_, mine) = other.call("GET", &format!("{epochs}?after=0"), None);
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");

    // The recovery key's copies come with the recovery material and with a recovery.
    let (_, material) = clerk.call("GET", &format!("/v1/workspaces/{workspace}/recovery"), None);
    assert_eq!(material["epochs"][0]["wrapped"], wrapped(3), "{material}");
    // A revoked device is refused its keys like everything else.
    owner.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/revoke", clerk.id), Some(json!({})));
    assert_eq!(code(clerk.call("GET", &format!("{epochs}?after=0"), None)), (403, Some("revoked".into())));
}

#[test]
fn owners_and_admins_need_a_second_factor_which_a_members_devices_share() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(&dir.path().join("relay.db"), &[("DAFTAR_RELAY_REQUIRE_SECOND_FACTOR", "true")]);
    let owner = Device::new(&relay);
    let workspace = create_workspace(&owner);
    let invites = format!("/v1/workspaces/{workspace}/invites");
    let an_invite = || {
        json!({ "token_hash": hex::encode(Uuid::new_v4().as_bytes().repeat(2)), "role": "clerk",
                "expires_at": now() + 60_000, "wrapped_key": BASE64.encode(b"wrapped") })
    };
    let code = |answer: (u16, Value)| (answer.0, answer.1["code"].as_str().map(str::to_owned));
    let refused = owner.call("POST", &invites, Some(an_invite()));
    assert_eq!(code(refused.clone()), (403, Some("mfa_enrolment_required".into())), "{refused:?}");
    assert!(refused.1["message"].as_str().unwrap().contains("daftar mfa enroll"));

    // Enrolling needs no second factor yet; until confirmed it does not count.
    let secret = daftar_sync::mfa::TotpSecret::generate().unwrap();
    let (recovery_codes, hashes) = daftar_sync::mfa::recovery_codes().unwrap();
    let enrolment =
        json!({ "secret": secret.to_base32(), "recovery": hashes.iter().map(hex::encode).collect::<Vec<_>>() });
    let mfa = format!("/v1/workspaces/{workspace}/mfa");
    assert_eq!(owner.call("POST", &mfa, Some(enrolment)).0, 201);
    assert_eq!(code(owner.call("POST", &invites, Some(an_invite()))).1.as_deref(), Some("mfa_enrolment_required"));
    let step = (now() / 1000 / 30) as u64;
    let verified =
        owner.call("POST", &format!("{mfa}/verify"), Some(json!({ "code": format!("{:06}", secret.code_at(step)) })));
    assert_eq!(verified.0, 200, "{verified:?}");
    assert_eq!(owner.call("POST", &invites, Some(an_invite())).0, 201, "within the window after a code");

    // A second device of the same member shares the factor (and its window); an admin of
    // another member needs one of their own.
    let laptop = Device::new(&relay);
    enrol(&laptop, workspace, &invite(&owner, workspace, "owner"));
    let approve = |device: &Device, member: Option<String>| {
        let body = member.map_or(json!({}), |m| json!({ "member": m }));
        owner.call("POST", &format!("/v1/workspaces/{workspace}/devices/{}/approve", device.id), Some(body))
    };
    assert_eq!(approve(&laptop, Some(owner.id.to_string())).0, 204);
    assert_eq!(laptop.call("POST", &invites, Some(an_invite())).0, 201, "the owner's laptop shares the owner's factor");
    let admin = Device::new(&relay);
    enrol(&admin, workspace, &invite(&owner, workspace, "admin"));
    assert_eq!(approve(&admin, None).0, 204);
    assert_eq!(code(admin.call("POST", &invites, Some(an_invite()))).1.as_deref(), Some("mfa_enrolment_required"));
    // Clerks are not asked (they cannot make privileged requests at all).
    let clerk = Device::new(&relay);
    enrol(&clerk, workspace, &invite(&owner, workspace, "clerk"));
    assert_eq!(approve(&clerk, None).0, 204);
    assert_eq!(code(clerk.call("POST", &invites, Some(an_invite()))).1.as_deref(), Some("role"));

    // Carrying the factor to a relay added later: the status tells who has one; handing it
    // out needs a code in that very request (an open window is not enough), and a manager.
    let status = owner.call("GET", &mfa, None).1;
    assert_eq!(status, json!({ "enrolled": true, "confirmed": true, "window_open": true }), "a code just now");
    let status = admin.call("GET", &mfa, None).1;
    assert_eq!(status, json!({ "enrolled": false, "confirmed": false, "window_open": false }));
    let carry = format!("{mfa}/carry");
    let refused = owner.call("POST", &carry, Some(json!({})));
    assert_eq!(code(refused.clone()), (401, Some("mfa_required".into())), "the window is not enough: {refused:?}");
    assert_eq!(code(owner.call_with_totp("POST", &carry, json!({}), "000000")).1.as_deref(), Some("mfa_invalid"));
    let handed = owner.call_with_totp("POST", &carry, json!({}), &format!("{:06}", secret.code_at(step + 1)));
    assert_eq!(handed.0, 200, "{handed:?}");
    assert_eq!(handed.1["secret"], secret.to_base32());
    assert_eq!(handed.1["recovery"], json!(hashes.iter().map(hex::encode).collect::<Vec<_>>()));
    // With a recovery code: it is used up, so it is not handed on.
    let handed = laptop.call_with_totp("POST", &carry, json!({}), &recovery_codes[0]);
    assert_eq!(handed.0, 200, "{handed:?}");
    assert_eq!(handed.1["recovery"], json!(hashes[1..].iter().map(hex::encode).collect::<Vec<_>>()));
    let step_code = format!("{:06}", secret.code_at(step));
    assert_eq!(code(admin.call_with_totp("POST", &carry, json!({}), &step_code)).1.as_deref(), Some("not_enrolled"));
    assert_eq!(code(clerk.call_with_totp("POST", &carry, json!({}), &step_code)).1.as_deref(), Some("role"));
    // A carried factor (fewer than ten recovery codes) enrols on another relay; more than ten do not.
    let other = Relay::start_with(&dir.path().join("other.db"), &[("DAFTAR_RELAY_REQUIRE_SECOND_FACTOR", "true")]);
    let elsewhere = Device::new(&other);
    let workspace = create_workspace(&elsewhere);
    let mfa = format!("/v1/workspaces/{workspace}/mfa");
    let carried = json!({ "secret": secret.to_base32(), "recovery": handed.1["recovery"] });
    assert_eq!(elsewhere.call("POST", &mfa, Some(carried)).0, 201);
    let eleven: Vec<String> = (0..11).map(|i| hex::encode([i as u8; 32])).collect();
    let too_many = elsewhere.call("POST", &mfa, Some(json!({ "secret": secret.to_base32(), "recovery": eleven })));
    assert_eq!(too_many.0, 400, "{too_many:?}");
}
