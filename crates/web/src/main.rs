//! `daftar-web`: the app's API ([`daftar_api`]) over HTTP on loopback, and the built UI
//! (`ui/dist`). The UI's client module talks to it when it does not run inside the Tauri window,
//! so Playwright in Chromium drives the real Rust backend on a real data directory.
//!
//! ```text
//! daftar-web --data-dir DIR [--listen 127.0.0.1:0] [--ui ui/dist]
//! ```
//! `POST /api` takes one request (`{"command": …}`) and answers its JSON, or an error
//! `{code, message, problems}` with status 400 (422 for invalid input, 404, 409, 503). `GET
//! /events` streams background sync events (server-sent events). It listens on loopback only and
//! has no authentication: it is a test and development shell, not a server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use daftar_api::{Api, ApiError, ErrorCode, Request};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

struct Shell {
    api: Arc<Api>,
    events: broadcast::Sender<String>,
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NotFound | ErrorCode::NotInitialised => StatusCode::NOT_FOUND,
        ErrorCode::Conflict | ErrorCode::AlreadyInitialised => StatusCode::CONFLICT,
        ErrorCode::Busy | ErrorCode::Offline => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Io | ErrorCode::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn handle(State(shell): State<Arc<Shell>>, body: axum::body::Bytes) -> Response {
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let error = ApiError::new(ErrorCode::Invalid, format!("the request is not understood: {e}"));
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
    };
    let api = shell.api.clone();
    match tokio::task::spawn_blocking(move || api.handle(request)).await {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(error)) => (status_of(error.code), Json(error)).into_response(),
        Err(e) => {
            let error = ApiError::new(ErrorCode::Internal, format!("the request failed: {e}"));
            (StatusCode::INTERNAL_SERVER_ERROR, Json(error)).into_response()
        }
    }
}

async fn events(
    State(shell): State<Arc<Shell>>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let stream = BroadcastStream::new(shell.events.subscribe())
        .filter_map(|message| message.ok().map(|data| Ok(Event::default().event("sync").data(data))));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter(std::env::var("DAFTAR_WEB_LOG").unwrap_or_else(|_| "warn".into())).init();
    let mut data_dir = daftar_api::default_data_dir();
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut ui = PathBuf::from("ui/dist");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--listen" => listen = value.parse().context("--listen takes an address such as 127.0.0.1:8080")?,
            "--ui" => ui = PathBuf::from(value),
            other => bail!("unknown argument {other:?} (daftar-web --data-dir DIR [--listen ADDR] [--ui DIR])"),
        }
    }
    if !listen.ip().is_loopback() {
        bail!("daftar-web has no authentication and listens on loopback only, not {listen}");
    }
    let data_dir = data_dir.context("no data directory is known; pass --data-dir or set DAFTAR_DATA_DIR")?;
    let api = Arc::new(Api::new(data_dir));
    let (sender, _) = broadcast::channel(64);
    let forward = sender.clone();
    api.start_sync(Arc::new(move |event| {
        let _ = forward.send(serde_json::to_string(&event).unwrap_or_default());
    }));
    api.start_einvoicing();
    api.start_backups();
    let shell = Arc::new(Shell { api, events: sender });
    let app = Router::new()
        .route("/api", post(handle))
        .route("/events", get(events))
        .fallback_service(tower_http::services::ServeDir::new(&ui).append_index_html_on_directories(true))
        .with_state(shell);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("daftar-web listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
