//! What a SCIM change to a user or group does beyond the directory, in the same transaction:
//! the workspace keeps an active Owner (a change that would take the last one away is refused),
//! and a person deactivated or deleted loses their direct access, sessions and minted tokens.

use serde_json::{Value, json};

use crate::access::grants;
use crate::access::members::{self, OwnerCheck};
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::{Conn, DbConnection, Reach, Tx};
use crate::directory::groups::{self, MemberChange, StoredGroup};
use crate::directory::users::{self, Rewrite, StoredUser};
use crate::scim::error::ScimError;
use crate::scim::resource::Document;

/// Stores a new document for an existing user (PUT, PATCH), checking `expected_version` if
/// given. `change` computes the new document from the stored one inside the transaction, so
/// concurrent changes to one user apply one after the other and none is lost.
pub fn update_user(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    expected_version: Option<&str>,
    context: &AuditContext,
    change: impl FnOnce(&StoredUser) -> Result<Document, ScimError> + Send,
) -> Result<StoredUser, ScimError> {
    conn.write(|tx| {
        let current = users::locked(tx, workspace_id, id, expected_version)?;
        let Some(rewrite) = Rewrite::of(&current, change(&current)?)? else {
            return Ok(current);
        };
        let deactivating = current.active && !rewrite.active();
        let owner_check = OwnerCheck::before(tx, workspace_id, deactivating)?;
        users::rewrite(tx, workspace_id, &current, &rewrite)?;
        owner_check.after::<ScimError>(tx, workspace_id)?;
        let (action, access) = match (current.active, rewrite.active()) {
            (true, false) => (
                "scim.user.deactivated",
                members::remove_direct_access(tx, id)?,
            ),
            (false, true) => (
                "scim.user.reactivated",
                members::restore_minimal_access(tx, workspace_id, id)?,
            ),
            _ => ("scim.user.updated", Value::Null),
        };
        record(
            tx,
            context,
            workspace_id,
            action,
            ("user", id),
            json!({
                "userName": rewrite.user_name(),
                "changed": rewrite.changed,
                "access": access,
            }),
        )?;
        users::load(tx, workspace_id, id)
    })
}

/// Removes the user from the workspace with their grants and the tokens they minted.
pub fn delete_user(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    context: &AuditContext,
) -> Result<(), ScimError> {
    conn.write(|tx| {
        let user = users::load(tx, workspace_id, id)?;
        let owner_check = OwnerCheck::before(tx, workspace_id, user.active)?;
        grants::forget_member(tx, id)?;
        crate::tokens::revoke_minted_by(tx, id, crate::time::now())?;
        users::delete(tx, id)?;
        owner_check.after::<ScimError>(tx, workspace_id)?;
        record(
            tx,
            context,
            workspace_id,
            "scim.user.deleted",
            ("user", id),
            json!({ "userName": user.user_name }),
        )?;
        Ok(())
    })
}

/// Changes a group's attributes and members in one transaction; `change` computes the new
/// document from the stored group, so concurrent PATCHes apply one after the other and none is
/// lost.
pub fn update_group(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    expected_version: Option<&str>,
    context: &AuditContext,
    members: MemberChange,
    change: impl FnOnce(&StoredGroup) -> Result<Document, ScimError> + Send,
) -> Result<StoredGroup, ScimError> {
    conn.write(|tx| {
        // Looked up before the group's row is locked, so that other writes to the group wait
        // less; a missing group or a stale version is still answered before an unknown member.
        let kinds = groups::member_kinds(tx, workspace_id, members.added());
        let current = groups::locked(tx, workspace_id, id, expected_version)?;
        let kinds = kinds?;
        let document = change(&current)?;
        // Members leaving an Owner group, or its renaming, can take the last Owner away.
        let takes_members_away = members.removes_any() || groups::renames(&current, &document);
        let owner_check =
            OwnerCheck::for_group(tx, workspace_id, &current.display_name, takes_members_away)?;
        let Some(applied) = groups::apply(tx, workspace_id, &current, document, members, &kinds)?
        else {
            return Ok(current);
        };
        owner_check.after::<ScimError>(tx, workspace_id)?;
        record(
            tx,
            context,
            workspace_id,
            "scim.group.updated",
            ("group", id),
            json!({
                "displayName": applied.display_name,
                "changed": applied.changed,
                "members_added": applied.added,
                "members_removed": applied.removed,
            }),
        )?;
        Ok(applied.group)
    })
}

/// One request's change that only adds members and expects no version: how Okta and Entra push
/// each assignment. Requests for one group are made together (see [`add_group_members`]).
#[derive(Clone)]
pub struct MemberAdd {
    pub ids: Vec<String>,
    pub context: AuditContext,
}

impl MemberAdd {
    /// The request made on its own: [`update_group`] with the change.
    pub fn run_alone(
        &self,
        conn: &mut Conn,
        workspace_id: &str,
        group_id: &str,
    ) -> Result<StoredGroup, ScimError> {
        let change = MemberChange {
            add: self.ids.clone(),
            ..MemberChange::default()
        };
        update_group(
            conn,
            workspace_id,
            group_id,
            None,
            &self.context,
            change,
            |current| Ok(current.document()),
        )
    }
}

/// Makes the requests' ids members of the group in one statement on PostgreSQL (see
/// `groups::add_members_together`), and answers each request in order as if made alone; adding
/// members takes no Owner away. None when the statement failed (or the database is not
/// PostgreSQL), and each request is to be made alone.
pub fn add_group_members(
    conn: &mut Conn,
    workspace_id: &str,
    group_id: &str,
    adds: &[MemberAdd],
) -> Option<Vec<Result<StoredGroup, ScimError>>> {
    if !matches!(**conn, DbConnection::Postgres(_)) {
        return None;
    }
    let wanted: Vec<Result<Vec<&String>, ScimError>> = adds
        .iter()
        .map(|add| groups::distinct_other_than(group_id, &add.ids))
        .collect();
    let requests: Vec<groups::MembersWanted> = adds
        .iter()
        .zip(&wanted)
        .map(|(add, ids)| groups::MembersWanted {
            ids: ids.iter().flatten().map(|id| id.as_str()).collect(),
            context: &add.context,
        })
        .collect();
    let together = conn.write_in_one_statement(Reach::Directory, |tx| {
        groups::add_members_together(tx, workspace_id, group_id, &requests)
    });
    let together = match together {
        Ok(together) => together,
        Err(error) => {
            let requests = adds.len();
            tracing::warn!(%error, requests, "member adds made together failed; made alone");
            return None;
        }
    };
    let answers = adds
        .iter()
        .zip(wanted)
        .enumerate()
        .map(|(index, (add, ids))| {
            ids?;
            match &together.group {
                Some(group) if together.accepted(index) => Ok(group.clone()),
                _ => unchanged_by(conn, workspace_id, group_id, add, together.accepted(index)),
            }
        });
    Some(answers.collect())
}

/// The answer to a member add that [`add_group_members`] made together with others and that
/// changed nothing: no such group (404), an unknown member (400, after the 404), or none of its
/// ids that is not a member already. An id unknown to the statement but known now (a user
/// created meanwhile) makes the request run alone.
fn unchanged_by(
    conn: &mut Conn,
    workspace_id: &str,
    group_id: &str,
    add: &MemberAdd,
    accepted: bool,
) -> Result<StoredGroup, ScimError> {
    let group = groups::load(conn, workspace_id, group_id)?;
    if accepted {
        return Ok(group);
    }
    groups::member_kinds(conn, workspace_id, &add.ids)?;
    add.run_alone(conn, workspace_id, group_id)
}

pub fn delete_group(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    context: &AuditContext,
) -> Result<(), ScimError> {
    conn.write(|tx| {
        let group = groups::load(tx, workspace_id, id)?;
        let owner_check = OwnerCheck::for_group(tx, workspace_id, &group.display_name, true)?;
        groups::delete(tx, id)?;
        owner_check.after::<ScimError>(tx, workspace_id)?;
        record(
            tx,
            context,
            workspace_id,
            "scim.group.deleted",
            ("group", id),
            json!({ "displayName": group.display_name }),
        )?;
        Ok(())
    })
}

/// Records a SCIM change in the audit log, in its transaction.
fn record(
    tx: &mut Tx<'_>,
    context: &AuditContext,
    workspace_id: &str,
    action: &str,
    (kind, id): (&'static str, &str),
    details: Value,
) -> diesel::QueryResult<()> {
    audit::record(
        tx,
        context,
        Event {
            workspace_id: Some(workspace_id),
            action,
            target: Target { kind, id },
            details,
        },
    )
}
