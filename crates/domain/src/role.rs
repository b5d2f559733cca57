//! Roles and what each may do: the permission matrix, in one place.
//!
//! Roles are ordered — each may do everything the ones below it may — so the matrix is the
//! least role each action needs. The core refuses an action the device's role does not allow
//! (the CLI and the app only ask), naming the role it would need; ARCHITECTURE.md prints the
//! matrix.

use std::fmt;

/// A member's role, from least to most trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and exports.
    Viewer,
    /// Also creates and edits drafts, customers and items, and moves drafts to the trash.
    Clerk,
    /// Also issues invoices, makes credit and debit notes, records payments, restores from
    /// the trash and reads the audit log.
    Accountant,
    /// Also manages settings, invites, device approval and revocation, purges and restores
    /// backups.
    Admin,
    /// Also changes admins, rotates keys, onboards with ZATCA and transfers ownership.
    Owner,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Viewer, Role::Clerk, Role::Accountant, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Accountant => "accountant",
            Role::Clerk => "clerk",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text.trim().to_ascii_lowercase())
    }

    /// Whether this role may do `action`.
    pub fn may(self, action: Action) -> bool {
        self >= action.needs()
    }

    /// `Ok` when this role may do `action`, else what to tell the person.
    pub fn check(self, action: Action) -> Result<(), Forbidden> {
        if self.may(action) { Ok(()) } else { Err(Forbidden { role: self, action }) }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a member may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Export,
    EditDrafts,
    EditCustomers,
    EditItems,
    DeleteDrafts,
    IssueInvoices,
    MakeNotes,
    RecordPayments,
    RestoreFromTrash,
    ReadAudit,
    EditSettings,
    ManageDevices,
    PurgeDrafts,
    RestoreBackups,
    ChangeAdmins,
    RotateKeys,
    OnboardZatca,
    TransferOwnership,
}

impl Action {
    pub const ALL: [Action; 19] = [
        Action::Read,
        Action::Export,
        Action::EditDrafts,
        Action::EditCustomers,
        Action::EditItems,
        Action::DeleteDrafts,
        Action::IssueInvoices,
        Action::MakeNotes,
        Action::RecordPayments,
        Action::RestoreFromTrash,
        Action::ReadAudit,
        Action::EditSettings,
        Action::ManageDevices,
        Action::PurgeDrafts,
        Action::RestoreBackups,
        Action::ChangeAdmins,
        Action::RotateKeys,
        Action::OnboardZatca,
        Action::TransferOwnership,
    ];

    /// The least role that may do this: the permission matrix.
    pub fn needs(self) -> Role {
        match self {
            Action::Read | Action::Export => Role::Viewer,
            Action::EditDrafts | Action::EditCustomers | Action::EditItems | Action::DeleteDrafts => Role::Clerk,
            Action::IssueInvoices
            | Action::MakeNotes
            | Action::RecordPayments
            | Action::RestoreFromTrash
            | Action::ReadAudit => Role::Accountant,
            Action::EditSettings | Action::ManageDevices | Action::PurgeDrafts | Action::RestoreBackups => Role::Admin,
            Action::ChangeAdmins | Action::RotateKeys | Action::OnboardZatca | Action::TransferOwnership => Role::Owner,
        }
    }

    /// What it is, for messages: "a clerk cannot {describe}".
    pub fn describe(self) -> &'static str {
        match self {
            Action::Read => "read the workspace",
            Action::Export => "export",
            Action::EditDrafts => "create or edit draft invoices",
            Action::EditCustomers => "add, edit or delete customers",
            Action::EditItems => "add, edit or delete items",
            Action::DeleteDrafts => "move drafts to the trash",
            Action::IssueInvoices => "issue invoices",
            Action::MakeNotes => "make credit or debit notes",
            Action::RecordPayments => "record payments",
            Action::RestoreFromTrash => "restore from the trash",
            Action::ReadAudit => "read the audit log",
            Action::EditSettings => "change the workspace settings",
            Action::ManageDevices => "invite, approve or revoke devices or change their roles",
            Action::PurgeDrafts => "purge drafts for good",
            Action::RestoreBackups => "restore from a backup into the workspace",
            Action::ChangeAdmins => "appoint or remove admins",
            Action::RotateKeys => "rotate the workspace key",
            Action::OnboardZatca => "onboard with ZATCA",
            Action::TransferOwnership => "transfer ownership",
        }
    }
}

/// An action the role does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} {role} cannot {}; this needs the {} role or higher — ask an owner or admin", article(*role), action.describe(), action.needs())]
pub struct Forbidden {
    pub role: Role,
    pub action: Action,
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Owner | Role::Admin | Role::Accountant => "an",
        Role::Clerk | Role::Viewer => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_as_the_issue_states_it() {
        use Action::*;
        let allowed = |role: Role| -> Vec<Action> { Action::ALL.into_iter().filter(|a| role.may(*a)).collect() };
        assert_eq!(allowed(Role::Viewer), vec![Read, Export]);
        assert_eq!(allowed(Role::Clerk), vec![Read, Export, EditDrafts, EditCustomers, EditItems, DeleteDrafts]);
        let accountant = allowed(Role::Accountant);
        for a in [IssueInvoices, MakeNotes, RecordPayments, RestoreFromTrash, ReadAudit] {
            assert!(accountant.contains(&a), "{a:?}");
        }
        assert!(!accountant.contains(&EditSettings));
        let admin = allowed(Role::Admin);
        for a in [EditSettings, ManageDevices, PurgeDrafts, RestoreBackups] {
            assert!(admin.contains(&a), "{a:?}");
        }
        for a in [ChangeAdmins, RotateKeys, OnboardZatca, TransferOwnership] {
            assert!(!admin.contains(&a), "{a:?}");
        }
        assert_eq!(allowed(Role::Owner).len(), Action::ALL.len(), "the owner may do everything");
    }

    #[test]
    fn a_refusal_names_the_role_it_would_need() {
        let refused = Role::Clerk.check(Action::IssueInvoices).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "a clerk cannot issue invoices; this needs the accountant role or higher — ask an owner or admin"
        );
        assert_eq!(Role::parse(" Admin "), Some(Role::Admin));
        assert_eq!(Role::parse("boss"), None);
    }
}
