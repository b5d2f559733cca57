//! `daftar relay`, `daftar sync`, `daftar invite|join|recover|devices`: printing what
//! `daftar_sync_driver` did. The decisions live in the sync engine, the work in the driver.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use daftar_domain::{DeviceId, WorkspaceId};
use daftar_store::{ConflictKind, KeyChoice, Store};
use daftar_sync::{InviteCode, RecoveryKey};
use daftar_sync_driver::{RelayReport, SetUp, WatchEvent};
use serde_json::json;

use crate::output::print_json;
use crate::{DevicesCommand, RelayCommand};

/// The one-time code for a privileged command: the one given with `--totp`, or — when the
/// relays will ask for one and a person is at the terminal — one typed in answer to a prompt
/// (scripts, with no terminal, get the relay's refusal naming `--totp` instead).
fn code(store: &Store, given: Option<&str>) -> Result<Option<String>> {
    if let Some(code) = given {
        return Ok(Some(code.to_owned()));
    }
    if !std::io::stdin().is_terminal() || !daftar_sync_driver::code_needed(store)? {
        return Ok(None);
    }
    ask_code().map(Some)
}

fn ask_code() -> Result<String> {
    eprint!("One-time code from your authenticator app: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let code = line.trim().to_owned();
    anyhow::ensure!(!code.is_empty(), "no code was given");
    Ok(code)
}

fn print_carried(relays: &[String]) {
    for to in relays {
        println!("Your second factor now covers {to} too (same authenticator entry).");
    }
}

pub fn relay(store: &mut Store, json: bool, command: &RelayCommand) -> Result<()> {
    match command {
        RelayCommand::Add { url, totp } => {
            let added = daftar_sync_driver::add_relay_carrying_factor(store, url, totp.as_deref())?;
            if json {
                print_json(&json!({
                    "url": added.url,
                    "workspace_id": store.info().workspace_id,
                    "second_factor_needed": added.second_factor_needed,
                    "second_factor_carried_to": added.second_factor_carried_to,
                }));
            } else {
                println!("Added relay {}; run `daftar sync` to send this device's changes.", added.url);
                print_carried(&added.second_factor_carried_to);
                if added.second_factor_needed {
                    println!(
                        "The new relay has no copy of your second factor yet: run `daftar mfa carry --totp CODE` (a current code) to cover it."
                    );
                }
            }
        }
        RelayCommand::List => {
            let relays = store.relays()?;
            if json {
                print_json(&relays);
            } else {
                for r in relays {
                    println!("{}  pending {}  pulled up to {}", r.url, r.pending, r.pull_cursor);
                }
            }
        }
        RelayCommand::Remove { url } => {
            daftar_sync_driver::remove_relay(store, url)?;
            if json {
                print_json(&json!({ "url": url, "removed": true }));
            }
        }
    }
    Ok(())
}

pub fn status(store: &Store, json: bool) -> Result<()> {
    let relays = store.relays()?;
    if json {
        print_json(&relays);
        return Ok(());
    }
    if relays.is_empty() {
        println!("No relay: this device works offline only (daftar relay add URL).");
    }
    for r in relays {
        let last = r.last_sync.and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.to_rfc3339());
        println!(
            "{}  {}  pending {}  last sync {}{}",
            r.url,
            if r.online { "online" } else { "offline" },
            r.pending,
            last.as_deref().unwrap_or("never"),
            if r.refused > 0 { format!("  {} envelopes refused", r.refused) } else { String::new() }
                + &r.last_error.map(|e| format!("  last error: {e}")).unwrap_or_default()
        );
    }
    Ok(())
}

pub fn conflicts(store: &Store, json: bool) -> Result<()> {
    let conflicts = store.conflicts()?;
    if json {
        print_json(&conflicts);
        return Ok(());
    }
    if conflicts.is_empty() {
        println!("No conflicts: no issued invoice met a concurrent change.");
    }
    for c in conflicts {
        let when = chrono::DateTime::from_timestamp_millis(c.detected_at).map(|t| t.to_rfc3339()).unwrap_or_default();
        let devices: Vec<String> = c.devices.iter().map(ToString::to_string).collect();
        match c.kind {
            ConflictKind::ChangedAfterIssue => println!(
                "{when}  {}: changes from {} to an issued invoice were undone ({}); history keeps them",
                c.number,
                if devices.is_empty() { "another device".to_owned() } else { devices.join(", ") },
                c.fields.join(", ")
            ),
            ConflictKind::IssuedTwice => println!(
                "{when}  {}: also issued as {} on {}; {} is kept and {} stays unused",
                c.number,
                c.void_number.as_deref().unwrap_or("?"),
                if devices.is_empty() { "another device".to_owned() } else { devices.join(", ") },
                c.number,
                c.void_number.as_deref().unwrap_or("?"),
            ),
        }
    }
    Ok(())
}

fn print_reports(json: bool, reports: &[RelayReport]) {
    if json {
        print_json(&json!({ "relays": reports }));
        return;
    }
    for r in reports {
        match &r.error {
            Some(e) => println!("{}: {e}", r.url),
            None => println!(
                "{}: sent {}, received {} ({} new){}",
                r.url,
                r.pushed,
                r.pulled,
                r.applied,
                if r.rejected.is_empty() { String::new() } else { format!(", {} refused", r.rejected.len()) }
            ),
        }
    }
}

pub fn sync_round(store: &mut Store, json: bool) -> Result<()> {
    let reports = daftar_sync_driver::sync_once(store)?;
    print_reports(json, &reports);
    Ok(())
}

/// `daftar sync --watch`: keeps syncing live; prints each round (a JSON line each with `--json`).
pub fn watch(store: &mut Store, json: bool) -> Result<()> {
    daftar_sync_driver::watch(store, |event| match event {
        WatchEvent::Synced { relays } => {
            if relays.iter().any(|r| r.pushed + r.pulled > 0 || !r.rejected.is_empty()) {
                print_reports(json, relays);
            }
        }
        WatchEvent::Live { url } => eprintln!("sync: live with {url}"),
        WatchEvent::Offline { url, error } => eprintln!("sync: {url}: {error}"),
        WatchEvent::AwaitingApproval { device } => {
            eprintln!("sync: this device ({device}) waits for an owner or admin to approve it")
        }
    })?;
    Ok(())
}

pub fn refused(store: &Store, json: bool) -> Result<()> {
    let refused = store.refused_envelopes()?;
    if json {
        print_json(&refused);
    } else if refused.is_empty() {
        println!("No envelope was refused.");
    } else {
        for r in refused {
            println!("{}  envelope {} (seq {}): {}", r.relay, r.envelope_id, r.seq, r.reason);
        }
    }
    Ok(())
}

pub fn quarantine(store: &Store, json: bool) -> Result<()> {
    store.permit(daftar_domain::Action::ManageDevices)?;
    let held = store.quarantine()?;
    if json {
        print_json(&held);
    } else if held.is_empty() {
        println!("No received change was refused for its sender's role.");
    } else {
        for q in held {
            println!("{} {} from device {} ({}): {}", q.kind, q.document, q.sender, q.role, q.reason);
        }
    }
    Ok(())
}

pub fn snapshot(store: &mut Store, json: bool) -> Result<()> {
    let reports = daftar_sync_driver::make_snapshots(store)?;
    if json {
        print_json(&json!({ "relays": reports }));
    } else {
        for r in reports {
            println!(
                "{}: snapshot of {} documents up to envelope {} in {} parts ({} bytes){}",
                r.url,
                r.documents,
                r.seq,
                r.parts,
                r.bytes,
                if r.kept { "" } else { "; the relay keeps a newer one" }
            );
        }
    }
    Ok(())
}

pub fn recover(dir: &Path, json: bool, relay: &str, workspace: &str, recovery_key: &str) -> Result<()> {
    let recovery = RecoveryKey::parse(recovery_key)?;
    let workspace: WorkspaceId = workspace.parse()?;
    let set_up = daftar_sync_driver::recover(dir, relay, workspace, recovery, KeyChoice::Keyring)?;
    print_set_up(&set_up, json, "recovered");
    Ok(())
}

pub fn join(dir: &Path, json: bool, code: &str, wait: bool) -> Result<()> {
    let code = InviteCode::parse(code)?;
    let mut set_up = daftar_sync_driver::join(dir, &code, KeyChoice::Keyring)?;
    if wait && set_up.status == "pending" {
        let device = set_up.store.info().device_id;
        eprintln!("Waiting for approval: on an owner's or admin's device run `daftar devices approve {device}`");
        let first = loop {
            match daftar_sync_driver::complete_join(&mut set_up.store) {
                Ok(first) => break first.unwrap_or_default(),
                Err(daftar_sync_driver::SyncError::AwaitingApproval { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(500))
                }
                Err(e) => return Err(e.into()),
            }
        };
        set_up.status = "approved";
        set_up.report = first.report;
        set_up.snapshot = first.snapshot;
        set_up.snapshot_error = first.snapshot_error;
    }
    print_set_up(&set_up, json, set_up.status);
    Ok(())
}

fn print_set_up(set_up: &SetUp, json: bool, status: &str) {
    let info = set_up.store.info();
    let report = &set_up.report;
    if json {
        print_json(&json!({
            "workspace_id": info.workspace_id,
            "device_id": info.device_id,
            "status": status,
            "series": info.series,
            "received": report.pulled,
            "applied": report.applied,
            "rejected": report.rejected,
            "snapshot": set_up.snapshot,
            "snapshot_error": set_up.snapshot_error,
        }));
    } else if status == "pending" {
        println!(
            "This device ({}) has joined workspace {} and waits for approval: on an owner's or admin's device run\n\n    daftar devices approve {}\n\nthen `daftar sync` here brings the workspace.",
            info.device_id, info.workspace_id, info.device_id
        );
    } else {
        println!(
            "This device ({}) is {status} in workspace {}: {} changes received; it numbers invoices {}.",
            info.device_id,
            info.workspace_id,
            report.pulled,
            info.series.number(1)
        );
    }
}

pub fn invite(
    store: &Store,
    json: bool,
    role: &str,
    relay: Option<&str>,
    hours: u32,
    totp: Option<&str>,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let totp = code(store, totp)?;
    let invite = daftar_sync_driver::invite(store, role, relay, hours, now, totp.as_deref())?;
    let code = invite.code.expose_code();
    if json {
        print_json(
            &json!({ "code": code, "role": invite.role, "relay": invite.relay, "expires_at": invite.expires_at }),
        );
    } else {
        println!(
            "Give this code to the new device's user, privately; it works once, for {hours} hours:\n\n    {code}\n"
        );
        println!("On the new device: daftar join CODE");
    }
    Ok(())
}

pub fn devices(store: &mut Store, json: bool, command: &DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::List => {
            let devices = daftar_sync_driver::devices(store)?;
            if json {
                print_json(&devices);
            } else {
                for d in devices {
                    let me = if d.this_device { "  (this device)" } else { "" };
                    let name = d.member.as_deref().unwrap_or("");
                    println!("{}  {:<10}  {:<8}  {name}{me}", d.device_id, d.role, d.status);
                }
            }
        }
        DevicesCommand::Approve { device, member, totp } => {
            let device: DeviceId = device.parse()?;
            let totp = code(store, totp.as_deref())?;
            daftar_sync_driver::approve(store, device, member.as_deref(), totp.as_deref())?;
            if json {
                print_json(&json!({ "device_id": device, "status": "approved" }));
            } else {
                println!("Device {device} is approved: it receives the workspace at its next sync.");
            }
        }
        DevicesCommand::Role { device, role, totp } => {
            let device: DeviceId = device.parse()?;
            let role = daftar_domain::Role::parse(role)
                .ok_or_else(|| daftar_sync_driver::SyncError::UnknownRole(role.clone()))?;
            let totp = code(store, totp.as_deref())?;
            daftar_sync_driver::set_role(store, device, role, totp.as_deref())?;
            if json {
                print_json(&json!({ "device_id": device, "role": role }));
            } else {
                println!("Device {device} is now {}.", role.as_str());
            }
        }
        DevicesCommand::Revoke { device, totp } => {
            let device: DeviceId = device.parse()?;
            let totp = code(store, totp.as_deref())?;
            let rotation = daftar_sync_driver::revoke(store, device, totp.as_deref())?;
            if json {
                print_json(&json!({ "device_id": device, "status": "revoked", "rotation": rotation }));
            } else {
                println!(
                    "Device {device} is revoked: the relays refuse it from now on, and the workspace key moved to epoch {}, which it never received.",
                    rotation.epoch
                );
            }
        }
    }
    Ok(())
}

pub fn keys(store: &mut Store, json: bool, command: &crate::KeysCommand) -> Result<()> {
    match command {
        crate::KeysCommand::Rotate { totp } => {
            let totp = code(store, totp.as_deref())?;
            let rotation = daftar_sync_driver::rotate(store, totp.as_deref(), true)?;
            if json {
                print_json(&rotation);
            } else {
                println!(
                    "The workspace key is now epoch {}, wrapped for {} devices and the recovery key.",
                    rotation.epoch,
                    rotation.devices.len()
                );
                for skipped in &rotation.skipped {
                    println!(
                        "  not wrapped for {skipped}: it has published no agreement key yet (rotate again after its next sync)"
                    );
                }
            }
        }
        crate::KeysCommand::List => {
            // What the relay holds for this device, if it can be asked (a revoked device, or
            // one offline, lists what it has).
            let _ = daftar_sync_driver::take_in(store);
            let current = store.current_epoch()?;
            let epochs: Vec<_> =
                store.epochs()?.into_iter().map(|e| json!({ "epoch": e, "current": e == current })).collect();
            if json {
                print_json(&epochs);
            } else {
                for e in &epochs {
                    println!("epoch {}{}", e["epoch"], if e["current"] == true { "  (seals new changes)" } else { "" });
                }
            }
        }
    }
    Ok(())
}

/// `daftar debug open-envelope`: whether this device's keys open a sealed envelope (senders'
/// keys from the membership document).
pub fn open_envelope(store: &Store, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file)?;
    let envelope = daftar_sync::Envelope::parse(&bytes)?;
    let epoch = envelope.epoch;
    let keys: std::collections::HashMap<u32, _> =
        store.epochs()?.into_iter().map(|e| Ok((e, store.workspace_key(e)?))).collect::<Result<_>>()?;
    let membership = store.membership()?;
    let sender_key = |sender: DeviceId| -> Option<[u8; 32]> {
        let device = membership.as_ref()?.device(sender)?;
        hex::decode(&device.signing_key).ok()?.try_into().ok()
    };
    match envelope.open(store.info().workspace_id, sender_key, |e| keys.get(&e)) {
        Ok(o) => print_json(&json!({ "opened": true, "epoch": o.epoch, "document": o.document })),
        Err(e) => print_json(&json!({ "opened": false, "epoch": epoch, "error": e.to_string() })),
    }
    Ok(())
}

/// `daftar debug push-crafted` (debug builds, tests): see [`daftar_sync_driver::push_crafted`].
#[cfg(debug_assertions)]
pub fn push_crafted(store: &Store, json: bool, document: &str, kind: &str, file: &Path) -> Result<()> {
    let document: daftar_domain::DocumentId = document.parse()?;
    let kind = daftar_store::DocKind::parse(kind).ok_or_else(|| anyhow::anyhow!("no document kind {kind:?}"))?;
    let bytes = std::fs::read(file)?;
    let id = daftar_sync_driver::push_crafted(store, document, kind, &bytes)?;
    if json {
        print_json(&json!({ "pushed": id }));
    } else {
        println!("Pushed envelope {id}");
    }
    Ok(())
}

pub fn mfa(store: &Store, json: bool, command: &crate::MfaCommand) -> Result<()> {
    match command {
        crate::MfaCommand::Enroll { account, totp } => {
            let account = account.clone().unwrap_or_else(|| {
                std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "owner".into())
            });
            let totp = code(store, totp.as_deref())?;
            let enrolment = daftar_sync_driver::mfa_enroll(store, &account, totp.as_deref())?;
            if json {
                print_json(&enrolment);
            } else {
                println!("Add this to your authenticator app (scan it as a QR code or type the secret):\n");
                println!("    {}\n", enrolment.otpauth_uri);
                println!("    secret: {}\n", enrolment.secret);
                println!("Recovery codes, each usable once if the authenticator is lost (write them down):\n");
                for code in &enrolment.recovery_codes {
                    println!("    {code}");
                }
                println!("\nThen confirm with the code the app shows: daftar mfa verify CODE");
            }
        }
        crate::MfaCommand::Verify { code } => {
            let until = daftar_sync_driver::mfa_verify(store, code)?;
            if json {
                print_json(&json!({ "verified": true, "elevated_until": until }));
            } else {
                println!("Code accepted: privileged commands need no further code for the next few minutes.");
            }
        }
        crate::MfaCommand::Carry { totp } => {
            // Carrying needs a code in the request itself, window or not.
            let totp = match totp {
                Some(code) => code.clone(),
                None if std::io::stdin().is_terminal() => ask_code()?,
                None => anyhow::bail!("carrying your second factor needs a current one-time code: --totp CODE"),
            };
            let carried = daftar_sync_driver::mfa_carry(store, &totp)?;
            if json {
                print_json(&json!({ "carried_to": carried }));
            } else if carried.is_empty() {
                println!("Every relay already holds your second factor.");
            } else {
                print_carried(&carried);
            }
        }
    }
    Ok(())
}
