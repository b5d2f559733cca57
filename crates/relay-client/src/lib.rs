//! The device side of the relay API: every call signed with the device's key
//! (`daftar_sync::relay_auth`), every failure turned into a [`RelayError`] that says what to do.
//!
//! This is the thin transport; what to push and pull, and when, is decided by the sync engine.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use daftar_domain::{DeviceId, WorkspaceId};
use daftar_sync::{DeviceSigningKey, relay_auth};
use serde::Deserialize;
use serde_json::{Value, json};

/// A relay call failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(
        "the relay at {url} cannot be reached ({detail}); check the address and the network, the change stays queued"
    )]
    Unreachable { url: String, detail: String },
    #[error("the relay refused: {message} ({code})")]
    Refused { status: u16, code: String, message: String },
    #[error("the relay answered something unexpected: {0}")]
    Protocol(String),
}

/// A member's second factor on one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    pub enrolled: bool,
    pub confirmed: bool,
    /// A code was accepted within the relay's window: privileged requests need none now.
    pub window_open: bool,
}

/// What the live subscription says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The log's newest sequence number.
    Head(i64),
    /// A keep-alive or a notice that some heads were missed: a good moment to check for work.
    Tick,
}

/// The live subscription's stream of events.
pub struct Events {
    lines: std::io::Lines<std::io::BufReader<reqwest::blocking::Response>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Iterator for Events {
    type Item = Result<Event, RelayError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(RelayError::Unreachable { url: String::new(), detail: e.to_string() })),
            };
            if let Some(data) = line.strip_prefix("data:") {
                return Some(Ok(data.trim().parse().map(Event::Head).unwrap_or(Event::Tick)));
            }
            if line.starts_with(':') {
                return Some(Ok(Event::Tick));
            }
        }
    }
}

/// A device of the workspace, as a relay lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Member {
    pub device_id: DeviceId,
    /// Hex of the Ed25519 public key.
    pub public_key: String,
    pub role: String,
    pub revoked: bool,
    /// False while the device waits for approval (relays before approval existed send none).
    #[serde(default = "approved_by_default")]
    pub approved: bool,
    /// Hex of the device's X25519 agreement key, as it enrolled.
    #[serde(default)]
    pub agreement_key: Option<String>,
    /// The member it belongs to (the id of the member's first device), once approved.
    #[serde(default)]
    pub member: Option<String>,
    /// What the device left to prove its keys are its own ("EPOCH:HEX"; see
    /// `daftar_sync::invite::JoinClaim`).
    #[serde(default)]
    pub join_proof: Option<String>,
}

fn approved_by_default() -> bool {
    true
}

impl Member {
    /// `pending`, `approved` or `revoked`.
    pub fn status(&self) -> &'static str {
        match (self.revoked, self.approved) {
            (true, _) => "revoked",
            (false, false) => "pending",
            (false, true) => "approved",
        }
    }
}

/// HTTP clients, one per process and kind, shared by every `RelayClient`: building one loads the
/// system's TLS trust store (tens of milliseconds), and sharing keeps connections alive.
static REQUESTS: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
static STREAMS: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();

fn shared(
    cell: &'static std::sync::OnceLock<reqwest::blocking::Client>,
    builder: impl FnOnce() -> reqwest::blocking::ClientBuilder,
) -> Result<reqwest::blocking::Client, RelayError> {
    if let Some(client) = cell.get() {
        return Ok(client.clone());
    }
    let client = builder().build().map_err(|e| RelayError::Protocol(e.to_string()))?;
    Ok(cell.get_or_init(|| client).clone())
}

/// A workspace key of one epoch wrapped for one holder (a device id or `recovery`), as the
/// relay keeps it; see `daftar_sync::epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct EpochKey {
    pub epoch: u32,
    pub holder: String,
    /// Base 64.
    pub wrapped: String,
    /// The device that wrapped and signed it.
    pub signer: DeviceId,
    pub signature: String,
}

impl EpochKey {
    pub fn wrapped_bytes(&self) -> Result<Vec<u8>, RelayError> {
        BASE64.decode(&self.wrapped).map_err(|e| RelayError::Protocol(format!("epoch key: {e}")))
    }
}

fn epochs_of(answer: &Value) -> Result<Vec<EpochKey>, RelayError> {
    match answer.get("epochs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list.clone()).map_err(|e| RelayError::Protocol(format!("epochs: {e}"))),
    }
}

/// One envelope as stored on the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEnvelope {
    pub seq: i64,
    pub id: String,
    pub bytes: Vec<u8>,
}

/// Adds the signature headers to a request; `device` overrides the device header (requests
/// signed with the recovery key say `recovery`).
fn with_signature(
    request: reqwest::blocking::RequestBuilder,
    headers: relay_auth::SignedHeaders,
    device: Option<&str>,
) -> reqwest::blocking::RequestBuilder {
    request
        .header(relay_auth::DEVICE_HEADER, device.unwrap_or(&headers.device))
        .header(relay_auth::TIMESTAMP_HEADER, headers.timestamp)
        .header(relay_auth::NONCE_HEADER, headers.nonce)
        .header(relay_auth::SIGNATURE_HEADER, headers.signature)
}

/// The response if the relay accepted the request, else `Refused` with its code and message.
fn accepted(response: reqwest::blocking::Response) -> Result<reqwest::blocking::Response, RelayError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let value: Value = response.json().unwrap_or(Value::Null);
    Err(refusal(status, &value))
}

fn refusal(status: u16, value: &Value) -> RelayError {
    RelayError::Refused {
        status,
        code: value["code"].as_str().unwrap_or("http_error").to_owned(),
        message: value["message"].as_str().map(str::to_owned).unwrap_or_else(|| format!("HTTP {status}")),
    }
}

/// A device's connection to one relay.
pub struct RelayClient<'k> {
    url: String,
    device: DeviceId,
    key: &'k DeviceSigningKey,
    http: reqwest::blocking::Client,
    /// A one-time code sent with every request (privileged requests need one).
    totp: Option<String>,
}

impl std::fmt::Debug for RelayClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient").field("url", &self.url).field("device", &self.device).finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl<'k> RelayClient<'k> {
    pub fn new(url: &str, device: DeviceId, key: &'k DeviceSigningKey) -> Result<Self, RelayError> {
        let http = shared(&REQUESTS, || reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)))?;
        Ok(RelayClient { url: url.trim_end_matches('/').to_owned(), device, key, http, totp: None })
    }

    /// Sends `code` (a one-time or recovery code) with the requests that follow.
    pub fn with_totp(mut self, code: Option<&str>) -> Self {
        self.totp = code.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
        self
    }

    /// Enrols this device's second factor: the TOTP secret (base 32) and the hashes of the
    /// recovery codes. Replacing a confirmed one needs a current code ([`Self::with_totp`]).
    pub fn mfa_enroll(&self, workspace: WorkspaceId, secret: &str, recovery: &[[u8; 32]]) -> Result<(), RelayError> {
        let body = json!({ "secret": secret, "recovery": recovery.iter().map(hex::encode).collect::<Vec<_>>() });
        self.call("POST", &format!("/v1/workspaces/{workspace}/mfa"), Some(&body), None).map(|_| ())
    }

    /// Checks a code (the first confirms the enrolment); returns until when privileged
    /// requests need no further code (milliseconds since the epoch).
    pub fn mfa_verify(&self, workspace: WorkspaceId, code: &str) -> Result<i64, RelayError> {
        let answer =
            self.call("POST", &format!("/v1/workspaces/{workspace}/mfa/verify"), Some(&json!({ "code": code })), None)?;
        Ok(answer["elevated_until"].as_i64().unwrap_or_default())
    }

    /// Whether this device's member has a second factor on this relay.
    pub fn mfa_status(&self, workspace: WorkspaceId) -> Result<MfaStatus, RelayError> {
        let answer = self.call("GET", &format!("/v1/workspaces/{workspace}/mfa"), None, None)?;
        let flag = |name: &str| answer[name].as_bool().unwrap_or(false);
        Ok(MfaStatus { enrolled: flag("enrolled"), confirmed: flag("confirmed"), window_open: flag("window_open") })
    }

    /// The member's second factor as this relay holds it, for a current code
    /// ([`Self::with_totp`]): the secret (base 32) and the unused recovery codes' hashes.
    pub fn mfa_carry(&self, workspace: WorkspaceId) -> Result<(String, Vec<[u8; 32]>), RelayError> {
        let answer = self.call("POST", &format!("/v1/workspaces/{workspace}/mfa/carry"), Some(&json!({})), None)?;
        let malformed = || RelayError::Protocol("the second factor it handed out is malformed".into());
        let secret = answer["secret"].as_str().ok_or_else(malformed)?.to_owned();
        let recovery = answer["recovery"]
            .as_array()
            .ok_or_else(malformed)?
            .iter()
            .map(|h| h.as_str().and_then(|h| hex::decode(h).ok()).and_then(|h| h.try_into().ok()).ok_or_else(malformed))
            .collect::<Result<Vec<[u8; 32]>, RelayError>>()?;
        Ok((secret, recovery))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>, signer: Option<&str>) -> Result<Value, RelayError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON serialises")).unwrap_or_default();
        let headers = relay_auth::sign(self.key, self.device, method, path, now_ms(), &bytes);
        let url = format!("{}{path}", self.url);
        let request = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url).header("content-type", "application/json").body(bytes),
            _ => self.http.post(url).header("content-type", "application/json").body(bytes),
        };
        let request = match &self.totp {
            Some(code) => request.header(relay_auth::TOTP_HEADER, code),
            None => request,
        };
        let response = with_signature(request, headers, signer)
            .send()
            .map_err(|e| RelayError::Unreachable { url: self.url.clone(), detail: e.to_string() })?;
        let status = response.status().as_u16();
        let text =
            response.text().map_err(|e| RelayError::Unreachable { url: self.url.clone(), detail: e.to_string() })?;
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if !(200..300).contains(&status) {
            return Err(refusal(status, &value));
        }
        Ok(value)
    }

    /// A signed request with a raw body (snapshot parts), answered with raw bytes.
    fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> Result<reqwest::blocking::Response, RelayError> {
        let headers = relay_auth::sign(self.key, self.device, method, path, now_ms(), &body);
        let url = format!("{}{path}", self.url);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self.http.put(url).header("content-type", "application/octet-stream").body(body),
        };
        let response = with_signature(request, headers, None)
            .send()
            .map_err(|e| RelayError::Unreachable { url: self.url.clone(), detail: e.to_string() })?;
        accepted(response)
    }

    /// Uploads part `part` of `parts` of a sealed snapshot covering the log up to `seq`.
    /// Returns whether the snapshot is now the relay's current one (its last part arrived).
    pub fn put_snapshot_part(
        &self,
        workspace: WorkspaceId,
        seq: i64,
        part: u32,
        parts: u32,
        bytes: Vec<u8>,
    ) -> Result<bool, RelayError> {
        let path = format!("/v1/workspaces/{workspace}/snapshot?seq={seq}&part={part}&parts={parts}");
        let answer: Value = self.raw("PUT", &path, bytes)?.json().map_err(|e| RelayError::Protocol(e.to_string()))?;
        Ok(answer["kept"].as_bool().unwrap_or(false))
    }

    /// The relay's current snapshot: the log position it covers and its number of parts.
    pub fn snapshot_manifest(&self, workspace: WorkspaceId) -> Result<Option<(i64, u32)>, RelayError> {
        match self.call("GET", &format!("/v1/workspaces/{workspace}/snapshot?manifest=true"), None, None) {
            Ok(answer) => match (answer["seq"].as_i64(), answer["parts"].as_u64()) {
                (Some(seq), Some(parts)) => Ok(Some((seq, parts as u32))),
                _ => Err(RelayError::Protocol(format!("malformed snapshot manifest {answer}"))),
            },
            Err(RelayError::Refused { code, .. }) if code == "no_snapshot" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One part of the snapshot covering `seq` (refused with `snapshot_replaced` once a newer
    /// snapshot has replaced it).
    pub fn snapshot_part(&self, workspace: WorkspaceId, seq: i64, part: u32) -> Result<Vec<u8>, RelayError> {
        let path = format!("/v1/workspaces/{workspace}/snapshot?seq={seq}&part={part}");
        let response = self.raw("GET", &path, Vec::new())?;
        Ok(response
            .bytes()
            .map_err(|e| RelayError::Unreachable { url: self.url.clone(), detail: e.to_string() })?
            .to_vec())
    }

    /// Creates the workspace on the relay with this device as its owner.
    pub fn create_workspace(
        &self,
        workspace: WorkspaceId,
        recovery_public_key: &[u8; 32],
        recovery_wrapped_key: &[u8],
    ) -> Result<(), RelayError> {
        let body = json!({
            "workspace_id": workspace.to_string(),
            "device_id": self.device.to_string(),
            "public_key": hex::encode(self.key.public_key()),
            "recovery_public_key": hex::encode(recovery_public_key),
            "recovery_wrapped_key": BASE64.encode(recovery_wrapped_key),
        });
        self.call("POST", "/v1/workspaces", Some(&body), None).map(|_| ())
    }

    /// Pushes envelopes `(id, bytes)`; returns their sequence numbers.
    pub fn push(&self, workspace: WorkspaceId, envelopes: &[(String, Vec<u8>)]) -> Result<Vec<i64>, RelayError> {
        let items: Vec<Value> =
            envelopes.iter().map(|(id, bytes)| json!({ "id": id, "data": BASE64.encode(bytes) })).collect();
        let answer = self.call(
            "POST",
            &format!("/v1/workspaces/{workspace}/envelopes"),
            Some(&json!({ "envelopes": items })),
            None,
        )?;
        serde_json::from_value(answer["seqs"].clone()).map_err(|e| RelayError::Protocol(format!("push answer: {e}")))
    }

    /// Envelopes after `cursor`, at most `limit`.
    pub fn pull(&self, workspace: WorkspaceId, cursor: i64, limit: u32) -> Result<Vec<RemoteEnvelope>, RelayError> {
        #[derive(Deserialize)]
        struct Item {
            seq: i64,
            id: String,
            data: String,
        }
        let answer = self.call(
            "GET",
            &format!("/v1/workspaces/{workspace}/envelopes?after={cursor}&limit={limit}"),
            None,
            None,
        )?;
        let items: Vec<Item> = serde_json::from_value(answer["envelopes"].clone())
            .map_err(|e| RelayError::Protocol(format!("pull answer: {e}")))?;
        items
            .into_iter()
            .map(|i| {
                let bytes =
                    BASE64.decode(&i.data).map_err(|e| RelayError::Protocol(format!("envelope {}: {e}", i.id)))?;
                Ok(RemoteEnvelope { seq: i.seq, id: i.id, bytes })
            })
            .collect()
    }

    /// The workspace's devices and their public keys, as the relay knows them.
    pub fn devices(&self, workspace: WorkspaceId) -> Result<Vec<(DeviceId, [u8; 32], bool)>, RelayError> {
        let answer = self.call("GET", &format!("/v1/workspaces/{workspace}/devices"), None, None)?;
        let list = answer.as_array().ok_or_else(|| RelayError::Protocol("device list is not an array".into()))?;
        list.iter()
            .map(|d| {
                let id = d["device_id"].as_str().and_then(|s| s.parse().ok());
                let key = d["public_key"].as_str().and_then(|k| hex::decode(k).ok()).and_then(|k| k.try_into().ok());
                match (id, key) {
                    (Some(id), Some(key)) => Ok((id, key, d["revoked"].as_bool().unwrap_or(false))),
                    _ => Err(RelayError::Protocol(format!("malformed device entry {d}"))),
                }
            })
            .collect()
    }

    /// The workspace's recovery material as this relay keeps it: the public half of the
    /// recovery signing key and the recovery-wrapped workspace key.
    /// The recovery key's copies of every epoch after the first (with the recovery material).
    pub fn recovery_epochs(&self, workspace: WorkspaceId) -> Result<Vec<EpochKey>, RelayError> {
        epochs_of(&self.call("GET", &format!("/v1/workspaces/{workspace}/recovery"), None, None)?)
    }

    /// Starts a new epoch: its key wrapped for each holder (owners and admins).
    pub fn add_epoch(&self, workspace: WorkspaceId, epoch: u32, keys: &[EpochKey]) -> Result<(), RelayError> {
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| json!({ "holder": k.holder, "wrapped": k.wrapped, "signature": k.signature }))
            .collect();
        let body = json!({ "epoch": epoch, "keys": keys });
        self.call("POST", &format!("/v1/workspaces/{workspace}/epochs"), Some(&body), None).map(|_| ())
    }

    /// Leaves one holder's copy of an existing epoch's key (owners and admins).
    pub fn put_epoch_key(&self, workspace: WorkspaceId, key: &EpochKey) -> Result<(), RelayError> {
        let body = json!({ "holder": key.holder, "wrapped": key.wrapped, "signature": key.signature });
        let path = format!("/v1/workspaces/{workspace}/epochs/{}/keys/{}", key.epoch, key.holder);
        self.call("PUT", &path, Some(&body), None).map(|_| ())
    }

    /// The epoch keys wrapped for this device, and the recovery key's copies, after `after`.
    pub fn epoch_keys(&self, workspace: WorkspaceId, after: u32) -> Result<Vec<EpochKey>, RelayError> {
        let answer = self.call("GET", &format!("/v1/workspaces/{workspace}/epochs?after={after}"), None, None)?;
        serde_json::from_value(answer).map_err(|e| RelayError::Protocol(format!("epochs: {e}")))
    }

    pub fn recovery_material(&self, workspace: WorkspaceId) -> Result<([u8; 32], Vec<u8>), RelayError> {
        let answer = self.call("GET", &format!("/v1/workspaces/{workspace}/recovery"), None, None)?;
        let public =
            answer["recovery_public_key"].as_str().and_then(|k| hex::decode(k).ok()).and_then(|k| k.try_into().ok());
        let wrapped = answer["recovery_wrapped_key"].as_str().and_then(|w| BASE64.decode(w).ok());
        match (public, wrapped) {
            (Some(public), Some(wrapped)) => Ok((public, wrapped)),
            _ => Err(RelayError::Protocol(format!("malformed recovery material {answer}"))),
        }
    }

    /// Every device of the workspace as this relay knows it, with its role.
    pub fn members(&self, workspace: WorkspaceId) -> Result<Vec<Member>, RelayError> {
        let answer = self.call("GET", &format!("/v1/workspaces/{workspace}/devices"), None, None)?;
        serde_json::from_value::<Vec<Member>>(answer).map_err(|e| RelayError::Protocol(format!("device list: {e}")))
    }

    /// Registers a device already in the workspace (on another relay) with this relay
    /// (owners and admins).
    pub fn register_device(&self, workspace: WorkspaceId, member: &Member) -> Result<(), RelayError> {
        let body = json!({
            "public_key": member.public_key,
            "role": member.role,
            "revoked": member.revoked,
            "approved": member.approved,
            "agreement_key": member.agreement_key,
            "member": member.member,
        });
        self.call("PUT", &format!("/v1/workspaces/{workspace}/devices/{}", member.device_id), Some(&body), None)?;
        Ok(())
    }

    /// Leaves an invite with the relay: the hash of its token, the role it grants, when it
    /// expires (ms since the epoch) and the workspace key wrapped for the invited device.
    pub fn create_invite(
        &self,
        workspace: WorkspaceId,
        token_hash: &[u8; 32],
        role: &str,
        expires_at: i64,
        wrapped_key: &[u8],
    ) -> Result<(), RelayError> {
        let body = json!({
            "token_hash": hex::encode(token_hash),
            "role": role,
            "expires_at": expires_at,
            "wrapped_key": BASE64.encode(wrapped_key),
        });
        self.call("POST", &format!("/v1/workspaces/{workspace}/invites"), Some(&body), None).map(|_| ())
    }

    /// Enrols this device with an invite's one-time token; returns the role and the wrapped
    /// workspace key.
    pub fn enrol(
        &self,
        workspace: WorkspaceId,
        token: &[u8],
        agreement_key: &[u8; 32],
    ) -> Result<(String, Vec<u8>), RelayError> {
        let body = json!({
            "device_id": self.device.to_string(),
            "public_key": hex::encode(self.key.public_key()),
            "token": hex::encode(token),
            "agreement_key": hex::encode(agreement_key),
        });
        let answer = self.call("POST", &format!("/v1/workspaces/{workspace}/enrol"), Some(&body), None)?;
        let role = answer["role"].as_str().unwrap_or("clerk").to_owned();
        let wrapped = answer["wrapped_key"].as_str().ok_or_else(|| RelayError::Protocol("no wrapped key".into()))?;
        Ok((role, BASE64.decode(wrapped).map_err(|e| RelayError::Protocol(e.to_string()))?))
    }

    /// Leaves this (pending) device's join proof with the relay, for the approver to check.
    pub fn put_join_proof(&self, workspace: WorkspaceId, proof: &str) -> Result<(), RelayError> {
        self.call("PUT", &format!("/v1/workspaces/{workspace}/join-proof"), Some(&json!({ "proof": proof })), None)
            .map(|_| ())
    }

    /// Revokes a device of the workspace (owners and admins).
    pub fn revoke(&self, workspace: WorkspaceId, device: DeviceId) -> Result<(), RelayError> {
        self.call("POST", &format!("/v1/workspaces/{workspace}/devices/{device}/revoke"), Some(&json!({})), None)
            .map(|_| ())
    }

    /// Approves a device that joined with an invite (owners and admins; an admin's or owner's
    /// device only by an owner).
    /// `member` names the member (the id of their first device), whose second factor the
    /// device then shares.
    pub fn approve(&self, workspace: WorkspaceId, device: DeviceId, member: Option<&str>) -> Result<(), RelayError> {
        let body = match member {
            Some(member) => json!({ "member": member }),
            None => json!({}),
        };
        self.call("POST", &format!("/v1/workspaces/{workspace}/devices/{device}/approve"), Some(&body), None)
            .map(|_| ())
    }

    /// Gives a device of the workspace another role (owners and admins; owners for admins).
    pub fn set_role(&self, workspace: WorkspaceId, device: DeviceId, role: &str) -> Result<(), RelayError> {
        self.call(
            "POST",
            &format!("/v1/workspaces/{workspace}/devices/{device}/role"),
            Some(&json!({ "role": role })),
            None,
        )
        .map(|_| ())
    }

    /// This device as the relay knows it: its role and `pending`, `approved` or `revoked` —
    /// the one question a device waiting for approval may ask.
    pub fn own_status(&self, workspace: WorkspaceId) -> Result<(String, String), RelayError> {
        let answer = self.call("GET", &format!("/v1/workspaces/{workspace}/status"), None, None)?;
        let field = |name: &str| {
            answer[name].as_str().map(str::to_owned).ok_or_else(|| RelayError::Protocol(format!("no {name} in status")))
        };
        Ok((field("role")?, field("status")?))
    }

    /// Opens the live subscription: a stream of the log's head after every push (`seq` events;
    /// keep-alive comments at least every 15 s). Reads block; the stream has no overall timeout.
    pub fn subscribe(&self, workspace: WorkspaceId) -> Result<Events, RelayError> {
        let path = format!("/v1/workspaces/{workspace}/events");
        let headers = relay_auth::sign(self.key, self.device, "GET", &path, now_ms(), b"");
        let streaming = shared(&STREAMS, || {
            reqwest::blocking::Client::builder().connect_timeout(Duration::from_secs(10)).timeout(None)
        })?;
        let response = with_signature(streaming.get(format!("{}{path}", self.url)), headers, None)
            .send()
            .map_err(|e| RelayError::Unreachable { url: self.url.clone(), detail: e.to_string() })?;
        let response = accepted(response)?;
        Ok(Events { lines: std::io::BufRead::lines(std::io::BufReader::new(response)) })
    }

    /// Enrols this device as a new owner using the recovery key's signing key; returns the
    /// recovery-wrapped workspace key (epoch 1) and every later epoch's recovery copy.
    pub fn recover(
        &self,
        workspace: WorkspaceId,
        recovery_signer: &DeviceSigningKey,
    ) -> Result<(Vec<u8>, Vec<EpochKey>), RelayError> {
        let body = json!({ "device_id": self.device.to_string(), "public_key": hex::encode(self.key.public_key()) });
        let recovering = RelayClient {
            url: self.url.clone(),
            device: self.device,
            key: recovery_signer,
            http: self.http.clone(),
            totp: None,
        };
        let answer =
            recovering.call("POST", &format!("/v1/workspaces/{workspace}/recover"), Some(&body), Some("recovery"))?;
        let wrapped =
            answer["recovery_wrapped_key"].as_str().ok_or_else(|| RelayError::Protocol("no wrapped key".into()))?;
        let wrapped = BASE64.decode(wrapped).map_err(|e| RelayError::Protocol(e.to_string()))?;
        Ok((wrapped, epochs_of(&answer)?))
    }
}
