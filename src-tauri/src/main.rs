//! `daftar-app`: the desktop window. A thin Tauri 2 shell over [`daftar_api`]: one command,
//! `call`, converts the UI's request, runs [`Api::handle`] off the main thread and returns its
//! answer or `{code, message, problems}`. Background sync reports through the `sync` event.
//! Single instance (a second start focuses the first window); window size and position are
//! remembered; logs go to `DATA_DIR/logs/daftar-app.log`.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::sync::Arc;

use daftar_api::{Api, ApiError, ErrorCode, Request};
use tauri::{Emitter, Manager};

/// When the process started: the start of "start to an interactive invoice list".
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// The UI shows its first page of invoices and answers input: logged, and with
/// `DAFTAR_APP_EXIT_AFTER_READY` printed and the app closed (for `daftar-app-bench`).
#[tauri::command]
fn ready(rows: u32) {
    let elapsed = STARTED.get().map(|s| s.elapsed().as_secs_f64() * 1e3).unwrap_or_default();
    tracing::info!(elapsed_ms = elapsed, rows, "interactive invoice list");
    if std::env::var_os("DAFTAR_APP_EXIT_AFTER_READY").is_some() {
        println!("ready {elapsed:.1} ms, {rows} rows");
        std::process::exit(0);
    }
}

#[tauri::command]
async fn call(api: tauri::State<'_, Arc<Api>>, request: Request) -> Result<serde_json::Value, ApiError> {
    let api = api.inner().clone();
    tauri::async_runtime::spawn_blocking(move || api.handle(request))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the request failed: {e}")))?
}

/// Logs to a file in the data directory (stderr too when it is a terminal).
fn start_logging(dir: &std::path::Path) {
    let logs = dir.join("logs");
    let file = std::fs::create_dir_all(&logs)
        .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(logs.join("daftar-app.log")));
    let filter = std::env::var("DAFTAR_APP_LOG").unwrap_or_else(|_| "info".into());
    match file {
        Ok(file) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        Err(_) => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
}

fn main() {
    STARTED.get_or_init(std::time::Instant::now);
    let Some(dir) = daftar_api::default_data_dir() else {
        eprintln!("daftar-app: no data directory is known for this user; set DAFTAR_DATA_DIR");
        std::process::exit(2);
    };
    start_logging(&dir);
    tracing::info!(data_dir = %dir.display(), "starting");
    let api = Arc::new(Api::new(dir));
    let exit_api = api.clone();
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.set_focus();
            }
        }))
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .manage(api.clone())
        .setup(move |app| {
            let handle = app.handle().clone();
            api.start_sync(Arc::new(move |event| {
                let _ = handle.emit("sync", event);
            }));
            api.start_einvoicing();
            api.start_backups();
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![call, ready])
        .build(tauri::generate_context!());
    let app = match result {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "the window could not start");
            eprintln!("daftar-app: the window could not start: {e}");
            std::process::exit(1);
        }
    };
    app.run(move |_, event| {
        if let tauri::RunEvent::Exit = event {
            // A clean exit is one of the moments a backup is made (when anything changed).
            if let Err(e) = exit_api.backup_on_exit() {
                tracing::error!(error = %e, "the backup on exit failed");
            }
        }
    });
}
