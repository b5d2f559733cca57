//! `daftar`: Daftar's command line. A thin shell over `daftar-store`: parse arguments, call one
//! store operation, print the result (human text, or JSON with `--json`). Errors go to stderr
//! with a non-zero exit status; with `--json` they are `{"error": {"code", "message"}}`.

mod audit;
mod backup;
mod commands;
mod input;
mod output;
mod sync;
mod zatca;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "daftar", version, about = "Local-first, end-to-end encrypted invoicing for Saudi businesses")]
pub struct Cli {
    /// The data directory (default: the OS data directory, e.g. ~/.local/share/daftar).
    #[arg(long, global = true, env = "DAFTAR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a workspace in the data directory.
    Init(InitArgs),
    /// Show this data directory's workspace, device and series.
    Info,
    /// Customers.
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Catalogue items.
    #[command(subcommand)]
    Item(ItemCommand),
    /// Invoices, credit notes and debit notes.
    #[command(subcommand)]
    Invoice(InvoiceCommand),
    /// Everything deleted and restorable.
    Trash,
    /// The seller profile.
    #[command(subcommand)]
    Seller(SellerCommand),
    /// Checks and maintenance of the local store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Import records.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Export records.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Relays this device syncs through.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// One push-and-pull round with every relay, or with --watch keep syncing live.
    Sync {
        /// Keep running: pull as soon as the relay announces a change, push local changes.
        #[arg(long)]
        watch: bool,
        #[command(subcommand)]
        command: Option<SyncCommand>,
    },
    /// Two-factor codes (TOTP) for owners and admins: the relays ask for one before invites,
    /// approvals, revocations, role changes and key rotation.
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// The workspace key's epochs: rotate to a new key (owners), or list those this device holds.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Invite a new device: prints a one-time code to give its user (privately).
    Invite {
        /// A one-time code from the authenticator app (once this device has a second factor); asked
        /// for at a terminal when the relays need one.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
        /// owner, admin, accountant, clerk or viewer.
        #[arg(long, default_value = "clerk")]
        role: String,
        /// Relay the new device joins through (default: this device's first relay).
        #[arg(long)]
        relay: Option<String>,
        /// Hours until the code expires.
        #[arg(long, default_value_t = 24)]
        expires_hours: u32,
    },
    /// Set this (new) data directory up as a device of the workspace an invite code names. It
    /// waits for an owner or admin to approve it (`daftar devices approve`); the first sync after
    /// that brings the workspace.
    Join {
        /// Wait here for the approval, then bring the workspace (otherwise `daftar sync` does,
        /// once approved).
        #[arg(long)]
        wait: bool,
        code: String,
    },
    /// The workspace's devices, as the relay knows them.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Rebuild a lost workspace in this (new) data directory from a relay and the recovery key.
    Recover {
        /// The relay's address, such as https://relay.example.com.
        #[arg(long)]
        relay: String,
        /// The workspace id.
        #[arg(long)]
        workspace: String,
        /// The recovery key printed by `daftar init`.
        #[arg(long)]
        recovery_key: String,
    },
    /// ZATCA phase 2 e-invoicing: status, onboarding, submission, and checks of any e-invoice.
    #[command(subcommand)]
    Zatca(ZatcaCommand),
    /// Encrypted, verified backups: create, list, verify, restore, settings.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// The audit log: who did what, when, on which device (accountants and up). With
    /// `verify`, recompute its hash chain and signatures.
    Audit {
        /// Only entries from this date (YYYY-MM-DD) on.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Only entries by this member's device (a device id, a prefix of one, or its name).
        #[arg(long, visible_alias = "device", value_name = "M")]
        member: Option<String>,
        /// Only entries about this invoice (id or number).
        #[arg(long, value_name = "ID")]
        invoice: Option<String>,
        /// json or csv (with --json, json).
        #[arg(long, default_value = "text")]
        format: String,
        /// At most this many entries, newest first.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(subcommand)]
        command: Option<AuditCommand>,
    },
    /// Rehearse disaster recovery without touching this store: restore the newest backup and
    /// rebuild from the relay, each into a temporary directory, and compare both with this
    /// store. Exits with status 1 when a path fails.
    Drill {
        /// The recovery key: both paths then run exactly as on a new machine. Without it the
        /// backup opens with this device's keyring and the relay path is skipped.
        #[arg(long, value_name = "KEY")]
        recovery_key: Option<String>,
    },
    /// Test support (hidden).
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up the whole workspace now, check the backup in full, and prune old ones.
    Create {
        /// Write it to this folder instead of the configured one.
        #[arg(long, value_name = "DIR")]
        to: Option<PathBuf>,
        /// What made it: manual, schedule, exit or migration.
        #[arg(long, default_value = "manual", hide = true)]
        reason: String,
    },
    /// This workspace's backups, newest first, with their last check.
    List,
    /// Read a backup in full and check it (every chunk, every document, counts and versions).
    /// Exits with status 1 when one fails.
    Verify {
        /// The backup file (default: with --all, every backup in the list).
        file: Option<PathBuf>,
        /// Check every backup in the list.
        #[arg(long, conflicts_with = "file")]
        all: bool,
        /// Open it with the recovery key instead of this device's keyring.
        #[arg(long, value_name = "KEY")]
        recovery_key: Option<String>,
    },
    /// Restore from a backup: into a new data directory, merged into this one, or by turning
    /// documents changed since the backup back to their state in it.
    #[command(group = clap::ArgGroup::new("mode").required(true).args(["into", "merge", "revert_to_backup"]))]
    Restore {
        file: PathBuf,
        /// A new, empty data directory to restore the whole workspace into.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// Merge the backup's documents into this store: whatever it lacks comes back, nothing
        /// newer is overwritten.
        #[arg(long)]
        merge: bool,
        /// Write new changes that return documents changed since the backup to their state in
        /// it (history keeps both; the change syncs).
        #[arg(long)]
        revert_to_backup: bool,
        /// With --revert-to-backup: only documents deleted (or purged) since the backup.
        #[arg(long, requires = "revert_to_backup")]
        only_deleted: bool,
        /// With --revert-to-backup: only these documents (ids, id prefixes or invoice numbers).
        #[arg(long, value_name = "ID", num_args = 1.., requires = "revert_to_backup")]
        only: Vec<String>,
        /// Open it with the recovery key (needed on a machine that is not a device of its
        /// workspace).
        #[arg(long, value_name = "KEY")]
        recovery_key: Option<String>,
        /// With --into: keep the new directory's database key in a passphrase-protected key
        /// file instead of the OS keyring.
        #[arg(long, requires = "into")]
        key_file: bool,
    },
    /// Show or change where backups go, how many are kept and how often the app makes them.
    Settings {
        /// The backup folder (an external drive or a network share is typical).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Keep the newest N backups whatever their age (0 by default).
        #[arg(long)]
        keep_last: Option<u32>,
        #[arg(long)]
        keep_hourly: Option<u32>,
        #[arg(long)]
        keep_daily: Option<u32>,
        #[arg(long)]
        keep_monthly: Option<u32>,
        /// Minutes between automatic backups while the app runs (0: off).
        #[arg(long)]
        every_minutes: Option<u32>,
    },
    /// Remove backups the retention does not keep (never the newest verified one).
    Prune,
}

#[derive(Debug, Subcommand)]
pub enum ZatcaCommand {
    /// The invoice hash of any e-invoice file (base64), as ZATCA computes it.
    Hash { file: PathBuf },
    /// Check any e-invoice (ours or a supplier's): hash, stamp, certificate, QR, signature.
    /// Exits with status 1 when it does not verify.
    Verify { file: PathBuf },
    /// This device's e-invoicing state and its submission queue.
    Status,
    /// Onboard this device as an EGS unit: CSR, compliance CSID (with the OTP from the Fatoora
    /// portal), compliance checks, production CSID.
    Onboard {
        /// The one-time password from the Fatoora portal.
        #[arg(long)]
        otp: String,
        /// developer, simulation or production.
        #[arg(long, default_value = "simulation")]
        environment: String,
        /// Another address for ZATCA's API (a stub, a proxy).
        #[arg(long, env = "DAFTAR_ZATCA_API")]
        api_url: Option<String>,
        /// The branch name in the certificate (default: the seller's city).
        #[arg(long)]
        branch: Option<String>,
        /// The taxpayer's industry, as the certificate states it.
        #[arg(long)]
        industry: Option<String>,
    },
    /// Clear (standard) and report (simplified) the e-invoices waiting in the queue.
    Submit {
        /// Every pending e-invoice (the default; kept for scripts that say so).
        #[arg(long)]
        pending: bool,
        /// At most this many in one round.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Debug, Args)]
pub struct AddressArgs {
    #[arg(long)]
    pub street: Option<String>,
    #[arg(long)]
    pub building_number: Option<String>,
    #[arg(long)]
    pub additional_number: Option<String>,
    #[arg(long)]
    pub district: Option<String>,
    #[arg(long)]
    pub city: Option<String>,
    #[arg(long)]
    pub postal_code: Option<String>,
    /// Two-letter country code (default SA).
    #[arg(long)]
    pub country: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Legal name of the business (Latin script).
    #[arg(long)]
    pub seller_name: String,
    /// Legal name in Arabic (used on ZATCA invoices when set).
    #[arg(long)]
    pub seller_name_ar: Option<String>,
    /// VAT registration number: 15 digits, starting and ending with 3.
    #[arg(long)]
    pub vat_number: String,
    /// Commercial registration number (10 digits).
    #[arg(long)]
    pub cr_number: Option<String>,
    #[command(flatten)]
    pub address: AddressArgs,
    /// This device's invoice-number prefix (default A).
    #[arg(long)]
    pub series: Option<String>,
    /// A name for this device.
    #[arg(long)]
    pub device_name: Option<String>,
    /// Your name: the workspace's first member and owner, as devices lists and the audit log
    /// show it ("owner" when not given).
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    /// Keep the database key in a passphrase-protected key file instead of the OS keyring
    /// (passphrase from DAFTAR_PASSPHRASE or asked for).
    #[arg(long)]
    pub key_file: bool,
}

#[derive(Debug, Args)]
pub struct CustomerFields {
    #[arg(long)]
    pub name: Option<String>,
    /// VAT number for B2B customers; an empty value removes it.
    #[arg(long)]
    pub vat_number: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    #[command(flatten)]
    pub address: AddressArgs,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Add a customer.
    Add(CustomerFields),
    /// List customers.
    List {
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        deleted: bool,
        #[arg(long)]
        limit: Option<usize>,
    },
    Show {
        id: String,
    },
    Edit {
        id: String,
        #[command(flatten)]
        fields: CustomerFields,
    },
    Delete {
        id: String,
    },
    Restore {
        id: String,
    },
    History {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ItemFields {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub name_ar: Option<String>,
    /// Unit price, such as 12.50.
    #[arg(long, allow_hyphen_values = true)]
    pub price: Option<String>,
    /// S (standard 15%), Z (zero-rated), E (exempt) or O (out of scope).
    #[arg(long)]
    pub vat_category: Option<String>,
    /// ZATCA exemption reason code for Z/E/O, such as VATEX-SA-32.
    #[arg(long)]
    pub exemption_code: Option<String>,
    /// Unit of measure, such as PCE or KGM.
    #[arg(long)]
    pub unit: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ItemCommand {
    Add(ItemFields),
    List {
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        deleted: bool,
        #[arg(long)]
        limit: Option<usize>,
    },
    Show {
        id: String,
    },
    Edit {
        id: String,
        #[command(flatten)]
        fields: ItemFields,
    },
    Delete {
        id: String,
    },
    Restore {
        id: String,
    },
    History {
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateInvoiceArgs {
    /// Customer id (or a unique prefix of it).
    #[arg(long)]
    pub customer: Option<String>,
    /// 'DESCRIPTION|QTY|UNIT_PRICE[|VAT_CATEGORY[|DISCOUNT[|EXEMPTION_CODE]]]' (repeatable).
    #[arg(long = "line")]
    pub lines: Vec<String>,
    /// standard, simplified, credit_note or debit_note (default: standard for customers with a
    /// VAT number, simplified otherwise).
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub currency: Option<String>,
    /// SAR per unit of the invoice currency.
    #[arg(long, allow_hyphen_values = true)]
    pub exchange_rate: Option<String>,
    #[arg(long)]
    pub supply_date: Option<String>,
    #[arg(long)]
    pub due_date: Option<String>,
    #[arg(long)]
    pub notes: Option<String>,
    /// Document discount: 'AMOUNT[|VAT_CATEGORY[|EXEMPTION_CODE]]'.
    #[arg(long, allow_hyphen_values = true)]
    pub discount: Option<String>,
    /// For credit and debit notes: the original invoice (id or number).
    #[arg(long)]
    pub original: Option<String>,
    /// For credit and debit notes: why.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// Create a draft.
    Create(CreateInvoiceArgs),
    /// List invoices, newest first.
    List {
        /// Words to find in the number, customer, lines or notes.
        #[arg(long)]
        query: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// List the trash.
        #[arg(long)]
        deleted: bool,
        #[arg(long)]
        customer: Option<String>,
        /// From date (YYYY-MM-DD), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// To date (YYYY-MM-DD), inclusive.
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Show an invoice (id, unique id prefix, or number), optionally as of a version.
    Show {
        id: String,
        #[arg(long)]
        version: Option<usize>,
    },
    /// Edit a draft.
    Edit {
        id: String,
        /// FIELD=VALUE (repeatable).
        #[arg(long = "set")]
        set: Vec<String>,
        /// A line to add (same format as create --line; repeatable).
        #[arg(long = "add-line")]
        add_lines: Vec<String>,
        /// 'N|DESCRIPTION|QTY|UNIT_PRICE[|...]': replace line N (repeatable).
        #[arg(long = "set-line")]
        set_lines: Vec<String>,
        /// Remove line N (1-based; repeatable).
        #[arg(long = "remove-line")]
        remove_lines: Vec<usize>,
    },
    /// Issue a draft: number it, freeze it and stamp it as a ZATCA e-invoice.
    Issue { id: String },
    /// The signed e-invoice (UBL 2.1 XML) of an issued invoice, on stdout: as ZATCA cleared it
    /// when it did (a standard invoice cleared from this device), else as Daftar signed it.
    Xml {
        id: String,
        /// The XML as Daftar signed it, even when ZATCA returned a cleared one.
        #[arg(long)]
        as_signed: bool,
    },
    /// The QR code payload of an issued invoice, and its fields.
    Qr { id: String },
    /// The printable bilingual PDF of an invoice (drafts are marked DRAFT).
    Pdf {
        id: String,
        /// The file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Record a payment.
    Pay {
        id: String,
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// Payment date, YYYY-MM-DD (default today).
        #[arg(long)]
        date: Option<String>,
        /// cash, card, bank_transfer, cheque or other.
        #[arg(long, default_value = "cash")]
        method: String,
        #[arg(long, default_value = "")]
        reference: String,
    },
    /// Move drafts to the trash. With several, all are checked first: if one cannot be
    /// deleted, none is. `--json` prints the invoice, or an array for several.
    Delete {
        #[arg(required = true, num_args = 1..)]
        ids: Vec<String>,
    },
    /// Take an invoice out of the trash.
    Restore { id: String },
    /// Permanently remove a deleted draft (recorded).
    Purge {
        id: String,
        /// Confirm that the draft and its history are to be removed for good.
        #[arg(long)]
        yes: bool,
    },
    /// Every version of an invoice.
    History { id: String },
    /// Field-level differences between two versions.
    Diff { id: String, from: usize, to: usize },
    /// Make a draft look as it did at a version (as a new version).
    Revert {
        id: String,
        #[arg(long)]
        to: usize,
    },
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum SellerCommand {
    Show,
    Edit {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        name_ar: Option<String>,
        #[arg(long)]
        vat_number: Option<String>,
        #[arg(long)]
        cr_number: Option<String>,
        #[command(flatten)]
        address: AddressArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read every document and check history, index and numbering.
    Verify,
    /// Recreate the index tables from the documents.
    RebuildIndex,
    /// Fold change rows into snapshots (keeps full history).
    Compact,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import customers or items from CSV: all rows or none.
    Csv {
        #[arg(long, conflicts_with = "items", required_unless_present = "items")]
        customers: Option<PathBuf>,
        #[arg(long)]
        items: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Every record as JSON files in DIR (which must be empty or absent).
    Json { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Add a relay; on the workspace's first device this creates the workspace there. An
    /// owner's or admin's device adding a further relay carries their second factor to it with
    /// `--totp CODE` (else `daftar mfa carry --totp CODE` later).
    Add {
        url: String,
        /// A current one-time code, to carry your second factor to the new relay.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    List,
    Remove {
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain and the signatures; exits with status 1 and names the first entry
    /// that does not match.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// Make a second factor for this device: prints the otpauth URI (and secret) for an
    /// authenticator app and ten recovery codes, once.
    Enroll {
        /// The name the authenticator app shows.
        #[arg(long)]
        account: Option<String>,
        /// The current code, to replace a second factor already confirmed.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// Check a code (the first confirms the enrolment).
    Verify { code: String },
    /// Enrol your second factor with every relay that lacks it (one added later), taken from a
    /// relay that has it: the authenticator app keeps one entry.
    Carry {
        /// A current one-time code (or a recovery code); asked for at a terminal when not given.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new workspace key, wrapped for every approved device and the recovery key; new
    /// envelopes use it (a revocation does this too).
    Rotate {
        /// A one-time code from the authenticator app (once this device has a second factor); asked
        /// for at a terminal when the relays need one.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// The epochs whose key this device holds, and the one it seals with.
    List,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    List,
    /// Let a device that joined with an invite in (owners and admins; an admin's or owner's
    /// device only by an owner). Until then it receives nothing.
    Approve {
        /// The person the device belongs to (default: "member" and the id's first characters).
        #[arg(long)]
        member: Option<String>,
        /// A one-time code from the authenticator app (once this device has a second factor); asked
        /// for at a terminal when the relays need one.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
        device: String,
    },
    /// Give a device another role (owners and admins; only owners make or unmake admins and
    /// owners — transferring ownership is making another owner, then stepping down).
    Role {
        /// A one-time code from the authenticator app (once this device has a second factor); asked
        /// for at a terminal when the relays need one.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
        device: String,
        /// owner, admin, accountant, clerk or viewer.
        role: String,
    },
    /// Refuse a device from now on (owners and admins).
    Revoke {
        /// A one-time code from the authenticator app (once this device has a second factor); asked
        /// for at a terminal when the relays need one.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
        device: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Pending changes and the last sync, per relay.
    Status,
    /// Issued invoices that met a concurrent edit, delete or second issue, and what was kept.
    Conflicts,
    /// Envelopes relays served that were refused (altered, forged, from an unknown device);
    /// nothing of them was applied.
    Refused,
    /// Upload a snapshot of this device's documents to every relay now, for fast bootstrap of
    /// new devices (also made automatically as the log grows).
    Snapshot,
    /// Received changes that were not applied because their sender's role does not allow
    /// them (owners and admins).
    Quarantine,
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Create (and every third one, issue) invoices in a loop, printing each acknowledged write
    /// as a JSON line once it is committed. Used by the crash test.
    WriteLoop {
        #[arg(long)]
        customer: String,
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
        /// Only drafts (otherwise every third is issued).
        #[arg(long)]
        drafts: bool,
    },
    /// Try to open a sealed envelope (raw bytes in FILE) with every workspace key this device
    /// holds; prints what it is or why it does not open.
    OpenEnvelope { file: PathBuf },
    /// Debug builds only (tests): seal the raw bytes in FILE as a change of DOCUMENT, signed by
    /// this device, and push it to every relay unchecked, as a modified client could.
    #[cfg(debug_assertions)]
    PushCrafted {
        #[arg(long)]
        document: String,
        /// invoice, customer, item, settings, membership or events.
        #[arg(long)]
        kind: String,
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            let wants_json = std::env::args().any(|a| a == "--json");
            if !wants_json || matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                error.exit();
            }
            // Scripts asked for JSON: give them the same error shape as every other failure.
            let message = error.render().to_string();
            let message = message.trim().trim_start_matches("error: ");
            eprintln!("{}", serde_json::json!({ "error": { "code": "usage", "message": message } }));
            return ExitCode::from(2);
        }
    };
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::error(&error, json);
            ExitCode::FAILURE
        }
    }
}
