// The one module that talks to Daftar's core. Inside the desktop window it calls the Tauri
// command `call`; in a plain browser (the Playwright tests, development) it posts to
// `daftar-web`'s `/api`. Both reach the same Rust `Api::handle`. Components import only this
// module, so component tests mock it here and nowhere else.

import type { Request } from "./bindings/Request";
import type { AddedRelay } from "./bindings/AddedRelay";
import type { ApiError } from "./bindings/ApiError";
import type { ErrorCode } from "./bindings/ErrorCode";
import type { MfaSetUp } from "./bindings/MfaSetUp";
import type { Problem } from "./bindings/Problem";
import type { Role } from "./bindings/Role";
import type { AppStatus } from "./bindings/AppStatus";
import type { CreatedWorkspace } from "./bindings/CreatedWorkspace";
import type { InvoicePage } from "./bindings/InvoicePage";
import type { SavedPdf } from "./bindings/SavedPdf";
import type { ZatcaView } from "./bindings/ZatcaView";
import type { BackupStatus } from "./bindings/BackupStatus";
import type { AuditEntry } from "./bindings/AuditEntry";
import type { AuditCheck } from "./bindings/AuditCheck";
import type { QuarantinedChange } from "./bindings/QuarantinedChange";
import type { InvoiceListQuery } from "./bindings/InvoiceListQuery";
import type { InvoiceView } from "./bindings/InvoiceView";
import type { DraftInput } from "./bindings/DraftInput";
import type { DraftPreview } from "./bindings/DraftPreview";
import type { Version } from "./bindings/Version";
import type { FieldChange } from "./bindings/FieldChange";
import type { CustomerSummary } from "./bindings/CustomerSummary";
import type { CustomerView } from "./bindings/CustomerView";
import type { CustomerInput } from "./bindings/CustomerInput";
import type { ItemSummary } from "./bindings/ItemSummary";
import type { ItemView } from "./bindings/ItemView";
import type { ItemInput } from "./bindings/ItemInput";
import type { TrashEntry } from "./bindings/TrashEntry";
import type { SyncView } from "./bindings/SyncView";
import type { SyncEvent } from "./bindings/SyncEvent";
import type { SellerProfile } from "./bindings/SellerProfile";

/** A failed request: the code the UI branches on, a message for people, problems per field. */
export class Failure extends Error {
  code: ErrorCode;
  problems: Problem[];
  constructor(error: ApiError) {
    super(error.message);
    this.code = error.code;
    this.problems = error.problems;
  }
  /** The message for one field, if any. */
  about(field: string): string | undefined {
    return this.problems.find((p) => p.field === field)?.message;
  }
}

type TauriWindow = { __TAURI_INTERNALS__?: unknown };

function inTauri(): boolean {
  return typeof window !== "undefined" && (window as TauriWindow).__TAURI_INTERNALS__ !== undefined;
}

function asFailure(error: unknown): Failure {
  if (error instanceof Failure) return error;
  if (error && typeof error === "object" && "code" in error && "message" in error) {
    return new Failure(error as ApiError);
  }
  return new Failure({ code: "internal", message: String(error), problems: [] });
}

export async function call<T>(request: Request): Promise<T> {
  if (inTauri()) {
    const { invoke } = await import("@tauri-apps/api/core");
    try {
      return await invoke<T>("call", { request });
    } catch (error) {
      throw asFailure(error);
    }
  }
  let response: Response;
  try {
    response = await fetch("api", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(request),
    });
  } catch (error) {
    throw new Failure({ code: "io", message: `Daftar's core cannot be reached: ${error}`, problems: [] });
  }
  const body = await response.json();
  if (!response.ok) throw asFailure(body);
  return body as T;
}

let reported = false;

/** Tells the desktop shell, once, that the invoice list is on screen and answers input (the end
 * of the measured start-up). Nothing in a plain browser. */
export function reportReady(rows: number): void {
  if (reported || !inTauri()) return;
  reported = true;
  import("@tauri-apps/api/core").then(({ invoke }) => invoke("ready", { rows }).catch(() => {}));
}

/** Calls `handler` with every background sync event; returns a function that stops it. */
export function onSync(handler: (event: SyncEvent) => void): () => void {
  if (inTauri()) {
    let stop: (() => void) | undefined;
    let stopped = false;
    import("@tauri-apps/api/event").then(({ listen }) =>
      listen<SyncEvent>("sync", (e) => handler(e.payload)).then((unlisten) => {
        if (stopped) unlisten();
        else stop = unlisten;
      }),
    );
    return () => {
      stopped = true;
      stop?.();
    };
  }
  if (typeof EventSource === "undefined") return () => {};
  const source = new EventSource("events");
  source.addEventListener("sync", (e) => handler(JSON.parse((e as MessageEvent).data)));
  return () => source.close();
}

export const api = {
  status: () => call<AppStatus>({ command: "status" }),
  createWorkspace: (seller: SellerProfile, member: string | null) =>
    call<CreatedWorkspace>({ command: "create_workspace", seller, member }),
  joinWorkspace: (code: string) => call<{ workspace_id: string }>({ command: "join_workspace", code }),
  updateSeller: (seller: SellerProfile) => call<SellerProfile>({ command: "update_seller", seller }),
  listInvoices: (query: InvoiceListQuery) => call<InvoicePage>({ command: "list_invoices", query }),
  getInvoice: (id: string) => call<InvoiceView>({ command: "get_invoice", id }),
  previewDraft: (draft: DraftInput) => call<DraftPreview>({ command: "preview_draft", draft }),
  createInvoice: (draft: DraftInput) => call<InvoiceView>({ command: "create_invoice", draft }),
  saveDraft: (id: string, draft: DraftInput) => call<InvoiceView>({ command: "save_draft", id, draft }),
  issueInvoice: (id: string) => call<InvoiceView>({ command: "issue_invoice", id }),
  zatcaStatus: () => call<ZatcaView>({ command: "zatca_status" }),
  audit: (since: string | null, invoice: string | null, member: string | null) =>
    call<AuditEntry[]>({ command: "audit", since, invoice, member }),
  quarantine: () => call<QuarantinedChange[]>({ command: "quarantine" }),
  verifyAudit: () => call<AuditCheck>({ command: "verify_audit" }),
  exportAuditCsv: (since: string | null, invoice: string | null, member: string | null) =>
    call<SavedPdf>({ command: "export_audit_csv", since, invoice, member }),
  backupStatus: () => call<BackupStatus>({ command: "backup_status" }),
  createBackup: () => call<BackupStatus>({ command: "create_backup" }),
  updateBackupSettings: (dir: string, every_minutes: number) =>
    call<BackupStatus>({ command: "update_backup_settings", dir, every_minutes }),
  verifyBackups: () => call<BackupStatus>({ command: "verify_backups" }),
  runDrill: (recovery_key: string | null) => call<BackupStatus>({ command: "run_drill", recovery_key }),
  zatcaOnboard: (otp: string, environment: string, api_url: string | null) =>
    call<ZatcaView>({ command: "zatca_onboard", otp, environment, api_url }),
  saveInvoicePdf: (id: string) => call<SavedPdf>({ command: "save_invoice_pdf", id }),
  printInvoicePdf: (id: string) => call<SavedPdf>({ command: "print_invoice_pdf", id }),
  deleteInvoice: (id: string) => call<InvoiceView>({ command: "delete_invoice", id }),
  restoreInvoice: (id: string) => call<InvoiceView>({ command: "restore_invoice", id }),
  invoiceHistory: (id: string) => call<Version[]>({ command: "invoice_history", id }),
  invoiceVersion: (id: string, version: number) => call<InvoiceView>({ command: "invoice_version", id, version }),
  invoiceDiff: (id: string, from: number, to: number) => call<FieldChange[]>({ command: "invoice_diff", id, from, to }),
  revertInvoice: (id: string, version: number) => call<InvoiceView>({ command: "revert_invoice", id, version }),
  listCustomers: (text: string | null, deleted = false) =>
    call<CustomerSummary[]>({ command: "list_customers", text, deleted }),
  getCustomer: (id: string) => call<CustomerView>({ command: "get_customer", id }),
  saveCustomer: (id: string | null, customer: CustomerInput) =>
    call<CustomerView>({ command: "save_customer", id, customer }),
  deleteCustomer: (id: string) => call<CustomerView>({ command: "delete_customer", id }),
  restoreCustomer: (id: string) => call<CustomerView>({ command: "restore_customer", id }),
  listItems: (text: string | null, deleted = false) => call<ItemSummary[]>({ command: "list_items", text, deleted }),
  getItem: (id: string) => call<ItemView>({ command: "get_item", id }),
  saveItem: (id: string | null, item: ItemInput) => call<ItemView>({ command: "save_item", id, item }),
  deleteItem: (id: string) => call<ItemView>({ command: "delete_item", id }),
  restoreItem: (id: string) => call<ItemView>({ command: "restore_item", id }),
  trash: () => call<TrashEntry[]>({ command: "trash" }),
  syncStatus: () => call<SyncView>({ command: "sync_status" }),
  syncNow: () => call<unknown>({ command: "sync_now" }),
  addRelay: (url: string, totp: string | null) => call<AddedRelay>({ command: "add_relay", url, totp }),
  createInvite: (role: string, totp: string | null = null) =>
    call<{ code: string; role: string; expires_at: number }>({ command: "create_invite", role, totp }),
  mfaEnroll: (account: string | null, totp: string | null = null) =>
    call<MfaSetUp>({ command: "mfa_enroll", account, totp }),
  mfaVerify: (code: string) => call<{ verified: boolean; elevated_until: number }>({ command: "mfa_verify", code }),
  revokeDevice: (device_id: string, totp: string | null = null) =>
    call<{ device_id: string; status: string; epoch: number }>({ command: "revoke_device", device_id, totp }),
  setDeviceRole: (device_id: string, role: Role, totp: string | null = null) =>
    call<{ device_id: string; role: Role }>({ command: "set_device_role", device_id, role, totp }),
  rotateKeys: (totp: string | null = null) => call<{ epoch: number; devices: number }>({ command: "rotate_keys", totp }),
  approveDevice: (device_id: string, member: string | null, totp: string | null = null) =>
    call<{ device_id: string; status: string }>({ command: "approve_device", device_id, member, totp }),
  listDevices: () =>
    call<{ device_id: string; member: string | null; role: string; status: string; this_device: boolean }[]>({
      command: "list_devices",
    }),
};
