//! The attribute mapping of a workspace: which SAML attribute gives a person's email, first and
//! last name, an optional direct role (`user.segmentRole` in the seed), and their groups. Presets
//! hold the names each IdP sends by default; any name can be overridden.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AccessError;
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::attribute_mappings;
use crate::db::{Conn, DbConnection};

const NAME_MAX: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable)]
pub struct AttributeMapping {
    /// The preset the mapping started from; None once it is custom.
    pub preset: Option<String>,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Option<String>,
    pub groups: Option<String>,
}

const CLAIMS: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims";

/// The attribute names each IdP sends when set up as its SAML documentation describes.
pub fn preset(name: &str) -> Option<AttributeMapping> {
    let mapping = |email: &str, first: &str, last: &str, groups: &str| AttributeMapping {
        preset: Some(name.to_owned()),
        email: email.to_owned(),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        role: None,
        groups: Some(groups.to_owned()),
    };
    Some(match name {
        "okta" | "onelogin" | "google" => mapping("email", "firstName", "lastName", "groups"),
        "entra" => mapping(
            &format!("{CLAIMS}/emailaddress"),
            &format!("{CLAIMS}/givenname"),
            &format!("{CLAIMS}/surname"),
            "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
        ),
        "ping" => mapping("mail", "givenName", "sn", "memberOf"),
        _ => return None,
    })
}

pub const PRESETS: [&str; 5] = ["okta", "entra", "onelogin", "google", "ping"];

/// The mapping a workspace uses until an admin sets one: the Okta preset, the names in the seed.
fn default_mapping() -> AttributeMapping {
    preset("okta").expect("okta is a preset")
}

/// How an admin changes the mapping: start from a preset (or the current mapping) and override names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingChange {
    pub preset: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// An empty string removes the optional mapping.
    pub role: Option<String>,
    pub groups: Option<String>,
}

fn attribute_name(field: &str, value: String) -> Result<String, AccessError> {
    let value = value.trim().to_owned();
    if value.is_empty() || value.len() > NAME_MAX || value.chars().any(char::is_control) {
        return Err(AccessError::Invalid(format!(
            "{field} must be an attribute name of 1 to {NAME_MAX} bytes"
        )));
    }
    Ok(value)
}

fn optional_name(field: &str, value: String) -> Result<Option<String>, AccessError> {
    if value.trim().is_empty() {
        Ok(None)
    } else {
        attribute_name(field, value).map(Some)
    }
}

pub fn get(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<AttributeMapping> {
    Ok(attribute_mappings::table
        .filter(attribute_mappings::workspace_id.eq(workspace_id))
        .select((
            attribute_mappings::preset,
            attribute_mappings::email,
            attribute_mappings::first_name,
            attribute_mappings::last_name,
            attribute_mappings::role,
            attribute_mappings::groups,
        ))
        .first(conn)
        .optional()?
        .unwrap_or_else(default_mapping))
}

/// The mapping `change` makes of `before`, without saving it: what the console previews.
pub fn proposed(
    before: &AttributeMapping,
    change: MappingChange,
) -> Result<AttributeMapping, AccessError> {
    let mut after = match &change.preset {
        Some(name) => preset(name).ok_or_else(|| {
            AccessError::Invalid(format!(
                "unknown preset {name:?}; one of: {}",
                PRESETS.join(", ")
            ))
        })?,
        None => before.clone(),
    };
    if let Some(email) = change.email {
        after.email = attribute_name("email", email)?;
    }
    if let Some(first_name) = change.first_name {
        after.first_name = attribute_name("first_name", first_name)?;
    }
    if let Some(last_name) = change.last_name {
        after.last_name = attribute_name("last_name", last_name)?;
    }
    if let Some(role) = change.role {
        after.role = optional_name("role", role)?;
    }
    if let Some(groups) = change.groups {
        after.groups = optional_name("groups", groups)?;
    }
    if after.preset.as_deref().and_then(preset).as_ref() != Some(&after) {
        after.preset = None;
    }
    Ok(after)
}

pub fn set(
    conn: &mut Conn,
    workspace_id: &str,
    change: MappingChange,
    context: &AuditContext,
) -> Result<AttributeMapping, AccessError> {
    conn.write(|tx| {
        let before = get(tx, workspace_id)?;
        let after = proposed(&before, change)?;
        if after == before {
            return Ok(after);
        }
        diesel::delete(
            attribute_mappings::table.filter(attribute_mappings::workspace_id.eq(workspace_id)),
        )
        .execute(tx.conn())?;
        diesel::insert_into(attribute_mappings::table)
            .values((
                attribute_mappings::workspace_id.eq(workspace_id),
                attribute_mappings::preset.eq(&after.preset),
                attribute_mappings::email.eq(&after.email),
                attribute_mappings::first_name.eq(&after.first_name),
                attribute_mappings::last_name.eq(&after.last_name),
                attribute_mappings::role.eq(&after.role),
                attribute_mappings::groups.eq(&after.groups),
                attribute_mappings::updated_at.eq(crate::time::now()),
            ))
            .execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "access.attributes.changed",
                target: Target {
                    kind: "workspace",
                    id: workspace_id,
                },
                details: json!({ "before": before, "after": after }),
            },
        )?;
        Ok(after)
    })
}
