//! `daftar audit` and `daftar audit verify`.

use anyhow::{Result, anyhow, bail};
use daftar_store::{AuditQuery, DocKind};
use serde_json::json;

use crate::commands::open;
use crate::output::print_json;
use crate::{AuditCommand, Cli};

pub fn run(
    cli: &Cli,
    since: Option<&str>,
    member: Option<&str>,
    invoice: Option<&str>,
    format: &str,
    limit: usize,
    command: &Option<AuditCommand>,
) -> Result<()> {
    let store = open(cli)?;
    if let Some(AuditCommand::Verify) = command {
        store.permit(daftar_domain::Action::ReadAudit)?;
        let check = store.verify_audit()?;
        if cli.json {
            print_json(&check);
        } else if let Some(bad) = &check.first_bad {
            println!("The audit log does NOT verify: entry {}: {}", bad.seq, bad.problem);
        } else {
            println!("The audit log verifies: {} entries, chained and signed.", check.count);
        }
        if !check.ok {
            std::process::exit(1);
        }
        return Ok(());
    }
    let since = since
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map_err(|_| anyhow!("--since takes a date such as 2026-11-30 (got {d:?})"))
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
        })
        .transpose()?;
    let document = invoice.map(|text| store.resolve(DocKind::Invoice, text)).transpose()?;
    let query = AuditQuery { since, device: member.map(str::to_owned), document, limit: Some(limit) };
    let entries = store.audit(&query)?;
    store.record_event("audit read", json!({ "entries": entries.len() }))?;
    match (cli.json, format) {
        (true, _) | (false, "json") => print_json(&entries),
        (false, "csv") => {
            use std::io::Write;
            std::io::stdout().lock().write_all(&daftar_store::audit_csv(&entries))?;
        }
        (false, "text") => {
            for e in &entries {
                let device = e.device_name.clone().unwrap_or_else(|| e.device[..8.min(e.device.len())].to_owned());
                let who = match &e.member {
                    Some(member) => format!("{member} ({device})"),
                    None => device,
                };
                let what = e
                    .document
                    .as_deref()
                    .map(|d| format!(" {} {}", e.kind.as_deref().unwrap_or(""), d))
                    .unwrap_or_default();
                println!("{:>6}  {}  {who}  {}{what}", e.seq, e.at, e.action);
                for c in &e.changes {
                    let value = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or("—".into());
                    println!("          {}: {} → {}", c.path, value(&c.before), value(&c.after));
                }
            }
        }
        (false, other) => bail!("--format is json or csv (got {other:?})"),
    }
    Ok(())
}
