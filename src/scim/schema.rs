//! The SCIM schemas idgate serves (RFC 7643 §4 and §8.7): each attribute with its type, mutability,
//! `returned`, uniqueness and `caseExact`. One definition drives discovery (`/Schemas`), attribute
//! name resolution (names are case-insensitive), value checks, filters and projections.

use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    DateTime,
    Reference,
    Complex,
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
}

#[derive(Debug)]
pub struct Attribute {
    pub name: &'static str,
    pub kind: Type,
    pub multi_valued: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [Attribute],
    pub description: &'static str,
}

const fn attribute(name: &'static str, kind: Type, description: &'static str) -> Attribute {
    Attribute {
        name,
        kind,
        multi_valued: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical_values: &[],
        reference_types: &[],
        sub_attributes: &[],
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    attribute(name, Type::String, description)
}

const fn complex(
    name: &'static str,
    sub_attributes: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    Attribute {
        sub_attributes,
        ..attribute(name, Type::Complex, description)
    }
}

const fn multi(attribute: Attribute) -> Attribute {
    Attribute {
        multi_valued: true,
        ..attribute
    }
}

const fn read_only(attribute: Attribute) -> Attribute {
    Attribute {
        mutability: Mutability::ReadOnly,
        ..attribute
    }
}

const fn case_exact(attribute: Attribute) -> Attribute {
    Attribute {
        case_exact: true,
        ..attribute
    }
}

const fn canonical(attribute: Attribute, values: &'static [&'static str]) -> Attribute {
    Attribute {
        canonical_values: values,
        ..attribute
    }
}

const fn reference(
    name: &'static str,
    types: &'static [&'static str],
    description: &'static str,
) -> Attribute {
    Attribute {
        reference_types: types,
        case_exact: true,
        ..attribute(name, Type::Reference, description)
    }
}

/// The sub-attributes every multi-valued complex attribute such as `emails` has.
macro_rules! plural {
    ($value:expr, $types:expr) => {
        &[
            $value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            canonical(
                string("type", "A label indicating the attribute's function."),
                $types,
            ),
            attribute(
                "primary",
                Type::Boolean,
                "Indicates the primary or preferred value (at most one).",
            ),
        ]
    };
}

pub static USER_ATTRIBUTES: &[Attribute] = &[
    Attribute {
        required: true,
        uniqueness: Uniqueness::Server,
        ..string(
            "userName",
            "Unique identifier for the User, unique per workspace and compared case-insensitively.",
        )
    },
    complex(
        "name",
        &[
            string("formatted", "The full name, formatted for display."),
            string("familyName", "The family name (last name)."),
            string("givenName", "The given name (first name)."),
            string("middleName", "The middle name(s)."),
            string("honorificPrefix", "The honorific prefix(es), e.g. Ms."),
            string("honorificSuffix", "The honorific suffix(es), e.g. III."),
        ],
        "The components of the user's real name.",
    ),
    string(
        "displayName",
        "The name of the User, suitable for display to end-users.",
    ),
    string("nickName", "The casual way to address the user."),
    reference(
        "profileUrl",
        &["external"],
        "A fully qualified URL pointing to the user's online profile.",
    ),
    string("title", "The user's title, such as \"Vice President\"."),
    string(
        "userType",
        "The relationship between the organization and the user.",
    ),
    string(
        "preferredLanguage",
        "The user's preferred written or spoken language.",
    ),
    string(
        "locale",
        "The user's default location, for localizing items such as currency.",
    ),
    string("timezone", "The user's time zone in IANA format."),
    attribute(
        "active",
        Type::Boolean,
        "The user's administrative status; false removes their access to the workspace.",
    ),
    Attribute {
        mutability: Mutability::WriteOnly,
        returned: Returned::Never,
        case_exact: true,
        ..string(
            "password",
            "Accepted for compatibility and never stored or returned: sign-in is by SAML.",
        )
    },
    multi(complex(
        "emails",
        plural!(
            string("value", "Email address for the user."),
            &["work", "home", "other"]
        ),
        "Email addresses for the user.",
    )),
    multi(complex(
        "phoneNumbers",
        plural!(
            string("value", "Phone number of the user."),
            &["work", "home", "mobile", "fax", "pager", "other"]
        ),
        "Phone numbers for the user.",
    )),
    multi(complex(
        "ims",
        plural!(
            string("value", "Instant messaging address for the user."),
            &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
        ),
        "Instant messaging addresses for the user.",
    )),
    multi(complex(
        "photos",
        plural!(
            reference("value", &["external"], "URL of a photo of the user."),
            &["photo", "thumbnail"]
        ),
        "URLs of photos of the user.",
    )),
    multi(complex(
        "addresses",
        &[
            string(
                "formatted",
                "The full mailing address, formatted for display.",
            ),
            string("streetAddress", "The full street address component."),
            string("locality", "The city or locality component."),
            string("region", "The state or region component."),
            string("postalCode", "The zip code or postal code component."),
            string("country", "The country name component."),
            canonical(
                string("type", "A label indicating the attribute's function."),
                &["work", "home", "other"],
            ),
            attribute(
                "primary",
                Type::Boolean,
                "Indicates the primary or preferred address (at most one).",
            ),
        ],
        "A physical mailing address for this user.",
    )),
    read_only(multi(complex(
        "groups",
        &[
            read_only(case_exact(string(
                "value",
                "The identifier of the user's group.",
            ))),
            read_only(reference("$ref", &["Group"], "The URI of the group.")),
            read_only(string("display", "The display name of the group.")),
            read_only(canonical(
                string("type", "How the membership was derived."),
                &["direct"],
            )),
        ],
        "The groups the user belongs to, computed from group memberships; change them through Groups.",
    ))),
    multi(complex(
        "entitlements",
        plural!(string("value", "The value of an entitlement."), &[]),
        "Entitlements of the user.",
    )),
    multi(complex(
        "roles",
        plural!(string("value", "The value of a role."), &[]),
        "Roles of the user, as sent by the IdP.",
    )),
    multi(complex(
        "x509Certificates",
        plural!(
            attribute("value", Type::Binary, "The value of an X.509 certificate."),
            &[]
        ),
        "X.509 certificates issued to the user.",
    )),
];

pub static ENTERPRISE_ATTRIBUTES: &[Attribute] = &[
    string(
        "employeeNumber",
        "Numeric or alphanumeric identifier assigned to a person.",
    ),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex(
        "manager",
        &[
            case_exact(string(
                "value",
                "The id of the SCIM resource representing the user's manager.",
            )),
            reference(
                "$ref",
                &["User"],
                "The URI of the SCIM resource representing the user's manager.",
            ),
            read_only(string(
                "displayName",
                "The displayName of the user's manager.",
            )),
        ],
        "The user's manager.",
    ),
];

pub static GROUP_ATTRIBUTES: &[Attribute] = &[
    Attribute {
        required: true,
        ..string("displayName", "A human-readable name for the Group.")
    },
    multi(complex(
        "members",
        &[
            Attribute {
                mutability: Mutability::Immutable,
                ..case_exact(string("value", "Identifier of the member."))
            },
            Attribute {
                mutability: Mutability::Immutable,
                ..reference("$ref", &["User", "Group"], "The URI of the member.")
            },
            Attribute {
                mutability: Mutability::Immutable,
                ..canonical(
                    string("type", "The type of the member."),
                    &["User", "Group"],
                )
            },
        ],
        "A list of members of the Group.",
    )),
];

static USER_EXTENSIONS: &[(&str, &[Attribute])] = &[(ENTERPRISE_SCHEMA, ENTERPRISE_ATTRIBUTES)];

/// The attributes every resource has (RFC 7643 §3.1), resolved before the schema's own.
pub static COMMON_ATTRIBUTES: &[Attribute] = &[
    Attribute {
        returned: Returned::Always,
        uniqueness: Uniqueness::Server,
        ..read_only(case_exact(string(
            "id",
            "Unique identifier for the resource, assigned by the service.",
        )))
    },
    case_exact(string(
        "externalId",
        "An identifier for the resource as defined by the provisioning client.",
    )),
    read_only(complex(
        "meta",
        &[
            read_only(case_exact(string(
                "resourceType",
                "The name of the resource type.",
            ))),
            read_only(attribute(
                "created",
                Type::DateTime,
                "When the resource was added.",
            )),
            read_only(attribute(
                "lastModified",
                Type::DateTime,
                "When the resource was last changed.",
            )),
            read_only(reference("location", &["uri"], "The URI of the resource.")),
            read_only(case_exact(string(
                "version",
                "The version (weak ETag) of the resource.",
            ))),
        ],
        "Resource metadata.",
    )),
];

/// A resource type: its core schema and extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }

    fn core_attributes(self) -> &'static [Attribute] {
        match self {
            ResourceKind::User => USER_ATTRIBUTES,
            ResourceKind::Group => GROUP_ATTRIBUTES,
        }
    }

    pub fn extensions(self) -> &'static [(&'static str, &'static [Attribute])] {
        match self {
            ResourceKind::User => USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }

    /// Finds a top-level attribute: `userName`, `name`, or an extension's attribute given with its
    /// schema URN. `schema` is None for the core schema and common attributes.
    pub fn attribute(self, schema: Option<&str>, name: &str) -> Option<&'static Attribute> {
        match schema {
            None => find(COMMON_ATTRIBUTES, name).or_else(|| find(self.core_attributes(), name)),
            Some(urn) if urn.eq_ignore_ascii_case(self.core_schema()) => {
                find(self.core_attributes(), name)
            }
            Some(urn) => self
                .extensions()
                .iter()
                .find(|(id, _)| id.eq_ignore_ascii_case(urn))
                .and_then(|(_, attributes)| find(attributes, name)),
        }
    }

    /// Resolves the start of an attribute path (`[urn:]name`) to the extension holding it (None for
    /// the core schema) and the top-level attribute; the error says what is unknown.
    pub fn top_level(
        self,
        urn: Option<&str>,
        name: &str,
    ) -> Result<(Option<&'static str>, &'static Attribute), String> {
        let extension = match urn {
            Some(urn) if urn.eq_ignore_ascii_case(self.core_schema()) => None,
            Some(urn) => Some(
                self.extension(urn)
                    .ok_or_else(|| format!("unknown schema {urn}"))?,
            ),
            None => None,
        };
        let attribute = self
            .attribute(extension.or(urn), name)
            .ok_or_else(|| match urn {
                Some(urn) => format!("unknown attribute {urn}:{name}"),
                None => format!("unknown attribute {name}"),
            })?;
        Ok((extension, attribute))
    }

    /// The extension URN `urn` names, in its canonical spelling.
    pub fn extension(self, urn: &str) -> Option<&'static str> {
        self.extensions()
            .iter()
            .map(|(id, _)| *id)
            .find(|id| id.eq_ignore_ascii_case(urn))
    }
}

/// Attribute names are case-insensitive (RFC 7643 §2.1).
pub fn find(attributes: &'static [Attribute], name: &str) -> Option<&'static Attribute> {
    attributes
        .iter()
        .find(|attribute| attribute.name.eq_ignore_ascii_case(name))
}

impl Attribute {
    pub fn sub_attribute(&self, name: &str) -> Option<&'static Attribute> {
        find(self.sub_attributes, name)
    }

    fn to_json(&self) -> Value {
        let mut value = json!({
            "name": self.name,
            "type": match self.kind {
                Type::String => "string",
                Type::Boolean => "boolean",
                Type::DateTime => "dateTime",
                Type::Reference => "reference",
                Type::Complex => "complex",
                Type::Binary => "binary",
            },
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
            },
            "uniqueness": match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
            },
        });
        if !self.canonical_values.is_empty() {
            value["canonicalValues"] = json!(self.canonical_values);
        }
        if !self.reference_types.is_empty() {
            value["referenceTypes"] = json!(self.reference_types);
        }
        if !self.sub_attributes.is_empty() {
            value["subAttributes"] =
                Value::Array(self.sub_attributes.iter().map(Attribute::to_json).collect());
        }
        value
    }
}

/// The `/Schemas` documents, with `meta.location` under `base` (`{base_url}/scim/v2`).
pub fn schema_documents(base: &str) -> Vec<Value> {
    let document = |id: &str, name: &str, description: &str, attributes: &[Attribute]| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attributes.iter().map(Attribute::to_json).collect::<Vec<_>>(),
            "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
        })
    };
    vec![
        document(USER_SCHEMA, "User", "User Account", USER_ATTRIBUTES),
        document(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            "Enterprise User",
            ENTERPRISE_ATTRIBUTES,
        ),
        document(GROUP_SCHEMA, "Group", "Group", GROUP_ATTRIBUTES),
    ]
}

/// The `/ResourceTypes` documents.
pub fn resource_type_documents(base: &str) -> Vec<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .map(|kind| {
            let extensions: Vec<Value> =
                kind.extensions().iter().map(|(id, _)| json!({ "schema": id, "required": false })).collect();
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": kind.name(),
                "name": kind.name(),
                "endpoint": format!("/{}", kind.endpoint()),
                "description": format!("{} resources", kind.name()),
                "schema": kind.core_schema(),
                "schemaExtensions": extensions,
                "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", kind.name()) },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_resolve_case_insensitively_and_by_urn() {
        let user = ResourceKind::User;
        assert_eq!(user.attribute(None, "USERNAME").unwrap().name, "userName");
        assert_eq!(
            user.attribute(None, "id").unwrap().returned,
            Returned::Always
        );
        assert!(
            user.attribute(Some(USER_SCHEMA), "emails")
                .unwrap()
                .multi_valued
        );
        let manager = user
            .attribute(Some(&ENTERPRISE_SCHEMA.to_lowercase()), "Manager")
            .unwrap();
        assert_eq!(manager.sub_attribute("VALUE").unwrap().name, "value");
        assert!(
            user.attribute(None, "employeeNumber").is_none(),
            "extension attributes need their URN"
        );
        assert!(
            ResourceKind::Group
                .attribute(Some(ENTERPRISE_SCHEMA), "department")
                .is_none()
        );
        assert_eq!(
            user.attribute(None, "password").unwrap().returned,
            Returned::Never
        );
    }

    #[test]
    fn discovery_documents_describe_every_attribute() {
        let schemas = schema_documents("http://x/scim/v2");
        assert_eq!(schemas.len(), 3);
        let user = &schemas[0];
        let user_name = &user["attributes"][0];
        assert_eq!(user_name["name"], "userName");
        assert_eq!(
            (
                user_name["uniqueness"].as_str(),
                user_name["caseExact"].as_bool()
            ),
            (Some("server"), Some(false))
        );
        let emails = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "emails")
            .unwrap();
        assert_eq!(emails["subAttributes"].as_array().unwrap().len(), 4);
        let types = resource_type_documents("http://x/scim/v2");
        assert_eq!(types[0]["schemaExtensions"][0]["schema"], ENTERPRISE_SCHEMA);
        assert_eq!(types[1]["endpoint"], "/Groups");
    }
}
