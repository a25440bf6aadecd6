//! Resource-level grants: a level on a resource or a label, to a member or an IdP group, with the
//! evidence an access review asks for (justification, approver, review date) and an optional
//! expiry for just-in-time elevation.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use serde_json::json;

use super::decide::{Grant, GrantSubject, GrantTarget};
use super::{AccessError, corrupt};
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::grants;
use crate::db::{Conn, DbConnection, Tx};
use crate::directory;
use crate::permissions::{Label, Level};

const TEXT_MAX: usize = 1000;

type GrantRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<NaiveDateTime>,
    Option<String>,
    Option<String>,
    Option<String>,
    NaiveDateTime,
);

crate::columns!(
    GRANT_COLUMNS = (
        grants::id,
        grants::subject_type,
        grants::subject,
        grants::resource_id,
        grants::label,
        grants::level,
        grants::expires_at,
        grants::justification,
        grants::approver,
        grants::review_date,
        grants::created_at
    )
);

fn from_row(row: GrantRow) -> QueryResult<Grant> {
    let (
        id,
        subject_type,
        subject,
        resource_id,
        label,
        level,
        expires_at,
        justification,
        approver,
        review_date,
        created_at,
    ) = row;
    let subject = match subject_type.as_str() {
        "member" => GrantSubject::Member(subject),
        "group" => GrantSubject::Group(subject),
        other => return Err(corrupt(format!("grant {id} has subject type {other:?}"))),
    };
    let target = match (resource_id, label) {
        (Some(resource), None) => GrantTarget::Resource(resource),
        (None, Some(label)) => GrantTarget::Label(label.parse().map_err(corrupt)?),
        _ => return Err(corrupt(format!("grant {id} has no single target"))),
    };
    Ok(Grant {
        id,
        subject,
        target,
        level: level.parse().map_err(corrupt)?,
        expires_at,
        justification,
        approver,
        review_date,
        created_at,
    })
}

fn from_rows(rows: Vec<GrantRow>) -> QueryResult<Vec<Grant>> {
    rows.into_iter().map(from_row).collect()
}

/// Every grant to these members or to these groups (lower-case names), expired ones included.
pub fn reaching(
    conn: &mut DbConnection,
    workspace_id: &str,
    member_ids: &[String],
    groups: &BTreeSet<String>,
) -> QueryResult<Vec<Grant>> {
    from_rows(
        grants::table
            .filter(grants::workspace_id.eq(workspace_id))
            .filter(
                grants::subject_type
                    .eq("member")
                    .and(grants::subject.eq_any(member_ids))
                    .or(grants::subject_type
                        .eq("group")
                        .and(grants::subject.eq_any(groups))),
            )
            .order(grants::created_at.asc())
            .select(GRANT_COLUMNS)
            .load(conn)?,
    )
}

pub fn list(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<Vec<Grant>> {
    from_rows(
        grants::table
            .filter(grants::workspace_id.eq(workspace_id))
            .order(grants::created_at.asc())
            .select(GRANT_COLUMNS)
            .load(conn)?,
    )
}

/// A grant as an admin asks for it; the member is named by id or email, the group by name.
pub struct NewGrant {
    pub member: Option<String>,
    pub group: Option<String>,
    pub resource: Option<String>,
    pub label: Option<Label>,
    pub level: Level,
    pub expires_at: Option<NaiveDateTime>,
    pub justification: Option<String>,
    pub approver: Option<String>,
    pub review_date: Option<String>,
}

fn optional_text(field: &str, value: Option<String>) -> Result<Option<String>, AccessError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.chars().count() > TEXT_MAX || value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(AccessError::Invalid(format!(
            "{field} is at most {TEXT_MAX} characters with no control characters"
        )));
    }
    Ok(Some(value))
}

/// When a grant given for `raw` (such as `4h` or `7d`) from now ends.
pub fn expiry_after(raw: &str) -> Result<NaiveDateTime, AccessError> {
    let lifetime =
        crate::tokens::parse_lifetime(raw).map_err(|e| AccessError::Invalid(e.to_string()))?;
    let lifetime = chrono::TimeDelta::from_std(lifetime)
        .map_err(|_| AccessError::Invalid("the lifetime is too long".to_owned()))?;
    Ok(crate::time::now() + lifetime)
}

pub fn create(
    conn: &mut Conn,
    workspace_id: &str,
    new: NewGrant,
    context: &AuditContext,
) -> Result<Grant, AccessError> {
    let now = crate::time::now();
    if new.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(AccessError::Invalid(
            "expires_at must be in the future".to_owned(),
        ));
    }
    let review_date = optional_text("review_date", new.review_date)?;
    if let Some(date) = &review_date {
        NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
            AccessError::Invalid(format!(
                "review_date {date:?} must be a date such as 2026-04-15"
            ))
        })?;
    }
    let justification = optional_text("justification", new.justification)?;
    let approver = optional_text("approver", new.approver)?;
    conn.write(|tx| {
        let subject = match (new.member, new.group) {
            (Some(member), None) => {
                let member = directory::find(tx, workspace_id, &member)?.ok_or_else(|| {
                    AccessError::Invalid(format!("no member {member:?} in this workspace"))
                })?;
                GrantSubject::Member(member.id)
            }
            (None, Some(group)) if !group.trim().is_empty() => {
                GrantSubject::Group(group.trim().to_lowercase())
            }
            _ => {
                return Err(AccessError::Invalid(
                    "a grant goes to exactly one of member or group".to_owned(),
                ));
            }
        };
        let target = match (new.resource, new.label) {
            (Some(resource), None) => {
                super::resources::find(tx, workspace_id, &resource)?.ok_or_else(|| {
                    AccessError::Invalid(format!("no resource {resource:?} in this workspace"))
                })?;
                GrantTarget::Resource(resource)
            }
            (None, Some(label)) => GrantTarget::Label(label),
            _ => {
                return Err(AccessError::Invalid(
                    "a grant is on exactly one of resource or label".to_owned(),
                ));
            }
        };
        let grant = Grant {
            id: uuid::Uuid::new_v4().to_string(),
            subject,
            target,
            level: new.level,
            expires_at: new.expires_at,
            justification,
            approver,
            review_date,
            created_at: now,
        };
        let (subject_type, subject) = match &grant.subject {
            GrantSubject::Member(id) => ("member", id.as_str()),
            GrantSubject::Group(name) => ("group", name.as_str()),
        };
        let (resource_id, label) = match &grant.target {
            GrantTarget::Resource(id) => (Some(id.as_str()), None),
            GrantTarget::Label(label) => (None, Some(label.as_str())),
        };
        diesel::insert_into(grants::table)
            .values((
                grants::id.eq(&grant.id),
                grants::workspace_id.eq(workspace_id),
                grants::subject_type.eq(subject_type),
                grants::subject.eq(subject),
                grants::resource_id.eq(resource_id),
                grants::label.eq(label),
                grants::level.eq(grant.level.as_str()),
                grants::expires_at.eq(grant.expires_at),
                grants::justification.eq(&grant.justification),
                grants::approver.eq(&grant.approver),
                grants::review_date.eq(&grant.review_date),
                grants::created_at.eq(grant.created_at),
            ))
            .execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "access.grant.created",
                target: Target {
                    kind: "grant",
                    id: &grant.id,
                },
                details: json!({ "before": null, "after": grant }),
            },
        )?;
        Ok(grant)
    })
}

pub fn revoke(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    context: &AuditContext,
) -> Result<(), AccessError> {
    conn.write(|tx| {
        let grant = from_rows(
            grants::table
                .filter(grants::workspace_id.eq(workspace_id))
                .filter(grants::id.eq(id))
                .select(GRANT_COLUMNS)
                .load(tx.conn())?,
        )?
        .pop()
        .ok_or_else(|| AccessError::NotFound(format!("no grant {id:?} in this workspace")))?;
        diesel::delete(grants::table.filter(grants::id.eq(id))).execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "access.grant.revoked",
                target: Target { kind: "grant", id },
                details: json!({ "before": grant, "after": null }),
            },
        )?;
        Ok(())
    })
}

/// Removes a deleted member's grants: they would otherwise outlive the person they name.
pub fn forget_member(tx: &mut Tx<'_>, member_id: &str) -> QueryResult<usize> {
    diesel::delete(
        grants::table
            .filter(grants::subject_type.eq("member"))
            .filter(grants::subject.eq(member_id)),
    )
    .execute(tx.conn())
}
