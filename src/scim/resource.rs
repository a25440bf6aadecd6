//! Resource documents: checking what a client sends against the schema, and shaping what is returned.
//!
//! A stored document holds every client-writable attribute under its canonical name (extension
//! attributes inside an object keyed by the extension URN), and nothing read-only (id, meta, groups)
//! or write-only (password).

use serde_json::{Map, Value};

use super::elements;
use super::error::{ScimError, ScimType};
use super::filter::{Filter, parse_filter};
use super::schema::{Attribute, Mutability, ResourceKind, Returned, Type};

pub type Document = Map<String, Value>;

/// Checks and canonicalises a full resource as sent to POST or PUT.
pub fn normalize(kind: ResourceKind, input: &Value) -> Result<Document, ScimError> {
    let Value::Object(input) = input else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "the request body must be a JSON object",
        ));
    };
    check_schemas(kind, input)?;
    let mut document = Document::new();
    for (key, value) in input {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(urn) = kind.extension(key) {
            let Value::Object(fields) = value else {
                return Err(ScimError::invalid_value(format!("{urn} must be an object")));
            };
            let mut extension = Document::new();
            for (name, value) in fields
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("schemas"))
            {
                // Not defined here: nothing to store, and not an error (below).
                if let Some(attribute) = kind.attribute(Some(urn), name) {
                    set_checked(&mut extension, attribute, value)?;
                }
            }
            if !extension.is_empty() {
                document.insert(urn.to_owned(), Value::Object(extension));
            }
            continue;
        }
        // An attribute or extension the schema does not define (a custom one an IdP maps by
        // default, Entra's ADSCIM group schema, an Okta custom profile) has nothing to store here:
        // it is ignored, as Entra expects and RFC 7644 leaves to the service. A defined one with
        // a malformed value is still refused.
        if let Some(attribute) = kind.attribute(None, key) {
            set_checked(&mut document, attribute, value)?;
        }
    }
    Ok(document)
}

/// A resource must name its core schema; extension schemas it names must be known or harmless.
fn check_schemas(kind: ResourceKind, input: &Map<String, Value>) -> Result<(), ScimError> {
    let schemas = input
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("schemas"))
        .map(|(_, value)| value);
    match schemas {
        None => Ok(()),
        Some(Value::Array(schemas)) if schemas.iter().all(Value::is_string) => {
            if schemas.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(kind.core_schema()))
            }) {
                Ok(())
            } else {
                Err(ScimError::invalid_value(format!(
                    "schemas must include {}",
                    kind.core_schema()
                )))
            }
        }
        Some(_) => Err(ScimError::invalid_value("schemas must be an array of URNs")),
    }
}

/// Stores `value` for `attribute` in `target` after checking and coercing it; null unassigns.
/// Read-only attributes are ignored (RFC 7644 §3.5.1) and the write-only password is dropped.
pub fn set_checked(
    target: &mut Document,
    attribute: &Attribute,
    value: &Value,
) -> Result<(), ScimError> {
    if matches!(
        attribute.mutability,
        Mutability::ReadOnly | Mutability::WriteOnly
    ) {
        return Ok(());
    }
    match coerce(attribute, value)? {
        Some(value) => target.insert(attribute.name.to_owned(), value),
        None => target.remove(attribute.name),
    };
    Ok(())
}

/// The most values one multi-valued attribute may hold (group members aside, which live in a
/// table of their own): each is a row of the value index that filters scan.
pub const MAX_VALUES: usize = 100;

/// Refuses a multi-valued attribute with more than [`MAX_VALUES`] values.
pub fn check_value_count(attribute: &Attribute, count: usize) -> Result<(), ScimError> {
    if count > MAX_VALUES && attribute.name != "members" {
        return Err(ScimError::bad(
            ScimType::TooMany,
            format!(
                "{} has {count} values; at most {MAX_VALUES} are kept",
                attribute.name
            ),
        ));
    }
    Ok(())
}

/// The value as stored, or None for "no value" (null, an empty array, an empty object).
pub fn coerce(attribute: &Attribute, value: &Value) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attribute.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        check_value_count(attribute, items.len())?;
        let mut values = Vec::new();
        for item in items {
            if let Some(value) = coerce_single(attribute, item)? {
                values.push(value);
            }
        }
        check_one_primary(attribute, &values)?;
        return Ok((!values.is_empty()).then_some(Value::Array(values)));
    }
    if value.is_array() {
        return Err(ScimError::invalid_value(format!(
            "{} takes one value, not an array",
            attribute.name
        )));
    }
    coerce_single(attribute, value)
}

fn coerce_single(attribute: &Attribute, value: &Value) -> Result<Option<Value>, ScimError> {
    let name = attribute.name;
    Ok(match (attribute.kind, value) {
        (_, Value::Null) => None,
        (Type::Complex, Value::Object(fields)) => {
            let mut complex = Document::new();
            for (key, value) in fields {
                let Some(sub) = attribute.sub_attribute(key) else {
                    return Err(ScimError::invalid_value(format!(
                        "unknown sub-attribute {name}.{key}"
                    )));
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(value) = coerce_single(sub, value)? {
                    complex.insert(sub.name.to_owned(), value);
                }
            }
            (!complex.is_empty()).then_some(Value::Object(complex))
        }
        // Entra sets the manager as a bare id: `"value": "2819c223-..."`.
        (Type::Complex, Value::String(_))
            if !attribute.multi_valued && attribute.sub_attribute("value").is_some() =>
        {
            let mut complex = Document::new();
            complex.insert("value".to_owned(), value.clone());
            Some(Value::Object(complex))
        }
        (Type::Complex, _) => {
            return Err(ScimError::invalid_value(format!(
                "{name} must be an object"
            )));
        }
        (Type::Boolean, Value::Bool(flag)) => Some(Value::Bool(*flag)),
        // Entra sends booleans as strings: "True", "False".
        (Type::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("true") => {
            Some(Value::Bool(true))
        }
        (Type::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("false") => {
            Some(Value::Bool(false))
        }
        (Type::Boolean, _) => {
            return Err(ScimError::invalid_value(format!(
                "{name} must be true or false"
            )));
        }
        (Type::DateTime, Value::String(text)) => {
            crate::time::parse_rfc3339(text).map_err(ScimError::invalid_value)?;
            Some(value.clone())
        }
        (_, Value::String(text)) => Some(Value::String(text.clone())),
        // Some IdPs send identifiers such as employeeNumber as JSON numbers.
        (Type::String, Value::Number(number)) => Some(Value::String(number.to_string())),
        _ => return Err(ScimError::invalid_value(format!("{name} must be a string"))),
    })
}

fn check_one_primary(attribute: &Attribute, values: &[Value]) -> Result<(), ScimError> {
    let primaries = values
        .iter()
        .filter(|value| value.get("primary") == Some(&Value::Bool(true)))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "at most one of {} may be primary",
            attribute.name
        )));
    }
    Ok(())
}

/// Which attributes a response carries (RFC 7644 §3.4.2.5).
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// `attributes=`: only these (plus those returned always).
    pub only: Vec<String>,
    /// `excludedAttributes=`: all but these.
    pub excluded: Vec<String>,
    /// `attributes=emails[type eq "work"]`, as Entra asks: of a multi-valued attribute, only the
    /// values the filter selects.
    selections: Vec<(String, Filter)>,
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        let split = |list: Option<&str>| -> Vec<String> {
            list.map(|list| {
                split_outside_brackets(list)
                    .map(|path| path.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
        };
        let mut selections = Vec::new();
        let only = split(attributes)
            .into_iter()
            .map(|path| match parse_filter(&path) {
                Ok(Filter::ValuePath { attr, filter }) if attr.sub.is_none() => {
                    let name = attr.name.to_ascii_lowercase();
                    selections.push((name.clone(), *filter));
                    name
                }
                _ => path.to_ascii_lowercase(),
            })
            .collect();
        let excluded = split(excluded)
            .into_iter()
            .map(|path| path.to_ascii_lowercase())
            .collect();
        Projection {
            only,
            excluded,
            selections,
        }
    }

    /// Whether this is the projection of a request that named no attributes.
    pub fn is_default(&self) -> bool {
        self.only.is_empty() && self.excluded.is_empty()
    }

    /// Whether the top-level attribute `name` (canonical; `urn` for an extension's) is wanted at all.
    pub fn wants(&self, kind: ResourceKind, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if always_returned(kind, &name) {
            return true;
        }
        if !self.only.is_empty() {
            return self.only.iter().any(|path| {
                path == &name
                    || path.starts_with(&format!("{name}."))
                    || path.starts_with(&format!("{name}:"))
            });
        }
        !self.excluded.iter().any(|path| path == &name)
    }

    /// Applies the projection to a full response document.
    pub fn apply(&self, kind: ResourceKind, mut document: Document) -> Document {
        if self.only.is_empty() && self.excluded.is_empty() {
            return document;
        }
        let keys: Vec<String> = document.keys().cloned().collect();
        for key in keys {
            if !self.wants(kind, &key) {
                document.remove(&key);
                continue;
            }
            // `name.givenName`, or an extension's `urn:...:department`: trim inside the value too.
            let prefix = key.to_ascii_lowercase();
            let nested = |paths: &[String]| -> Vec<String> {
                paths
                    .iter()
                    .filter_map(|path| {
                        path.strip_prefix(&prefix)
                            .and_then(|rest| rest.strip_prefix(['.', ':']))
                    })
                    .map(str::to_owned)
                    .collect()
            };
            let (only, excluded) = (nested(&self.only), nested(&self.excluded));
            if let Some(value) = document.get_mut(&key) {
                trim(value, &only, &excluded);
            }
            let selected = self.selections.iter().find(|(name, _)| *name == prefix);
            if let (Some((_, filter)), Some(top), Some(Value::Array(values))) =
                (selected, kind.attribute(None, &key), document.get_mut(&key))
            {
                // A filter that names no sub-attribute of this one selects nothing it could judge:
                // the values stay.
                values.retain(|value| elements::matches(filter, value, top).unwrap_or(true));
            }
        }
        document
    }
}

/// The items of a comma-separated list, where a comma inside `[...]` or quotes is not a separator.
fn split_outside_brackets(list: &str) -> impl Iterator<Item = &str> {
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    let mut items = Vec::new();
    for (index, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(&list[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items.into_iter()
}

fn always_returned(kind: ResourceKind, name: &str) -> bool {
    name == "schemas"
        || kind
            .attribute(None, name)
            .is_some_and(|a| a.returned == Returned::Always)
}

fn trim(value: &mut Value, only: &[String], excluded: &[String]) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| trim(item, only, excluded)),
        Value::Object(fields) => fields.retain(|key, _| {
            let key = key.to_ascii_lowercase();
            // Inside a complex value, `value` stays with anything asked for, so elements stay identifiable.
            (only.is_empty() || only.contains(&key)) && !excluded.contains(&key)
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_canonicalised() {
        let input = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "USERNAME": "ada@example.com",
            "Active": "True",
            "password": "hunter2",
            "id": "ignored",
            "groups": [],
            "emails": [{"value": "ada@example.com", "type": "work", "primary": "true"}],
            "name": {"GivenName": "Ada"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": 7, "manager": {"value": "m1"}},
            "urn:example:custom:1.0": {"anything": true},
        });
        let document = normalize(ResourceKind::User, &input).unwrap();
        assert_eq!(
            Value::Object(document),
            json!({
                "userName": "ada@example.com",
                "active": true,
                "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
                "name": {"givenName": "Ada"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7", "manager": {"value": "m1"}},
            })
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for input in [
            json!([]),
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "x"}),
            json!({"userName": "x", "active": "yes"}),
            json!({"userName": ["x"]}),
            json!({"userName": "x", "name": "Ada"}),
            json!({"userName": "x", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]}),
            json!({"userName": "x", "emails": [{"value": "a", "kind": "work"}]}),
        ] {
            assert!(normalize(ResourceKind::User, &input).is_err(), "{input}");
        }
        let custom =
            json!({"userName": "x", "favouriteColour": "blue", "urn:acme:custom": {"a": 1}});
        assert_eq!(
            Value::Object(normalize(ResourceKind::User, &custom).unwrap()),
            json!({"userName": "x"}),
            "what the schema does not define is ignored"
        );
    }

    #[test]
    fn projections_keep_what_is_always_returned() {
        let document = json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "A", "familyName": "L"}, "emails": [{"value": "e", "type": "work"}]});
        let Value::Object(document) = document else {
            unreachable!()
        };
        let only = Projection::parse(Some("name.givenName,emails"), None)
            .apply(ResourceKind::User, document.clone());
        assert_eq!(
            Value::Object(only),
            json!({"schemas": ["s"], "id": "1", "name": {"givenName": "A"}, "emails": [{"value": "e", "type": "work"}]})
        );
        let without = Projection::parse(None, Some("emails,id,name.familyName"))
            .apply(ResourceKind::User, document);
        assert_eq!(
            Value::Object(without),
            json!({"schemas": ["s"], "id": "1", "userName": "u", "name": {"givenName": "A"}})
        );
    }
}
