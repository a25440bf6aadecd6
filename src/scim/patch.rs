//! PATCH (RFC 7644 §3.5.2) on a stored document: add, remove and replace, with and without paths,
//! value filters, sub-attributes and extension URNs, plus what Okta and Entra actually send
//! (capitalised ops, string booleans, no-path values with dotted or URN keys). Operations apply to
//! a copy; the caller stores it only when every operation succeeded, so a request applies whole or
//! not at all.

use serde_json::{Map, Value};

use super::elements;
use super::error::{ScimError, ScimType};
use super::filter::{CompValue, CompareOp, Filter, PatchPath, parse_path};
use super::resource::{self, Document, coerce};
use super::schema::{Attribute, Mutability, ResourceKind, Type};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: Op,
    pub path: Option<PatchPath>,
    /// The path as the client wrote it, for messages.
    pub raw_path: Option<String>,
    pub value: Option<Value>,
}

fn no_target(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::NoTarget, detail)
}

fn mutability(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::Mutability, detail)
}

/// Reads a PatchOp request body into operations, checking each before any is applied.
pub fn parse_request(body: &Value, patch_schema: &str) -> Result<Vec<Operation>, ScimError> {
    let schemas_ok = body["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == patch_schema));
    if !schemas_ok {
        return Err(ScimError::invalid_value(format!(
            "a PATCH request names the schema {patch_schema}"
        )));
    }
    let Some(operations) = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
    else {
        return Err(ScimError::invalid_value(
            "a PATCH request needs an Operations array",
        ));
    };
    if operations.is_empty() {
        return Err(ScimError::invalid_value("Operations is empty"));
    }
    operations
        .iter()
        .map(|operation| {
            let op = match operation
                .get("op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => Op::Add,
                Some("remove") => Op::Remove,
                Some("replace") => Op::Replace,
                _ => {
                    return Err(ScimError::invalid_value(
                        "each operation's op must be add, remove or replace",
                    ));
                }
            };
            let raw_path = match operation.get("path") {
                None | Some(Value::Null) => None,
                Some(Value::String(path)) if path.trim().is_empty() => None,
                Some(Value::String(path)) => Some(path.clone()),
                Some(_) => return Err(ScimError::invalid_path("path must be a string")),
            };
            let path = raw_path
                .as_deref()
                .map(|path| {
                    parse_path(path)
                        .map_err(|e| ScimError::invalid_path(format!("invalid path {path:?} {e}")))
                })
                .transpose()?;
            let value = operation.get("value").cloned();
            if op != Op::Remove && value.is_none() {
                return Err(ScimError::invalid_value(format!("{op:?} needs a value")));
            }
            if op == Op::Remove && path.is_none() {
                return Err(no_target("remove needs a path"));
            }
            Ok(Operation {
                op,
                path,
                raw_path,
                value,
            })
        })
        .collect()
}

/// Applies the operations in order to `document` and returns the result, checked as a whole.
pub fn apply(
    kind: ResourceKind,
    mut document: Document,
    operations: &[Operation],
) -> Result<Document, ScimError> {
    for operation in operations {
        match &operation.path {
            Some(path) => apply_at(
                kind,
                &mut document,
                operation.op,
                path,
                operation.value.as_ref(),
                false,
            )?,
            None => {
                apply_without_path(kind, &mut document, operation.op, operation.value.as_ref())?
            }
        }
    }
    // Re-check the whole result: types, and at most one primary per multi-valued attribute.
    let mut checked = document.clone();
    checked.insert(
        "schemas".to_owned(),
        Value::Array(vec![Value::String(kind.core_schema().to_owned())]),
    );
    resource::normalize(kind, &Value::Object(checked))
}

/// `{"op": "replace", "value": {"active": false, "name.givenName": "A", "urn:...:User:department": "R"}}`.
fn apply_without_path(
    kind: ResourceKind,
    document: &mut Document,
    op: Op,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(Value::Object(fields)) = value else {
        return Err(ScimError::invalid_value(
            "an operation without a path needs an object value",
        ));
    };
    for (key, value) in fields {
        if let Some(urn) = kind.extension(key) {
            let Value::Object(extension) = value else {
                return Err(ScimError::invalid_value(format!("{urn} must be an object")));
            };
            // Some clients repeat `schemas` inside the extension object; it holds no attribute.
            for (name, value) in extension
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("schemas"))
            {
                let path = parse_path(&format!("{urn}:{name}"))
                    .map_err(|e| ScimError::invalid_path(format!("{urn}:{name}: {e}")))?;
                apply_at(kind, document, op, &path, Some(value), true)?;
            }
            continue;
        }
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let path = parse_path(key).map_err(|e| ScimError::invalid_path(format!("{key}: {e}")))?;
        apply_at(kind, document, op, &path, Some(value), true)?;
    }
    Ok(())
}

/// The extension a path names as a whole (`urn:...:enterprise:2.0:User`), which the path grammar
/// reads as attribute `User` of schema `urn:...:2.0`.
fn whole_extension(kind: ResourceKind, path: &PatchPath) -> Option<&'static str> {
    let urn = path.attr.urn.as_deref()?;
    if path.attr.sub.is_some() || path.filter.is_some() {
        return None;
    }
    kind.extension(&format!("{urn}:{}", path.attr.name))
}

/// add or replace with an object of the extension's attributes, or remove the whole extension.
fn apply_to_extension(
    kind: ResourceKind,
    document: &mut Document,
    op: Op,
    urn: &str,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match op {
        Op::Remove => {
            document.remove(urn);
            Ok(())
        }
        Op::Replace => {
            document.remove(urn);
            apply_without_path(
                kind,
                document,
                Op::Add,
                Some(&Value::Object(Map::from_iter([(
                    urn.to_owned(),
                    value.cloned().unwrap_or(Value::Null),
                )]))),
            )
        }
        Op::Add => apply_without_path(
            kind,
            document,
            op,
            Some(&Value::Object(Map::from_iter([(
                urn.to_owned(),
                value.cloned().unwrap_or(Value::Null),
            )]))),
        ),
    }
}

fn apply_at(
    kind: ResourceKind,
    document: &mut Document,
    op: Op,
    path: &PatchPath,
    value: Option<&Value>,
    lenient_read_only: bool,
) -> Result<(), ScimError> {
    if let Some(urn) = whole_extension(kind, path) {
        return apply_to_extension(kind, document, op, urn, value);
    }
    let (extension, top) = kind
        .top_level(path.attr.urn.as_deref(), &path.attr.name)
        .map_err(ScimError::invalid_path)?;
    match top.mutability {
        // Okta repeats the id in a no-path value when it renames a group: nothing to change.
        Mutability::ReadOnly if lenient_read_only => return Ok(()),
        Mutability::ReadOnly => return Err(mutability(format!("{} is read-only", top.name))),
        // The password is accepted and dropped: sign-in is by SAML.
        Mutability::WriteOnly => return Ok(()),
        _ => {}
    }
    let holder = match extension {
        Some(urn) => {
            let entry = document
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            entry.as_object_mut().expect("made an object above")
        }
        None => document,
    };
    let sub_name = path.attr.sub.as_deref().or(path.sub.as_deref());
    let sub = match sub_name {
        Some(name) => Some(top.sub_attribute(name).ok_or_else(|| {
            ScimError::invalid_path(format!("unknown attribute {}.{name}", top.name))
        })?),
        None => None,
    };
    if let Some(sub) = sub
        && sub.mutability == Mutability::ReadOnly
    {
        return Err(mutability(format!(
            "{}.{} is read-only",
            top.name, sub.name
        )));
    }
    match &path.filter {
        Some(filter) => apply_filtered(holder, op, top, filter, sub, value)?,
        None => apply_plain(holder, op, top, sub, value)?,
    }
    if let Some(urn) = extension
        && document
            .get(urn)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        document.remove(urn);
    }
    Ok(())
}

fn apply_plain(
    holder: &mut Document,
    op: Op,
    top: &Attribute,
    sub: Option<&Attribute>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = top.name;
    match (op, sub) {
        (Op::Remove, None) => {
            holder.remove(name);
        }
        (Op::Remove, Some(sub)) => {
            for element in elements_mut(holder, top) {
                element.remove(sub.name);
            }
            drop_empty(holder, top);
        }
        (_, Some(sub)) => {
            let coerced = coerce(sub, value.unwrap_or(&Value::Null))?;
            if top.multi_valued {
                let elements = elements_mut(holder, top);
                if elements.is_empty() {
                    return Err(no_target(format!(
                        "{name} has no values to set {} on",
                        sub.name
                    )));
                }
                for element in elements {
                    set_or_remove(element, sub.name, coerced.clone());
                }
            } else {
                let entry = holder
                    .entry(name.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(fields) = entry {
                    set_or_remove(fields, sub.name, coerced);
                }
            }
            drop_empty(holder, top);
        }
        (Op::Replace, None) => match coerce(top, value.unwrap_or(&Value::Null))? {
            Some(value) => {
                holder.insert(name.to_owned(), value);
            }
            None => {
                holder.remove(name);
            }
        },
        (Op::Add, None) => {
            let Some(new) = coerce(top, value.unwrap_or(&Value::Null))? else {
                return Ok(());
            };
            match (top.multi_valued, holder.get_mut(name), new) {
                (true, Some(Value::Array(existing)), Value::Array(added)) => {
                    let first_added = existing.len();
                    for item in added {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                    resource::check_value_count(top, existing.len())?;
                    settle_primary(existing, first_added);
                }
                // Adding to a single complex value merges its sub-attributes.
                (false, Some(Value::Object(existing)), Value::Object(added))
                    if top.kind == Type::Complex =>
                {
                    existing.extend(added)
                }
                (_, _, new) => {
                    holder.insert(name.to_owned(), new);
                }
            }
        }
    }
    Ok(())
}

fn set_or_remove(fields: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    match value {
        Some(value) => fields.insert(name.to_owned(), value),
        None => fields.remove(name),
    };
}

/// The complex values of `top` in `holder`: every element of a multi-valued one, or the one object.
fn elements_mut<'a>(holder: &'a mut Document, top: &Attribute) -> Vec<&'a mut Map<String, Value>> {
    match holder.get_mut(top.name) {
        Some(Value::Array(items)) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
        Some(Value::Object(fields)) => vec![fields],
        _ => Vec::new(),
    }
}

/// Removes empty complex values and an attribute left with none.
fn drop_empty(holder: &mut Document, top: &Attribute) {
    let empty = match holder.get_mut(top.name) {
        Some(Value::Array(items)) => {
            items.retain(|item| item.as_object().is_none_or(|fields| !fields.is_empty()));
            items.is_empty()
        }
        Some(Value::Object(fields)) => fields.is_empty(),
        _ => false,
    };
    if empty {
        holder.remove(top.name);
    }
}

/// When an operation makes a value primary, the others stop being primary: one primary per attribute.
fn settle_primary(items: &mut [Value], first_changed: usize) {
    let chosen = items[first_changed.min(items.len())..]
        .iter()
        .rposition(|item| item.get("primary") == Some(&Value::Bool(true)))
        .map(|index| index + first_changed);
    if let Some(chosen) = chosen {
        for (index, item) in items.iter_mut().enumerate() {
            if index != chosen
                && let Some(fields) = item.as_object_mut()
                && fields.get("primary") == Some(&Value::Bool(true))
            {
                fields.insert("primary".to_owned(), Value::Bool(false));
            }
        }
    }
}

fn apply_filtered(
    holder: &mut Document,
    op: Op,
    top: &Attribute,
    filter: &Filter,
    sub: Option<&Attribute>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if top.kind != Type::Complex {
        return Err(ScimError::invalid_path(format!(
            "{} is not a complex attribute",
            top.name
        )));
    }
    let matched: Vec<usize> = match holder.get(top.name) {
        Some(Value::Array(items)) => {
            let mut matched = Vec::new();
            for (index, item) in items.iter().enumerate() {
                if elements::matches(filter, item, top)? {
                    matched.push(index);
                }
            }
            matched
        }
        Some(single @ Value::Object(_)) => {
            if elements::matches(filter, single, top)? {
                vec![0]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    if op == Op::Remove {
        remove_matched(holder, top, &matched, sub);
        return Ok(());
    }
    if matched.is_empty() {
        // Entra adds `emails[type eq "work"].value` when there is no work email yet: make one.
        let mut element = equalities(filter, top)
            .ok_or_else(|| no_target(format!("no value of {} matches the filter", top.name)))?;
        merge_value(&mut element, top, sub, value, op)?;
        let element = Value::Object(element);
        match holder.get_mut(top.name) {
            Some(Value::Array(items)) => {
                items.push(element);
                let last = items.len() - 1;
                settle_primary(items, last);
            }
            _ if top.multi_valued => {
                holder.insert(top.name.to_owned(), Value::Array(vec![element]));
            }
            _ => {
                holder.insert(top.name.to_owned(), element);
            }
        }
        return Ok(());
    }
    match holder.get_mut(top.name) {
        Some(Value::Array(items)) => {
            for &index in &matched {
                if let Some(Value::Object(element)) = items.get_mut(index) {
                    merge_value(element, top, sub, value, op)?;
                }
            }
            settle_primary(items, matched[0]);
        }
        Some(Value::Object(element)) => merge_value(element, top, sub, value, op)?,
        _ => {}
    }
    drop_empty(holder, top);
    Ok(())
}

fn remove_matched(
    holder: &mut Document,
    top: &Attribute,
    matched: &[usize],
    sub: Option<&Attribute>,
) {
    match (holder.get_mut(top.name), sub) {
        (Some(Value::Array(items)), None) => {
            let mut index = 0;
            items.retain(|_| {
                let keep = !matched.contains(&index);
                index += 1;
                keep
            });
        }
        (Some(Value::Array(items)), Some(sub)) => {
            for &index in matched {
                if let Some(Value::Object(element)) = items.get_mut(index) {
                    element.remove(sub.name);
                }
            }
        }
        (Some(Value::Object(_)), None) if !matched.is_empty() => {
            holder.remove(top.name);
        }
        (Some(Value::Object(element)), Some(sub)) if !matched.is_empty() => {
            element.remove(sub.name);
        }
        _ => {}
    }
    drop_empty(holder, top);
}

/// Sets the operation's value on one matched element: a sub-attribute, or (no sub) the element's
/// sub-attributes, replaced whole by `replace` and merged by `add`.
fn merge_value(
    element: &mut Map<String, Value>,
    top: &Attribute,
    sub: Option<&Attribute>,
    value: Option<&Value>,
    op: Op,
) -> Result<(), ScimError> {
    let value = value.unwrap_or(&Value::Null);
    match sub {
        Some(sub) => set_or_remove(element, sub.name, coerce(sub, value)?),
        None => {
            let single = Attribute {
                multi_valued: false,
                ..*top
            };
            let Some(Value::Object(fields)) = coerce(&single, value)? else {
                return Err(ScimError::invalid_value(format!(
                    "a value of {} must be an object",
                    top.name
                )));
            };
            if op == Op::Replace {
                element.clear();
            }
            element.extend(fields);
        }
    }
    Ok(())
}

/// The element a filter of `eq` comparisons describes (`type eq "work"` gives `{"type": "work"}`),
/// or None when the filter says more than equalities.
fn equalities(filter: &Filter, top: &Attribute) -> Option<Map<String, Value>> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } => {
            let sub = top.sub_attribute(&path.name)?;
            let value = match value {
                CompValue::String(text) => Value::String(text.clone()),
                CompValue::Bool(flag) => Value::Bool(*flag),
                _ => return None,
            };
            let mut element = Map::new();
            element.insert(sub.name.to_owned(), coerce(sub, &value).ok()??);
            Some(element)
        }
        Filter::And(left, right) => {
            let mut element = equalities(left, top)?;
            element.extend(equalities(right, top)?);
            Some(element)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

    fn user() -> Document {
        let Value::Object(document) = json!({
            "userName": "ada@example.com",
            "active": true,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}, {"value": "ada@home.example", "type": "home"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "manager": {"value": "m1"}},
        }) else {
            unreachable!()
        };
        document
    }

    fn patch(document: Document, operations: Value) -> Result<Value, ScimError> {
        let operations = parse_request(
            &json!({"schemas": [PATCH], "Operations": operations}),
            PATCH,
        )?;
        apply(ResourceKind::User, document, &operations).map(Value::Object)
    }

    fn scim_type(error: ScimError) -> ScimType {
        match error {
            ScimError::BadRequest { scim_type, .. } => scim_type,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn okta_deactivation_and_entra_string_booleans() {
        let okta = patch(
            user(),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .unwrap();
        assert_eq!(okta["active"], false);
        let entra = patch(
            user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(entra["active"], false);
    }

    #[test]
    fn entra_no_path_values_with_dotted_and_urn_keys() {
        let result = patch(
            user(),
            json!([{"op": "Replace", "value": {
                "name.givenName": "Augusta",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"costCenter": "CC1"},
            }}]),
        )
        .unwrap();
        assert_eq!(
            result["name"],
            json!({"givenName": "Augusta", "familyName": "Lovelace"})
        );
        let enterprise = &result["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
        assert_eq!(
            (
                enterprise["employeeNumber"].as_str(),
                enterprise["costCenter"].as_str()
            ),
            (Some("7"), Some("CC1"))
        );
    }

    #[test]
    fn filtered_paths_replace_add_and_remove() {
        let replaced = patch(user(), json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "lovelace@example.com"}])).unwrap();
        assert_eq!(replaced["emails"][0]["value"], "lovelace@example.com");
        assert_eq!(replaced["emails"][1]["value"], "ada@home.example");

        let added = patch(user(), json!([{"op": "Add", "path": "emails[type eq \"other\"].value", "value": "a@other.example"}])).unwrap();
        assert_eq!(
            added["emails"][2],
            json!({"type": "other", "value": "a@other.example"})
        );

        let added = patch(user(), json!([{"op": "add", "path": "addresses[type eq \"work\"].locality", "value": "London"}])).unwrap();
        assert_eq!(
            added["addresses"],
            json!([{"type": "work", "locality": "London"}])
        );

        let removed = patch(
            user(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .unwrap();
        assert_eq!(removed["emails"].as_array().unwrap().len(), 1);

        let manager = patch(user(), json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value eq \"m1\"]"}])).unwrap();
        assert_eq!(
            manager["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            json!({"department": "R&D"})
        );
    }

    #[test]
    fn one_primary_per_attribute() {
        let result = patch(user(), json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "primary": "true"}]}])).unwrap();
        let primaries: Vec<&Value> = result["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["primary"] == true)
            .collect();
        assert_eq!(
            primaries,
            [&json!({"value": "new@example.com", "primary": true})]
        );
        let result = patch(
            user(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
        )
        .unwrap();
        assert_eq!(
            (
                result["emails"][0]["primary"].as_bool(),
                result["emails"][1]["primary"].as_bool()
            ),
            (Some(false), Some(true))
        );
    }

    #[test]
    fn errors_carry_the_right_scim_type_and_apply_nothing() {
        assert_eq!(
            scim_type(
                patch(
                    user(),
                    json!([{"op": "replace", "path": "favourite", "value": "x"}])
                )
                .unwrap_err()
            ),
            ScimType::InvalidPath
        );
        assert_eq!(
            scim_type(
                patch(
                    user(),
                    json!([{"op": "replace", "path": "emails[type eq", "value": "x"}])
                )
                .unwrap_err()
            ),
            ScimType::InvalidPath
        );
        assert_eq!(
            scim_type(patch(user(), json!([{"op": "remove"}])).unwrap_err()),
            ScimType::NoTarget
        );
        assert_eq!(
            scim_type(
                patch(
                    user(),
                    json!([{"op": "replace", "path": "id", "value": "x"}])
                )
                .unwrap_err()
            ),
            ScimType::Mutability
        );
        assert_eq!(
            scim_type(
                patch(
                    user(),
                    json!([{"op": "replace", "path": "groups", "value": []}])
                )
                .unwrap_err()
            ),
            ScimType::Mutability
        );
        assert_eq!(
            scim_type(patch(user(), json!([{"op": "replace", "path": "emails[value co \"zzz\"].value", "value": "y"}])).unwrap_err()),
            ScimType::NoTarget
        );
        assert_eq!(
            scim_type(
                patch(
                    user(),
                    json!([{"op": "replace", "path": "active", "value": "maybe"}])
                )
                .unwrap_err()
            ),
            ScimType::InvalidValue
        );
        assert_eq!(
            scim_type(patch(user(), json!([{"op": "move", "path": "active"}])).unwrap_err()),
            ScimType::InvalidValue
        );
        let operations = json!([{"op": "replace", "path": "userName", "value": "changed"}, {"op": "replace", "path": "nope", "value": 1}]);
        assert!(
            patch(user(), operations).is_err(),
            "the second failure voids the first"
        );
    }

    #[test]
    fn okta_group_rename_ignores_the_repeated_id() {
        let Value::Object(group) = json!({"displayName": "Engineering"}) else {
            unreachable!()
        };
        let operations = parse_request(
            &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"id": "g1", "displayName": "Eng"}}]}),
            PATCH,
        )
        .unwrap();
        let result = apply(ResourceKind::Group, group, &operations).unwrap();
        assert_eq!(Value::Object(result), json!({"displayName": "Eng"}));
    }

    /// Random operations (paths and values from the shapes above) give a document or an error,
    /// never a panic.
    #[test]
    fn no_operation_makes_the_engine_panic() {
        let paths = [
            "emails",
            "emails[type eq \"work\"].value",
            "emails[value co \"a\"]",
            "name",
            "name.givenName",
            "active",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "addresses[type eq \"home\"].locality",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager[value eq \"m1\"]",
            "groups",
            "id",
            "emails[primary eq true].primary",
            "x509Certificates.value",
            "meta.version",
        ];
        let values = [
            json!(null),
            json!(true),
            json!("False"),
            json!("text"),
            json!(7),
            json!([]),
            json!({}),
            json!([{"value": "v", "primary": true}]),
            json!({"givenName": "G"}),
            json!([{"value": "a"}, {"value": "b", "primary": "True"}]),
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        for _ in 0..5_000 {
            let operations: Vec<Value> = (0..1 + next() % 3)
                .map(|_| {
                    let op = ["add", "remove", "replace", "Replace"][next() % 4];
                    let mut operation = json!({"op": op, "value": values[next() % values.len()]});
                    if next() % 5 != 0 {
                        operation["path"] = json!(paths[next() % paths.len()]);
                    }
                    operation
                })
                .collect();
            let _ = patch(user(), Value::Array(operations));
        }
    }
}
