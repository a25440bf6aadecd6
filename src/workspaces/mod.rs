//! Workspaces: the tenants. Everything else in idgate belongs to exactly one.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::workspaces;
use crate::db::{Conn, DbConnection, StoreError};

const SLUG_MAX: usize = 63;
const NAME_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Serialize)]
pub struct Workspace {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub hipaa: bool,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    pub updated_at: NaiveDateTime,
    /// Members' tracking-plan changes need an Owner's or Admin's approval to reach production:
    /// when set, the `tracking_plans.publish` permission is not a Member's.
    pub tracking_plan_approval: bool,
    /// Raised by every audited change in the workspace (see [`crate::audit::record`]).
    #[serde(skip)]
    pub access_version: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "workspace slug {0:?} must be 2 to 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
    )]
    InvalidSlug(String),
    #[error("workspace name must be 1 to 200 characters with no control characters")]
    InvalidName,
    #[error("a workspace with slug {0:?} already exists")]
    SlugTaken(String),
    #[error("no workspace with slug {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for WorkspaceError {
    fn from(error: diesel::result::Error) -> Self {
        WorkspaceError::Store(error.into())
    }
}

/// Slugs appear in URLs (`/saml/{slug}/acs`) that are pasted into IdP consoles, so they are kept
/// to what needs no escaping anywhere.
pub fn validate_slug(slug: &str) -> Result<(), WorkspaceError> {
    let bytes = slug.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid = (2..=SLUG_MAX).contains(&bytes.len())
        && bytes.iter().all(allowed)
        && ends_ok(bytes.first())
        && ends_ok(bytes.last());
    if valid {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidSlug(slug.to_owned()))
    }
}

fn validate_name(name: &str) -> Result<String, WorkspaceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(WorkspaceError::InvalidName);
    }
    Ok(name.to_owned())
}

pub struct NewWorkspace {
    pub slug: String,
    pub name: Option<String>,
    pub hipaa: bool,
}

pub fn create(
    conn: &mut Conn,
    new: NewWorkspace,
    context: &AuditContext,
) -> Result<Workspace, WorkspaceError> {
    validate_slug(&new.slug)?;
    let name = validate_name(new.name.as_deref().unwrap_or(&new.slug))?;
    let now = crate::time::now();
    let workspace = Workspace {
        id: uuid::Uuid::new_v4().to_string(),
        slug: new.slug,
        name,
        hipaa: new.hipaa,
        created_at: now,
        updated_at: now,
        tracking_plan_approval: true,
        access_version: 0,
    };
    conn.write(|tx| {
        diesel::insert_into(workspaces::table)
            .values((
                workspaces::id.eq(&workspace.id),
                workspaces::slug.eq(&workspace.slug),
                workspaces::name.eq(&workspace.name),
                workspaces::hipaa.eq(workspace.hipaa),
                workspaces::created_at.eq(workspace.created_at),
                workspaces::updated_at.eq(workspace.updated_at),
            ))
            .execute(tx.conn())
            .map_err(|error| match StoreError::from(error) {
                error if error.is_unique_violation() => {
                    WorkspaceError::SlugTaken(workspace.slug.clone())
                }
                error => error.into(),
            })?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(&workspace.id),
                action: "workspace.created",
                target: Target {
                    kind: "workspace",
                    id: &workspace.id,
                },
                details: json!({ "slug": workspace.slug, "name": workspace.name, "hipaa": workspace.hipaa }),
            },
        )?;
        Ok(workspace)
    })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<Workspace>, WorkspaceError> {
    Ok(workspaces::table.order(workspaces::slug.asc()).load(conn)?)
}

/// The ids of the HIPAA-eligible workspaces.
pub fn hipaa_ids(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    workspaces::table
        .filter(workspaces::hipaa.eq(true))
        .select(workspaces::id)
        .load(conn)
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Workspace, WorkspaceError> {
    workspaces::table
        .find(id)
        .first(conn)
        .optional()?
        .ok_or_else(|| WorkspaceError::NotFound(id.to_owned()))
}

pub fn find_by_slug(conn: &mut DbConnection, slug: &str) -> Result<Workspace, WorkspaceError> {
    workspaces::table
        .filter(workspaces::slug.eq(slug))
        .first(conn)
        .optional()?
        .ok_or_else(|| WorkspaceError::NotFound(slug.to_owned()))
}

/// The settings an admin may change. The slug is fixed: IdP consoles hold URLs that contain it.
#[derive(Debug, Default)]
pub struct WorkspaceChanges {
    pub name: Option<String>,
    pub hipaa: Option<bool>,
    pub tracking_plan_approval: Option<bool>,
}

/// Applies the changes and records what actually changed; a change to the same values records nothing.
pub fn update(
    conn: &mut Conn,
    slug: &str,
    changes: WorkspaceChanges,
    context: &AuditContext,
) -> Result<Workspace, WorkspaceError> {
    let name = changes.name.as_deref().map(validate_name).transpose()?;
    conn.write(|tx| {
        let mut workspace = find_by_slug(tx, slug)?;
        let mut changed = serde_json::Map::new();
        if let Some(name) = name.filter(|name| *name != workspace.name) {
            changed.insert(
                "name".to_owned(),
                json!({ "from": workspace.name, "to": name }),
            );
            workspace.name = name;
        }
        if let Some(hipaa) = changes.hipaa.filter(|hipaa| *hipaa != workspace.hipaa) {
            changed.insert(
                "hipaa".to_owned(),
                json!({ "from": workspace.hipaa, "to": hipaa }),
            );
            workspace.hipaa = hipaa;
        }
        if let Some(approval) = changes
            .tracking_plan_approval
            .filter(|approval| *approval != workspace.tracking_plan_approval)
        {
            changed.insert(
                "tracking_plan_approval".to_owned(),
                json!({ "from": workspace.tracking_plan_approval, "to": approval }),
            );
            workspace.tracking_plan_approval = approval;
        }
        if changed.is_empty() {
            return Ok(workspace);
        }
        workspace.updated_at = crate::time::now();
        diesel::update(workspaces::table.find(&workspace.id))
            .set((
                workspaces::name.eq(&workspace.name),
                workspaces::hipaa.eq(workspace.hipaa),
                workspaces::tracking_plan_approval.eq(workspace.tracking_plan_approval),
                workspaces::updated_at.eq(workspace.updated_at),
            ))
            .execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(&workspace.id),
                action: "workspace.updated",
                target: Target {
                    kind: "workspace",
                    id: &workspace.id,
                },
                details: json!({ "changes": changed }),
            },
        )?;
        Ok(workspace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_url_safe_names() {
        for good in ["acme", "a1", "acme-eu-2", &"a".repeat(63)] {
            assert!(validate_slug(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a",
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "acme_eu",
            "ac/me",
            "äcme",
            &"a".repeat(64),
        ] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_name("  Acme Corp ").unwrap(), "Acme Corp");
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"n".repeat(201)).is_err());
    }
}
