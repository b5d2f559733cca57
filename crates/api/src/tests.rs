//! The API through its one entry point, on a real encrypted store (the OS keyring must be
//! reachable: the test command provides one).

use serde_json::{Value, json};

use super::*;

fn call(api: &Api, request: Value) -> Result<Value, ApiError> {
    api.handle(serde_json::from_value(request).expect("a well-formed request"))
}

fn ok(api: &Api, request: Value) -> Value {
    call(api, request.clone()).unwrap_or_else(|e| panic!("{request} failed: {e:?}"))
}

fn line(description: &str, quantity: &str, price: &str) -> Value {
    json!({ "id": null, "description": description, "quantity": quantity, "unit_price": price, "discount": "",
            "vat": { "code": "S", "rate": "15" } })
}

#[test]
fn a_workspace_and_a_draft_go_from_typing_to_issued_to_the_trash_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(dir.path().join("data"));
    assert!(ok(&api, json!({ "command": "status" }))["workspace"].is_null(), "no workspace yet: onboarding");
    let refused =
        call(&api, json!({ "command": "create_workspace", "seller": { "name": "", "vat_number": "12" } })).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Invalid);
    let fields: Vec<&str> = refused.problems.iter().map(|p| p.field.as_str()).collect();
    assert!(fields.contains(&"name") && fields.contains(&"vat_number"), "{fields:?}");
    let created = ok(
        &api,
        json!({ "command": "create_workspace", "seller": { "name": "Acme Trading", "vat_number": "300000000000003" } }),
    );
    assert_eq!(created["recovery_key"].as_str().unwrap().len(), 41, "{created}");
    assert_eq!(ok(&api, json!({ "command": "status" }))["workspace"]["seller"]["name"], "Acme Trading");

    let customer = ok(
        &api,
        json!({ "command": "save_customer", "id": null,
        "customer": { "name": "Nour Bakery", "vat_number": "311111111111113", "city": "Riyadh" } }),
    );
    let customer_id = customer["customer"]["id"].clone();
    let draft = json!({ "kind": null, "customer": customer_id, "currency": "", "exchange_rate": null,
        "supply_date": null, "due_date": null, "notes": "",
        "lines": [line("Flour", "2", "50"), line("Salt", "1", "5.50"), line("Yeast", "3", "1.25")] });
    let preview = ok(&api, json!({ "command": "preview_draft", "draft": draft }));
    assert_eq!(preview["totals"]["gross"], "125.64", "{preview}");
    let mut bad = draft.clone();
    bad["lines"][1]["unit_price"] = json!("5.555");
    let preview = ok(&api, json!({ "command": "preview_draft", "draft": bad }));
    assert_eq!(preview["problems"][0]["field"], "lines[2].unit_price", "a problem names its field: {preview}");
    let refused = call(&api, json!({ "command": "create_invoice", "draft": bad })).unwrap_err();
    assert_eq!((refused.code, refused.problems.iter().count()), (ErrorCode::Invalid, 1));

    let view = ok(&api, json!({ "command": "create_invoice", "draft": draft }));
    let id = view["invoice"]["id"].clone();
    let mut edited = draft.clone();
    edited["lines"] = json!([view["invoice"]["lines"][0].clone(), line("Dates", "1", "10")]);
    edited["lines"][0]["quantity"] = json!("4");
    edited["lines"][0]["discount"] = json!("0");
    let saved = ok(&api, json!({ "command": "save_draft", "id": id, "draft": edited }));
    assert_eq!(saved["totals"]["gross"], "241.50", "{saved}");
    assert_eq!(saved["invoice"]["lines"][0]["id"], view["invoice"]["lines"][0]["id"], "a kept line keeps its id");
    let page = ok(&api, json!({ "command": "list_invoices", "query": { "text": "dates", "offset": 0, "limit": 50 } }));
    assert_eq!(page["total"], 1);

    let issued = ok(&api, json!({ "command": "issue_invoice", "id": id }));
    assert_eq!(issued["invoice"]["number"], "A-000001");
    let refused = call(&api, json!({ "command": "save_draft", "id": id, "draft": draft })).unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict, "issued invoices are read-only: {refused:?}");

    let other = ok(&api, json!({ "command": "create_invoice", "draft": draft }));
    let other_id = other["invoice"]["id"].clone();
    ok(&api, json!({ "command": "save_draft", "id": other_id, "draft": edited }));
    ok(&api, json!({ "command": "delete_invoice", "id": other_id }));
    assert_eq!(ok(&api, json!({ "command": "trash" })).as_array().unwrap().len(), 1);
    ok(&api, json!({ "command": "restore_invoice", "id": other_id }));
    let history = ok(&api, json!({ "command": "invoice_history", "id": other_id }));
    assert_eq!(history.as_array().unwrap().len(), 4, "create, edit, delete, restore: {history}");
    let diff = ok(&api, json!({ "command": "invoice_diff", "id": other_id, "from": 1, "to": 2 }));
    assert!(!diff.as_array().unwrap().is_empty());
    let reverted = ok(&api, json!({ "command": "revert_invoice", "id": other_id, "version": 1 }));
    assert_eq!(reverted["totals"]["gross"], "125.64", "restoring version 1 brings its lines back");

    let sorted = ok(
        &api,
        json!({ "command": "list_invoices",
        "query": { "offset": 0, "limit": 10, "sort": "total", "ascending": true } }),
    );
    let totals: Vec<&str> = sorted["rows"].as_array().unwrap().iter().map(|r| r["gross"].as_str().unwrap()).collect();
    assert_eq!(totals, ["125.64", "241.50"], "sorted by total, smallest first: {sorted}");
    let sorted =
        ok(&api, json!({ "command": "list_invoices", "query": { "offset": 0, "limit": 10, "sort": "number" } }));
    assert_eq!(sorted["rows"][1]["number"], Value::Null, "drafts come after numbered invoices: {sorted}");

    let missing =
        call(&api, json!({ "command": "get_invoice", "id": "01900000-0000-7000-8000-000000000000" })).unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
    let sync = ok(&api, json!({ "command": "sync_status" }));
    assert_eq!(sync["state"], "idle");
}

#[test]
fn backups_from_the_settings_screen_and_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(dir.path().join("data"));
    let created = ok(
        &api,
        json!({ "command": "create_workspace", "seller": { "name": "Acme Trading", "vat_number": "300000000000003" } }),
    );
    let status = ok(&api, json!({ "command": "backup_status" }));
    assert_eq!(status["warning"]["kind"], "no_backup", "{status}");
    assert_eq!(status["every_minutes"], 60, "hourly by default: {status}");
    let status = ok(&api, json!({ "command": "create_backup" }));
    assert_eq!(status["last"]["verified"], true, "{status}");
    assert!(status["warning"].is_null(), "{status}");
    // Nothing changed: closing the app makes no second backup; after a change it does.
    let first = status["last"]["file"].clone();
    api.backup_on_exit().unwrap();
    assert_eq!(ok(&api, json!({ "command": "backup_status" }))["last"]["file"], first);
    ok(
        &api,
        json!({ "command": "save_customer", "id": null,
        "customer": { "name": "Nour Bakery", "vat_number": null, "email": "", "phone": "", "street": "",
                      "building_number": "", "district": "", "city": "", "postal_code": "" } }),
    );
    api.backup_on_exit().unwrap();
    let status = ok(&api, json!({ "command": "backup_status" }));
    assert_ne!(status["last"]["file"], first, "{status}");
    assert_eq!(status["last"]["reason"], "exit");
    assert_eq!(status["last"]["counts"]["customers"], 1);
    // Another folder, and automatic backups off.
    let folder = dir.path().join("usb");
    let status =
        ok(&api, json!({ "command": "update_backup_settings", "dir": folder.to_str().unwrap(), "every_minutes": 0 }));
    assert_eq!(status["every_minutes"], 0);
    assert!(status["dir"].as_str().unwrap().ends_with("usb"), "{status}");
    // A drill with the recovery key (no relay: that path is skipped, not failed).
    let key = created["recovery_key"].as_str().unwrap();
    let status = ok(&api, json!({ "command": "run_drill", "recovery_key": key }));
    assert_eq!(status["last_drill"]["ok"], true, "{status}");
    assert_eq!(status["last_drill"]["relay"]["skipped"], "no_relay");
    assert_eq!(status["last_drill"]["backup"]["documents"], 3, "the settings, the membership and one record");
    let bad = call(&api, json!({ "command": "run_drill", "recovery_key": "not a key" })).unwrap_err();
    assert_eq!(bad.code, ErrorCode::Invalid);
}

#[test]
fn the_quarantine_is_listed_for_owners_and_admins_only() {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::new(dir.path().join("data"));
    ok(
        &api,
        json!({ "command": "create_workspace", "seller": { "name": "Acme Trading", "vat_number": "300000000000003" } }),
    );
    // An owner sees the (empty) list; the judging itself is tested across devices in the CLI's
    // sync tests.
    assert_eq!(ok(&api, json!({ "command": "quarantine" })), json!([]));
}
