//! Users and groups as SCIM responses show them: the stored document inside the envelope
//! (`schemas`, `id`), with `groups` or `members`, and `meta`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::directory::groups::{Member, StoredGroup};
use crate::directory::store::etag;
use crate::directory::users::StoredUser;
use crate::scim::resource::{Document, Projection};
use crate::scim::schema::ResourceKind;

/// A group a user is in, as `users::groups_of` reads it: (user id, group id, group name).
pub type GroupOf = (String, String, String);

pub fn location(base: &str, kind: ResourceKind, id: &str) -> String {
    format!("{base}/{}/{id}", kind.endpoint())
}

/// A resource's `meta`. Its fields, and [`GroupRef`]'s, are in the order of their names, as a
/// `Value` object keeps them, so that [`user_json`] writes what [`render_user`] renders.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    created: String,
    last_modified: String,
    location: String,
    resource_type: &'static str,
    version: String,
}

impl Meta {
    fn new(
        base: &str,
        kind: ResourceKind,
        id: &str,
        created: &chrono::NaiveDateTime,
        updated: &chrono::NaiveDateTime,
        version: i64,
    ) -> Meta {
        Meta {
            created: crate::time::rfc3339(created),
            last_modified: crate::time::rfc3339(updated),
            location: location(base, kind, id),
            resource_type: kind.name(),
            version: etag(version),
        }
    }

    fn of_user(base: &str, user: &StoredUser) -> Meta {
        let kind = ResourceKind::User;
        Meta::new(
            base,
            kind,
            &user.id,
            &user.created_at,
            &user.updated_at,
            user.version,
        )
    }
}

/// A group in a user's `groups`.
#[derive(Serialize)]
struct GroupRef<'a> {
    #[serde(rename = "$ref")]
    reference: String,
    display: &'a str,
    #[serde(rename = "type")]
    membership: &'static str,
    value: &'a str,
}

impl GroupRef<'_> {
    fn list<'a>(base: &str, groups: impl IntoIterator<Item = &'a GroupOf>) -> Vec<GroupRef<'a>> {
        groups
            .into_iter()
            .map(|(_, id, display)| GroupRef {
                reference: location(base, ResourceKind::Group, id),
                display,
                membership: "direct",
                value: id,
            })
            .collect()
    }
}

fn value_of(shown: impl Serialize) -> Value {
    serde_json::to_value(shown).expect("a response part is a JSON value")
}

fn json_text(shown: &impl Serialize) -> String {
    serde_json::to_string(shown).expect("a response part is a JSON value")
}

/// The `schemas` of a response: the core schema, then each extension the document uses.
fn schemas_of(kind: ResourceKind, has: impl Fn(&str) -> bool) -> Value {
    let mut schemas = vec![kind.core_schema()];
    schemas.extend(
        kind.extensions()
            .iter()
            .map(|(urn, _)| *urn)
            .filter(|urn| has(urn)),
    );
    json!(schemas)
}

fn envelope(kind: ResourceKind, id: &str, document: Document) -> Document {
    let mut out = Document::new();
    out.insert(
        "schemas".into(),
        schemas_of(kind, |urn| document.contains_key(urn)),
    );
    out.insert("id".into(), json!(id));
    out.extend(document);
    out
}

/// A user as returned, given the groups they are in.
pub fn render_user<'a>(
    base: &str,
    user: &StoredUser,
    groups: impl IntoIterator<Item = &'a GroupOf>,
    projection: &Projection,
) -> Value {
    let kind = ResourceKind::User;
    let mut out = envelope(kind, &user.id, user.document());
    let groups = GroupRef::list(base, groups);
    // A user in no group is shown without the attribute.
    if !groups.is_empty() {
        out.insert("groups".into(), value_of(groups));
    }
    out.insert("meta".into(), value_of(Meta::of_user(base, user)));
    Value::Object(projection.apply(kind, out))
}

/// The JSON of [`render_user`] with every attribute (the default projection), byte for byte,
/// written without parsing the stored document into values: its attributes are copied as stored
/// text. That text is what serialising them again would give, since serde_json wrote it from a
/// document whose keys are kept sorted, as the response's are. A page of 100 users spent most of
/// its time parsing documents and serialising them again.
pub fn user_json<'a>(
    base: &str,
    user: &StoredUser,
    groups: impl IntoIterator<Item = &'a GroupOf>,
) -> Vec<u8> {
    let Ok(stored) = serde_json::from_str::<BTreeMap<String, &RawValue>>(&user.document) else {
        // `render_user` reports the damaged document.
        return render_user(base, user, groups, &Projection::default())
            .to_string()
            .into_bytes();
    };
    let kind = ResourceKind::User;
    let schemas = schemas_of(kind, |urn| stored.contains_key(urn)).to_string();
    let id = json!(user.id).to_string();
    let groups = GroupRef::list(base, groups);
    let groups = (!groups.is_empty()).then(|| json_text(&groups));
    let meta = json_text(&Meta::of_user(base, user));
    // Put together as `render_user` puts them: the stored attributes win over `schemas` and
    // `id`, and `groups` and `meta` over them.
    let mut fields: BTreeMap<&str, &str> = BTreeMap::from([("schemas", &*schemas), ("id", &*id)]);
    fields.extend(
        stored
            .iter()
            .map(|(key, value)| (key.as_str(), value.get())),
    );
    if let Some(groups) = &groups {
        fields.insert("groups", groups);
    }
    fields.insert("meta", &meta);
    let mut out = Vec::with_capacity(
        fields
            .iter()
            .map(|(key, value)| key.len() + value.len() + 4)
            .sum(),
    );
    out.push(b'{');
    for (index, (key, value)) in fields.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, key).expect("serialising to memory succeeds");
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
    out
}

pub fn render_member(base: &str, member: &Member) -> Value {
    let kind = if member.member_type == "User" {
        ResourceKind::User
    } else {
        ResourceKind::Group
    };
    let mut shown = json!({ "value": member.member_id, "$ref": location(base, kind, &member.member_id), "type": member.member_type });
    if let Some(display) = &member.display {
        shown["display"] = json!(display);
    }
    shown
}

/// A group as returned; `members` holds membership rows, any group's. With `members` None the
/// attribute is left out (the caller streams it, or the projection excludes it).
pub fn render_group(
    base: &str,
    group: &StoredGroup,
    members: Option<&[Member]>,
    projection: &Projection,
) -> Value {
    let kind = ResourceKind::Group;
    let mut out = envelope(kind, &group.id, group.document());
    if let Some(members) = members {
        let members: Vec<Value> = members
            .iter()
            .filter(|m| m.group_id == group.id)
            .map(|m| render_member(base, m))
            .collect();
        out.insert("members".into(), Value::Array(members));
    }
    let meta = Meta::new(
        base,
        kind,
        &group.id,
        &group.created_at,
        &group.updated_at,
        group.version,
    );
    out.insert("meta".into(), value_of(meta));
    Value::Object(projection.apply(kind, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::normalize;

    fn stored(document: &Value) -> StoredUser {
        let document = normalize(ResourceKind::User, document).expect("a valid user");
        let at =
            |text| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        StoredUser {
            seq: 7,
            id: "0193a1b2-user".into(),
            workspace_id: "ws".into(),
            user_name: "ada@example.com".into(),
            user_name_ci: "ada@example.com".into(),
            external_id: None,
            active: true,
            document: Value::Object(document).to_string(),
            version: 3,
            created_at: at("2026-01-31 09:00:00.123456"),
            updated_at: at("2026-02-01 10:30:59.999"),
        }
    }

    #[test]
    fn a_user_written_from_its_stored_text_is_the_rendered_user_byte_for_byte() {
        let base = "https://idgate.example/scim/v2";
        let in_groups: Vec<GroupOf> = vec![
            (
                "0193a1b2-user".into(),
                "g1".into(),
                "Engineering \"core\"".into(),
            ),
            ("0193a1b2-user".into(), "g2".into(), "Ops / Nuit ☾".into()),
        ];
        let users = [
            json!({ "userName": "ada@example.com" }),
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "userName": "ada@example.com",
                "externalId": "00u\\1\u{7}",
                "active": false,
                "name": { "givenName": "Ada", "familyName": "Lovelace \"Byron\"" },
                "emails": [{ "value": "ada@example.com", "primary": true, "type": "work" }],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "department": "Analytical Engines", "employeeNumber": "1815"
                },
            }),
        ];
        for document in &users {
            let user = stored(document);
            for groups in [&in_groups[..], &[]] {
                let expected = render_user(base, &user, groups, &Projection::default()).to_string();
                let written = String::from_utf8(user_json(base, &user, groups)).unwrap();
                assert_eq!(written, expected);
            }
        }
    }

    #[test]
    fn a_damaged_stored_document_is_rendered_as_render_user_renders_it() {
        let mut user = stored(&json!({ "userName": "ada@example.com" }));
        user.document = "{\"userName\":".into();
        let written = user_json("https://idgate.example/scim/v2", &user, []);
        let value: Value = serde_json::from_slice(&written).expect("JSON all the same");
        assert_eq!(value["id"], "0193a1b2-user");
        assert!(value.get("userName").is_none());
    }
}
