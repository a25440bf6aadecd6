//! The value index: every simple value of a stored document as a row of `scim_values`, so that
//! filters and sorts run in the database instead of over documents loaded into memory.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Array, Integer, Text};
use serde_json::Value;

use crate::db::schema::scim_values;
use crate::db::{DbConnection, Tx};
use crate::scim::resource::Document;
use crate::scim::schema::ResourceKind;

/// One index row: one simple value of a resource's document.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = scim_values)]
pub struct ValueRow {
    workspace_id: String,
    resource_type: &'static str,
    resource_id: String,
    attribute: String,
    element: i32,
    sub: String,
    value: String,
    value_ci: String,
}

/// The index key of a top-level attribute: its lower-cased name, prefixed by the lower-cased
/// extension URN for an extension's attribute.
pub fn attribute_key(extension: Option<&str>, name: &str) -> String {
    match extension {
        Some(urn) => format!("{urn}:{name}").to_ascii_lowercase(),
        None => name.to_ascii_lowercase(),
    }
}

/// An attribute a resource keeps in a column of its own table. Filters and sorts read the column
/// (`query::resolve`), so the value index holds no rows for it: they would only cost writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// A user's `userName`, kept lower-cased in `user_name_ci`: required and case-insensitive.
    UserName,
    /// A user's `active`: absent from the document means active.
    Active,
}

impl Column {
    /// The column holding the attribute whose index key is `attribute`, if one does.
    pub fn holding(kind: ResourceKind, attribute: &str) -> Option<Column> {
        match (kind, attribute) {
            (ResourceKind::User, "username") => Some(Column::UserName),
            (ResourceKind::User, "active") => Some(Column::Active),
            _ => None,
        }
    }
}

/// (attribute, element, sub, value) for every simple value in `document` that filters look up here.
fn flatten(kind: ResourceKind, document: &Document) -> Vec<(String, i32, String, String)> {
    let mut rows = Vec::new();
    for (key, value) in document {
        match value {
            // An extension's object: its attributes are keyed under the URN.
            Value::Object(fields) if key.starts_with("urn:") => {
                for (name, value) in fields {
                    flatten_attribute(&attribute_key(Some(key), name), value, &mut rows);
                }
            }
            value => {
                let attribute = attribute_key(None, key);
                if Column::holding(kind, &attribute).is_none() {
                    flatten_attribute(&attribute, value, &mut rows);
                }
            }
        }
    }
    rows
}

fn flatten_attribute(
    attribute: &str,
    value: &Value,
    rows: &mut Vec<(String, i32, String, String)>,
) {
    let mut push = |element: usize, sub: &str, value: &Value| {
        if let Some(text) = scalar_text(value) {
            rows.push((
                attribute.to_owned(),
                element as i32,
                sub.to_ascii_lowercase(),
                text,
            ));
        }
    };
    match value {
        Value::Array(items) => {
            for (element, item) in items.iter().enumerate() {
                match item {
                    Value::Object(fields) => fields
                        .iter()
                        .for_each(|(sub, value)| push(element, sub, value)),
                    scalar => push(element, "", scalar),
                }
            }
        }
        Value::Object(fields) => fields.iter().for_each(|(sub, value)| push(0, sub, value)),
        scalar => push(0, "", scalar),
    }
}

/// The text a filter compares: strings as they are, booleans as `true`/`false`.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Replaces the index rows of one resource with those of its new document.
pub fn reindex(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    kind: ResourceKind,
    resource_id: &str,
    document: &Document,
) -> QueryResult<()> {
    remove(tx, resource_id)?;
    index(tx, workspace_id, kind, resource_id, document)
}

/// Writes the index rows of a resource that has none yet.
pub fn index(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    kind: ResourceKind,
    resource_id: &str,
    document: &Document,
) -> QueryResult<()> {
    let rows = rows_of(workspace_id, kind, resource_id, document);
    if rows.is_empty() {
        return Ok(());
    }
    match tx.conn() {
        DbConnection::Postgres(conn) => {
            PgValueRows::of(workspace_id, kind, resource_id, &rows).execute(conn)?;
        }
        conn => crate::insert_rows!(conn, scim_values::table, &rows)?,
    }
    Ok(())
}

/// The index rows of a resource's document.
pub fn rows_of(
    workspace_id: &str,
    kind: ResourceKind,
    resource_id: &str,
    document: &Document,
) -> Vec<ValueRow> {
    flatten(kind, document)
        .into_iter()
        .map(|(attribute, element, sub, value)| ValueRow {
            workspace_id: workspace_id.to_owned(),
            resource_type: kind.name(),
            resource_id: resource_id.to_owned(),
            attribute,
            element,
            sub,
            value_ci: value.to_lowercase(),
            value,
        })
        .collect()
}

/// One resource's index rows on PostgreSQL, in one statement that stays prepared whatever their
/// number: each column's values go as an array, which `unnest` turns back into rows. A multi-row
/// `VALUES` is new SQL for each number of rows, parsed and planned anew on every insert. It may
/// also be a table expression of a larger statement.
pub struct PgValueRows<'a> {
    workspace_id: &'a str,
    resource_type: &'a str,
    resource_id: &'a str,
    attributes: Vec<&'a str>,
    elements: Vec<i32>,
    subs: Vec<&'a str>,
    values: Vec<&'a str>,
    values_ci: Vec<&'a str>,
}

impl<'a> PgValueRows<'a> {
    pub fn of(
        workspace_id: &'a str,
        kind: ResourceKind,
        resource_id: &'a str,
        rows: &'a [ValueRow],
    ) -> Self {
        PgValueRows {
            workspace_id,
            resource_type: kind.name(),
            resource_id,
            attributes: rows.iter().map(|row| row.attribute.as_str()).collect(),
            elements: rows.iter().map(|row| row.element).collect(),
            subs: rows.iter().map(|row| row.sub.as_str()).collect(),
            values: rows.iter().map(|row| row.value.as_str()).collect(),
            values_ci: rows.iter().map(|row| row.value_ci.as_str()).collect(),
        }
    }
}

impl QueryId for PgValueRows<'_> {
    type QueryId = PgValueRows<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for PgValueRows<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO scim_values (workspace_id, resource_type, resource_id, attribute, \
             element, sub, value, value_ci) SELECT ",
        );
        for scalar in [&self.workspace_id, &self.resource_type, &self.resource_id] {
            out.push_bind_param::<Text, &str>(scalar)?;
            out.push_sql(", ");
        }
        out.push_sql("* FROM unnest(");
        out.push_bind_param::<Array<Text>, Vec<&str>>(&self.attributes)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, Vec<i32>>(&self.elements)?;
        for column in [&self.subs, &self.values, &self.values_ci] {
            out.push_sql(", ");
            out.push_bind_param::<Array<Text>, Vec<&str>>(column)?;
        }
        out.push_sql(")");
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for PgValueRows<'_> {}

pub fn remove(tx: &mut Tx<'_>, resource_id: &str) -> QueryResult<()> {
    diesel::delete(scim_values::table.filter(scim_values::resource_id.eq(resource_id)))
        .execute(tx.conn())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_flatten_to_one_row_per_value() {
        let Value::Object(document) = json!({
            "userName": "Ada",
            "active": true,
            "name": {"givenName": "Ada"},
            "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m"}, "department": "R&D"},
        }) else {
            unreachable!()
        };
        let mut rows = flatten(ResourceKind::User, &document);
        rows.sort();
        let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user";
        // userName and active are columns of scim_users.
        let expected = [
            ("emails", 0, "type", "work"),
            ("emails", 0, "value", "a@x"),
            ("emails", 1, "value", "b@x"),
            ("name", 0, "givenname", "Ada"),
        ];
        let mut expected: Vec<(String, i32, String, String)> = expected
            .iter()
            .map(|(a, e, s, v)| (a.to_string(), *e, s.to_string(), v.to_string()))
            .collect();
        expected.push((
            format!("{enterprise}:department"),
            0,
            String::new(),
            "R&D".into(),
        ));
        expected.push((
            format!("{enterprise}:manager"),
            0,
            "value".into(),
            "m".into(),
        ));
        expected.sort();
        assert_eq!(rows, expected);
    }
}
