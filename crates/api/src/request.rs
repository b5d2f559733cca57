//! What the UI can ask for, and the shapes of the answers. Everything here is exported to
//! TypeScript (`ui/src/lib/bindings`), so the UI and the core cannot disagree silently.

use daftar_domain::{
    Customer, CustomerId, DeviceId, InvoiceId, InvoiceKind, InvoiceStatus, Item, ItemId, LineId, Problems,
    SellerProfile, Totals, VatCategory,
};
use daftar_store::{Conflict, RelayStatus};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// One request from the UI. `command` names it; the other fields are its arguments.
#[derive(Debug, Clone, Deserialize, TS)]
#[serde(tag = "command", rename_all = "snake_case")]
#[ts(export)]
pub enum Request {
    /// Whether a workspace exists here, and which.
    Status,
    CreateWorkspace {
        seller: SellerProfile,
        /// The person creating it: its first member and owner ("owner" when empty).
        #[serde(default)]
        member: Option<String>,
    },
    JoinWorkspace {
        code: String,
    },
    UpdateSeller {
        seller: SellerProfile,
    },
    /// This device's ZATCA e-invoicing state (onboarding stage and the submission queue).
    ZatcaStatus,
    /// Onboards this device with ZATCA (CSR, compliance CSID with the OTP, compliance checks,
    /// production CSID), then answers like `ZatcaStatus`.
    ZatcaOnboard {
        otp: String,
        /// `developer`, `simulation` or `production`.
        environment: String,
        /// Another address for ZATCA's API (a stub or proxy); empty for the environment's.
        #[serde(default)]
        api_url: Option<String>,
    },
    /// The audit log, newest first (accountants and up), filtered.
    Audit {
        /// YYYY-MM-DD: only entries from that day on.
        #[serde(default)]
        since: Option<String>,
        /// An invoice id or number: only entries about it.
        #[serde(default)]
        invoice: Option<String>,
        /// A member's name (all their devices), or a device's name or id: only their entries.
        #[serde(default)]
        member: Option<String>,
    },
    /// Recomputes the audit log's chain and signatures.
    VerifyAudit,
    /// Writes the (filtered) audit log as CSV to the documents folder and returns where.
    ExportAuditCsv {
        #[serde(default)]
        since: Option<String>,
        #[serde(default)]
        invoice: Option<String>,
        #[serde(default)]
        member: Option<String>,
    },
    /// Where backups stand: the folder, the schedule, every backup and its check, the last
    /// drill, and a warning when something needs attention.
    BackupStatus,
    /// Makes a backup now and checks it; answers like `BackupStatus`.
    CreateBackup,
    /// Changes where backups go and how often the app makes them; answers like `BackupStatus`.
    UpdateBackupSettings {
        /// The backup folder; empty for the default (inside the data directory).
        dir: String,
        /// Minutes between automatic backups; 0 turns them off.
        every_minutes: u32,
    },
    /// Reads every backup in full again; answers like `BackupStatus`.
    VerifyBackups,
    /// Rehearses recovery (see `daftar drill`); answers like `BackupStatus`.
    RunDrill {
        /// The recovery key as typed; empty to skip the relay path.
        #[serde(default)]
        recovery_key: Option<String>,
    },
    ListInvoices {
        query: InvoiceListQuery,
    },
    GetInvoice {
        id: InvoiceId,
    },
    /// Totals and problems of a draft as typed, without saving it (live totals).
    PreviewDraft {
        draft: DraftInput,
    },
    CreateInvoice {
        draft: DraftInput,
    },
    SaveDraft {
        id: InvoiceId,
        draft: DraftInput,
    },
    IssueInvoice {
        id: InvoiceId,
    },
    /// Writes the invoice's printable PDF into the user's documents folder (`Daftar/`, or
    /// `DAFTAR_PDF_DIR`) and says where.
    SaveInvoicePdf {
        id: InvoiceId,
    },
    /// Saves the PDF as `SaveInvoicePdf` does and opens it in the desktop's PDF viewer, whose
    /// Print command prints it (WebKitGTK cannot show or print a PDF itself).
    PrintInvoicePdf {
        id: InvoiceId,
    },
    DeleteInvoice {
        id: InvoiceId,
    },
    RestoreInvoice {
        id: InvoiceId,
    },
    InvoiceHistory {
        id: InvoiceId,
    },
    InvoiceVersion {
        id: InvoiceId,
        version: u32,
    },
    InvoiceDiff {
        id: InvoiceId,
        from: u32,
        to: u32,
    },
    RevertInvoice {
        id: InvoiceId,
        version: u32,
    },
    ListCustomers {
        text: Option<String>,
        deleted: bool,
    },
    GetCustomer {
        id: CustomerId,
    },
    SaveCustomer {
        id: Option<CustomerId>,
        customer: CustomerInput,
    },
    DeleteCustomer {
        id: CustomerId,
    },
    RestoreCustomer {
        id: CustomerId,
    },
    ListItems {
        text: Option<String>,
        deleted: bool,
    },
    GetItem {
        id: ItemId,
    },
    SaveItem {
        id: Option<ItemId>,
        item: ItemInput,
    },
    DeleteItem {
        id: ItemId,
    },
    RestoreItem {
        id: ItemId,
    },
    Trash,
    SyncStatus,
    SyncNow,
    /// Adds a relay; an owner's or admin's device adding a further one carries their second
    /// factor to it with a current code.
    AddRelay {
        url: String,
        #[serde(default)]
        totp: Option<String>,
    },
    CreateInvite {
        role: String,
        /// A one-time code from the authenticator app, once this device has a second factor.
        #[serde(default)]
        totp: Option<String>,
    },
    ListDevices,
    /// Sets up the second factor for this (owner or admin) device: the answer carries the
    /// authenticator's `otpauth://` URI, its QR code (SVG), the secret and ten recovery codes,
    /// shown once.
    MfaEnroll {
        #[serde(default)]
        account: Option<String>,
        /// A current code, when replacing a confirmed second factor.
        #[serde(default)]
        totp: Option<String>,
    },
    /// Checks a code from the authenticator (the first one confirms the enrolment).
    MfaVerify {
        code: String,
    },
    /// Lets a device that joined with an invite in (owners and admins).
    ApproveDevice {
        device_id: DeviceId,
        /// The person it belongs to.
        #[serde(default)]
        member: Option<String>,
        #[serde(default)]
        totp: Option<String>,
    },
    /// Refuses a device from now on (owners and admins) and rotates the workspace key.
    RevokeDevice {
        device_id: DeviceId,
        #[serde(default)]
        totp: Option<String>,
    },
    /// Gives a device another role (owners and admins; admins and owners only by owners).
    SetDeviceRole {
        device_id: DeviceId,
        role: daftar_domain::Role,
        #[serde(default)]
        totp: Option<String>,
    },
    /// Makes a new workspace key for every approved device (owners).
    RotateKeys {
        #[serde(default)]
        totp: Option<String>,
    },
    /// Received changes refused because their sender's role does not allow them (owners and
    /// admins; an empty list for other roles, who may not see it).
    Quarantine,
}

/// Which invoices to list.
#[derive(Debug, Clone, Default, Deserialize, TS)]
#[ts(export)]
pub struct InvoiceListQuery {
    pub text: Option<String>,
    pub status: Option<InvoiceStatus>,
    #[serde(default)]
    pub deleted: bool,
    pub customer: Option<CustomerId>,
    /// YYYY-MM-DD, inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    pub offset: u32,
    pub limit: u32,
    #[serde(default)]
    pub sort: daftar_store::InvoiceSort,
    #[serde(default)]
    pub ascending: bool,
}

/// A draft as the editor holds it: amounts and quantities as typed, checked by the core.
#[derive(Debug, Clone, Default, Deserialize, TS)]
#[ts(export)]
pub struct DraftInput {
    pub kind: Option<InvoiceKind>,
    pub customer: Option<CustomerId>,
    pub lines: Vec<DraftLine>,
    /// ISO 4217; empty for SAR.
    #[serde(default)]
    pub currency: String,
    pub exchange_rate: Option<String>,
    pub supply_date: Option<String>,
    pub due_date: Option<String>,
    #[serde(default)]
    pub notes: String,
    /// For credit and debit notes: the issued invoice they correct, and why.
    #[serde(default)]
    pub original: Option<OriginalInput>,
}

/// The invoice a credit or debit note corrects.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export)]
pub struct OriginalInput {
    pub invoice: InvoiceId,
    pub reason: String,
}

/// One line as typed.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export)]
pub struct DraftLine {
    /// Set for lines already on the draft.
    pub id: Option<LineId>,
    pub description: String,
    pub quantity: String,
    pub unit_price: String,
    #[serde(default)]
    pub discount: String,
    pub vat: VatCategory,
}

/// A customer as the form holds it.
#[derive(Debug, Clone, Default, Deserialize, TS)]
#[ts(export)]
pub struct CustomerInput {
    pub name: String,
    pub vat_number: Option<String>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub street: String,
    #[serde(default)]
    pub building_number: String,
    #[serde(default)]
    pub district: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub postal_code: String,
}

/// A catalogue item as the form holds it.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export)]
pub struct ItemInput {
    pub name: String,
    #[serde(default)]
    pub name_ar: String,
    pub unit_price: String,
    pub vat: VatCategory,
    #[serde(default)]
    pub unit: String,
}

/// Whether this data directory holds a workspace.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct AppStatus {
    pub workspace: Option<WorkspaceView>,
    pub data_dir: String,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct WorkspaceView {
    pub workspace_id: String,
    pub device_id: String,
    pub series: String,
    pub seller: SellerProfile,
    /// This device's role (what the core lets it do).
    pub role: daftar_domain::Role,
    /// A joined device waiting for an owner or admin to approve it: it has nothing yet.
    pub awaiting_approval: bool,
}

/// A second factor just set up, shown once: nothing of it stays on the device.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct MfaSetUp {
    pub otpauth_uri: String,
    /// The same, as a QR code to scan (SVG).
    pub qr_svg: String,
    /// Base 32, to type in instead.
    pub secret: String,
    pub recovery_codes: Vec<String>,
}

/// A new workspace. The recovery key is shown once and stored nowhere.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct CreatedWorkspace {
    pub workspace_id: String,
    pub recovery_key: String,
}

/// This device's ZATCA e-invoicing state, as the settings screen shows it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct ZatcaView {
    /// `self_signed` (not onboarded), `compliance` or `production`.
    pub stage: String,
    pub environment: Option<String>,
    pub certificate_issuer: Option<String>,
    /// The last invoice counter value used.
    pub icv: u32,
    pub pending: u32,
    pub reported: u32,
    pub cleared: u32,
    pub rejected: u32,
    pub not_reportable: u32,
    /// Pending for longer than ZATCA's 24-hour reporting window.
    pub overdue: u32,
}

/// A relay added, and what became of the second factor there.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct AddedRelay {
    pub url: String,
    /// The relay has no copy of this owner's or admin's second factor yet.
    pub second_factor_needed: bool,
    pub second_factor_carried_to: Vec<String>,
}

/// Where a PDF was written.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct SavedPdf {
    pub file: String,
    pub bytes: u32,
    /// For printing: whether a PDF viewer was started with it.
    pub opened: bool,
}

/// One page of an invoice list, with the number of matches (the scrolled list's height).
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct InvoicePage {
    pub rows: Vec<daftar_store::InvoiceSummary>,
    pub total: u32,
}

/// An invoice with its totals, and what stops it from being issued.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct InvoiceView {
    pub invoice: daftar_domain::Invoice,
    pub totals: Option<Totals>,
    pub issue_problems: Problems,
}

/// Live totals of a draft being typed.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct DraftPreview {
    pub totals: Option<Totals>,
    /// Input that cannot be read (amounts, dates).
    pub problems: Problems,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct CustomerView {
    pub customer: Customer,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct ItemView {
    pub item: Item,
}

/// Sync as people see it.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct SyncView {
    pub relays: Vec<RelayStatus>,
    pub conflicts: Vec<Conflict>,
    /// The background sync's latest state: `idle` (no relay), `live`, `syncing` or `offline`.
    pub state: String,
}

/// What the background sync tells the UI as it goes.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct SyncEvent {
    pub state: String,
    pub detail: String,
    /// Received changes were applied: lists on screen may have changed.
    pub changed: bool,
}
