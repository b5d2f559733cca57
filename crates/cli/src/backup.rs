//! `daftar backup …`: make, list, check and restore backups (daftar-backup does the work).

use anyhow::{Result, anyhow};
use daftar_backup::{BackupInfo, CheckReport};
use daftar_domain::DocumentId;
use daftar_store::{DocKind, KeyChoice, RevertFilter, Store};
use daftar_sync::RecoveryKey;
use serde_json::json;

use crate::commands::{data_dir, open, passphrase};
use crate::output::print_json;
use crate::{BackupCommand, Cli};

fn recovery(text: Option<&str>) -> Result<Option<RecoveryKey>> {
    Ok(text.map(RecoveryKey::parse).transpose()?)
}

fn print_backup(b: &BackupInfo) {
    let state = match (b.verified, &b.problem) {
        (Some(true), _) => "verified".to_owned(),
        (Some(false), Some(problem)) => format!("FAILED: {problem}"),
        (Some(false), None) => "FAILED".to_owned(),
        (None, _) => "not checked on this device".to_owned(),
    };
    println!(
        "{}  {:>10} bytes  {} invoices, {} customers, {} items  {}  {}",
        b.created_at, b.bytes, b.counts.invoices, b.counts.customers, b.counts.items, state, b.file
    );
}

pub fn run(cli: &Cli, command: &BackupCommand) -> Result<()> {
    match command {
        BackupCommand::Create { to, reason } => {
            let mut store = open(cli)?;
            let backup = daftar_backup::create(&mut store, reason, to.as_deref())?;
            if cli.json {
                print_json(&backup);
            } else {
                println!("Backed up and verified: {}", backup.file);
                print_backup(&backup);
            }
            Ok(())
        }
        BackupCommand::List => {
            let store = open(cli)?;
            let backups = daftar_backup::list(&store)?;
            if cli.json {
                print_json(&backups);
            } else if backups.is_empty() {
                println!("No backups yet in {}", daftar_backup::backup_dir(&store)?.display());
            } else {
                backups.iter().for_each(print_backup);
                if let Some(warning) = daftar_backup::status(&store)?.warning {
                    println!("Attention: {}", warning_text(&warning));
                }
            }
            Ok(())
        }
        BackupCommand::Verify { file, all, recovery_key } => {
            let mut store = open(cli)?;
            let recovery = recovery(recovery_key.as_deref())?;
            let files: Vec<std::path::PathBuf> = match (file, all) {
                (Some(file), _) => vec![file.clone()],
                (None, true) => daftar_backup::list(&store)?.into_iter().map(|b| b.file.into()).collect(),
                (None, false) => {
                    let newest = daftar_backup::list(&store)?
                        .into_iter()
                        .next()
                        .ok_or_else(|| anyhow!("there is no backup yet; make one with `daftar backup create`"))?;
                    vec![newest.file.into()]
                }
            };
            let mut results = Vec::new();
            let mut failed = 0;
            for file in &files {
                let result: std::result::Result<CheckReport, _> =
                    daftar_backup::verify(&mut store, file, recovery.as_ref());
                match result {
                    Ok(report) => {
                        if !cli.json {
                            println!(
                                "ok      {}  ({} documents: {} invoices, {} customers, {} items)",
                                file.display(),
                                report.counts.documents,
                                report.counts.invoices,
                                report.counts.customers,
                                report.counts.items
                            );
                        }
                        results.push(json!({ "file": file, "verified": true, "counts": report.counts }));
                    }
                    Err(e) => {
                        failed += 1;
                        if !cli.json {
                            println!("FAILED  {}: {e}", file.display());
                        }
                        results.push(
                            json!({ "file": file, "verified": false, "code": e.code(), "problem": e.to_string() }),
                        );
                    }
                }
            }
            if cli.json {
                print_json(&results);
            }
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        BackupCommand::Restore { file, into, merge, revert_to_backup, only_deleted, only, recovery_key, key_file } => {
            let recovery = recovery(recovery_key.as_deref())?;
            if let Some(dir) = into {
                // On a device of the workspace its keyring opens the backup; elsewhere the
                // recovery key does.
                let live = match &recovery {
                    Some(_) => None,
                    None => {
                        let own = data_dir(cli)?;
                        if !own.join("daftar.json").exists() {
                            return Err(anyhow!(
                                "this machine has no workspace to open {} with; pass --recovery-key",
                                file.display()
                            ));
                        }
                        Some(open(cli)?)
                    }
                };
                let key = if *key_file { KeyChoice::Passphrase(passphrase(true)?) } else { KeyChoice::Keyring };
                let restored = daftar_backup::restore_into(file, dir, recovery.as_ref(), live.as_ref(), key)?;
                let info = restored.store.info();
                if cli.json {
                    print_json(&json!({
                        "data_dir": info.data_dir,
                        "workspace_id": info.workspace_id,
                        "device_id": info.device_id,
                        "series": info.series,
                        "counts": restored.check.counts,
                        "backup_created_at": restored.check.created_at,
                    }));
                } else {
                    println!(
                        "Restored {} documents ({} invoices, {} customers, {} items) from the backup of {} into {}",
                        restored.check.counts.documents,
                        restored.check.counts.invoices,
                        restored.check.counts.customers,
                        restored.check.counts.items,
                        restored.check.created_at,
                        info.data_dir.display()
                    );
                    println!("This directory is a new device of the workspace, with invoice series {}.", info.series);
                }
                return Ok(());
            }
            let mut store = open(cli)?;
            if *merge {
                let report = daftar_backup::merge(&mut store, file, recovery.as_ref())?;
                if cli.json {
                    print_json(&report);
                } else {
                    println!(
                        "Merged the backup: {} document(s) brought back, {} gained changes, {} unchanged",
                        report.brought_back.len(),
                        report.merged.len(),
                        report.unchanged
                    );
                    for t in &report.brought_back {
                        println!("  back: {} {}", t.kind, t.id);
                    }
                }
                return Ok(());
            }
            debug_assert!(*revert_to_backup);
            let only = if only.is_empty() { None } else { Some(resolve_all(&store, only)?) };
            let filter = RevertFilter { only_deleted: *only_deleted, only };
            let report = daftar_backup::revert(&mut store, file, recovery.as_ref(), &filter)?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "Reverted {} document(s) to the backup, brought back {}, {} unchanged, {} refused",
                    report.reverted.len(),
                    report.brought_back.len(),
                    report.unchanged,
                    report.refused.len()
                );
                for r in &report.refused {
                    println!("  not reverted: {} {}: {}", r.kind, r.id, r.reason);
                }
            }
            Ok(())
        }
        BackupCommand::Settings { dir, keep_last, keep_hourly, keep_daily, keep_monthly, every_minutes } => {
            let mut store = open(cli)?;
            let mut settings = store.backup_settings()?;
            let changing = dir.is_some()
                || keep_last.is_some()
                || keep_hourly.is_some()
                || keep_daily.is_some()
                || keep_monthly.is_some()
                || every_minutes.is_some();
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot use {} for backups: {e}", dir.display()))?;
                settings.dir = Some(std::fs::canonicalize(dir)?);
            }
            settings.keep.last = keep_last.unwrap_or(settings.keep.last);
            settings.keep.hourly = keep_hourly.unwrap_or(settings.keep.hourly);
            settings.keep.daily = keep_daily.unwrap_or(settings.keep.daily);
            settings.keep.monthly = keep_monthly.unwrap_or(settings.keep.monthly);
            settings.every_minutes = every_minutes.unwrap_or(settings.every_minutes);
            if changing {
                store.set_backup_settings(&settings)?;
            }
            let folder = daftar_backup::backup_dir(&store)?;
            if cli.json {
                print_json(&json!({
                    "dir": folder,
                    "keep": settings.keep,
                    "every_minutes": settings.every_minutes,
                }));
            } else {
                println!("Backups go to {}", folder.display());
                println!(
                    "Keeping the newest {} backups, and the newest of each of the last {} hours, {} days and {} months",
                    settings.keep.last, settings.keep.hourly, settings.keep.daily, settings.keep.monthly
                );
                match settings.every_minutes {
                    0 => println!("The app makes no automatic backups"),
                    n => println!("The app makes one every {n} minutes while it runs, and one on exit"),
                }
            }
            Ok(())
        }
        BackupCommand::Prune => {
            let mut store = open(cli)?;
            let removed = daftar_backup::prune(&mut store)?;
            if cli.json {
                print_json(&json!({ "removed": removed }));
            } else {
                println!("Removed {} backup(s)", removed.len());
            }
            Ok(())
        }
    }
}

/// Document ids from what was typed: full ids (of documents that may no longer exist here),
/// id prefixes or invoice numbers.
fn resolve_all(store: &Store, texts: &[String]) -> Result<std::collections::HashSet<DocumentId>> {
    texts
        .iter()
        .map(|text| {
            if let Ok(id) = text.trim().parse::<DocumentId>() {
                return Ok(id);
            }
            [DocKind::Invoice, DocKind::Customer, DocKind::Item]
                .into_iter()
                .find_map(|kind| store.resolve(kind, text).ok())
                .ok_or_else(|| anyhow!("no invoice, customer or item {text:?}; give the full id of one that is gone"))
        })
        .collect()
}

fn warning_text(warning: &daftar_backup::BackupWarning) -> String {
    use daftar_backup::BackupWarning as W;
    match warning {
        W::NoBackup => "no verified backup exists yet".into(),
        W::AttemptFailed { at, message } => format!("the backup of {at} failed: {message}"),
        W::CheckFailed { problem } => format!("the newest backup failed its check: {problem}"),
        W::FolderUnreadable { message } => format!("the backup folder cannot be read: {message}"),
        W::Stale { hours } => format!("the newest verified backup is {hours} hours old"),
    }
}

fn print_path(name: &str, path: &daftar_backup::PathReport) {
    if let Some(why) = &path.skipped {
        println!("{name}: skipped — {why}");
        return;
    }
    let verdict = if path.ok { "recovered" } else { "FAILED" };
    println!("{name}: {verdict} from {} in {:.1} s", path.source.as_deref().unwrap_or("nothing"), path.seconds);
    if let Some(error) = &path.error {
        println!("  {error}");
    }
    if let (Some(point), Some(age)) = (&path.recovery_point, path.recovery_point_age_seconds) {
        println!("  recovery point {point} ({} ago), {} documents", humanise(age), path.documents);
    }
    for (what, ids) in [("missing", &path.missing), ("at another version", &path.differs), ("not here", &path.extra)] {
        if !ids.is_empty() {
            println!(
                "  {} document(s) {what}: {}",
                ids.len(),
                ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
}

fn humanise(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// `daftar drill`: exits with status 1 when a path fails.
pub fn drill(cli: &Cli, recovery_key: Option<&str>) -> Result<()> {
    let mut store = open(cli)?;
    let recovery = recovery(recovery_key)?;
    let report = daftar_backup::drill(&mut store, recovery.as_ref(), None)?;
    if cli.json {
        print_json(&report);
    } else {
        print_path("Backup", &report.backup);
        print_path("Relay", &report.relay);
        println!("{}", if report.ok { "Drill passed." } else { "Drill FAILED." });
    }
    if !report.ok {
        std::process::exit(1);
    }
    Ok(())
}
