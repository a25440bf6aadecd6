//! Which values of a multi-valued complex attribute a value filter (`emails[type eq "work"]`)
//! selects, evaluated on the document: for PATCH paths and for `attributes` projections.

use serde_json::Value;

use super::error::ScimError;
use super::filter::{AttrPath, CompValue, CompareOp, Filter};
use super::schema::Attribute;

/// Whether one complex value matches a value filter whose paths name its sub-attributes.
pub fn matches(filter: &Filter, element: &Value, top: &Attribute) -> Result<bool, ScimError> {
    Ok(match filter {
        Filter::And(left, right) => matches(left, element, top)? && matches(right, element, top)?,
        Filter::Or(left, right) => matches(left, element, top)? || matches(right, element, top)?,
        Filter::Not(inner) => !matches(inner, element, top)?,
        Filter::Present(path) => {
            let sub = sub_of(top, path)?;
            element.get(sub.name).is_some_and(|value| !value.is_null())
        }
        Filter::Compare { path, op, value } => {
            let sub = sub_of(top, path)?;
            compare(sub, element.get(sub.name), *op, value)
        }
        Filter::ValuePath { .. } => {
            return Err(ScimError::invalid_path("value filters cannot be nested"));
        }
    })
}

fn sub_of(top: &Attribute, path: &AttrPath) -> Result<&'static Attribute, ScimError> {
    if path.urn.is_some() || path.sub.is_some() {
        return Err(ScimError::invalid_path(format!(
            "{path} is not a sub-attribute of {}",
            top.name
        )));
    }
    top.sub_attribute(&path.name).ok_or_else(|| {
        ScimError::invalid_path(format!("unknown attribute {}.{}", top.name, path.name))
    })
}

fn compare(sub: &Attribute, actual: Option<&Value>, op: CompareOp, expected: &CompValue) -> bool {
    let actual = actual.filter(|value| !value.is_null());
    match (actual, expected) {
        (None, CompValue::Null) => op == CompareOp::Eq,
        (Some(_), CompValue::Null) => op == CompareOp::Ne,
        (None, _) => op == CompareOp::Ne,
        (Some(Value::Bool(flag)), CompValue::Bool(wanted)) => {
            (flag == wanted) == (op == CompareOp::Eq)
        }
        (Some(Value::Bool(flag)), CompValue::String(text)) => {
            (text.eq_ignore_ascii_case(&flag.to_string())) == (op == CompareOp::Eq)
        }
        (Some(Value::String(text)), CompValue::String(wanted)) => {
            let (text, wanted) = if sub.case_exact {
                (text.clone(), wanted.clone())
            } else {
                (text.to_lowercase(), wanted.to_lowercase())
            };
            match op {
                CompareOp::Eq => text == wanted,
                CompareOp::Ne => text != wanted,
                CompareOp::Co => text.contains(&wanted),
                CompareOp::Sw => text.starts_with(&wanted),
                CompareOp::Ew => text.ends_with(&wanted),
                CompareOp::Gt => text > wanted,
                CompareOp::Ge => text >= wanted,
                CompareOp::Lt => text < wanted,
                CompareOp::Le => text <= wanted,
            }
        }
        _ => false,
    }
}
