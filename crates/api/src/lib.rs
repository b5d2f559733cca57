//! The desktop app's API over Daftar's core. One [`Request`] type names everything the UI can
//! ask; [`Api::handle`] maps each request to one store or sync-driver call and the answer to
//! JSON; errors become an [`ApiError`] with a closed [`ErrorCode`]. The Tauri shell
//! (`src-tauri`) and the HTTP shell used by the browser tests (`daftar-web`) are a few lines
//! each around it, so both drive exactly the same code.
//!
//! The store is opened on first use and kept behind a mutex: requests are short, and SQLite
//! serialises writers anyway. Callers run [`Api::handle`] off the UI thread. Background sync runs
//! on its own thread with its own connection ([`Api::start_sync`]) and reports through a callback.

mod draft;
mod error;
mod request;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use daftar_domain::{Customer, CustomerId, Item, ItemId, Problems};
use daftar_store::{InitOptions, KeyChoice, Store, StoreError, SystemClock, Unlock};
use serde::Serialize;
use serde_json::Value;

pub use error::{ApiError, ErrorCode};
pub use request::*;

/// Where background sync reports.
pub type SyncListener = Arc<dyn Fn(SyncEvent) + Send + Sync>;

/// The app's core: one data directory.
pub struct Api {
    dir: PathBuf,
    store: Mutex<Option<Store>>,
    sync_state: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn json<T: Serialize>(value: T) -> Result<Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("an answer did not serialise: {e}")))
}

fn open(dir: &Path) -> Result<Store, StoreError> {
    let unlock = Unlock { passphrase: std::env::var("DAFTAR_PASSPHRASE").ok() };
    Store::open_with(dir, &unlock, Arc::new(SystemClock), Some(&daftar_backup::before_migration))
}

/// The data directory the CLI and the app share: `DAFTAR_DATA_DIR`, else the OS data directory
/// (`~/.local/share/daftar` on Linux).
pub fn default_data_dir() -> Option<PathBuf> {
    match std::env::var_os("DAFTAR_DATA_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => dirs::data_dir().map(|d| d.join("daftar")),
    }
}

impl Api {
    pub fn new(dir: PathBuf) -> Api {
        Api { dir, store: Mutex::new(None), sync_state: Arc::new(Mutex::new("idle".into())) }
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` on a connection of its own, for long jobs (a backup, a check, a drill) that
    /// must not hold up the requests behind them: SQLite lets them read while others write.
    fn with_own_store<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        f(&mut open(&self.dir)?)
    }

    /// Runs `f` with the open store, opening it on first use.
    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut guard =
            self.store.lock().map_err(|_| ApiError::new(ErrorCode::Internal, "the store lock is poisoned"))?;
        if guard.is_none() {
            *guard = Some(open(&self.dir)?);
        }
        f(guard.as_mut().expect("opened above"))
    }

    /// Answers one request.
    pub fn handle(&self, request: Request) -> Result<Value, ApiError> {
        match request {
            Request::Status => self.status(),
            Request::CreateWorkspace { seller, member } => self.create_workspace(seller, member),
            Request::JoinWorkspace { code } => self.join_workspace(&code),
            Request::UpdateSeller { seller } => self.with_store(|s| {
                seller.validate().into_result().map_err(ApiError::invalid)?;
                json(s.update_seller(|current| *current = seller)?.seller)
            }),
            Request::ListInvoices { query } => self.with_store(|s| {
                let query = draft::invoice_query(&query)?;
                let total = s.count_invoices(&query)?;
                json(InvoicePage { rows: s.list_invoices(&query)?, total: total as u32 })
            }),
            Request::GetInvoice { id } => self.with_store(|s| json(draft::view(s.invoice(id)?))),
            Request::PreviewDraft { draft } => self.with_store(|s| json(draft::preview(s, &draft))),
            Request::CreateInvoice { draft } => self.with_store(|s| {
                let created = s.create_invoice(draft::new_invoice(&draft)?)?;
                json(draft::view(created))
            }),
            Request::SaveDraft { id, draft } => {
                self.with_store(|s| json(draft::view(s.save_draft(id, draft::content(&draft)?)?)))
            }
            Request::IssueInvoice { id } => self.with_store(|s| json(draft::view(s.issue_invoice(id)?))),
            Request::ZatcaStatus => self.with_store(|s| json(zatca_view(s)?)),
            Request::Audit { since, invoice, member } => {
                self.with_store(|s| json(audit_entries(s, since, invoice, member)?))
            }
            Request::VerifyAudit => self.with_store(|s| {
                s.permit(daftar_domain::Action::ReadAudit)?;
                json(s.verify_audit()?)
            }),
            Request::ExportAuditCsv { since, invoice, member } => self.with_store(|s| {
                let entries = audit_entries(s, since, invoice, member)?;
                let path = pdf_dir().join(format!("audit-{}.csv", Utc::now().format("%Y%m%d-%H%M%S")));
                let bytes = write_audit_csv(&path, &entries)?;
                s.record_event("export", serde_json::json!({ "audit_csv": path, "entries": entries.len() }))?;
                json(SavedPdf { file: path.display().to_string(), bytes, opened: false })
            }),
            Request::BackupStatus => self.with_store(|s| json(daftar_backup::status(s)?)),
            Request::CreateBackup => self.with_own_store(|s| {
                daftar_backup::create(s, "manual", None)?;
                json(daftar_backup::status(s)?)
            }),
            Request::UpdateBackupSettings { dir, every_minutes } => self.with_store(|s| {
                let mut settings = s.backup_settings()?;
                settings.dir = match dir.trim() {
                    "" => None,
                    dir => {
                        let dir = PathBuf::from(dir);
                        std::fs::create_dir_all(&dir).map_err(|e| {
                            ApiError::new(ErrorCode::Invalid, format!("{} cannot hold backups: {e}", dir.display()))
                        })?;
                        Some(std::fs::canonicalize(&dir).unwrap_or(dir))
                    }
                };
                settings.every_minutes = every_minutes;
                s.set_backup_settings(&settings)?;
                json(daftar_backup::status(s)?)
            }),
            Request::VerifyBackups => self.with_own_store(|s| {
                for backup in daftar_backup::list(s)? {
                    // Each result is recorded; the status shows them.
                    let _ = daftar_backup::verify(s, Path::new(&backup.file), None);
                }
                json(daftar_backup::status(s)?)
            }),
            Request::RunDrill { recovery_key } => self.with_own_store(|s| {
                let recovery = recovery_key
                    .filter(|k| !k.trim().is_empty())
                    .map(|k| daftar_sync::RecoveryKey::parse(&k))
                    .transpose()
                    .map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))?;
                daftar_backup::drill(s, recovery.as_ref(), None)?;
                json(daftar_backup::status(s)?)
            }),
            Request::ZatcaOnboard { otp, environment, api_url } => self.with_store(|s| {
                let environment = environment
                    .parse()
                    .map_err(|e: String| ApiError::new(ErrorCode::Invalid, e))?;
                let options = daftar_einvoicing::OnboardOptions {
                    otp,
                    environment,
                    api_url: api_url.filter(|u| !u.trim().is_empty()),
                    branch: None,
                    industry: None,
                };
                daftar_einvoicing::onboard(s, &options)?;
                json(zatca_view(s)?)
            }),
            Request::SaveInvoicePdf { id } => self.with_store(|s| json(save_pdf(s, id)?)),
            Request::PrintInvoicePdf { id } => self.with_store(|s| {
                let mut saved = save_pdf(s, id)?;
                saved.opened = open_with_viewer(std::path::Path::new(&saved.file));
                json(saved)
            }),
            Request::DeleteInvoice { id } => self.with_store(|s| json(draft::view(s.delete_invoice(id)?))),
            Request::RestoreInvoice { id } => self.with_store(|s| json(draft::view(s.restore_invoice(id)?))),
            Request::InvoiceHistory { id } => self.with_store(|s| json(s.history(id.into())?)),
            Request::InvoiceVersion { id, version } => {
                self.with_store(|s| json(draft::view(s.get_at(id.into(), version as usize)?)))
            }
            Request::InvoiceDiff { id, from, to } => {
                self.with_store(|s| json(s.diff(id.into(), from as usize, to as usize)?))
            }
            Request::RevertInvoice { id, version } => {
                self.with_store(|s| json(draft::view(s.revert_invoice(id, version as usize)?)))
            }
            Request::ListCustomers { text, deleted } => {
                self.with_store(|s| json(s.list_customers(text.as_deref().filter(|t| !t.is_empty()), deleted, Some(200))?))
            }
            Request::GetCustomer { id } => self.with_store(|s| json(CustomerView { customer: s.customer(id)? })),
            Request::SaveCustomer { id, customer } => self.with_store(|s| json(save_customer(s, id, customer)?)),
            Request::DeleteCustomer { id } => {
                self.with_store(|s| json(CustomerView { customer: s.delete::<Customer>(id.into(), |_| Ok(()))? }))
            }
            Request::RestoreCustomer { id } => {
                self.with_store(|s| json(CustomerView { customer: s.restore::<Customer>(id.into())? }))
            }
            Request::ListItems { text, deleted } => {
                self.with_store(|s| json(s.list_items(text.as_deref().filter(|t| !t.is_empty()), deleted, Some(200))?))
            }
            Request::GetItem { id } => self.with_store(|s| json(ItemView { item: s.item(id)? })),
            Request::SaveItem { id, item } => self.with_store(|s| json(save_item(s, id, item)?)),
            Request::DeleteItem { id } => {
                self.with_store(|s| json(ItemView { item: s.delete::<Item>(id.into(), |_| Ok(()))? }))
            }
            Request::RestoreItem { id } => self.with_store(|s| json(ItemView { item: s.restore::<Item>(id.into())? })),
            Request::Trash => self.with_store(|s| json(s.trash()?)),
            Request::SyncStatus => self.sync_view(),
            Request::SyncNow => self.with_store(|s| json(daftar_sync_driver::sync_once(s)?)),
            Request::AddRelay { url, totp } => self.with_store(|s| {
                let added = daftar_sync_driver::add_relay_carrying_factor(s, &url, totp.as_deref())?;
                json(AddedRelay {
                    url: added.url,
                    second_factor_needed: added.second_factor_needed,
                    second_factor_carried_to: added.second_factor_carried_to,
                })
            }),
            Request::CreateInvite { role, totp } => self.with_store(|s| {
                let now = Utc::now().timestamp_millis();
                let invite = daftar_sync_driver::invite(s, &role, None, 24, now, totp.as_deref())?;
                json(serde_json::json!({ "code": invite.code.expose_code(), "role": invite.role, "expires_at": invite.expires_at }))
            }),
            Request::ListDevices => self.with_store(|s| json(daftar_sync_driver::devices(s)?)),
            Request::MfaEnroll { account, totp } => self.with_store(|s| {
                let account = account.as_deref().map(str::trim).filter(|a| !a.is_empty()).unwrap_or("owner");
                let enrolment = daftar_sync_driver::mfa_enroll(s, account, totp.as_deref())?;
                let qr_svg = daftar_pdf::qr_svg(&enrolment.otpauth_uri)
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
                json(MfaSetUp {
                    otpauth_uri: enrolment.otpauth_uri,
                    secret: enrolment.secret,
                    recovery_codes: enrolment.recovery_codes,
                    qr_svg,
                })
            }),
            Request::MfaVerify { code } => self.with_store(|s| {
                let until = daftar_sync_driver::mfa_verify(s, code.trim())?;
                json(serde_json::json!({ "verified": true, "elevated_until": until }))
            }),
            Request::RevokeDevice { device_id, totp } => self.with_store(|s| {
                let rotation = daftar_sync_driver::revoke(s, device_id, totp.as_deref())?;
                json(serde_json::json!({ "device_id": device_id, "status": "revoked", "epoch": rotation.epoch }))
            }),
            Request::SetDeviceRole { device_id, role, totp } => self.with_store(|s| {
                daftar_sync_driver::set_role(s, device_id, role, totp.as_deref())?;
                json(serde_json::json!({ "device_id": device_id, "role": role }))
            }),
            Request::RotateKeys { totp } => self.with_store(|s| {
                let rotation = daftar_sync_driver::rotate(s, totp.as_deref(), true)?;
                json(serde_json::json!({ "epoch": rotation.epoch, "devices": rotation.devices.len() }))
            }),
            Request::ApproveDevice { device_id, member, totp } => self.with_store(|s| {
                let member = member.as_deref().map(str::trim).filter(|m| !m.is_empty());
                daftar_sync_driver::approve(s, device_id, member, totp.as_deref())?;
                json(serde_json::json!({ "device_id": device_id, "status": "approved" }))
            }),
            Request::Quarantine => self.with_store(|s| {
                if !s.info().role.may(daftar_domain::Action::ManageDevices) {
                    return json(Vec::<daftar_store::QuarantinedChange>::new());
                }
                json(s.quarantine()?)
            }),
        }
    }

    fn status(&self) -> Result<Value, ApiError> {
        let data_dir = self.dir.display().to_string();
        match self.with_store(|s| {
            let info = s.info().clone();
            let awaiting = s.pending_join()?.is_some();
            Ok(WorkspaceView {
                workspace_id: info.workspace_id.to_string(),
                device_id: info.device_id.to_string(),
                series: info.series.to_string(),
                // A device waiting for approval has no settings document yet.
                seller: if awaiting { Default::default() } else { s.settings()?.seller },
                role: info.role,
                awaiting_approval: awaiting,
            })
        }) {
            Ok(workspace) => json(AppStatus { workspace: Some(workspace), data_dir }),
            Err(e) if e.code == ErrorCode::NotInitialised => json(AppStatus { workspace: None, data_dir }),
            Err(e) => Err(e),
        }
    }

    fn create_workspace(
        &self,
        seller: daftar_domain::SellerProfile,
        member: Option<String>,
    ) -> Result<Value, ApiError> {
        seller.validate().into_result().map_err(ApiError::invalid)?;
        let mut guard =
            self.store.lock().map_err(|_| ApiError::new(ErrorCode::Internal, "the store lock is poisoned"))?;
        let options = InitOptions {
            seller,
            series: None,
            key: KeyChoice::Keyring,
            device_name: "this device".into(),
            member,
            existing: None,
        };
        let (store, recovery) = Store::init(&self.dir, options, Arc::new(SystemClock))?;
        let created = CreatedWorkspace {
            workspace_id: store.info().workspace_id.to_string(),
            recovery_key: recovery.expose_printable(),
        };
        *guard = Some(store);
        json(created)
    }

    fn join_workspace(&self, code: &str) -> Result<Value, ApiError> {
        let code = daftar_sync::InviteCode::parse(code.trim())
            .map_err(|e| ApiError::new(ErrorCode::Invalid, e.to_string()))?;
        let mut guard =
            self.store.lock().map_err(|_| ApiError::new(ErrorCode::Internal, "the store lock is poisoned"))?;
        let set_up = daftar_sync_driver::join(&self.dir, &code, KeyChoice::Keyring)?;
        let info = set_up.store.info().clone();
        *guard = Some(set_up.store);
        json(serde_json::json!({
            "workspace_id": info.workspace_id,
            "device_id": info.device_id,
            "series": info.series,
            "status": set_up.status,
        }))
    }

    fn sync_view(&self) -> Result<Value, ApiError> {
        let state = self.sync_state.lock().map(|s| s.clone()).unwrap_or_default();
        self.with_store(|s| json(SyncView { relays: s.relays()?, conflicts: s.conflicts()?, state }))
    }

    /// Starts background sync on its own thread and connection: it waits for the workspace to
    /// exist and name a relay, then keeps syncing live (`daftar_sync_driver::watch`), telling
    /// `listener` what happens. It never stops the app: failures are reported and retried.
    pub fn start_sync(&self, listener: SyncListener) {
        let dir = self.dir.clone();
        let state = self.sync_state.clone();
        std::thread::Builder::new()
            .name("daftar-sync".into())
            .spawn(move || {
                let report = |name: &str, detail: String, changed: bool| {
                    if let Ok(mut s) = state.lock() {
                        *s = name.to_owned();
                    }
                    listener(SyncEvent { state: name.into(), detail, changed });
                };
                loop {
                    let mut store = match open(&dir) {
                        Ok(store) if store.relays().map(|r| !r.is_empty()).unwrap_or(false) => store,
                        _ => {
                            std::thread::sleep(std::time::Duration::from_secs(2));
                            continue;
                        }
                    };
                    let outcome = daftar_sync_driver::watch(&mut store, |event| match event {
                        daftar_sync_driver::WatchEvent::Synced { relays } => {
                            let applied: usize = relays.iter().map(|r| r.applied).sum();
                            let pushed: usize = relays.iter().map(|r| r.pushed).sum();
                            let offline = relays.iter().all(|r| r.error.is_some());
                            let name = if offline { "offline" } else { "live" };
                            report(name, format!("sent {pushed}, received {applied}"), applied > 0 || pushed > 0);
                        }
                        daftar_sync_driver::WatchEvent::Live { url } => report("live", url.clone(), false),
                        daftar_sync_driver::WatchEvent::Offline { url, error } => {
                            report("offline", format!("{url}: {error}"), false)
                        }
                        daftar_sync_driver::WatchEvent::AwaitingApproval { device } => {
                            report("waiting", format!("device {device} waits for approval"), false)
                        }
                    });
                    if let Err(e) = outcome {
                        report("offline", e.to_string(), false);
                    }
                    std::thread::sleep(std::time::Duration::from_secs(30));
                }
            })
            .expect("the sync thread starts");
    }
}

impl Api {
    /// Makes automatic backups in the background while the app runs (on its own connection, so
    /// the user's work never waits for one): every `every_minutes` (hourly by default), checked
    /// once a minute. A failure is recorded for the settings screen's warning and tried again
    /// at the next interval.
    pub fn start_backups(&self) {
        let dir = self.dir.clone();
        std::thread::Builder::new()
            .name("daftar-backup".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                    let Ok(mut store) = open(&dir) else { continue };
                    if daftar_backup::due(&store, Utc::now()).unwrap_or(false) {
                        // The outcome (file, check, or failure) is recorded in the store.
                        let _ = daftar_backup::create(&mut store, "schedule", None);
                    }
                }
            })
            .expect("the backup thread starts");
    }

    /// The backup made when the app closes cleanly: when automatic backups are on and anything
    /// changed since this device's newest backup.
    pub fn backup_on_exit(&self) -> Result<(), ApiError> {
        self.with_store(|s| {
            if s.backup_settings()?.every_minutes > 0 && daftar_backup::changed_since_last(s)? {
                daftar_backup::create(s, "exit", None)?;
            }
            Ok(())
        })
    }

    /// Clears and reports queued e-invoices in the background once this device is onboarded
    /// with ZATCA: simplified invoices must be reported within 24 hours, and offices are often
    /// offline, so a failed round is simply tried again a minute later.
    pub fn start_einvoicing(&self) {
        let dir = self.dir.clone();
        std::thread::Builder::new()
            .name("daftar-zatca".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                    let Ok(mut store) = open(&dir) else { continue };
                    let due = store
                        .zatca_status()
                        .map(|s| s.stage == daftar_store::EgsStage::Production && s.pending > 0)
                        .unwrap_or(false);
                    if due {
                        // The outcome of every e-invoice is recorded in the store's queue.
                        let _ = daftar_einvoicing::submit_pending(&mut store, 100);
                    }
                }
            })
            .expect("the e-invoicing thread starts");
    }
}

fn save_customer(store: &mut Store, id: Option<CustomerId>, input: CustomerInput) -> Result<CustomerView, ApiError> {
    let apply = |c: &mut Customer| {
        c.name = input.name.trim().to_owned();
        c.vat_number = input.vat_number.clone().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        c.email = input.email.trim().to_owned();
        c.phone = input.phone.trim().to_owned();
        c.address.street = input.street.trim().to_owned();
        c.address.building_number = input.building_number.trim().to_owned();
        c.address.district = input.district.trim().to_owned();
        c.address.city = input.city.trim().to_owned();
        c.address.postal_code = input.postal_code.trim().to_owned();
    };
    let customer = match id {
        Some(id) => store.edit::<Customer>(id.into(), |c| {
            apply(c);
            Ok(())
        })?,
        None => {
            let mut customer = Customer::new(CustomerId::from_uuid(uuid::Uuid::now_v7()), "", Utc::now());
            apply(&mut customer);
            store.create(&customer, "create")?;
            customer
        }
    };
    Ok(CustomerView { customer })
}

fn save_item(store: &mut Store, id: Option<ItemId>, input: ItemInput) -> Result<ItemView, ApiError> {
    let mut problems = Problems::new();
    let price = draft::amount(&input.unit_price, "unit_price", &mut problems);
    problems.into_result().map_err(ApiError::invalid)?;
    let apply = |item: &mut Item| {
        item.name = input.name.trim().to_owned();
        item.name_ar = input.name_ar.trim().to_owned();
        item.unit_price = price;
        item.vat = input.vat.clone();
        item.unit = input.unit.trim().to_owned();
    };
    let item = match id {
        Some(id) => store.edit::<Item>(id.into(), |i| {
            apply(i);
            Ok(())
        })?,
        None => {
            let mut item = Item {
                id: ItemId::from_uuid(uuid::Uuid::now_v7()),
                name: String::new(),
                name_ar: String::new(),
                unit_price: price,
                vat: input.vat.clone(),
                unit: String::new(),
                created_at: Utc::now(),
                deleted: None,
            };
            apply(&mut item);
            store.create(&item, "create")?;
            item
        }
    };
    Ok(ItemView { item })
}

#[cfg(test)]
mod tests;

fn zatca_view(store: &Store) -> Result<ZatcaView, ApiError> {
    let z = store.zatca_status()?;
    Ok(ZatcaView {
        stage: z.stage.as_str().to_owned(),
        environment: z.environment,
        certificate_issuer: z.certificate_issuer,
        icv: z.icv as u32,
        pending: z.pending as u32,
        reported: z.reported as u32,
        cleared: z.cleared as u32,
        rejected: z.rejected as u32,
        not_reportable: z.not_reportable as u32,
        overdue: z.overdue as u32,
    })
}

fn audit_entries(
    store: &mut Store,
    since: Option<String>,
    invoice: Option<String>,
    member: Option<String>,
) -> Result<Vec<daftar_store::AuditEntry>, ApiError> {
    let since = since
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
                .map_err(|_| ApiError::new(ErrorCode::Invalid, format!("{d:?} is not a date such as 2026-11-30")))
        })
        .transpose()?;
    let document = invoice
        .filter(|i| !i.trim().is_empty())
        .map(|i| store.resolve(daftar_store::DocKind::Invoice, &i))
        .transpose()?;
    let device = member.map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
    let query = daftar_store::AuditQuery { since, device, document, limit: Some(1000) };
    Ok(store.audit(&query)?)
}

/// Writes audit entries as CSV, atomically; returns its size.
fn write_audit_csv(path: &Path, entries: &[daftar_store::AuditEntry]) -> Result<u32, ApiError> {
    let io = |e: std::io::Error| ApiError::new(ErrorCode::Io, format!("{}: {e}", path.display()));
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).map_err(io)?;
    let partial = path.with_extension("csv.partial");
    let csv = daftar_store::audit_csv(entries);
    std::fs::write(&partial, &csv).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(csv.len() as u32)
}

/// The folder printable PDFs go to: `DAFTAR_PDF_DIR`, else `Documents/Daftar`.
fn pdf_dir() -> std::path::PathBuf {
    match std::env::var_os("DAFTAR_PDF_DIR") {
        Some(dir) => dir.into(),
        None => dirs::document_dir().or_else(dirs::home_dir).unwrap_or_else(std::env::temp_dir).join("Daftar"),
    }
}

fn save_pdf(store: &mut Store, id: daftar_domain::InvoiceId) -> Result<SavedPdf, ApiError> {
    let invoice = store.invoice(id)?;
    let pdf = daftar_pdf::render(&invoice, &store.settings()?.seller)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    let dir = pdf_dir();
    let name = match &invoice.number {
        Some(number) => format!("{}.pdf", number.replace(['/', '\\'], "-")),
        None => format!("draft-{}.pdf", &invoice.id.to_string()[..8]),
    };
    let file = dir.join(name);
    let io = |e: std::io::Error| {
        ApiError::new(ErrorCode::Io, format!("the PDF could not be saved to {}: {e}", file.display()))
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    // Written beside its final name and renamed: never half a PDF under that name.
    let partial = dir.join(format!(".{}.partial", file.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::write(&partial, &pdf).map_err(io)?;
    std::fs::rename(&partial, &file).map_err(io)?;
    Ok(SavedPdf { file: file.display().to_string(), bytes: pdf.len() as u32, opened: false })
}

/// Starts the desktop's default viewer on `file` (it prints from there); false when there is
/// none to start.
fn open_with_viewer(file: &Path) -> bool {
    let mut command = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    command
        .arg(file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        // Reaped in the background, so no zombie is left behind.
        .map(|mut child| std::thread::spawn(move || child.wait()))
        .is_ok()
}
