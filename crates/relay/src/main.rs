use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use daftar_relay::config::{Config, Layer};
use daftar_relay::storage::SqliteStorage;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Daftar's relay: stores sealed envelopes for the devices of each workspace.
#[derive(Debug, Parser)]
#[command(name = "daftar-relay", version)]
struct Args {
    /// Address to listen on, such as 127.0.0.1:8787 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// The relay's SQLite database file.
    #[arg(long)]
    database: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// PEM certificate chain; with --tls-key the relay serves HTTPS.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// A TOML file with `listen`, `database`, `max_body_bytes`, `rate_per_second`, `rate_burst`.
    /// Seconds a verified one-time code lets privileged requests through without another.
    #[arg(long)]
    mfa_window_seconds: Option<u32>,
    #[arg(long, env = "DAFTAR_RELAY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAFTAR_RELAY_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => Layer::from_file(path)?,
        None => Layer::default(),
    };
    let env = Layer::from_env(|k| std::env::var(k).ok())?;
    let flags = Layer {
        listen: args.listen,
        database: args.database,
        max_body_bytes: args.max_body_bytes,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        mfa_window_seconds: args.mfa_window_seconds,
        ..Default::default()
    };
    let config = Config::resolve(flags, env, file)?;
    let storage = SqliteStorage::open(&config.database)
        .with_context(|| format!("could not open the relay database {}", config.database.display()))?;
    let limits = daftar_relay::Limits {
        max_body_bytes: config.max_body_bytes,
        rate_per_second: config.rate_per_second,
        burst: f64::from(config.rate_burst),
        mfa_window_ms: i64::from(config.mfa_window_seconds) * 1000,
        require_second_factor: config.require_second_factor,
    };
    let app = daftar_relay::router(storage, limits)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    if let Some((cert, key)) = &config.tls {
        // One crypto library in the build: rustls runs on ring, like the rest of Daftar.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.with_context(|| {
            format!("could not load the TLS certificate {} and key {}", cert.display(), key.display())
        })?;
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("could not listen on {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        announce(&format!("https://{address}"), &config)?;
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
        });
        axum_server::from_tcp_rustls(listener, tls)?.handle(handle).serve(app.into_make_service()).await?;
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("could not listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    announce(&format!("http://{address}"), &config)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Tells whoever started the relay where it listens (tests and scripts read this line).
fn announce(url: &str, config: &Config) -> anyhow::Result<()> {
    println!("daftar-relay listening on {url}");
    std::io::stdout().flush()?;
    tracing::info!(%url, database = %config.database.display(), "relay started");
    Ok(())
}
