//! The disaster-recovery drill: recovery rehearsed, without touching the live store. Each path
//! a dead machine would take — the newest backup, and the relay with the recovery key — is
//! restored into a temporary directory, compared document by document with the live store,
//! and timed; the recovery point is the time of the newest change each path brings back.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use daftar_domain::DocumentId;
use daftar_store::{DrillRecord, Store};
use daftar_sync::RecoveryKey;
use serde::Serialize;

use crate::{BackupError, list, restore_into};

/// What one recovery path brought back.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PathReport {
    /// Whether the path recovered a workspace that checks out (`store verify`).
    pub ok: bool,
    /// Why it was not tried (no relay, no recovery key given), and the same as a code:
    /// `no_relay` or `no_recovery_key`.
    pub skipped: Option<String>,
    pub skipped_code: Option<String>,
    /// What failed, when it failed.
    pub error: Option<String>,
    /// The backup file or the relay.
    pub source: Option<String>,
    /// The time of the newest change it recovered, and how old that is.
    pub recovery_point: Option<String>,
    pub recovery_point_age_seconds: Option<i64>,
    /// How long the recovery took.
    pub seconds: f64,
    pub documents: u64,
    /// Documents of the live store the path did not bring back.
    pub missing: Vec<String>,
    /// Documents it brought back at another version than the live store has.
    pub differs: Vec<String>,
    /// Documents it brought back that the live store does not have (purged since).
    pub extra: Vec<String>,
}

impl PathReport {
    fn skipped(code: &str, why: &str) -> Self {
        PathReport {
            ok: true,
            skipped: Some(why.to_owned()),
            skipped_code: Some(code.to_owned()),
            ..Default::default()
        }
    }

    fn failed(source: Option<String>, error: String, started: Instant) -> Self {
        PathReport {
            ok: false,
            error: Some(error),
            source,
            seconds: started.elapsed().as_secs_f64(),
            ..Default::default()
        }
    }
}

/// The drill's report (`daftar drill --json`), also kept for the settings screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillReport {
    /// Every path tried recovered a workspace that checks out.
    pub ok: bool,
    pub at: String,
    pub backup: PathReport,
    pub relay: PathReport,
}

/// Every document of `store` with its heads.
fn versions(store: &Store) -> Result<HashMap<DocumentId, Vec<[u8; 32]>>, BackupError> {
    let read = store.consistent_read()?;
    let manifest = read.manifest()?;
    // Devices' events (the audit trail) move on with every backup and drill: not compared.
    Ok(manifest
        .ids
        .into_iter()
        .zip(manifest.heads)
        .zip(manifest.kinds)
        .filter(|(_, kind)| *kind != daftar_store::DocKind::Events)
        .map(|(version, _)| version)
        .collect())
}

/// The time of the newest change in `store`, reading every document (which also proves each
/// one loads).
fn newest_change(store: &Store) -> Result<i64, BackupError> {
    let read = store.consistent_read()?;
    let manifest = read.manifest()?;
    let mut newest = 0;
    for ids in manifest.ids.chunks(512) {
        let prepared = daftar_store::prepare_snapshot(read.documents(ids)?, None)?;
        newest = prepared
            .summaries()
            .filter(|s| s.kind != daftar_store::DocKind::Events)
            .map(|s| s.newest)
            .fold(newest, i64::max);
    }
    Ok(newest)
}

/// Compares a recovered store with the live one.
fn compare(
    live: &HashMap<DocumentId, Vec<[u8; 32]>>,
    recovered: &Store,
    source: String,
    seconds: f64,
) -> Result<PathReport, BackupError> {
    let theirs = versions(recovered)?;
    let mut report = PathReport { source: Some(source), seconds, documents: theirs.len() as u64, ..Default::default() };
    for (id, heads) in live {
        match theirs.get(id) {
            None => report.missing.push(id.to_string()),
            Some(h) if h != heads => report.differs.push(id.to_string()),
            Some(_) => {}
        }
    }
    report.extra = theirs.keys().filter(|id| !live.contains_key(id)).map(ToString::to_string).collect();
    for list in [&mut report.missing, &mut report.differs, &mut report.extra] {
        list.sort();
    }
    let newest = newest_change(recovered)?;
    if newest > 0 {
        let at = DateTime::from_timestamp_millis(newest).unwrap_or_default();
        report.recovery_point = Some(at.to_rfc3339_opts(SecondsFormat::Millis, true));
        report.recovery_point_age_seconds = Some((Utc::now() - at).num_seconds().max(0));
    }
    let verify = recovered.verify()?;
    report.ok = verify.is_ok();
    if !report.ok {
        report.error = Some(format!("the recovered store does not verify: {}", verify.problems.join("; ")));
    }
    Ok(report)
}

fn scratch_passphrase() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Runs the drill and records its result in the live store. `recovery` is the recovery key
/// as the person typed it: with it, both paths are rehearsed exactly as on a new machine;
/// without it, the backup is opened with this device's keyring and the relay path is skipped.
/// `scratch` is where the temporary directories go (the system's temporary folder by default).
pub fn drill(
    live: &mut Store,
    recovery: Option<&RecoveryKey>,
    scratch: Option<&Path>,
) -> Result<DrillReport, BackupError> {
    let scratch = match scratch {
        Some(dir) => tempfile::Builder::new().prefix("daftar-drill-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("daftar-drill-").tempdir(),
    }
    .map_err(|source| BackupError::Io { path: "a temporary directory".into(), source })?;
    let at = Utc::now();
    let live_versions = versions(live)?;

    let backup = match list(live)?.into_iter().next() {
        None => PathReport::failed(
            None,
            "there is no backup yet; make one with `daftar backup create`".into(),
            Instant::now(),
        ),
        Some(newest) => {
            let started = Instant::now();
            let dir = scratch.path().join("from-backup");
            let keyring = if recovery.is_some() { None } else { Some(&*live) };
            let file = std::path::PathBuf::from(&newest.file);
            match restore_into(
                &file,
                &dir,
                recovery,
                keyring,
                daftar_store::KeyChoice::Passphrase(scratch_passphrase()),
            ) {
                Ok(restored) => {
                    let seconds = started.elapsed().as_secs_f64();
                    compare(&live_versions, &restored.store, newest.file.clone(), seconds)?
                }
                Err(e) => PathReport::failed(Some(newest.file), e.to_string(), started),
            }
        }
    };

    let relay = match (live.relays()?.first().map(|r| r.url.clone()), recovery) {
        (None, _) => PathReport::skipped("no_relay", "no relay is configured"),
        (Some(_), None) => {
            PathReport::skipped("no_recovery_key", "the relay path needs the recovery key (--recovery-key)")
        }
        (Some(url), Some(recovery)) => {
            let started = Instant::now();
            let dir = scratch.path().join("from-relay");
            match daftar_sync_driver::rehearse_recovery(live, &dir, recovery, scratch_passphrase()) {
                Ok(rebuilt) => {
                    let seconds = started.elapsed().as_secs_f64();
                    compare(&live_versions, &rebuilt, url, seconds)?
                }
                Err(e) => PathReport::failed(Some(url), e.to_string(), started),
            }
        }
    };
    let report =
        DrillReport { ok: backup.ok && relay.ok, at: at.to_rfc3339_opts(SecondsFormat::Millis, true), backup, relay };
    live.record_drill(&DrillRecord {
        at: at.timestamp_millis(),
        ok: report.ok,
        report: serde_json::to_value(&report).expect("a report serialises"),
    })?;
    Ok(report)
}
