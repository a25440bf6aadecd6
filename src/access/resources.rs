//! A workspace's resources (sources, destinations, warehouses, spaces, tracking plans, functions),
//! their labels, and the write keys of sources.
//!
//! A write key is `wk_` and 256 random bits; only its SHA-256 is stored, under a unique index, so
//! a key finds its one source and a leaked database holds no usable key. Rotating replaces it.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde_json::json;

use super::decide::Resource;
use super::{AccessError, corrupt};
use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::{resource_labels, resources};
use crate::db::{Conn, DbConnection, Tx};
use crate::permissions::{Label, ResourceKind};

const NAME_MAX: usize = 200;
const WRITE_KEY_PREFIX: &str = "wk_";

type ResourceRow = (String, String, String, Option<String>);

crate::columns!(
    RESOURCE_COLUMNS = (
        resources::id,
        resources::kind,
        resources::name,
        resources::source_id
    )
);

/// Attaches labels to loaded rows.
fn with_labels(conn: &mut DbConnection, rows: Vec<ResourceRow>) -> QueryResult<Vec<Resource>> {
    let ids: Vec<&String> = rows.iter().map(|row| &row.0).collect();
    let mut labels: BTreeMap<String, Vec<Label>> = BTreeMap::new();
    for (id, label) in resource_labels::table
        .filter(resource_labels::resource_id.eq_any(ids))
        .order(resource_labels::label.asc())
        .select((resource_labels::resource_id, resource_labels::label))
        .load::<(String, String)>(conn)?
    {
        let label = label.parse().map_err(corrupt)?;
        labels.entry(id).or_default().push(label);
    }
    rows.into_iter()
        .map(|(id, kind, name, source_id)| {
            Ok(Resource {
                labels: labels.remove(&id).unwrap_or_default(),
                kind: kind.parse().map_err(corrupt)?,
                id,
                name,
                source_id,
            })
        })
        .collect()
}

pub fn find(
    conn: &mut DbConnection,
    workspace_id: &str,
    id: &str,
) -> QueryResult<Option<Resource>> {
    let rows = resources::table
        .filter(resources::workspace_id.eq(workspace_id))
        .filter(resources::id.eq(id))
        .select(RESOURCE_COLUMNS)
        .load(conn)?;
    Ok(with_labels(conn, rows)?.pop())
}

pub fn require(
    conn: &mut DbConnection,
    workspace_id: &str,
    id: &str,
) -> Result<Resource, AccessError> {
    find(conn, workspace_id, id)?
        .ok_or_else(|| AccessError::NotFound(format!("no resource {id:?} in this workspace")))
}

/// The workspace's resources, by kind and name.
pub fn list(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<Vec<Resource>> {
    let rows = resources::table
        .filter(resources::workspace_id.eq(workspace_id))
        .order((
            resources::kind.asc(),
            resources::name.asc(),
            resources::id.asc(),
        ))
        .select(RESOURCE_COLUMNS)
        .load(conn)?;
    with_labels(conn, rows)
}

/// The labels in use in the workspace: on a resource, or named by a grant.
pub fn labels_in_use(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<BTreeSet<Label>> {
    use crate::db::schema::grants;
    let mut names: Vec<String> = resource_labels::table
        .filter(resource_labels::workspace_id.eq(workspace_id))
        .select(resource_labels::label)
        .distinct()
        .load(conn)?;
    names.extend(
        grants::table
            .filter(grants::workspace_id.eq(workspace_id))
            .filter(grants::label.is_not_null())
            .select(grants::label.assume_not_null())
            .distinct()
            .load::<String>(conn)?,
    );
    names
        .iter()
        .map(|name| name.parse().map_err(corrupt))
        .collect()
}

/// Resources by id, with the sources of any destinations among them, keyed by id; ids of other
/// workspaces are simply absent.
pub fn load_with_sources(
    conn: &mut DbConnection,
    workspace_id: &str,
    ids: &BTreeSet<String>,
) -> QueryResult<BTreeMap<String, Resource>> {
    let load = |conn: &mut DbConnection, ids: Vec<&String>| -> QueryResult<Vec<Resource>> {
        let rows = resources::table
            .filter(resources::workspace_id.eq(workspace_id))
            .filter(resources::id.eq_any(ids))
            .select(RESOURCE_COLUMNS)
            .load(conn)?;
        with_labels(conn, rows)
    };
    let mut found: BTreeMap<String, Resource> = load(conn, ids.iter().collect())?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let sources: BTreeSet<String> = found
        .values()
        .filter_map(|r| r.source_id.clone())
        .filter(|id| !found.contains_key(id))
        .collect();
    for source in load(conn, sources.iter().collect())? {
        found.insert(source.id.clone(), source);
    }
    Ok(found)
}

fn validate_name(name: &str) -> Result<String, AccessError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(AccessError::Invalid(format!(
            "a resource name is 1 to {NAME_MAX} characters with no control characters"
        )));
    }
    Ok(name.to_owned())
}

fn check_labels(kind: ResourceKind, labels: &BTreeSet<Label>) -> Result<(), AccessError> {
    if !labels.is_empty() && !kind.takes_labels() {
        return Err(AccessError::Invalid(format!(
            "labels go on sources and spaces, not on a {kind}"
        )));
    }
    Ok(())
}

fn write_labels(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    id: &str,
    labels: &BTreeSet<Label>,
) -> QueryResult<()> {
    diesel::delete(resource_labels::table.filter(resource_labels::resource_id.eq(id)))
        .execute(tx.conn())?;
    for label in labels {
        diesel::insert_into(resource_labels::table)
            .values((
                resource_labels::resource_id.eq(id),
                resource_labels::workspace_id.eq(workspace_id),
                resource_labels::label.eq(label.as_str()),
            ))
            .execute(tx.conn())?;
    }
    Ok(())
}

pub struct NewResource {
    pub kind: ResourceKind,
    pub name: String,
    /// For a destination: the source it is connected to.
    pub source_id: Option<String>,
    pub labels: BTreeSet<Label>,
}

/// A new write key and the hash stored for it.
fn new_write_key() -> (String, [u8; 32]) {
    let key = format!("{WRITE_KEY_PREFIX}{}", crate::secrets::random_secret());
    let hash = crate::secrets::hash(&key);
    (key, hash)
}

/// Creates a resource; for a source, also returns its write key, shown this once.
pub fn create(
    conn: &mut Conn,
    workspace_id: &str,
    new: NewResource,
    context: &AuditContext,
) -> Result<(Resource, Option<String>), AccessError> {
    let name = validate_name(&new.name)?;
    check_labels(new.kind, &new.labels)?;
    match (new.kind, &new.source_id) {
        (ResourceKind::Destination, None) => {
            return Err(AccessError::Invalid(
                "a destination is connected to a source: give source_id".to_owned(),
            ));
        }
        (kind, Some(_)) if kind != ResourceKind::Destination => {
            return Err(AccessError::Invalid(format!(
                "only destinations have a source_id, not a {kind}"
            )));
        }
        _ => {}
    }
    conn.write(|tx| {
        if let Some(source_id) = &new.source_id {
            find(tx, workspace_id, source_id)?
                .filter(|r| r.kind == ResourceKind::Source)
                .ok_or_else(|| {
                    AccessError::Invalid(format!("no source {source_id:?} in this workspace"))
                })?;
        }
        let write_key = (new.kind == ResourceKind::Source).then(new_write_key);
        let now = crate::time::now();
        let resource = Resource {
            id: uuid::Uuid::new_v4().to_string(),
            kind: new.kind,
            name,
            source_id: new.source_id,
            labels: new.labels.into_iter().collect(),
        };
        diesel::insert_into(resources::table)
            .values((
                resources::id.eq(&resource.id),
                resources::workspace_id.eq(workspace_id),
                resources::kind.eq(resource.kind.as_str()),
                resources::name.eq(&resource.name),
                resources::source_id.eq(&resource.source_id),
                resources::write_key_hash.eq(write_key.as_ref().map(|(_, hash)| hash.to_vec())),
                resources::created_at.eq(now),
                resources::updated_at.eq(now),
            ))
            .execute(tx.conn())?;
        write_labels(
            tx,
            workspace_id,
            &resource.id,
            &resource.labels.iter().cloned().collect(),
        )?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "resource.created",
                target: Target {
                    kind: resource.kind.as_str(),
                    id: &resource.id,
                },
                details: json!({ "before": null, "after": resource }),
            },
        )?;
        Ok((resource, write_key.map(|(key, _)| key)))
    })
}

#[derive(Default)]
pub struct ResourceChanges {
    pub name: Option<String>,
    pub labels: Option<BTreeSet<Label>>,
}

pub fn update(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    changes: ResourceChanges,
    context: &AuditContext,
) -> Result<Resource, AccessError> {
    let name = changes.name.as_deref().map(validate_name).transpose()?;
    conn.write(|tx| {
        let before = require(tx, workspace_id, id)?;
        let mut after = before.clone();
        if let Some(name) = name {
            after.name = name;
        }
        if let Some(labels) = &changes.labels {
            check_labels(before.kind, labels)?;
            after.labels = labels.iter().cloned().collect();
        }
        if after == before {
            return Ok(after);
        }
        diesel::update(resources::table.filter(resources::id.eq(id)))
            .set((
                resources::name.eq(&after.name),
                resources::updated_at.eq(crate::time::now()),
            ))
            .execute(tx.conn())?;
        if let Some(labels) = &changes.labels {
            write_labels(tx, workspace_id, id, labels)?;
        }
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "resource.updated",
                target: Target {
                    kind: after.kind.as_str(),
                    id,
                },
                details: json!({ "before": before, "after": after }),
            },
        )?;
        Ok(after)
    })
}

/// Deletes a resource; a source takes its destinations with it, and grants on them go too.
pub fn delete(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    context: &AuditContext,
) -> Result<(), AccessError> {
    conn.write(|tx| {
        let before = require(tx, workspace_id, id)?;
        let destinations: Vec<String> = resources::table
            .filter(resources::source_id.eq(id))
            .select(resources::id)
            .load(tx.conn())?;
        diesel::delete(resources::table.filter(resources::id.eq(id))).execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "resource.deleted",
                target: Target {
                    kind: before.kind.as_str(),
                    id,
                },
                details: json!({ "before": before, "after": null, "destinations_deleted": destinations }),
            },
        )?;
        Ok(())
    })
}

/// Replaces a source's write key; the old one stops working at once.
pub fn rotate_write_key(
    conn: &mut Conn,
    workspace_id: &str,
    id: &str,
    context: &AuditContext,
) -> Result<String, AccessError> {
    conn.write(|tx| {
        let source = require(tx, workspace_id, id)?;
        if source.kind != ResourceKind::Source {
            return Err(AccessError::Invalid(format!(
                "only sources have write keys; {id} is a {}",
                source.kind
            )));
        }
        let (key, hash) = new_write_key();
        diesel::update(resources::table.filter(resources::id.eq(id)))
            .set((
                resources::write_key_hash.eq(hash.to_vec()),
                resources::updated_at.eq(crate::time::now()),
            ))
            .execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(workspace_id),
                action: "resource.write_key.rotated",
                target: Target { kind: "source", id },
                details: json!({ "name": source.name }),
            },
        )?;
        Ok(key)
    })
}

/// The source a write key belongs to, if it is a current key of one. Looking the hash up is safe
/// against timing: an attacker can steer neither a SHA-256 nor the 256 random bits behind it.
pub fn source_of_write_key(conn: &mut DbConnection, key: &str) -> QueryResult<Option<String>> {
    if !key.starts_with(WRITE_KEY_PREFIX) {
        return Ok(None);
    }
    resources::table
        .filter(resources::write_key_hash.eq(crate::secrets::hash(key).to_vec()))
        .select(resources::id)
        .first(conn)
        .optional()
}
