//! One function per command: parse arguments, call the store, print.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use daftar_domain::{Address, Customer, CustomerId, Invoice, Item, ItemId, SellerProfile};
use daftar_store::{
    DocKind, InitOptions, InvoiceEdit, InvoiceQuery, KeyChoice, NewInvoice, Store, SystemClock, Unlock, Version,
};
use serde_json::json;
use uuid::Uuid;

use crate::output::{invoice_json, print_invoice, print_json, record_json};
use crate::{
    AddressArgs, Cli, Command, CreateInvoiceArgs, CustomerCommand, CustomerFields, DebugCommand, ExportCommand,
    ImportCommand, InvoiceCommand, ItemCommand, ItemFields, SellerCommand, StoreCommand, ZatcaCommand, input,
};

pub(crate) fn data_dir(cli: &Cli) -> Result<PathBuf> {
    match &cli.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => dirs::data_dir()
            .map(|d| d.join("daftar"))
            .ok_or_else(|| anyhow!("no data directory is known for this user; pass --data-dir or set DAFTAR_DATA_DIR")),
    }
}

pub(crate) fn passphrase(confirm: bool) -> Result<String> {
    if let Ok(passphrase) = std::env::var("DAFTAR_PASSPHRASE") {
        return Ok(passphrase);
    }
    let first = rpassword::prompt_password("Passphrase: ")
        .context("the passphrase could not be read; set DAFTAR_PASSPHRASE")?;
    if confirm {
        let again = rpassword::prompt_password("Passphrase again: ").context("the passphrase could not be read")?;
        if again != first {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    Ok(first)
}

pub(crate) fn open(cli: &Cli) -> Result<Store> {
    let dir = data_dir(cli)?;
    let needs_passphrase = dir.join(daftar_store::KEY_FILE).exists();
    let unlock = Unlock { passphrase: if needs_passphrase { Some(passphrase(false)?) } else { None } };
    Ok(Store::open_with(&dir, &unlock, Arc::new(SystemClock), Some(&daftar_backup::before_migration))?)
}

fn apply_address(address: &mut Address, args: &AddressArgs) {
    let set = |field: &mut String, value: &Option<String>| {
        if let Some(v) = value {
            *field = v.trim().to_owned();
        }
    };
    set(&mut address.street, &args.street);
    set(&mut address.building_number, &args.building_number);
    set(&mut address.additional_number, &args.additional_number);
    set(&mut address.district, &args.district);
    set(&mut address.city, &args.city);
    set(&mut address.postal_code, &args.postal_code);
    if let Some(country) = &args.country {
        address.country = country.trim().to_ascii_uppercase();
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Init(args) => init(&cli, args),
        Command::Info => {
            let store = open(&cli)?;
            let info = store.info();
            if cli.json {
                print_json(info);
            } else {
                println!(
                    "workspace {}\ndevice    {}\nseries    {}\ndata dir  {}",
                    info.workspace_id,
                    info.device_id,
                    info.series,
                    info.data_dir.display()
                );
            }
            Ok(())
        }
        Command::Customer(command) => customer(&cli, command),
        Command::Item(command) => item(&cli, command),
        Command::Invoice(command) => invoice(&cli, command),
        Command::Trash => {
            let store = open(&cli)?;
            let entries = store.trash()?;
            if cli.json {
                print_json(&entries);
            } else if entries.is_empty() {
                println!("The trash is empty.");
            } else {
                for e in entries {
                    println!("{:<8} {}  {}", e.kind.as_str(), e.id, e.label);
                }
            }
            Ok(())
        }
        Command::Seller(command) => seller(&cli, command),
        Command::Store(command) => maintenance(&cli, command),
        Command::Import(ImportCommand::Csv { customers, items }) => import(&cli, customers.as_ref(), items.as_ref()),
        Command::Export(ExportCommand::Json { dir }) => {
            let store = open(&cli)?;
            let report = store.export_json(dir)?;
            store.record_event("export", json!({ "dir": dir, "invoices": report.invoices }))?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "Exported {} invoices, {} customers, {} items to {}",
                    report.invoices,
                    report.customers,
                    report.items,
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Debug(DebugCommand::WriteLoop { customer, count, drafts }) => {
            write_loop(&cli, customer, *count, *drafts)
        }
        Command::Debug(DebugCommand::OpenEnvelope { file }) => crate::sync::open_envelope(&open(&cli)?, file),
        #[cfg(debug_assertions)]
        Command::Debug(DebugCommand::PushCrafted { document, kind, file }) => {
            crate::sync::push_crafted(&open(&cli)?, cli.json, document, kind, file)
        }
        Command::Keys(command) => crate::sync::keys(&mut open(&cli)?, cli.json, command),
        Command::Relay(command) => crate::sync::relay(&mut open(&cli)?, cli.json, command),
        Command::Sync { command: None, watch: false } => crate::sync::sync_round(&mut open(&cli)?, cli.json),
        Command::Sync { command: None, watch: true } => crate::sync::watch(&mut open(&cli)?, cli.json),
        Command::Sync { command: Some(crate::SyncCommand::Status), .. } => crate::sync::status(&open(&cli)?, cli.json),
        Command::Sync { command: Some(crate::SyncCommand::Refused), .. } => {
            crate::sync::refused(&open(&cli)?, cli.json)
        }
        Command::Sync { command: Some(crate::SyncCommand::Quarantine), .. } => {
            crate::sync::quarantine(&open(&cli)?, cli.json)
        }
        Command::Sync { command: Some(crate::SyncCommand::Snapshot), .. } => {
            crate::sync::snapshot(&mut open(&cli)?, cli.json)
        }
        Command::Sync { command: Some(crate::SyncCommand::Conflicts), .. } => {
            crate::sync::conflicts(&open(&cli)?, cli.json)
        }
        Command::Invite { role, relay, expires_hours, totp } => {
            crate::sync::invite(&open(&cli)?, cli.json, role, relay.as_deref(), *expires_hours, totp.as_deref())
        }
        Command::Mfa(command) => crate::sync::mfa(&open(&cli)?, cli.json, command),
        Command::Join { code, wait } => crate::sync::join(&data_dir(&cli)?, cli.json, code, *wait),
        Command::Devices(command) => crate::sync::devices(&mut open(&cli)?, cli.json, command),
        Command::Recover { relay, workspace, recovery_key } => {
            crate::sync::recover(&data_dir(&cli)?, cli.json, relay, workspace, recovery_key)
        }
        Command::Backup(command) => crate::backup::run(&cli, command),
        Command::Audit { since, member, invoice, format, limit, command } => {
            crate::audit::run(&cli, since.as_deref(), member.as_deref(), invoice.as_deref(), format, *limit, command)
        }
        Command::Drill { recovery_key } => crate::backup::drill(&cli, recovery_key.as_deref()),
        Command::Zatca(ZatcaCommand::Hash { file }) => crate::zatca::hash(cli.json, file),
        Command::Zatca(ZatcaCommand::Verify { file }) => {
            if crate::zatca::verify(cli.json, file)? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Zatca(ZatcaCommand::Status) => crate::zatca::status(cli.json, &open(&cli)?),
        Command::Zatca(ZatcaCommand::Onboard { otp, environment, api_url, branch, industry }) => {
            let options = daftar_einvoicing::OnboardOptions {
                otp: otp.clone(),
                environment: environment.parse().map_err(|e: String| anyhow!(e))?,
                api_url: api_url.clone(),
                branch: branch.clone(),
                industry: industry.clone(),
            };
            crate::zatca::onboard(cli.json, &mut open(&cli)?, &options)
        }
        Command::Zatca(ZatcaCommand::Submit { pending: _, limit }) => {
            crate::zatca::submit(cli.json, &mut open(&cli)?, *limit)
        }
    }
}

fn init(cli: &Cli, args: &crate::InitArgs) -> Result<()> {
    let dir = data_dir(cli)?;
    let mut seller = SellerProfile {
        name: args.seller_name.trim().to_owned(),
        name_ar: args.seller_name_ar.clone().unwrap_or_default().trim().to_owned(),
        vat_number: args.vat_number.trim().to_owned(),
        cr_number: args.cr_number.clone().unwrap_or_default().trim().to_owned(),
        address: Address::default(),
    };
    apply_address(&mut seller.address, &args.address);
    let series = args.series.as_deref().map(str::parse).transpose()?;
    let key = if args.key_file { KeyChoice::Passphrase(passphrase(true)?) } else { KeyChoice::Keyring };
    let device_name = args.device_name.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "this device".into())
    });
    let member = args.member.clone();
    let options = InitOptions { seller, series, key, device_name, member, existing: None };
    let (store, recovery) = Store::init(&dir, options, Arc::new(SystemClock))?;
    let info = store.info();
    let recovery_key = recovery.expose_printable();
    if cli.json {
        print_json(&json!({
            "recovery_key": recovery_key,
            "workspace_id": info.workspace_id,
            "device_id": info.device_id,
            "series": info.series,
            "data_dir": info.data_dir,
            "key": info.key_location,
        }));
    } else {
        println!("Created workspace {} in {}", info.workspace_id, info.data_dir.display());
        println!("This device issues invoice numbers {}", info.series.number(1));
        println!();
        println!("Recovery key (shown only now; write it down and keep it safe, away from this computer):");
        println!();
        println!("    {recovery_key}");
        println!();
        println!("With it the whole workspace can be rebuilt if every device is lost. Daftar cannot show it again.");
    }
    Ok(())
}

fn print_history(json: bool, versions: &[Version]) {
    if json {
        print_json(versions);
        return;
    }
    for v in versions {
        let device = v.device.map(|d| d.to_string()).unwrap_or_else(|| "unknown device".into());
        println!("{:>3}  {}  {}  {}", v.version, v.time.format("%Y-%m-%d %H:%M:%S"), device, v.message);
    }
}

fn customer_from(fields: &CustomerFields, customer: &mut Customer) {
    if let Some(name) = &fields.name {
        customer.name = name.trim().to_owned();
    }
    if let Some(vat) = &fields.vat_number {
        let vat = vat.trim();
        customer.vat_number = if vat.is_empty() { None } else { Some(vat.to_owned()) };
    }
    if let Some(email) = &fields.email {
        customer.email = email.trim().to_owned();
    }
    if let Some(phone) = &fields.phone {
        customer.phone = phone.trim().to_owned();
    }
    apply_address(&mut customer.address, &fields.address);
}

fn show_customer(json: bool, customer: &Customer) {
    if json {
        print_json(&record_json(customer));
    } else {
        let vat = customer.vat_number.as_deref().map(|v| format!("  VAT {v}")).unwrap_or_default();
        let trash = if customer.deleted.is_some() { "  (in the trash)" } else { "" };
        println!("{}  {}{vat}{trash}", customer.id, customer.name);
    }
}

fn customer(cli: &Cli, command: &CustomerCommand) -> Result<()> {
    let mut store = open(cli)?;
    match command {
        CustomerCommand::Add(fields) => {
            let name = fields.name.clone().ok_or_else(|| anyhow!("a customer needs --name"))?;
            let mut customer = Customer::new(CustomerId::from_uuid(Uuid::now_v7()), name, Utc::now());
            customer_from(fields, &mut customer);
            store.create(&customer, "create")?;
            show_customer(cli.json, &customer);
        }
        CustomerCommand::List { query, deleted, limit } => {
            let rows = store.list_customers(query.as_deref(), *deleted, *limit)?;
            if cli.json {
                print_json(&rows);
            } else {
                for c in rows {
                    println!("{}  {}  {}", c.id, c.name, c.vat_number.unwrap_or_default());
                }
            }
        }
        CustomerCommand::Show { id } => show_customer(cli.json, &store.customer(store.resolve_customer(id)?)?),
        CustomerCommand::Edit { id, fields } => {
            let id = store.resolve_customer(id)?;
            let customer = store.edit::<Customer>(id.into(), |c| {
                customer_from(fields, c);
                Ok(())
            })?;
            show_customer(cli.json, &customer);
        }
        CustomerCommand::Delete { id } => {
            let id = store.resolve_customer(id)?;
            show_customer(cli.json, &store.delete::<Customer>(id.into(), |_| Ok(()))?);
        }
        CustomerCommand::Restore { id } => {
            let id = store.resolve_customer(id)?;
            show_customer(cli.json, &store.restore::<Customer>(id.into())?);
        }
        CustomerCommand::History { id } => {
            let id = store.resolve_customer(id)?;
            print_history(cli.json, &store.history(id.into())?);
        }
    }
    Ok(())
}

/// The changes `--name`, `--price`, … ask for, parsed before the store is touched.
struct ItemChanges<'a> {
    fields: &'a ItemFields,
    price: Option<daftar_domain::Amount>,
    vat_code: Option<daftar_domain::VatCode>,
}

impl<'a> ItemChanges<'a> {
    fn parse(fields: &'a ItemFields) -> Result<Self> {
        Ok(ItemChanges {
            fields,
            price: fields.price.as_deref().map(str::parse).transpose().context("--price")?,
            vat_code: fields.vat_category.as_deref().map(str::parse).transpose().context("--vat-category")?,
        })
    }

    fn apply(&self, item: &mut Item) {
        let set = |field: &mut String, value: &Option<String>| {
            if let Some(v) = value {
                *field = v.trim().to_owned();
            }
        };
        set(&mut item.name, &self.fields.name);
        set(&mut item.name_ar, &self.fields.name_ar);
        set(&mut item.unit, &self.fields.unit);
        if let Some(price) = self.price {
            item.unit_price = price;
        }
        if self.vat_code.is_some() || self.fields.exemption_code.is_some() {
            let code = self.vat_code.unwrap_or(item.vat.code);
            item.vat = match self.fields.exemption_code.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
                Some(reason) => daftar_domain::VatCategory::with_exemption(code, reason),
                None => daftar_domain::VatCategory::of(code),
            };
        }
    }
}

fn show_item(json: bool, item: &Item) {
    if json {
        print_json(&record_json(item));
    } else {
        let trash = if item.deleted.is_some() { "  (in the trash)" } else { "" };
        println!("{}  {}  {}  [{}]{trash}", item.id, item.name, item.unit_price, item.vat.code);
    }
}

fn item(cli: &Cli, command: &ItemCommand) -> Result<()> {
    let mut store = open(cli)?;
    match command {
        ItemCommand::Add(fields) => {
            let name = fields.name.clone().ok_or_else(|| anyhow!("an item needs --name"))?;
            if fields.price.is_none() {
                bail!("an item needs --price");
            }
            let mut item = Item {
                id: ItemId::from_uuid(Uuid::now_v7()),
                name,
                name_ar: String::new(),
                unit_price: daftar_domain::Amount::ZERO,
                vat: daftar_domain::VatCategory::standard(),
                unit: String::new(),
                created_at: Utc::now(),
                deleted: None,
            };
            ItemChanges::parse(fields)?.apply(&mut item);
            store.create(&item, "create")?;
            show_item(cli.json, &item);
        }
        ItemCommand::List { query, deleted, limit } => {
            let rows = store.list_items(query.as_deref(), *deleted, *limit)?;
            if cli.json {
                print_json(&rows);
            } else {
                for i in rows {
                    println!("{}  {}  {}  [{}]", i.id, i.name, i.unit_price, i.vat_category);
                }
            }
        }
        ItemCommand::Show { id } => show_item(cli.json, &store.item(store.resolve_item(id)?)?),
        ItemCommand::Edit { id, fields } => {
            let id = store.resolve_item(id)?;
            let changes = ItemChanges::parse(fields)?;
            let item = store.edit::<Item>(id.into(), |item| {
                changes.apply(item);
                Ok(())
            })?;
            show_item(cli.json, &item);
        }
        ItemCommand::Delete { id } => {
            let id = store.resolve_item(id)?;
            show_item(cli.json, &store.delete::<Item>(id.into(), |_| Ok(()))?);
        }
        ItemCommand::Restore { id } => {
            let id = store.resolve_item(id)?;
            show_item(cli.json, &store.restore::<Item>(id.into())?);
        }
        ItemCommand::History { id } => {
            let id = store.resolve_item(id)?;
            print_history(cli.json, &store.history(id.into())?);
        }
    }
    Ok(())
}

fn show_invoice(json: bool, invoice: &Invoice) {
    if json {
        print_json(&invoice_json(invoice));
    } else {
        print_invoice(invoice);
    }
}

fn new_invoice(store: &Store, args: &CreateInvoiceArgs) -> Result<NewInvoice> {
    let lines = args.lines.iter().enumerate().map(|(i, text)| input::line(text, i + 1)).collect::<Result<Vec<_>>>()?;
    let original = match (&args.original, &args.reason) {
        (Some(original), reason) => Some((store.resolve_invoice(original)?, reason.clone().unwrap_or_default())),
        (None, Some(_)) => bail!("--reason belongs to credit and debit notes; give --original too"),
        (None, None) => None,
    };
    Ok(NewInvoice {
        kind: args.kind.as_deref().map(str::parse).transpose()?,
        customer: args.customer.as_deref().map(|c| store.resolve_customer(c)).transpose()?,
        lines,
        currency: args.currency.as_deref().map(str::parse).transpose()?,
        exchange_rate: args.exchange_rate.as_deref().map(str::parse).transpose().context("--exchange-rate")?,
        supply_date: args.supply_date.as_deref().map(input::date).transpose().context("--supply-date")?,
        due_date: args.due_date.as_deref().map(input::date).transpose().context("--due-date")?,
        notes: args.notes.clone().unwrap_or_default(),
        discount: args.discount.as_deref().map(input::discount).transpose().context("--discount")?,
        original,
    })
}

fn invoice(cli: &Cli, command: &InvoiceCommand) -> Result<()> {
    let mut store = open(cli)?;
    match command {
        InvoiceCommand::Create(args) => {
            let new = new_invoice(&store, args)?;
            show_invoice(cli.json, &store.create_invoice(new)?);
        }
        InvoiceCommand::List { query, status, deleted, customer, from, to, limit, offset } => {
            let query = InvoiceQuery {
                text: query.clone(),
                status: status.as_deref().map(str::parse).transpose().map_err(|e: String| anyhow!(e))?,
                deleted: *deleted,
                customer: customer.as_deref().map(|c| store.resolve_customer(c)).transpose()?,
                from: from.as_deref().map(input::date).transpose().context("--from")?,
                to: to.as_deref().map(input::date).transpose().context("--to")?,
                limit: *limit,
                offset: *offset,
                ..Default::default()
            };
            let rows = store.list_invoices(&query)?;
            if cli.json {
                print_json(&rows);
            } else if rows.is_empty() {
                println!("No invoices.");
            } else {
                let mut out = std::io::stdout().lock();
                for r in rows {
                    let number = r.number.clone().unwrap_or_else(|| "(draft)".into());
                    let _ = writeln!(
                        out,
                        "{number:<12} {:<8} {:<24} {:>14} {}  {}",
                        r.status,
                        r.customer,
                        r.gross.to_string(),
                        r.currency,
                        r.id
                    );
                }
            }
        }
        InvoiceCommand::Show { id, version } => {
            let id = store.resolve_invoice(id)?;
            let invoice = match version {
                Some(v) => store.get_at::<Invoice>(id.into(), *v)?,
                None => store.invoice(id)?,
            };
            show_invoice(cli.json, &invoice);
        }
        InvoiceCommand::Edit { id, set, add_lines, set_lines, remove_lines } => {
            let id = store.resolve_invoice(id)?;
            let mut edits = Vec::new();
            for assignment in set {
                edits.push(input::invoice_edit(&store, assignment)?);
            }
            for text in set_lines {
                let (n, rest) = text
                    .split_once('|')
                    .ok_or_else(|| anyhow!("--set-line expects 'N|DESCRIPTION|QTY|UNIT_PRICE[|...]' (got {text:?})"))?;
                let n: usize = n.trim().parse().map_err(|_| anyhow!("--set-line: {n:?} is not a line number"))?;
                edits.push(InvoiceEdit::SetLine(n, input::line(rest, n)?));
            }
            // Remove from the highest number down so the numbers given stay meaningful.
            let mut removals = remove_lines.clone();
            removals.sort_unstable_by(|a, b| b.cmp(a));
            edits.extend(removals.into_iter().map(InvoiceEdit::RemoveLine));
            for (i, text) in add_lines.iter().enumerate() {
                edits.push(InvoiceEdit::AddLine(
                    input::line(text, i + 1).map_err(|e| anyhow!("{e:#}").context("--add-line"))?,
                ));
            }
            show_invoice(cli.json, &store.edit_invoice(id, edits)?);
        }
        InvoiceCommand::Issue { id } => {
            let id = store.resolve_invoice(id)?;
            show_invoice(cli.json, &store.issue_invoice(id)?);
        }
        InvoiceCommand::Xml { id, as_signed } => {
            let invoice = store.invoice(store.resolve_invoice(id)?)?;
            let cleared = if *as_signed { None } else { store.zatca_cleared_xml(&invoice.id.to_string())? };
            crate::zatca::xml(&invoice, cleared.as_deref())?
        }
        InvoiceCommand::Qr { id } => crate::zatca::qr(cli.json, &store.invoice(store.resolve_invoice(id)?)?)?,
        InvoiceCommand::Pdf { id, output } => {
            let invoice = store.invoice(store.resolve_invoice(id)?)?;
            let pdf = daftar_pdf::render(&invoice, &store.settings()?.seller)?;
            crate::zatca::write_file(output, &pdf)?;
            if cli.json {
                print_json(&json!({ "id": invoice.id, "file": output, "bytes": pdf.len() }));
            } else {
                println!("Wrote {} ({} bytes).", output.display(), pdf.len());
            }
        }
        InvoiceCommand::Pay { id, amount, date, method, reference } => {
            let id = store.resolve_invoice(id)?;
            let amount = amount.parse().context("--amount")?;
            let date = match date {
                Some(d) => input::date(d).context("--date")?,
                None => Utc::now().date_naive(),
            };
            let method = method.parse().map_err(|e: String| anyhow!(e))?;
            show_invoice(cli.json, &store.record_payment(id, amount, date, method, reference.clone())?);
        }
        InvoiceCommand::Delete { ids } => {
            let ids = ids.iter().map(|id| store.resolve_invoice(id)).collect::<Result<Vec<_>, _>>()?;
            if ids.len() == 1 {
                show_invoice(cli.json, &store.delete_invoice(ids[0])?);
            } else {
                let deleted = store.delete_invoices(&ids)?;
                if cli.json {
                    print_json(&deleted.iter().map(invoice_json).collect::<Vec<_>>());
                } else {
                    println!("Moved {} drafts to the trash", deleted.len());
                }
            }
        }
        InvoiceCommand::Restore { id } => {
            let id = store.resolve_invoice(id)?;
            show_invoice(cli.json, &store.restore_invoice(id)?);
        }
        InvoiceCommand::Purge { id, yes } => {
            let id = store.resolve_invoice(id)?;
            if !yes {
                bail!("purging removes the draft and its whole history for good; add --yes to confirm");
            }
            store.purge_invoice(id)?;
            if cli.json {
                print_json(&json!({ "id": id, "purged": true }));
            } else {
                println!("Purged draft {id}.");
            }
        }
        InvoiceCommand::History { id } => {
            let id = store.resolve_invoice(id)?;
            print_history(cli.json, &store.history(id.into())?);
        }
        InvoiceCommand::Diff { id, from, to } => {
            let id = store.resolve_invoice(id)?;
            let changes = store.diff(id.into(), *from, *to)?;
            if cli.json {
                print_json(&changes);
            } else if changes.is_empty() {
                println!("Versions {from} and {to} are identical.");
            } else {
                let show =
                    |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "—".into());
                for c in changes {
                    println!("{}: {} → {}", c.path, show(&c.before), show(&c.after));
                }
            }
        }
        InvoiceCommand::Revert { id, to } => {
            let id = store.resolve_invoice(id)?;
            show_invoice(cli.json, &store.revert_invoice(id, *to)?);
        }
    }
    Ok(())
}

fn seller(cli: &Cli, command: &SellerCommand) -> Result<()> {
    let mut store = open(cli)?;
    let settings = match command {
        SellerCommand::Show => store.settings()?,
        SellerCommand::Edit { name, name_ar, vat_number, cr_number, address } => store.update_seller(|s| {
            let set = |field: &mut String, value: &Option<String>| {
                if let Some(v) = value {
                    *field = v.trim().to_owned();
                }
            };
            set(&mut s.name, name);
            set(&mut s.name_ar, name_ar);
            set(&mut s.vat_number, vat_number);
            set(&mut s.cr_number, cr_number);
            apply_address(&mut s.address, address);
        })?,
    };
    if cli.json {
        print_json(&settings.seller);
    } else {
        let s = &settings.seller;
        println!("{} {}\nVAT {}  CR {}", s.name, s.name_ar, s.vat_number, s.cr_number);
    }
    Ok(())
}

fn maintenance(cli: &Cli, command: &StoreCommand) -> Result<()> {
    let mut store = open(cli)?;
    match command {
        StoreCommand::Verify => {
            let report = store.verify()?;
            if cli.json {
                print_json(&json!({
                    "ok": report.is_ok(),
                    "documents": report.documents,
                    "changes": report.changes,
                    "snapshots": report.snapshots,
                    "invoices": report.invoices,
                    "issued": report.issued,
                    "customers": report.customers,
                    "items": report.items,
                    "problems": report.problems,
                }));
            } else {
                println!(
                    "{} documents ({} invoices, {} issued; {} customers; {} items), {} change rows, {} snapshots",
                    report.documents,
                    report.invoices,
                    report.issued,
                    report.customers,
                    report.items,
                    report.changes,
                    report.snapshots
                );
                for p in &report.problems {
                    println!("PROBLEM: {p}");
                }
            }
            if !report.is_ok() {
                bail!("the store has {} problem(s); see above", report.problems.len());
            }
            if !cli.json {
                println!("OK");
            }
        }
        StoreCommand::RebuildIndex => {
            let count = store.rebuild_index()?;
            if cli.json {
                print_json(&json!({ "documents": count }));
            } else {
                println!("Rebuilt the index from {count} documents.");
            }
        }
        StoreCommand::Compact => {
            // Progress (on stderr, and not with --json, whose answer is one object on stdout)
            // names only what is committed: an interrupted compaction keeps it.
            let report = store.compact_with_progress(|so_far, remaining| {
                if !cli.json && remaining > 0 {
                    eprintln!("Compacted {} documents, {remaining} to go…", so_far.documents);
                }
            })?;
            if cli.json {
                print_json(&report);
            } else {
                println!(
                    "Compacted {} documents: {} change rows folded, {} → {} bytes",
                    report.documents, report.change_rows_folded, report.bytes_before, report.bytes_after
                );
            }
        }
    }
    Ok(())
}

fn import(cli: &Cli, customers: Option<&PathBuf>, items: Option<&PathBuf>) -> Result<()> {
    let mut store = open(cli)?;
    let (kind, count) = match (customers, items) {
        (Some(path), _) => {
            let records = input::customers_csv(path)?;
            store.create_many(&records, "import")?;
            (DocKind::Customer, records.len())
        }
        (None, Some(path)) => {
            let records = input::items_csv(path)?;
            store.create_many(&records, "import")?;
            (DocKind::Item, records.len())
        }
        (None, None) => bail!("give --customers FILE or --items FILE"),
    };
    if cli.json {
        print_json(&json!({ "kind": kind, "imported": count }));
    } else {
        println!("Imported {count} {}s.", kind.as_str());
    }
    Ok(())
}

fn write_loop(cli: &Cli, customer: &str, count: u64, drafts: bool) -> Result<()> {
    let mut store = open(cli)?;
    let customer = store.resolve_customer(customer)?;
    let mut out = std::io::stdout().lock();
    for n in 0..count {
        let line = input::line(&format!("Crash-test item {n}|{}|{}.25|S", n % 7 + 1, n % 90 + 10), 1)?;
        let invoice =
            store.create_invoice(NewInvoice { customer: Some(customer), lines: vec![line], ..Default::default() })?;
        writeln!(out, "{}", json!({ "created": invoice.id }))?;
        out.flush()?;
        if n % 3 == 0 && !drafts {
            let issued = store.issue_invoice(invoice.id)?;
            writeln!(out, "{}", json!({ "issued": issued.id, "number": issued.number }))?;
            out.flush()?;
        }
    }
    Ok(())
}
