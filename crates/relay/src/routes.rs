//! The `/v1` HTTP API. Every route but workspace creation and enrolment authenticates a device
//! of the workspace named in the path (signed requests, see `daftar_sync::relay_auth`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use daftar_sync::relay_auth::{self, DEVICE_HEADER, MAX_SKEW_MS, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::storage::{
    DeviceRecord, EpochKey, MfaRecord, NewInvite, PartStored, Recovery, RelayRole, RelayStorage, Role, SnapshotPart,
    StorageError,
};

/// An API error: an HTTP status and `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "code": self.code, "message": self.message }))).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::WorkspaceExists(_) => Self::new(StatusCode::CONFLICT, "workspace_exists", e.to_string()),
            StorageError::InviteInvalid => Self::forbidden("invite_invalid", e.to_string()),
            StorageError::DeviceExists(_) => Self::new(StatusCode::CONFLICT, "device_exists", e.to_string()),
            StorageError::EnvelopeConflict(_) => Self::new(StatusCode::CONFLICT, "envelope_conflict", e.to_string()),
            StorageError::EpochNotNext { .. } => Self::new(StatusCode::CONFLICT, "epoch_not_next", e.to_string()),
            StorageError::NoSuchEpoch(_) => Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StorageError::Backend(detail) => {
                tracing::error!(%detail, "storage failure");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "storage", "the relay's storage failed; try again later")
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Limits the relay applies to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Requests per second each device may make on average…
    pub rate_per_second: f64,
    /// …and in a burst.
    pub burst: f64,
    /// How long a verified one-time code lets a device's privileged requests through without
    /// another (as `sudo` does): long enough to invite a few devices in a row.
    pub mfa_window_ms: i64,
    /// Whether owners and admins must have a second factor before any privileged request.
    pub require_second_factor: bool,
}

/// A device's token bucket: `tokens` left as of `at` (ms).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
}

/// Shared state of the server.
pub struct AppState<S> {
    pub storage: S,
    limits: Limits,
    /// Signatures seen within the clock-skew window, with their timestamps: a captured request
    /// cannot be sent again.
    seen: Mutex<HashMap<String, i64>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// (workspace, newest sequence number) after every accepted push, for live subscribers.
    heads: broadcast::Sender<(String, i64)>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The router, with the body limit applied to every route.
pub fn router<S: RelayStorage>(storage: S, limits: Limits) -> Router {
    let (heads, _) = broadcast::channel(1024);
    let state = Arc::new(AppState {
        storage,
        limits,
        seen: Mutex::new(HashMap::new()),
        buckets: Mutex::new(HashMap::new()),
        heads,
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/workspaces", post(create_workspace::<S>))
        .route("/v1/workspaces/{workspace}/enrol", post(enrol::<S>))
        .route("/v1/workspaces/{workspace}/recover", post(recover::<S>))
        .route("/v1/workspaces/{workspace}/recovery", get(recovery_material::<S>))
        .route("/v1/workspaces/{workspace}/invites", post(create_invite::<S>))
        .route("/v1/workspaces/{workspace}/devices", get(list_devices::<S>))
        .route("/v1/workspaces/{workspace}/devices/{device}", axum::routing::put(register_device::<S>))
        .route("/v1/workspaces/{workspace}/devices/{device}/revoke", post(revoke::<S>))
        .route("/v1/workspaces/{workspace}/devices/{device}/approve", post(approve::<S>))
        .route("/v1/workspaces/{workspace}/devices/{device}/role", post(set_role::<S>))
        .route("/v1/workspaces/{workspace}/status", get(own_status::<S>))
        .route("/v1/workspaces/{workspace}/join-proof", axum::routing::put(put_join_proof::<S>))
        .route("/v1/workspaces/{workspace}/epochs", post(add_epoch::<S>).get(epoch_keys::<S>))
        .route("/v1/workspaces/{workspace}/epochs/{epoch}/keys/{holder}", axum::routing::put(put_epoch_key::<S>))
        .route("/v1/workspaces/{workspace}/envelopes", post(push::<S>).get(pull::<S>))
        .route("/v1/workspaces/{workspace}/events", get(events::<S>))
        .route("/v1/workspaces/{workspace}/snapshot", get(get_snapshot::<S>).put(put_snapshot::<S>))
        .route("/v1/workspaces/{workspace}/mfa", post(enroll_mfa::<S>).get(mfa_status::<S>))
        .route("/v1/workspaces/{workspace}/mfa/verify", post(verify_mfa::<S>))
        .route("/v1/workspaces/{workspace}/mfa/carry", post(carry_mfa::<S>))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

/// Takes one token from the device's bucket, or refuses with 429.
fn rate_limit<S>(state: &AppState<S>, device: &str) -> ApiResult<()> {
    let now = now_ms();
    let mut buckets = state
        .buckets
        .lock()
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock poisoned"))?;
    let Limits { rate_per_second, burst, .. } = state.limits;
    let bucket = buckets.entry(device.to_owned()).or_insert(Bucket { tokens: burst, at: now });
    bucket.tokens = (bucket.tokens + (now - bucket.at) as f64 / 1000.0 * rate_per_second).min(burst);
    bucket.at = now;
    if bucket.tokens < 1.0 {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this device; wait a moment and retry",
        ));
    }
    bucket.tokens -= 1.0;
    Ok(())
}

/// A request as the signature covers it: method, path and query, headers and the whole body.
/// Extracted once per handler (the body limit applies, as for `Bytes`).
pub struct Incoming {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Incoming {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let (method, uri, headers) = (parts.method.clone(), parts.uri.clone(), parts.headers.clone());
        let body = Bytes::from_request(axum::extract::Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Incoming { method, uri, headers, body })
    }
}

struct Signed<'a> {
    device: String,
    timestamp: i64,
    nonce: &'a str,
    signature: &'a str,
}

fn signed_headers(headers: &HeaderMap) -> ApiResult<Signed<'_>> {
    let get = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ApiError::unauthenticated(
                "unsigned",
                format!("the request has no {name} header; requests must be signed by a device"),
            )
        })
    };
    let device = get(DEVICE_HEADER)?.to_owned();
    let timestamp = get(TIMESTAMP_HEADER)?.parse::<i64>().map_err(|_| {
        ApiError::unauthenticated("bad_timestamp", "the timestamp header is not a number of milliseconds")
    })?;
    let signature = get(SIGNATURE_HEADER)?;
    let nonce = get(NONCE_HEADER)?;
    Ok(Signed { device, timestamp, nonce, signature })
}

/// Checks time, signature and replay for a request signed by `public_key`.
fn check_signature<S>(
    state: &AppState<S>,
    signed: &Signed<'_>,
    public_key: &[u8; 32],
    request: &Incoming,
) -> ApiResult<()> {
    let now = now_ms();
    if (now - signed.timestamp).abs() > MAX_SKEW_MS {
        return Err(ApiError::unauthenticated(
            "clock_skew",
            "the request's timestamp is more than 5 minutes from the relay's clock; check this computer's clock",
        ));
    }
    let covered = relay_auth::SignedRequest {
        method: request.method.as_str(),
        path_and_query: request.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        timestamp_ms: signed.timestamp,
        nonce: signed.nonce,
        body: &request.body,
    };
    if !relay_auth::verify(public_key, covered, signed.signature) {
        return Err(ApiError::unauthenticated("bad_signature", "the request's signature does not verify"));
    }
    let mut seen =
        state.seen.lock().map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "lock poisoned"))?;
    seen.retain(|_, t| (now - *t).abs() <= MAX_SKEW_MS);
    if seen.insert(signed.signature.to_owned(), signed.timestamp).is_some() {
        return Err(ApiError::unauthenticated("replayed", "this exact request was already received"));
    }
    Ok(())
}

/// Authenticates the device that signed the request as a current member of `workspace`.
/// The signing device if it may manage the workspace's devices (owners and admins), else
/// `forbidden` naming what it tried to do.
async fn manager<S: RelayStorage>(
    state: &AppState<S>,
    workspace: &str,
    request: &Incoming,
    action: &str,
) -> ApiResult<DeviceRecord> {
    let device = member(state, workspace, request).await?;
    if !device.role.manages_devices() {
        return Err(ApiError::forbidden("role", format!("only owners and admins can {action}")));
    }
    // A workspace just created on this relay (a further relay being added) has no second
    // factor here yet: for its first minutes its devices may be registered without one.
    let fresh = action == "register devices"
        && state
            .storage
            .workspace_created(workspace.to_owned())
            .await?
            .is_some_and(|at| now_ms() - at < FRESH_WORKSPACE_MS);
    let mandatory = state.limits.require_second_factor && !fresh;
    second_factor(state, workspace, &device, &request.headers, action, mandatory).await?;
    Ok(device)
}

/// How long after its creation on a relay a workspace's devices may be registered there
/// without a second factor (the owner adding the relay enrols one on it right after).
const FRESH_WORKSPACE_MS: i64 = 10 * 60 * 1000;

/// Wrong codes allowed per device per minute; the next is refused even if right.
const MFA_FAILURES_PER_MINUTE: u32 = 5;

/// Requires the second factor of the device's member for a privileged request: a one-time code
/// (or a recovery code) in the `x-daftar-totp` header, or a code verified within the relay's
/// window (`Limits::mfa_window_ms`). A code that is sent is always checked. Without a confirmed
/// second factor the request is refused when `mandatory`, else let through.
async fn second_factor<S: RelayStorage>(
    state: &AppState<S>,
    workspace: &str,
    device: &DeviceRecord,
    headers: &HeaderMap,
    action: &str,
    mandatory: bool,
) -> ApiResult<()> {
    let confirmed = state.storage.mfa(workspace.to_owned(), device.factor_holder()).await?.filter(|m| m.confirmed);
    let Some(mfa) = confirmed else {
        if mandatory {
            return Err(ApiError::forbidden(
                "mfa_enrolment_required",
                format!(
                    "owners and admins need a second factor to {action}: run `daftar mfa enroll`, add it to an authenticator app, then `daftar mfa verify CODE` (or Settings → Two-factor sign-in in the app)"
                ),
            ));
        }
        return Ok(());
    };
    let code = headers.get(relay_auth::TOTP_HEADER).and_then(|v| v.to_str().ok());
    match code {
        Some(code) => check_code(state, workspace, device, &mfa, code).await,
        None if mfa.elevated_until > now_ms() => Ok(()),
        None => Err(ApiError::unauthenticated(
            "mfa_required",
            format!("to {action}, give the one-time code from your authenticator app (--totp CODE)"),
        )),
    }
}

/// Checks a one-time or recovery code, counting wrong ones; a right one opens the
/// privileged window.
async fn check_code<S: RelayStorage>(
    state: &AppState<S>,
    workspace: &str,
    device: &DeviceRecord,
    mfa: &MfaRecord,
    code: &str,
) -> ApiResult<()> {
    let now = now_ms();
    // A member's devices share one second factor, and one count of wrong codes.
    let (ws, id) = (workspace.to_owned(), device.factor_holder());
    if state.storage.mfa_failures(ws.clone(), id.clone(), now - 60_000).await? >= MFA_FAILURES_PER_MINUTE {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "mfa_locked",
            format!("{MFA_FAILURES_PER_MINUTE} wrong codes within a minute: wait a minute, then try again"),
        ));
    }
    let secret = daftar_sync::mfa::TotpSecret::from_bytes(mfa.secret);
    let accepted = match daftar_sync::mfa::recovery_hash(code) {
        Some(hash) if code.trim().len() > 6 => {
            if state.storage.use_recovery_code(ws.clone(), id.clone(), hash, now + state.limits.mfa_window_ms).await? {
                Ok(())
            } else {
                Err(daftar_sync::mfa::MfaError::WrongRecoveryCode)
            }
        }
        _ => match secret.verify(code, (now / 1000) as u64, mfa.last_step) {
            Ok(step) => {
                if state.storage.accept_mfa_step(ws.clone(), id.clone(), step, now + state.limits.mfa_window_ms).await?
                {
                    Ok(())
                } else {
                    Err(daftar_sync::mfa::MfaError::Reused)
                }
            }
            Err(e) => Err(e),
        },
    };
    match accepted {
        Ok(()) => Ok(()),
        Err(e) => {
            let failures = state.storage.mfa_failure(ws, id.clone(), now).await?;
            tracing::warn!(%workspace, device = %id, failures, "wrong one-time code");
            Err(ApiError::unauthenticated("mfa_invalid", e.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct EnrollMfa {
    /// The TOTP secret, RFC 4648 base 32 (the device made it; it keeps no copy).
    secret: String,
    /// SHA-256 of each recovery code, hex.
    recovery: Vec<String>,
}

/// The signing device, if it is an owner's or admin's: the ones with a second factor.
async fn factor_manager<S: RelayStorage>(
    state: &AppState<S>,
    workspace: &str,
    incoming: &Incoming,
) -> ApiResult<DeviceRecord> {
    let device = member(state, workspace, incoming).await?;
    if !device.role.manages_devices() {
        return Err(ApiError::forbidden("role", "two-factor codes are for owners and admins"));
    }
    Ok(device)
}

/// Enrols (or, with a current code, replaces) the signing device's second factor. Owners and
/// admins only: they are the ones whose privileged requests need it.
async fn enroll_mfa<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = factor_manager(&state, &workspace, &incoming).await?;
    // Replacing a confirmed second factor needs it: a stolen laptop cannot swap it.
    second_factor(&state, &workspace, &device, &incoming.headers, "replace the second factor", false).await?;
    let request: EnrollMfa = parse_json(&incoming.body)?;
    let secret = daftar_sync::mfa::TotpSecret::from_base32(&request.secret)
        .ok_or_else(|| ApiError::bad_request("bad_request", "the secret is not 20 bytes of base 32"))?;
    let recovery =
        request.recovery.iter().map(|h| key_from_hex(h, "recovery")).collect::<ApiResult<Vec<[u8; 32]>>>()?;
    // Ten for a new factor; fewer when one is carried from another relay after some were used.
    if recovery.len() > daftar_sync::mfa::RECOVERY_CODES {
        return Err(ApiError::bad_request("bad_request", "an enrolment has at most ten recovery codes"));
    }
    let record =
        MfaRecord { secret: *secret.as_bytes(), confirmed: false, last_step: None, recovery, elevated_until: 0 };
    state.storage.put_mfa(workspace.clone(), device.factor_holder(), record).await?;
    tracing::info!(%workspace, device = %device.device_id, "second factor enrolled, to be confirmed");
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct VerifyMfa {
    code: String,
}

/// Checks a code: the first one confirms the enrolment; any right one opens the privileged
/// window.
async fn verify_mfa<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = member(&state, &workspace, &incoming).await?;
    let request: VerifyMfa = parse_json(&incoming.body)?;
    let mfa =
        state.storage.mfa(workspace.clone(), device.factor_holder()).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "not_enrolled", "this device has no second factor yet")
        })?;
    check_code(&state, &workspace, &device, &mfa, &request.code).await?;
    Ok(Json(json!({ "confirmed": true, "elevated_until": now_ms() + state.limits.mfa_window_ms })))
}

/// Whether the signing device's member has a second factor here, whether it is confirmed, and
/// whether a code's window is open (so a client knows whether to ask its user for a code).
async fn mfa_status<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = member(&state, &workspace, &incoming).await?;
    let mfa = state.storage.mfa(workspace, device.factor_holder()).await?;
    Ok(Json(json!({
        "enrolled": mfa.is_some(),
        "confirmed": mfa.as_ref().is_some_and(|m| m.confirmed),
        // Whether privileged requests go through without a code right now.
        "window_open": mfa.as_ref().is_some_and(|m| m.confirmed && m.elevated_until > now_ms()),
    })))
}

/// Hands the member's second factor (its secret and the hashes of the recovery codes not yet
/// used) to one of the member's owner or admin devices, to enrol it with a relay added later,
/// so the authenticator app keeps one entry. Only for a code sent with this very request (the
/// window of an earlier code is not enough): whoever gets the secret must already hold the
/// factor — the same a code lets one do by replacing it.
async fn carry_mfa<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = factor_manager(&state, &workspace, &incoming).await?;
    let holder = device.factor_holder();
    let mfa = state.storage.mfa(workspace.clone(), holder.clone()).await?.filter(|m| m.confirmed).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_enrolled", "this relay holds no confirmed second factor to carry")
    })?;
    let code = incoming.headers.get(relay_auth::TOTP_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(|| {
        ApiError::unauthenticated(
            "mfa_required",
            "to carry the second factor, give a current one-time code (--totp CODE)",
        )
    })?;
    check_code(&state, &workspace, &device, &mfa, code).await?;
    // Read again: a recovery code given just now is used up.
    let mfa = state.storage.mfa(workspace.clone(), holder).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "not_enrolled", "the second factor was removed meanwhile")
    })?;
    tracing::info!(%workspace, device = %device.device_id, "second factor handed out to carry to another relay");
    Ok(Json(json!({
        "secret": daftar_sync::mfa::TotpSecret::from_bytes(mfa.secret).to_base32(),
        "recovery": mfa.recovery.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}

async fn member<S: RelayStorage>(state: &AppState<S>, workspace: &str, request: &Incoming) -> ApiResult<DeviceRecord> {
    let device = enrolled(state, workspace, request).await?;
    if !device.approved {
        return Err(ApiError::forbidden(
            "pending_approval",
            "this device waits for an owner or admin of the workspace to approve it (`daftar devices approve`)",
        ));
    }
    Ok(device)
}

/// Authenticates the device that signed the request as enrolled in `workspace` and not
/// revoked, approved or not: a pending device may ask only after itself.
async fn enrolled<S: RelayStorage>(
    state: &AppState<S>,
    workspace: &str,
    request: &Incoming,
) -> ApiResult<DeviceRecord> {
    let signed = signed_headers(&request.headers)?;
    // The same answer whether the workspace does not exist or the device is not in it, so ids
    // cannot be probed.
    let device = state
        .storage
        .device(workspace.to_owned(), signed.device.clone())
        .await?
        .ok_or_else(|| ApiError::forbidden("not_a_member", "this device is not a member of that workspace"))?;
    check_signature(state, &signed, &device.public_key, request)?;
    if device.revoked {
        return Err(ApiError::forbidden("revoked", "this device has been revoked from the workspace"));
    }
    rate_limit(state, &device.device_id)?;
    Ok(device)
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("bad_request", format!("the request body is not valid: {e}")))
}

fn key_from_hex(text: &str, what: &str) -> ApiResult<[u8; 32]> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ApiError::bad_request("bad_request", format!("{what} must be 32 bytes in hex")))
}

fn base64_field(text: &str, what: &str) -> ApiResult<Vec<u8>> {
    BASE64.decode(text).map_err(|_| ApiError::bad_request("bad_request", format!("{what} must be base64")))
}

/// A device not yet enrolled proves it holds the key it presents: the request must be signed by
/// that key, under that device id. Returns the checked id and key.
fn new_device<S>(
    state: &AppState<S>,
    device_id: &str,
    public_key: &str,
    request: &Incoming,
) -> ApiResult<(String, [u8; 32])> {
    let device_id = uuid_text(device_id, "device_id")?;
    let public_key = key_from_hex(public_key, "public_key")?;
    let signed = signed_headers(&request.headers)?;
    if signed.device != device_id {
        return Err(ApiError::unauthenticated("bad_signature", "the request must be signed by the device it enrols"));
    }
    check_signature(state, &signed, &public_key, request)?;
    Ok((device_id, public_key))
}

fn uuid_text(text: &str, what: &str) -> ApiResult<String> {
    uuid::Uuid::try_parse(text)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_request("bad_request", format!("{what} must be a UUID")))
}

#[derive(Deserialize)]
struct CreateWorkspace {
    workspace_id: String,
    device_id: String,
    public_key: String,
    /// The workspace key wrapped with the recovery key (opaque to the relay), base64.
    recovery_wrapped_key: String,
    /// Public half of the key derived from the recovery key, hex; it signs recovery requests.
    recovery_public_key: String,
}

async fn create_workspace<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let request: CreateWorkspace = parse_json(&incoming.body)?;
    let workspace = uuid_text(&request.workspace_id, "workspace_id")?;
    let (device_id, public_key) = new_device(&state, &request.device_id, &request.public_key, &incoming)?;
    let recovery = Recovery {
        public_key: key_from_hex(&request.recovery_public_key, "recovery_public_key")?,
        wrapped_key: base64_field(&request.recovery_wrapped_key, "recovery_wrapped_key")?,
    };
    let owner = DeviceRecord {
        device_id,
        public_key,
        role: Role::Owner,
        revoked: false,
        approved: true,
        agreement_key: None,
        member: None,
        join_proof: None,
        enrolled_at: now_ms(),
    };
    state.storage.create_workspace(workspace.clone(), owner, recovery).await?;
    tracing::info!(%workspace, "workspace created");
    Ok((StatusCode::CREATED, Json(json!({ "workspace_id": workspace }))))
}

#[derive(Deserialize)]
struct CreateInvite {
    token_hash: String,
    role: Role,
    expires_at: i64,
    wrapped_key: String,
}

async fn create_invite<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "create invites").await?;
    let request: CreateInvite = parse_json(&incoming.body)?;
    if request.role == Role::Owner && device.role != Role::Owner {
        return Err(ApiError::forbidden("role", "only an owner can invite another owner"));
    }
    if request.expires_at <= now_ms() {
        return Err(ApiError::bad_request("bad_request", "the invite expires in the past"));
    }
    let invite = NewInvite {
        token_hash: key_from_hex(&request.token_hash, "token_hash")?,
        role: request.role,
        expires_at: request.expires_at,
        wrapped_key: base64_field(&request.wrapped_key, "wrapped_key")?,
        created_by: device.device_id,
    };
    state.storage.add_invite(workspace, invite).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize)]
struct Enrol {
    device_id: String,
    public_key: String,
    /// The one-time token from the invite code, hex.
    token: String,
    /// Hex of the device's X25519 agreement key (for new epochs' workspace keys).
    #[serde(default)]
    agreement_key: Option<String>,
}

async fn enrol<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let request: Enrol = parse_json(&incoming.body)?;
    let (device_id, public_key) = new_device(&state, &request.device_id, &request.public_key, &incoming)?;
    let token = hex::decode(&request.token).map_err(|_| ApiError::bad_request("bad_request", "token must be hex"))?;
    let digest = relay_auth::token_hash(&token);
    let (role, wrapped_key) = state
        .storage
        .enrol(workspace.clone(), digest, device_id.clone(), public_key, request.agreement_key.clone(), now_ms())
        .await?;
    tracing::info!(%workspace, device = %device_id, role = role.as_str(), "device enrolled");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "role": role, "status": "pending", "wrapped_key": BASE64.encode(wrapped_key) })),
    ))
}

async fn list_devices<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    member(&state, &workspace, &incoming).await?;
    Ok(Json(state.storage.devices(workspace).await?))
}

#[derive(Deserialize)]
struct RegisterDevice {
    public_key: String,
    role: Role,
    #[serde(default)]
    revoked: bool,
    /// Whether the device was approved where it enrolled (absent: approved, as every device
    /// was before approval existed). Registering can approve, never un-approve.
    #[serde(default = "yes")]
    approved: bool,
    #[serde(default)]
    agreement_key: Option<String>,
    #[serde(default)]
    member: Option<String>,
}

fn yes() -> bool {
    true
}

/// Registers a device that is already a member of the workspace (on another relay) with this
/// relay, so a workspace can name several relays. Owners and admins only, as for invites; an
/// owner's device only by an owner. Registering again with the same key is harmless and can
/// only add a revocation, never lift one.
async fn register_device<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path((workspace, target)): Path<(String, String)>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "register devices").await?;
    let request: RegisterDevice = parse_json(&incoming.body)?;
    if request.role == Role::Owner && device.role != Role::Owner {
        return Err(ApiError::forbidden("role", "only an owner can register another owner's device"));
    }
    let target = uuid_text(&target, "device")?;
    let public_key = key_from_hex(&request.public_key, "public_key")?;
    match state.storage.device(workspace.clone(), target.clone()).await? {
        Some(existing) if existing.public_key != public_key => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "device_exists",
                "this relay knows that device id with another key",
            ));
        }
        Some(_) => {}
        None => {
            let record = DeviceRecord {
                device_id: target.clone(),
                public_key,
                role: request.role,
                revoked: false,
                approved: request.approved,
                agreement_key: request.agreement_key.clone(),
                member: request.member.clone(),
                join_proof: None,
                enrolled_at: now_ms(),
            };
            state.storage.add_device(workspace.clone(), record).await?;
        }
    }
    if request.approved {
        state.storage.approve(workspace.clone(), target.clone()).await?;
    }
    if let Some(member) = request.member {
        state.storage.set_member(workspace.clone(), target.clone(), member).await?;
    }
    if request.revoked {
        state.storage.revoke(workspace.clone(), target.clone()).await?;
    }
    tracing::info!(%workspace, device = %target, by = %device.device_id, "device registered");
    Ok(StatusCode::NO_CONTENT)
}

/// The device a management request names, by its id in the path: `not_found` if the
/// workspace has none such.
async fn target_device<S: RelayStorage>(
    state: &AppState<S>,
    workspace: &str,
    target: &str,
) -> ApiResult<(String, DeviceRecord)> {
    let target = uuid_text(target, "device")?;
    let record = state
        .storage
        .device(workspace.to_owned(), target.clone())
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such device in this workspace"))?;
    Ok((target, record))
}

async fn revoke<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path((workspace, target)): Path<(String, String)>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "revoke devices").await?;
    let (target, record) = target_device(&state, &workspace, &target).await?;
    if record.role == Role::Owner && device.role != Role::Owner {
        return Err(ApiError::forbidden("role", "only an owner can revoke an owner's device"));
    }
    state.storage.revoke(workspace.clone(), target.clone()).await?;
    tracing::info!(%workspace, device = %target, by = %device.device_id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
struct Approve {
    /// The member (the id of the member's first device) the device belongs to.
    #[serde(default)]
    member: Option<String>,
}

/// Approves a device that joined with an invite: from then on it may pull, push and subscribe.
/// Owners and admins (with their second factor); an owner's or admin's device only by an owner.
async fn approve<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path((workspace, target)): Path<(String, String)>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "approve devices").await?;
    let (target, record) = target_device(&state, &workspace, &target).await?;
    if record.revoked {
        return Err(ApiError::new(StatusCode::CONFLICT, "revoked", "that device was revoked; invite it again"));
    }
    if record.role >= Role::Admin && device.role != Role::Owner {
        return Err(ApiError::forbidden("role", "only an owner can approve an owner's or admin's device"));
    }
    state.storage.approve(workspace.clone(), target.clone()).await?;
    // The member it belongs to, so that member's devices share one second factor.
    let request: Approve = if incoming.body.is_empty() { Approve::default() } else { parse_json(&incoming.body)? };
    if let Some(member) = request.member {
        state.storage.set_member(workspace.clone(), target.clone(), uuid_text(&member, "member")?).await?;
    }
    tracing::info!(%workspace, device = %target, by = %device.device_id, "device approved");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct WrappedKey {
    holder: String,
    /// Base 64.
    wrapped: String,
    signature: String,
}

#[derive(Deserialize)]
struct NewEpoch {
    epoch: u32,
    keys: Vec<WrappedKey>,
}

fn epoch_key(epoch: u32, key: WrappedKey, signer: &str) -> ApiResult<EpochKey> {
    if key.holder != daftar_sync::epoch::RECOVERY_HOLDER {
        uuid_text(&key.holder, "holder")?;
    }
    let wrapped = base64_field(&key.wrapped, "wrapped")?;
    if wrapped.len() != daftar_sync::epoch::WRAPPED_LEN {
        return Err(ApiError::bad_request("bad_request", "a wrapped epoch key has the wrong length"));
    }
    Ok(EpochKey { epoch, holder: key.holder, wrapped, signer: signer.to_owned(), signature: key.signature })
}

/// Starts a new epoch of the workspace key: the new key wrapped for each remaining device and
/// for the recovery key (opaque here). Owners and admins, with their second factor; the epoch
/// must be the next one, so two rotations at once cannot both win.
async fn add_epoch<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "rotate the workspace key").await?;
    let request: NewEpoch = parse_json(&incoming.body)?;
    if !request.keys.iter().any(|k| k.holder == daftar_sync::epoch::RECOVERY_HOLDER) {
        return Err(ApiError::bad_request("bad_request", "a new epoch needs the recovery key's copy"));
    }
    let keys = request
        .keys
        .into_iter()
        .map(|k| epoch_key(request.epoch, k, &device.device_id))
        .collect::<ApiResult<Vec<_>>>()?;
    let holders = keys.len();
    state.storage.add_epoch(workspace.clone(), keys, now_ms()).await?;
    tracing::info!(%workspace, epoch = request.epoch, holders, by = %device.device_id, "workspace key rotated");
    Ok(StatusCode::CREATED)
}

/// Leaves one holder's copy of an existing epoch's key (for a newly approved device).
async fn put_epoch_key<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path((workspace, epoch, holder)): Path<(String, u32, String)>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "hand out workspace keys").await?;
    let request: WrappedKey = parse_json(&incoming.body)?;
    if request.holder != holder {
        return Err(ApiError::bad_request("bad_request", "the holder in the path and the body differ"));
    }
    let key = epoch_key(epoch, request, &device.device_id)?;
    state.storage.put_epoch_key(workspace, key, now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct EpochsQuery {
    #[serde(default)]
    after: u32,
}

/// The epoch keys wrapped for the signing device (and the recovery key's copies, which every
/// member may keep for backups), after `after`.
async fn epoch_keys<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    Query(query): Query<EpochsQuery>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = member(&state, &workspace, &incoming).await?;
    let mut keys = state.storage.epoch_keys(workspace.clone(), device.device_id, query.after).await?;
    keys.extend(
        state.storage.epoch_keys(workspace, daftar_sync::epoch::RECOVERY_HOLDER.to_owned(), query.after).await?,
    );
    Ok(Json(keys))
}

#[derive(Deserialize)]
struct SetRole {
    role: Role,
}

/// Gives a device another role, so the relay's coarse checks (who may push, invite, approve,
/// revoke) follow the membership document. Owners and admins with their second factor; only
/// an owner makes or unmakes owners and admins.
async fn set_role<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path((workspace, target)): Path<(String, String)>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = manager(&state, &workspace, &incoming, "change roles").await?;
    let request: SetRole = parse_json(&incoming.body)?;
    let (target, record) = target_device(&state, &workspace, &target).await?;
    if (record.role >= Role::Admin || request.role >= Role::Admin) && device.role != Role::Owner {
        return Err(ApiError::forbidden("role", "only an owner can make or unmake owners and admins"));
    }
    state.storage.set_role(workspace.clone(), target.clone(), request.role).await?;
    tracing::info!(%workspace, device = %target, by = %device.device_id, role = request.role.as_str(), "role changed");
    Ok(StatusCode::NO_CONTENT)
}

/// The signing device as the relay knows it — the one request a pending device may make, so
/// it can tell when it has been approved.
async fn own_status<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = enrolled(&state, &workspace, &incoming).await?;
    Ok(Json(json!({ "device_id": device.device_id, "role": device.role, "status": device.status() })))
}

#[derive(Deserialize)]
struct JoinProof {
    proof: String,
}

/// A pending device leaves the proof that the keys it enrolled with are its own (see
/// `daftar_sync::invite::JoinClaim`), once, for the approver to check. Opaque here.
async fn put_join_proof<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = enrolled(&state, &workspace, &incoming).await?;
    let request: JoinProof = parse_json(&incoming.body)?;
    if request.proof.is_empty() || request.proof.len() > 128 {
        return Err(ApiError::bad_request("bad_request", "a join proof is a short string"));
    }
    if !state.storage.set_join_proof(workspace, device.device_id, request.proof).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "join_proof_exists",
            "this device is approved already or has left its join proof",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct PushRequest {
    envelopes: Vec<PushEnvelope>,
}

#[derive(Deserialize)]
struct PushEnvelope {
    id: String,
    data: String,
}

async fn push<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = member(&state, &workspace, &incoming).await?;
    if !device.role.may_push() {
        return Err(ApiError::forbidden("role", "viewers cannot push changes"));
    }
    let request: PushRequest = parse_json(&incoming.body)?;
    let mut batch = Vec::with_capacity(request.envelopes.len());
    for envelope in request.envelopes {
        let id = uuid_text(&envelope.id, "envelope id")?;
        let bytes = base64_field(&envelope.data, "envelope data")?;
        // The relay can read the header (not the content): refuse what is not an envelope, or
        // claims to come from another device than the one that signed the request.
        let parsed = daftar_sync::Envelope::parse(&bytes)
            .map_err(|e| ApiError::bad_request("bad_envelope", format!("envelope {id}: {e}")))?;
        if parsed.sender.to_string() != device.device_id {
            return Err(ApiError::forbidden(
                "sender_mismatch",
                format!("envelope {id} names another device as its sender"),
            ));
        }
        batch.push((id, bytes));
    }
    let bytes: usize = batch.iter().map(|(_, b)| b.len()).sum();
    let seqs = state.storage.push(workspace.clone(), batch, now_ms()).await?;
    if let Some(head) = seqs.iter().max() {
        // No subscribers is fine: they pull on connect.
        let _ = state.heads.send((workspace.clone(), *head));
    }
    tracing::info!(%workspace, device = %device.device_id, count = seqs.len(), bytes, "pushed");
    Ok(Json(json!({ "seqs": seqs })))
}

#[derive(Deserialize)]
struct PullQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct PulledEnvelope {
    seq: i64,
    id: String,
    data: String,
}

async fn pull<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    Query(query): Query<PullQuery>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    member(&state, &workspace, &incoming).await?;
    let limit = query.limit.unwrap_or(500).clamp(1, 5000);
    let envelopes = state.storage.pull(workspace, query.after, limit).await?;
    let next = envelopes.last().map(|e| e.seq).unwrap_or(query.after);
    let envelopes: Vec<PulledEnvelope> =
        envelopes.into_iter().map(|e| PulledEnvelope { seq: e.seq, id: e.id, data: BASE64.encode(e.bytes) }).collect();
    Ok(Json(json!({ "envelopes": envelopes, "next": next })))
}

/// Live subscription: a server-sent event `seq` with the log's newest sequence number now and
/// after every accepted push, so devices pull within milliseconds of a change.
async fn events<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    member(&state, &workspace, &incoming).await?;
    let receiver = state.heads.subscribe();
    let head = state.storage.head(workspace.clone()).await?;
    let first =
        tokio_stream::once(Ok::<_, std::convert::Infallible>(Event::default().event("seq").data(head.to_string())));
    let updates = BroadcastStream::new(receiver).filter_map(move |message| match message {
        Ok((w, seq)) if w == workspace => Some(Ok(Event::default().event("seq").data(seq.to_string()))),
        Ok(_) => None,
        // A slow subscriber missed some heads; it pulls from its cursor anyway.
        Err(_) => Some(Ok(Event::default().event("lagged").data(""))),
    });
    Ok(Sse::new(first.chain(updates)).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
struct SnapshotPut {
    seq: i64,
    #[serde(default)]
    part: u32,
    #[serde(default = "one")]
    parts: u32,
}

fn one() -> u32 {
    1
}

/// The most parts a snapshot may have (with 8 MiB bodies: far beyond any office's data).
const MAX_SNAPSHOT_PARTS: u32 = 100_000;

/// Stores one part of an encrypted snapshot covering the log up to `seq`, for fast bootstrap.
/// A snapshot replaces the current one when its last part arrives, and only if it covers a
/// later point of the log.
async fn put_snapshot<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    Query(query): Query<SnapshotPut>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let device = member(&state, &workspace, &incoming).await?;
    // A new device takes a snapshot in without judging each change inside it, so only a device
    // trusted with the workspace's membership may make one.
    if !device.role.manages_devices() {
        return Err(ApiError::forbidden("role", "only owners' and admins' devices upload snapshots"));
    }
    let head = state.storage.head(workspace.clone()).await?;
    if query.seq < 0 || query.seq > head {
        return Err(ApiError::bad_request("bad_request", format!("seq {} is beyond the log's head {head}", query.seq)));
    }
    if query.parts == 0 || query.parts > MAX_SNAPSHOT_PARTS || query.part >= query.parts {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("part {} of {} is not a part of a snapshot", query.part, query.parts),
        ));
    }
    let size = incoming.body.len();
    let part = SnapshotPart { seq: query.seq, part: query.part, parts: query.parts };
    let stored = state.storage.put_snapshot_part(workspace.clone(), part, incoming.body.to_vec(), now_ms()).await?;
    tracing::info!(%workspace, seq = query.seq, part = query.part, parts = query.parts, bytes = size, ?stored, "snapshot");
    Ok(Json(json!({ "kept": stored == PartStored::Completed, "stored": stored != PartStored::Stale })))
}

#[derive(Deserialize)]
struct SnapshotGet {
    seq: Option<i64>,
    #[serde(default)]
    part: u32,
    /// Only the log position and the number of parts, as JSON.
    #[serde(default)]
    manifest: bool,
}

/// One part of the current snapshot (the first unless `part` is given), with the log position
/// it covers and its number of parts in headers. Asking for parts of a snapshot that has since
/// been replaced (`seq`) gets `snapshot_replaced`, so a bootstrap never mixes two snapshots.
async fn get_snapshot<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    Query(query): Query<SnapshotGet>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    member(&state, &workspace, &incoming).await?;
    let (seq, parts) = state.storage.snapshot(workspace.clone()).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "no_snapshot", "this workspace has no snapshot yet; pull the log")
    })?;
    if query.manifest {
        return Ok(Json(json!({ "seq": seq, "parts": parts })).into_response());
    }
    if query.seq.is_some_and(|asked| asked != seq) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "snapshot_replaced",
            "a newer snapshot replaced that one; start the bootstrap again",
        ));
    }
    if query.part >= parts {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("the snapshot has {parts} parts")));
    }
    let bytes = state.storage.snapshot_part(workspace, seq, query.part).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "snapshot_replaced", "a newer snapshot replaced that one; start again")
    })?;
    Ok(([("x-daftar-snapshot-seq", seq.to_string()), ("x-daftar-snapshot-parts", parts.to_string())], bytes)
        .into_response())
}

/// The workspace's recovery material, for a member adding a further relay: the public half of
/// the recovery signing key and the recovery-wrapped workspace key (opaque without the recovery
/// key).
async fn recovery_material<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    member(&state, &workspace, &incoming).await?;
    let (public, wrapped) =
        state.storage.recovery(workspace.clone()).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "this workspace has no recovery material")
        })?;
    let epochs = state.storage.epoch_keys(workspace, daftar_sync::epoch::RECOVERY_HOLDER.to_owned(), 0).await?;
    Ok(Json(json!({
        "recovery_public_key": hex::encode(public),
        "recovery_wrapped_key": BASE64.encode(wrapped),
        "epochs": epochs,
    })))
}

/// The device header value of requests signed with the recovery key.
pub const RECOVERY_SIGNER: &str = "recovery";

#[derive(Deserialize)]
struct Recover {
    device_id: String,
    public_key: String,
}

/// Rebuilds access to a workspace whose devices are all lost: a request signed with the key
/// derived from the recovery key enrols a new owner device and receives the recovery-wrapped
/// workspace key (which only the recovery key can unwrap).
async fn recover<S: RelayStorage>(
    State(state): State<Arc<AppState<S>>>,
    Path(workspace): Path<String>,
    incoming: Incoming,
) -> ApiResult<impl IntoResponse> {
    let wrong_key = || {
        ApiError::unauthenticated(
            "bad_recovery_key",
            "the recovery key does not match this workspace; check it for typos and check the workspace id",
        )
    };
    let signed = signed_headers(&incoming.headers)?;
    if signed.device != RECOVERY_SIGNER {
        return Err(wrong_key());
    }
    // Attempts are limited per workspace, so the recovery key cannot be guessed online.
    rate_limit(&state, &format!("recovery:{workspace}"))?;
    let (public, wrapped) = state.storage.recovery(workspace.clone()).await?.ok_or_else(wrong_key)?;
    check_signature(&state, &signed, &public, &incoming).map_err(|e| match e.code {
        "bad_signature" => wrong_key(),
        _ => e,
    })?;
    let request: Recover = parse_json(&incoming.body)?;
    let device = DeviceRecord {
        device_id: uuid_text(&request.device_id, "device_id")?,
        public_key: key_from_hex(&request.public_key, "public_key")?,
        role: Role::Owner,
        revoked: false,
        // The recovery key is the workspace's last word: no one is left to approve.
        approved: true,
        agreement_key: None,
        member: None,
        join_proof: None,
        enrolled_at: now_ms(),
    };
    let device_id = device.device_id.clone();
    state.storage.add_device(workspace.clone(), device).await?;
    tracing::info!(%workspace, device = %device_id, "workspace recovered onto a new device");
    // Every later epoch's key, as only the recovery key opens it, so the new owner reads all.
    let epochs = state.storage.epoch_keys(workspace, daftar_sync::epoch::RECOVERY_HOLDER.to_owned(), 0).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "role": Role::Owner, "recovery_wrapped_key": BASE64.encode(wrapped), "epochs": epochs })),
    ))
}
