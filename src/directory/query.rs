//! SCIM filters and sorts translated into SQL over the value index and membership rows, so the
//! database does the work: nothing is loaded into memory to be filtered there.

use diesel::sql_types::Text;

use super::values::{Column, attribute_key};
use crate::db::budget::WITHIN_BUDGET;
use crate::db::raw::RawSql;
use crate::scim::error::{ScimError, ScimType};
use crate::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::schema::{Attribute, ResourceKind, Returned, Type};

/// Which resources a query ranges over.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub workspace_id: &'a str,
    pub kind: ResourceKind,
}

impl Scope<'_> {
    /// The outer table, for correlated sort keys.
    fn table(&self) -> &'static str {
        match self.kind {
            ResourceKind::User => "scim_users",
            ResourceKind::Group => "scim_groups",
        }
    }
}

/// What an attribute path reaches in storage.
#[derive(Debug)]
enum Target {
    Id,
    /// An attribute kept in a column of the resource's table rather than in the value index.
    Column(Column),
    Created,
    Modified,
    ResourceType,
    /// Rows of `scim_values`; `sub` is None for "any sub-attribute" (`name pr`).
    Values {
        attribute: String,
        sub: Option<String>,
        leaf: &'static Attribute,
    },
    /// A group's members (on Groups) or a user's groups (on Users), by id.
    Membership,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

/// The top-level attribute a path starts from, and the extension it belongs to.
fn top_attribute(
    kind: ResourceKind,
    path: &AttrPath,
) -> Result<(Option<&'static str>, &'static Attribute), ScimError> {
    kind.top_level(path.urn.as_deref(), &path.name)
        .map_err(invalid)
}

fn resolve(kind: ResourceKind, path: &AttrPath) -> Result<Target, ScimError> {
    let (extension, top) = top_attribute(kind, path)?;
    let sub = path.sub.as_deref();
    match (top.name, sub) {
        ("id", None) => return Ok(Target::Id),
        ("meta", Some(sub)) if sub.eq_ignore_ascii_case("created") => return Ok(Target::Created),
        ("meta", Some(sub)) if sub.eq_ignore_ascii_case("lastModified") => {
            return Ok(Target::Modified);
        }
        ("meta", Some(sub)) if sub.eq_ignore_ascii_case("resourceType") => {
            return Ok(Target::ResourceType);
        }
        ("meta", _) => return Err(invalid(format!("{path} cannot be filtered"))),
        ("members" | "groups", None) => return Ok(Target::Membership),
        ("members" | "groups", Some(sub)) if sub.eq_ignore_ascii_case("value") => {
            return Ok(Target::Membership);
        }
        ("members" | "groups", Some(_)) => {
            return Err(invalid(format!("{path} cannot be filtered; use .value")));
        }
        _ => {}
    }
    if top.returned == Returned::Never {
        return Err(invalid(format!("{path} cannot be filtered")));
    }
    let attribute = attribute_key(extension, top.name);
    if let (None, Some(column)) = (sub, Column::holding(kind, &attribute)) {
        return Ok(Target::Column(column));
    }
    if top.kind != Type::Complex {
        if sub.is_some() {
            return Err(invalid(format!("{} has no sub-attributes", top.name)));
        }
        return Ok(Target::Values {
            attribute,
            sub: Some(String::new()),
            leaf: top,
        });
    }
    let leaf = match sub {
        Some(sub) => top
            .sub_attribute(sub)
            .ok_or_else(|| invalid(format!("unknown attribute {path}")))?,
        None => match top.sub_attribute("value") {
            // `emails co "x"` compares each email's value.
            Some(value) if top.multi_valued => value,
            _ => {
                return Ok(Target::Values {
                    attribute,
                    sub: None,
                    leaf: top,
                });
            }
        },
    };
    Ok(Target::Values {
        attribute,
        sub: Some(leaf.name.to_ascii_lowercase()),
        leaf,
    })
}

/// The condition `filter` puts on the resources of `scope`.
pub fn condition(scope: Scope<'_>, filter: &Filter) -> Result<RawSql, ScimError> {
    let sql = clause(scope, filter)?;
    // One `eq` is how an IdP looks a resource up before every create or update (`userName eq`,
    // `externalId eq`, `displayName eq`); there are as many of its shapes as attributes, so its
    // statement can stay prepared. Other filters' shapes are unbounded.
    let lookup = matches!(
        filter,
        Filter::Compare {
            op: CompareOp::Eq,
            ..
        }
    );
    Ok(if lookup { sql.reusable() } else { sql })
}

fn clause(scope: Scope<'_>, filter: &Filter) -> Result<RawSql, ScimError> {
    match filter {
        Filter::And(left, right) => {
            Ok(binary(clause(scope, left)?, " AND ", clause(scope, right)?))
        }
        Filter::Or(left, right) => Ok(binary(clause(scope, left)?, " OR ", clause(scope, right)?)),
        Filter::Not(inner) => Ok(RawSql::default()
            .sql("NOT (")
            .append(clause(scope, inner)?)
            .sql(")")),
        Filter::Present(path) => Ok(present(scope, &resolve(scope.kind, path)?)),
        Filter::Compare { path, op, value } => {
            compare(scope, &resolve(scope.kind, path)?, path, *op, value)
        }
        Filter::ValuePath { attr, filter } => value_path(scope, attr, filter),
    }
}

fn binary(left: RawSql, operator: &'static str, right: RawSql) -> RawSql {
    RawSql::default()
        .sql("(")
        .append(left)
        .sql(operator)
        .append(right)
        .sql(")")
}

/// `<select> FROM scim_values [v] WHERE <this resource type's rows> AND attribute = ?`; `select`
/// opens a parenthesis that the caller closes after adding its own conditions. The value filter's
/// outer query names its rows `v`, so that conditions on one element can refer to them.
fn values_of(
    scope: Scope<'_>,
    attribute: &str,
    select: &'static str,
    from: &'static str,
) -> RawSql {
    RawSql::default()
        .sql(select)
        .sql(from)
        .sql(" WHERE workspace_id = ")
        .text(scope.workspace_id)
        .sql(" AND resource_type = ")
        .text(scope.kind.name())
        .sql(" AND attribute = ")
        .text(attribute)
        .sql(" AND ")
        .sql(WITHIN_BUDGET)
}

const PLAIN: &str = " FROM scim_values";
const ALIASED: &str = " FROM scim_values v";

fn present(scope: Scope<'_>, target: &Target) -> RawSql {
    match target {
        Target::Id
        | Target::Column(_)
        | Target::Created
        | Target::Modified
        | Target::ResourceType => RawSql::default().sql("1 = 1"),
        Target::Membership => RawSql::default().sql(membership_ids(scope.kind)).sql(")"),
        Target::Values { attribute, sub, .. } => {
            let rows = values_of(scope, attribute, "id IN (SELECT resource_id", PLAIN);
            match sub {
                Some(sub) => rows.sql(" AND sub = ").text(sub.as_str()).sql(")"),
                None => rows.sql(")"),
            }
        }
    }
}

fn membership_ids(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Group => "id IN (SELECT group_id FROM scim_group_members",
        ResourceKind::User => "id IN (SELECT member_id FROM scim_group_members",
    }
}

fn compare(
    scope: Scope<'_>,
    target: &Target,
    path: &AttrPath,
    op: CompareOp,
    value: &CompValue,
) -> Result<RawSql, ScimError> {
    if matches!(value, CompValue::Null) {
        let present = present(scope, target);
        return Ok(match op {
            CompareOp::Ne => present,
            _ => RawSql::default().sql("NOT (").append(present).sql(")"),
        });
    }
    if op == CompareOp::Ne {
        let equal = compare(scope, target, path, CompareOp::Eq, value)?;
        return Ok(RawSql::default().sql("NOT (").append(equal).sql(")"));
    }
    match target {
        Target::Id => {
            let text = string_value(path, value)?;
            Ok(text_comparison(RawSql::default().sql("id"), op, text))
        }
        Target::Column(Column::Active) => {
            let flag = boolean(value)
                .ok_or_else(|| invalid(format!("{path} compares with true or false")))?;
            if op != CompareOp::Eq {
                return Err(invalid(format!("{path} is boolean: use eq, ne or pr")));
            }
            Ok(RawSql::default().sql("active = ").boolean(flag))
        }
        Target::Created | Target::Modified => {
            let column = if matches!(target, Target::Created) {
                "created_at"
            } else {
                "updated_at"
            };
            let CompValue::String(text) = value else {
                return Err(invalid(format!("{path} compares with a dateTime string")));
            };
            let time = crate::time::parse_rfc3339(text).map_err(invalid)?;
            let operator = ordering_operator(op)
                .ok_or_else(|| invalid(format!("{path} supports eq ne gt ge lt le")))?;
            Ok(RawSql::default().sql(column).sql(operator).timestamp(time))
        }
        Target::ResourceType => {
            let matches = op == CompareOp::Eq && string_value(path, value)? == scope.kind.name();
            Ok(RawSql::default().sql(if matches { "1 = 1" } else { "1 = 0" }))
        }
        Target::Membership => {
            if op != CompareOp::Eq {
                return Err(invalid(format!("{path} supports eq, ne and pr")));
            }
            let column = match scope.kind {
                ResourceKind::Group => " WHERE member_id = ",
                ResourceKind::User => " WHERE group_id = ",
            };
            Ok(RawSql::default()
                .sql(membership_ids(scope.kind))
                .sql(column)
                .text(string_value(path, value)?)
                .sql(")"))
        }
        Target::Column(Column::UserName) if op == CompareOp::Eq => {
            // The lookup an IdP makes before every create: one probe of the index on
            // (workspace_id, user_name_ci), whatever the rest of the query says.
            Ok(RawSql::default()
                .sql("(workspace_id = ")
                .text(scope.workspace_id)
                .sql(" AND user_name_ci = ")
                .text(string_value(path, value)?.to_lowercase())
                .sql(")"))
        }
        Target::Column(Column::UserName) => Ok(text_comparison(
            RawSql::default().sql("user_name_ci"),
            op,
            string_value(path, value)?.to_lowercase(),
        )),
        Target::Values {
            attribute,
            sub,
            leaf,
        } => {
            let Some(sub) = sub else {
                return Err(invalid(format!("{path} is complex: name a sub-attribute")));
            };
            let rows = values_of(scope, attribute, "id IN (SELECT resource_id", PLAIN)
                .sql(" AND sub = ")
                .text(sub.as_str())
                .sql(" AND ");
            Ok(rows
                .append(value_comparison(leaf, path, op, value)?)
                .sql(")"))
        }
    }
}

/// The comparison on a `scim_values` row: `value` for case-exact attributes, `value_ci` otherwise.
fn value_comparison(
    leaf: &Attribute,
    path: &AttrPath,
    op: CompareOp,
    value: &CompValue,
) -> Result<RawSql, ScimError> {
    if leaf.kind == Type::Boolean {
        let flag =
            boolean(value).ok_or_else(|| invalid(format!("{path} compares with true or false")))?;
        if op != CompareOp::Eq {
            return Err(invalid(format!("{path} is boolean: use eq, ne or pr")));
        }
        return Ok(RawSql::default().sql("value = ").text(flag.to_string()));
    }
    let text = string_value(path, value)?;
    Ok(if leaf.case_exact && op == CompareOp::Eq {
        // Through the one index on value_ci, then exactly.
        RawSql::default()
            .sql("value_ci = ")
            .text(text.to_lowercase())
            .sql(" AND value = ")
            .text(text)
    } else if leaf.case_exact {
        text_comparison(RawSql::default().sql("value"), op, text)
    } else {
        text_comparison(RawSql::default().sql("value_ci"), op, text.to_lowercase())
    })
}

/// A boolean comparison value; Entra writes them as strings.
fn boolean(value: &CompValue) -> Option<bool> {
    match value {
        CompValue::Bool(flag) => Some(*flag),
        CompValue::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        CompValue::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn string_value(path: &AttrPath, value: &CompValue) -> Result<String, ScimError> {
    match value {
        CompValue::String(text) => Ok(text.clone()),
        CompValue::Number(number) => Ok(number.to_string()),
        _ => Err(invalid(format!("{path} compares with a string"))),
    }
}

fn ordering_operator(op: CompareOp) -> Option<&'static str> {
    Some(match op {
        CompareOp::Eq => " = ",
        CompareOp::Gt => " > ",
        CompareOp::Ge => " >= ",
        CompareOp::Lt => " < ",
        CompareOp::Le => " <= ",
        _ => return None,
    })
}

fn text_comparison(column: RawSql, op: CompareOp, text: String) -> RawSql {
    let escaped = || {
        text.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    };
    let pattern = match op {
        CompareOp::Co => format!("%{}%", escaped()),
        CompareOp::Sw => format!("{}%", escaped()),
        CompareOp::Ew => format!("%{}", escaped()),
        op => {
            return column
                .sql(ordering_operator(op).expect("eq, gt, ge, lt, le order text"))
                .text(text);
        }
    };
    column.sql(" LIKE ").text(pattern).sql(" ESCAPE '\\'")
}

/// `attr[filter]`: some value of `attr` satisfies every condition of `filter` at once.
fn value_path(scope: Scope<'_>, attr: &AttrPath, filter: &Filter) -> Result<RawSql, ScimError> {
    if attr.sub.is_some() {
        return Err(invalid(format!(
            "{attr}: a value filter follows an attribute, not a sub-attribute"
        )));
    }
    // Members have only a value to filter on, so `members[value eq "x"]` is `members.value eq "x"`.
    if let Target::Membership = resolve(scope.kind, attr)? {
        return clause(scope, &relative(filter, attr)?);
    }
    let (extension, top) = top_attribute(scope.kind, attr)?;
    if top.kind != Type::Complex {
        return Err(invalid(format!("{attr} is not a complex attribute")));
    }
    let attribute = attribute_key(extension, top.name);
    Ok(
        values_of(scope, &attribute, "id IN (SELECT v.resource_id", ALIASED)
            .sql(" AND (")
            .append(element_condition(&attribute, top, filter)?)
            .sql("))"),
    )
}

/// Rewrites `value eq "x"` inside `members[...]` as `members.value eq "x"`.
fn relative(filter: &Filter, attr: &AttrPath) -> Result<Filter, ScimError> {
    let within = |path: &AttrPath| AttrPath {
        urn: attr.urn.clone(),
        name: attr.name.clone(),
        sub: Some(path.name.clone()),
    };
    Ok(match filter {
        Filter::Compare { path, op, value } => Filter::Compare {
            path: within(path),
            op: *op,
            value: value.clone(),
        },
        Filter::Present(path) => Filter::Present(within(path)),
        Filter::And(l, r) => {
            Filter::And(Box::new(relative(l, attr)?), Box::new(relative(r, attr)?))
        }
        Filter::Or(l, r) => Filter::Or(Box::new(relative(l, attr)?), Box::new(relative(r, attr)?)),
        Filter::Not(inner) => Filter::Not(Box::new(relative(inner, attr)?)),
        Filter::ValuePath { .. } => return Err(invalid("value filters cannot be nested")),
    })
}

/// A condition on the element `v` of the multi-valued `attribute` (the rows of `scim_values` aliased `v`).
fn element_condition(
    attribute: &str,
    parent: &Attribute,
    filter: &Filter,
) -> Result<RawSql, ScimError> {
    // The element's row for `sub`, found by the primary key from `v`'s: one lookup per element.
    // (A row-value `IN` over the attribute's rows was planned anew per element under an `or`,
    // quadratic in the workspace's size: two such terms took 10 s at 20,000 users.)
    let element_matches = |sub: &Attribute, condition: Option<RawSql>| {
        let rows = RawSql::default()
            .sql("EXISTS (SELECT 1 FROM scim_values e WHERE e.resource_id = v.resource_id")
            .sql(" AND e.attribute = ")
            .text(attribute)
            .sql(" AND e.element = v.element AND e.sub = ")
            .text(sub.name.to_ascii_lowercase());
        match condition {
            Some(condition) => rows.sql(" AND ").append(condition).sql(")"),
            None => rows.sql(")"),
        }
    };
    let sub_attribute = |path: &AttrPath| {
        if path.urn.is_some() || path.sub.is_some() {
            return Err(invalid(format!(
                "{path} is not a sub-attribute of {}",
                parent.name
            )));
        }
        parent
            .sub_attribute(&path.name)
            .ok_or_else(|| invalid(format!("{}.{} is not an attribute", parent.name, path.name)))
    };
    match filter {
        Filter::And(l, r) => Ok(binary(
            element_condition(attribute, parent, l)?,
            " AND ",
            element_condition(attribute, parent, r)?,
        )),
        Filter::Or(l, r) => Ok(binary(
            element_condition(attribute, parent, l)?,
            " OR ",
            element_condition(attribute, parent, r)?,
        )),
        Filter::Not(inner) => Ok(RawSql::default()
            .sql("NOT (")
            .append(element_condition(attribute, parent, inner)?)
            .sql(")")),
        Filter::Present(path) => Ok(element_matches(sub_attribute(path)?, None)),
        Filter::Compare { path, op, value } => {
            let sub = sub_attribute(path)?;
            match (op, value) {
                (CompareOp::Eq, CompValue::Null) => Ok(RawSql::default()
                    .sql("NOT ")
                    .append(element_matches(sub, None))),
                (CompareOp::Ne, CompValue::Null) => Ok(element_matches(sub, None)),
                (CompareOp::Ne, value) => {
                    let equal = value_comparison(sub, path, CompareOp::Eq, value)?;
                    Ok(RawSql::default()
                        .sql("NOT ")
                        .append(element_matches(sub, Some(equal))))
                }
                (op, value) => Ok(element_matches(
                    sub,
                    Some(value_comparison(sub, path, *op, value)?),
                )),
            }
        }
        Filter::ValuePath { .. } => Err(invalid("value filters cannot be nested")),
    }
}

/// A sort key for `sortBy`, nulls (resources without the attribute) last either way.
pub fn sort_key(
    scope: Scope<'_>,
    path: &AttrPath,
) -> Result<(RawSql<Text>, RawSql<Text>), ScimError> {
    let bad_sort = |detail: String| ScimError::bad(ScimType::InvalidValue, detail);
    let target = resolve(scope.kind, path).map_err(|error| bad_sort(error.to_string()))?;
    let key = match target {
        Target::Id => RawSql::default().sql("id"),
        Target::Created => RawSql::default().sql("created_at"),
        Target::Modified => RawSql::default().sql("updated_at"),
        Target::Column(Column::Active) => {
            RawSql::default().sql("CASE WHEN active THEN 'true' ELSE 'false' END")
        }
        Target::Column(Column::UserName) => RawSql::default().sql("user_name_ci"),
        Target::Values {
            attribute,
            sub: Some(sub),
            ..
        } => RawSql::default()
            .sql("(SELECT MIN(s.value_ci) FROM scim_values s WHERE s.resource_id = ")
            .sql(scope.table())
            .sql(".id AND s.attribute = ")
            .text(attribute)
            .sql(" AND s.sub = ")
            .text(sub)
            .sql(")"),
        _ => return Err(bad_sort(format!("cannot sort by {path}"))),
    };
    let missing_last = RawSql::default()
        .sql("CASE WHEN ")
        .append(key.clone())
        .sql(" IS NULL THEN 1 ELSE 0 END");
    Ok((missing_last, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::parse_filter;

    fn check(filter: &str) -> Result<RawSql, ScimError> {
        let scope = Scope {
            workspace_id: "w",
            kind: ResourceKind::User,
        };
        condition(scope, &parse_filter(filter).unwrap())
    }

    #[test]
    fn only_single_lookups_keep_their_statement_prepared() {
        use diesel::query_builder::QueryFragment;
        let backend = crate::db::MultiBackend::Sqlite(diesel::sqlite::Sqlite);
        let kept = |filter: &str| {
            check(filter)
                .unwrap()
                .is_safe_to_cache_prepared(&backend)
                .unwrap()
        };
        for lookup in [
            r#"userName eq "a""#,
            r#"externalId eq "x""#,
            r#"emails.value eq "a""#,
        ] {
            assert!(kept(lookup), "{lookup}");
        }
        // Each connection keeps what it caches, so filters of unbounded shapes must not be.
        for other in [
            r#"userName eq "a" and active eq true"#,
            r#"userName sw "a""#,
            r#"not (userName eq "a")"#,
            r#"emails[type eq "work" and value co "@x"]"#,
        ] {
            assert!(!kept(other), "{other}");
        }
    }

    #[test]
    fn filters_resolve_against_the_schema() {
        for good in [
            r#"userName eq "a""#,
            r#"emails[type eq "work" and value co "@x"]"#,
            r#"emails.value sw "a""#,
            r#"emails co "x""#,
            "name pr",
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m""#,
            r#"meta.lastModified gt "2020-01-01T00:00:00Z""#,
            r#"active eq "True""#,
            r#"groups.value eq "g""#,
            r#"id eq "x" or not (externalId eq null)"#,
        ] {
            assert!(check(good).is_ok(), "{good}: {:?}", check(good).err());
        }
        for bad in [
            r#"favourite eq "x""#,
            r#"name eq "x""#,
            r#"userName.first eq "x""#,
            r#"password eq "x""#,
            r#"active gt true"#,
            r#"active eq "maybe""#,
            r#"meta.created gt "yesterday""#,
            r#"meta.version eq "1""#,
            r#"userName[value eq "x"]"#,
            r#"emails[kind eq "work"]"#,
            r#"groups.display eq "x""#,
            r#"urn:example:ext:thing eq "x""#,
        ] {
            let error = check(bad).expect_err(bad);
            assert!(
                matches!(
                    error,
                    ScimError::BadRequest {
                        scim_type: ScimType::InvalidFilter,
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }
}
