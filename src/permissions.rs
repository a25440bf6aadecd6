//! The vocabulary of the access model and the seed's Role Permissions Matrix, as data.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Names a value of one of the enums below, for the error when a name is unknown.
macro_rules! wire_names {
    ($type:ident, $what:literal, { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            pub const ALL: &'static [$type] = &[$($type::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($type::$variant => $name),*
                }
            }
        }

        impl FromStr for $type {
            type Err = String;

            fn from_str(name: &str) -> Result<Self, String> {
                match name {
                    $($name => Ok($type::$variant),)*
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}; one of: {}"),
                        name,
                        [$($name),*].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = String::deserialize(deserializer)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Owner,
    Admin,
    Member,
    ReadOnly,
}

wire_names!(Role, "role", {
    Owner => "owner",
    Admin => "admin",
    Member => "member",
    ReadOnly => "read-only",
});

/// One action per row of the seed's Role Permissions Matrix; viewing is split into sources and
/// destinations, and tracking plans into editing and publishing to production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    WorkspaceView,
    SourcesView,
    DestinationsView,
    SourcesCreate,
    SourcesEdit,
    SourcesDelete,
    DestinationsCreate,
    DestinationsEdit,
    DestinationsDelete,
    TeamManage,
    SettingsModify,
    BillingManage,
    OwnershipTransfer,
    TrackingPlansManage,
    TrackingPlansPublish,
    FunctionsCreate,
    TokensManage,
}

wire_names!(Action, "action", {
    WorkspaceView => "workspace.view",
    SourcesView => "sources.view",
    DestinationsView => "destinations.view",
    SourcesCreate => "sources.create",
    SourcesEdit => "sources.edit",
    SourcesDelete => "sources.delete",
    DestinationsCreate => "destinations.create",
    DestinationsEdit => "destinations.edit",
    DestinationsDelete => "destinations.delete",
    TeamManage => "team.manage",
    SettingsModify => "settings.modify",
    BillingManage => "billing.manage",
    OwnershipTransfer => "ownership.transfer",
    TrackingPlansManage => "tracking_plans.manage",
    TrackingPlansPublish => "tracking_plans.publish",
    FunctionsCreate => "functions.create",
    TokensManage => "tokens.manage",
});

impl Role {
    /// The Role Permissions Matrix. `tracking_plan_approval` is the workspace setting under which
    /// a Member's tracking-plan changes need approval before they reach production.
    pub fn allows(self, action: Action, tracking_plan_approval: bool) -> bool {
        use Action::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(action, BillingManage | OwnershipTransfer),
            Role::Member => match action {
                WorkspaceView | SourcesView | DestinationsView | SourcesCreate | SourcesEdit
                | DestinationsCreate | DestinationsEdit | TrackingPlansManage | FunctionsCreate => {
                    true
                }
                TrackingPlansPublish => !tracking_plan_approval,
                _ => false,
            },
            Role::ReadOnly => matches!(action, WorkspaceView | SourcesView | DestinationsView),
        }
    }

    /// The level a role has on a resource no grant reaches.
    pub fn default_level(self) -> Level {
        match self {
            Role::Owner | Role::Admin => Level::FullAccess,
            Role::Member => Level::ReadWrite,
            Role::ReadOnly => Level::ReadOnly,
        }
    }
}

impl Action {
    /// The scope an API token needs for the action; None for what only a person may do.
    pub fn token_scope(self) -> Option<Scope> {
        use Action::*;
        Some(match self {
            WorkspaceView => Scope::WorkspaceRead,
            SourcesView | DestinationsView => Scope::SourcesRead,
            SourcesCreate | SourcesEdit | SourcesDelete | DestinationsCreate | DestinationsEdit
            | DestinationsDelete | FunctionsCreate => Scope::SourcesWrite,
            TeamManage | SettingsModify => Scope::WorkspaceWrite,
            TrackingPlansManage | TrackingPlansPublish => Scope::TrackingPlanWrite,
            TokensManage => Scope::TokensWrite,
            BillingManage | OwnershipTransfer => return None,
        })
    }

    /// For an action on one resource: the kind of resource it takes and the level it needs there.
    /// Creating a destination is asked of the source it will be connected to.
    pub fn on_resource(self) -> Option<(ResourceKind, Level)> {
        use Action::*;
        Some(match self {
            SourcesView => (ResourceKind::Source, Level::ReadOnly),
            SourcesEdit => (ResourceKind::Source, Level::ReadWrite),
            SourcesDelete => (ResourceKind::Source, Level::FullAccess),
            DestinationsCreate => (ResourceKind::Source, Level::ReadWrite),
            DestinationsView => (ResourceKind::Destination, Level::ReadOnly),
            DestinationsEdit => (ResourceKind::Destination, Level::ReadWrite),
            DestinationsDelete => (ResourceKind::Destination, Level::FullAccess),
            _ => return None,
        })
    }
}

/// A resource-level permission, ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    NoAccess,
    ReadOnly,
    ReadWrite,
    FullAccess,
}

wire_names!(Level, "level", {
    NoAccess => "no_access",
    ReadOnly => "read_only",
    ReadWrite => "read_write",
    FullAccess => "full_access",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    Source,
    Destination,
    Warehouse,
    Space,
    TrackingPlan,
    Function,
}

wire_names!(ResourceKind, "resource kind", {
    Source => "source",
    Destination => "destination",
    Warehouse => "warehouse",
    Space => "space",
    TrackingPlan => "tracking_plan",
    Function => "function",
});

impl ResourceKind {
    /// Labels go on sources and spaces, as the seed has it.
    pub fn takes_labels(self) -> bool {
        matches!(self, ResourceKind::Source | ResourceKind::Space)
    }

    /// The token scopes that read and change resources of this kind.
    pub fn scopes(self) -> (Scope, Scope) {
        match self {
            ResourceKind::TrackingPlan => (Scope::TrackingPlanRead, Scope::TrackingPlanWrite),
            _ => (Scope::SourcesRead, Scope::SourcesWrite),
        }
    }
}

/// A `key:value` label such as `environment:production`. Keys and values are 1 to 63 characters of
/// letters, digits and `-_.`; keys are lower-cased so that `Environment` and `environment` agree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Label(String);

impl Label {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Label {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let part_ok = |part: &str| {
            (1..=63).contains(&part.len())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match raw.split_once(':') {
            Some((key, value)) if part_ok(key) && part_ok(value) => {
                Ok(Label(format!("{}:{value}", key.to_ascii_lowercase())))
            }
            _ => Err(format!(
                "label {raw:?} must be key:value, each 1 to 63 letters, digits, '-', '_' or '.'"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "scim")]
    Scim,
    #[serde(rename = "workspace:read")]
    WorkspaceRead,
    #[serde(rename = "workspace:write")]
    WorkspaceWrite,
    #[serde(rename = "sources:read")]
    SourcesRead,
    #[serde(rename = "sources:write")]
    SourcesWrite,
    #[serde(rename = "tracking_plan:read")]
    TrackingPlanRead,
    #[serde(rename = "tracking_plan:write")]
    TrackingPlanWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "tokens:write")]
    TokensWrite,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Scim,
        Scope::WorkspaceRead,
        Scope::WorkspaceWrite,
        Scope::SourcesRead,
        Scope::SourcesWrite,
        Scope::TrackingPlanRead,
        Scope::TrackingPlanWrite,
        Scope::AuditRead,
        Scope::TokensWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Scim => "scim",
            Scope::WorkspaceRead => "workspace:read",
            Scope::WorkspaceWrite => "workspace:write",
            Scope::SourcesRead => "sources:read",
            Scope::SourcesWrite => "sources:write",
            Scope::TrackingPlanRead => "tracking_plan:read",
            Scope::TrackingPlanWrite => "tracking_plan:write",
            Scope::AuditRead => "audit:read",
            Scope::TokensWrite => "tokens:write",
        }
    }

    pub fn parse(raw: &str) -> Result<Scope, ScopeError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == raw)
            .ok_or_else(|| ScopeError::Unknown(raw.to_owned()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-empty set of scopes, written `scim,audit:read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    pub fn from_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, ScopeError> {
        let scopes = names
            .into_iter()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Scope::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if scopes.is_empty() {
            return Err(ScopeError::None);
        }
        Ok(Scopes(scopes))
    }

    /// The scopes a person's roles give them on the admin API; unlike a token's, possibly none.
    pub fn held_by_person(roles: &[Role], tracking_plan_approval: bool) -> Scopes {
        Scopes(
            Scope::ALL
                .into_iter()
                .filter(|scope| {
                    let actions = scope.person_actions();
                    !actions.is_empty()
                        && actions.iter().all(|action| {
                            roles
                                .iter()
                                .any(|role| role.allows(*action, tracking_plan_approval))
                        })
                })
                .collect(),
        )
    }

    pub fn parse(comma_separated: &str) -> Result<Scopes, ScopeError> {
        Scopes::from_list(comma_separated.split(','))
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn intersection(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).copied().collect())
    }

    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl Scope {
    /// What a person's roles must allow to act with this scope through a session: the actions of
    /// the seed's matrix the scope's endpoints perform. SCIM is for IdPs, never for a person.
    fn person_actions(self) -> &'static [Action] {
        match self {
            Scope::Scim => &[],
            Scope::WorkspaceRead | Scope::TrackingPlanRead => &[Action::WorkspaceView],
            Scope::WorkspaceWrite => &[Action::TeamManage, Action::SettingsModify],
            Scope::SourcesRead => &[Action::SourcesView],
            Scope::SourcesWrite => &[Action::SourcesCreate],
            Scope::TrackingPlanWrite => &[Action::TrackingPlansManage],
            Scope::AuditRead => &[Action::TeamManage],
            Scope::TokensWrite => &[Action::TokensManage],
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// A list of scopes that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "unknown scope {0:?}; scopes are: scim, workspace:read, workspace:write, sources:read, sources:write, tracking_plan:read, tracking_plan:write, audit:read, tokens:write"
    )]
    Unknown(String),
    #[error("a token needs at least one scope")]
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_in_a_stable_order() {
        let scopes = Scopes::parse("audit:read, scim,scim").unwrap();
        assert_eq!(scopes.to_string(), "scim,audit:read");
        assert!(scopes.contains(Scope::Scim) && !scopes.contains(Scope::TokensWrite));
        assert!(matches!(Scopes::parse("scim,admin"), Err(ScopeError::Unknown(s)) if s == "admin"));
        assert!(matches!(Scopes::parse(" , "), Err(ScopeError::None)));
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()).unwrap(), scope);
            assert_eq!(serde_json::to_value(scope).unwrap(), scope.as_str());
        }
    }

    /// The seed's Role Permissions Matrix, row by row: Owner, Admin, Member, Read-Only.
    const MATRIX: &[(&str, [bool; 4])] = &[
        ("workspace.view", [true, true, true, true]),
        ("sources.view", [true, true, true, true]),
        ("destinations.view", [true, true, true, true]),
        ("sources.create", [true, true, true, false]),
        ("sources.edit", [true, true, true, false]),
        ("sources.delete", [true, true, false, false]),
        ("destinations.create", [true, true, true, false]),
        ("destinations.edit", [true, true, true, false]),
        ("destinations.delete", [true, true, false, false]),
        ("team.manage", [true, true, false, false]),
        ("settings.modify", [true, true, false, false]),
        ("billing.manage", [true, false, false, false]),
        ("ownership.transfer", [true, false, false, false]),
        ("tracking_plans.manage", [true, true, true, false]),
        ("tracking_plans.publish", [true, true, false, false]),
        ("functions.create", [true, true, true, false]),
        ("tokens.manage", [true, true, false, false]),
    ];

    #[test]
    fn the_role_matrix_is_the_seeds() {
        assert_eq!(MATRIX.len(), Action::ALL.len(), "every action has a row");
        let roles = [Role::Owner, Role::Admin, Role::Member, Role::ReadOnly];
        for (action, expected) in MATRIX {
            let action: Action = action.parse().unwrap();
            for (role, allowed) in roles.iter().zip(expected) {
                assert_eq!(role.allows(action, true), *allowed, "{role} {action}");
            }
        }
    }

    #[test]
    fn members_publish_tracking_plans_when_the_workspace_needs_no_approval() {
        assert!(!Role::Member.allows(Action::TrackingPlansPublish, true));
        assert!(Role::Member.allows(Action::TrackingPlansPublish, false));
        assert!(!Role::ReadOnly.allows(Action::TrackingPlansPublish, false));
    }

    #[test]
    fn names_round_trip_and_unknown_names_say_what_is_allowed() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>().unwrap(), *action);
        }
        let error = "sources.launch".parse::<Action>().unwrap_err();
        assert!(error.contains("sources.view"), "{error}");
        assert_eq!("read-only".parse::<Role>().unwrap(), Role::ReadOnly);
    }

    #[test]
    fn labels_are_key_value_with_lower_case_keys() {
        assert_eq!(
            "Environment:production".parse::<Label>().unwrap().as_str(),
            "environment:production"
        );
        for bad in ["production", ":x", "x:", "a:b:c", "env:prod uction", ""] {
            assert!(bad.parse::<Label>().is_err(), "{bad}");
        }
    }
}
