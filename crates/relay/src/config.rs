//! Relay configuration: defaults, then a TOML file, then `DAFTAR_RELAY_*` environment variables,
//! then command-line flags, each overriding the one before. Keys: `listen`, `database`,
//! `max_body_bytes`, `rate_per_second`, `rate_burst`, `tls_cert`, `tls_key`, `mfa_window_seconds`,
//! `require_second_factor` (as `DAFTAR_RELAY_LISTEN`, …).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The settings the relay runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: PathBuf,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Average requests per second allowed per device.
    pub rate_per_second: f64,
    /// Requests a device may make in a burst.
    pub rate_burst: u32,
    /// PEM certificate chain and private key; with both, the relay serves HTTPS only.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Seconds a verified one-time code lets a device's privileged requests through without
    /// another (default 300).
    pub mfa_window_seconds: u32,
    /// Whether owners and admins must have a second factor for privileged requests (default
    /// true; off only for protocol tests and relays that predate it).
    pub require_second_factor: bool,
}

/// Settings as they appear in the file, the environment and the flags: all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<String>,
    pub database: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub rate_per_second: Option<f64>,
    pub rate_burst: Option<u32>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub mfa_window_seconds: Option<u32>,
    pub require_second_factor: Option<bool>,
}

/// The configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read the configuration file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the configuration file {path} is not valid: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{source_name}: {value:?} is not a listen address such as 127.0.0.1:8787")]
    Listen { source_name: String, value: String },
    #[error("TLS needs both a certificate (tls_cert) and its private key (tls_key)")]
    HalfTls,
    #[error("{source_name}: {value:?} is not a number")]
    Number { source_name: String, value: String },
}

impl Layer {
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.to_owned(), detail: e.to_string() })
    }

    /// `DAFTAR_RELAY_LISTEN`, `DAFTAR_RELAY_DATABASE`, `DAFTAR_RELAY_MAX_BODY_BYTES`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        fn number<T: std::str::FromStr>(
            get: &impl Fn(&str) -> Option<String>,
            name: &str,
        ) -> Result<Option<T>, ConfigError> {
            match get(name) {
                Some(v) => v.parse().map(Some).map_err(|_| ConfigError::Number { source_name: name.into(), value: v }),
                None => Ok(None),
            }
        }
        Ok(Layer {
            listen: get("DAFTAR_RELAY_LISTEN"),
            database: get("DAFTAR_RELAY_DATABASE").map(PathBuf::from),
            max_body_bytes: number(&get, "DAFTAR_RELAY_MAX_BODY_BYTES")?,
            rate_per_second: number(&get, "DAFTAR_RELAY_RATE_PER_SECOND")?,
            rate_burst: number(&get, "DAFTAR_RELAY_RATE_BURST")?,
            tls_cert: get("DAFTAR_RELAY_TLS_CERT").map(PathBuf::from),
            tls_key: get("DAFTAR_RELAY_TLS_KEY").map(PathBuf::from),
            mfa_window_seconds: number(&get, "DAFTAR_RELAY_MFA_WINDOW_SECONDS")?,
            require_second_factor: number(&get, "DAFTAR_RELAY_REQUIRE_SECOND_FACTOR")?,
        })
    }

    fn over(self, lower: Layer) -> Layer {
        Layer {
            listen: self.listen.or(lower.listen),
            database: self.database.or(lower.database),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            rate_per_second: self.rate_per_second.or(lower.rate_per_second),
            rate_burst: self.rate_burst.or(lower.rate_burst),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            mfa_window_seconds: self.mfa_window_seconds.or(lower.mfa_window_seconds),
            require_second_factor: self.require_second_factor.or(lower.require_second_factor),
        }
    }
}

impl Config {
    /// Combines the layers, highest priority first: flags, environment, file.
    pub fn resolve(flags: Layer, env: Layer, file: Layer) -> Result<Config, ConfigError> {
        let merged = flags.over(env.over(file));
        let listen_text = merged.listen.unwrap_or_else(|| "127.0.0.1:8787".into());
        let listen = listen_text
            .parse()
            .map_err(|_| ConfigError::Listen { source_name: "listen".into(), value: listen_text.clone() })?;
        Ok(Config {
            listen,
            database: merged.database.unwrap_or_else(|| PathBuf::from("daftar-relay.db")),
            max_body_bytes: merged.max_body_bytes.unwrap_or(8 * 1024 * 1024),
            rate_per_second: merged.rate_per_second.unwrap_or(50.0),
            rate_burst: merged.rate_burst.unwrap_or(500),
            mfa_window_seconds: merged.mfa_window_seconds.unwrap_or(300),
            require_second_factor: merged.require_second_factor.unwrap_or(true),
            tls: match (merged.tls_cert, merged.tls_key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err(ConfigError::HalfTls),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_environment_beat_file() {
        let file = Layer {
            listen: Some("0.0.0.0:1".into()),
            database: Some("file.db".into()),
            max_body_bytes: Some(10),
            ..Default::default()
        };
        let env = Layer::from_env(|k| (k == "DAFTAR_RELAY_DATABASE").then(|| "env.db".to_owned())).unwrap();
        let flags = Layer { listen: Some("127.0.0.1:2".into()), ..Default::default() };
        let config = Config::resolve(flags, env, file).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:2");
        assert_eq!(config.database, PathBuf::from("env.db"));
        assert_eq!(config.max_body_bytes, 10);
        let bad = Config::resolve(
            Layer { listen: Some("nowhere".into()), ..Default::default() },
            Layer::default(),
            Layer::default(),
        );
        assert!(bad.unwrap_err().to_string().contains("is not a listen address"));
    }
}
