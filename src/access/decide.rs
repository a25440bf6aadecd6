//! Effective permissions and authorization decisions, computed from a loaded [`Principal`] without
//! touching the database, so that one load answers many checks.
//!
//! The rule:
//! - A person's roles are the union of their direct roles and the roles mapped to every IdP group
//!   they belong to. A deactivated member, or one with no role, may do nothing.
//! - Without a resource, an action is allowed when any of the roles allows it in the matrix.
//! - On a resource, Owner and Admin have Full Access. Otherwise the level is the highest of all
//!   unexpired grants that reach the person (to them or to one of their groups; on the resource,
//!   or on a label it carries; for a destination, also on its source). With no grant at all the
//!   highest default of their roles applies (Member: Read & Write, Read-Only: Read Only). So a
//!   direct No Access takes the default away, yet a group or label grant still raises the level,
//!   because roles and grants add up. For source and destination actions on a resource, that
//!   level decides, not the matrix.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::permissions::Scopes;
use crate::permissions::{Action, Label, Level, ResourceKind, Role};

/// Where a role comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum RoleSource {
    Direct,
    Group { group: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    pub role: Role,
    #[serde(flatten)]
    pub source: RoleSource,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum GrantSubject {
    Member(String),
    /// An IdP group, by lower-case name.
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantTarget {
    Resource(String),
    Label(Label),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub id: String,
    pub subject: GrantSubject,
    pub target: GrantTarget,
    pub level: Level,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub expires_at: Option<NaiveDateTime>,
    pub justification: Option<String>,
    pub approver: Option<String>,
    pub review_date: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: NaiveDateTime,
}

impl Grant {
    pub fn is_live(&self, now: NaiveDateTime) -> bool {
        self.expires_at.is_none_or(|expiry| expiry > now)
    }

    fn reaches(&self, resource: &Resource) -> bool {
        match &self.target {
            GrantTarget::Resource(id) => *id == resource.id,
            GrantTarget::Label(label) => resource.labels.contains(label),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resource {
    pub id: String,
    pub kind: ResourceKind,
    pub name: String,
    /// The source a destination is connected to.
    pub source_id: Option<String>,
    pub labels: Vec<Label>,
}

/// A person in one workspace, with everything decisions about them need.
#[derive(Debug, Clone)]
pub struct Principal {
    pub member_id: String,
    pub user_name: String,
    pub active: bool,
    pub roles: Vec<RoleAssignment>,
    /// The grants to this person and to their groups, expired ones included (decisions skip them).
    pub grants: Vec<Grant>,
}

/// A resource's level for a person and the grants that set it (none when a role's default did).
#[derive(Debug, Clone, Serialize)]
pub struct Effective<'a> {
    pub level: Level,
    pub basis: String,
    pub grants: Vec<&'a Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Decision {
    fn new(allowed: bool, reason: String) -> Self {
        Decision { allowed, reason }
    }
}

/// An action asked of a resource of the wrong kind (`sources.edit` on a destination).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} applies to a {expected}, and {resource} is a {actual}")]
pub struct WrongKind {
    pub action: Action,
    pub expected: ResourceKind,
    pub resource: String,
    pub actual: ResourceKind,
}

/// A resource with the source it is connected to, if any: a destination's grants include its source's.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub resource: &'a Resource,
    pub source: Option<&'a Resource>,
}

impl<'a> Target<'a> {
    /// A resource with its source, if it has one, found by `find`.
    pub fn with_source(
        resource: &'a Resource,
        find: impl Fn(&str) -> Option<&'a Resource>,
    ) -> Self {
        Target {
            resource,
            source: resource.source_id.as_deref().and_then(find),
        }
    }
}

impl Principal {
    fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|assignment| assignment.role == role)
    }

    /// The level this person has on a resource, and why.
    pub fn level_on<'a>(&'a self, target: Target<'_>, now: NaiveDateTime) -> Effective<'a> {
        if !self.active {
            return Effective {
                level: Level::NoAccess,
                basis: "the member is deactivated".to_owned(),
                grants: Vec::new(),
            };
        }
        if let Some(role) = [Role::Owner, Role::Admin]
            .into_iter()
            .find(|role| self.has_role(*role))
        {
            return Effective {
                level: Level::FullAccess,
                basis: format!("role {role} has full access everywhere"),
                grants: Vec::new(),
            };
        }
        let reaching: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|grant| grant.is_live(now))
            .filter(|grant| {
                grant.reaches(target.resource) || target.source.is_some_and(|s| grant.reaches(s))
            })
            .collect();
        if let Some(level) = reaching.iter().map(|grant| grant.level).max() {
            return Effective {
                level,
                basis: "the highest of the grants that reach the member".to_owned(),
                grants: reaching,
            };
        }
        match self.roles.iter().map(|a| a.role).min() {
            Some(role) => Effective {
                level: role.default_level(),
                basis: format!("no grant reaches it: the default of role {role}"),
                grants: Vec::new(),
            },
            None => Effective {
                level: Level::NoAccess,
                basis: "the member has no role".to_owned(),
                grants: Vec::new(),
            },
        }
    }

    pub fn decide(
        &self,
        action: Action,
        target: Option<Target<'_>>,
        tracking_plan_approval: bool,
        now: NaiveDateTime,
    ) -> Result<Decision, WrongKind> {
        let on_resource = resource_requirement(action, target)?;
        if !self.active {
            return Ok(Decision::new(false, "the member is deactivated".to_owned()));
        }
        if let Some((target, needed)) = on_resource {
            let effective = self.level_on(target, now);
            let allowed = effective.level >= needed;
            let grants: Vec<&str> = effective.grants.iter().map(|g| g.id.as_str()).collect();
            let from_grants = if grants.is_empty() {
                String::new()
            } else {
                format!(" (grants {})", grants.join(", "))
            };
            return Ok(Decision::new(
                allowed,
                format!(
                    "{} on {} {:?}: {}{from_grants}; {action} needs {needed}",
                    effective.level, target.resource.kind, target.resource.name, effective.basis
                ),
            ));
        }
        let allowing = self
            .roles
            .iter()
            .find(|assignment| assignment.role.allows(action, tracking_plan_approval));
        Ok(match allowing {
            Some(assignment) => Decision::new(
                true,
                format!(
                    "role {} ({}) allows {action}",
                    assignment.role,
                    describe(&assignment.source)
                ),
            ),
            None if self.roles.is_empty() => Decision::new(
                false,
                "the member has no role: no direct role and no mapped group".to_owned(),
            ),
            None => {
                let roles: Vec<String> = self.roles.iter().map(|a| a.role.to_string()).collect();
                Decision::new(
                    false,
                    format!("none of the roles {} allows {action}", roles.join(", ")),
                )
            }
        })
    }
}

fn describe(source: &RoleSource) -> String {
    match source {
        RoleSource::Direct => "assigned directly".to_owned(),
        RoleSource::Group { group } => format!("through group {group}"),
    }
}

/// For an action that a resource's level decides, the resource and the level needed.
fn resource_requirement(
    action: Action,
    target: Option<Target<'_>>,
) -> Result<Option<(Target<'_>, Level)>, WrongKind> {
    let (Some(target), Some((expected, needed))) = (target, action.on_resource()) else {
        return Ok(None);
    };
    if target.resource.kind != expected {
        return Err(WrongKind {
            action,
            expected,
            resource: target.resource.id.clone(),
            actual: target.resource.kind,
        });
    }
    Ok(Some((target, needed)))
}

/// A decision for an API token: its scopes stand in for roles; it has no resource-level grants.
pub fn decide_for_token(
    scopes: &Scopes,
    action: Action,
    target: Option<Target<'_>>,
) -> Result<Decision, WrongKind> {
    resource_requirement(action, target)?;
    Ok(match action.token_scope() {
        Some(scope) if scopes.contains(scope) => {
            Decision::new(true, format!("the token holds scope {scope}"))
        }
        Some(scope) => Decision::new(false, format!("{action} needs scope {scope}")),
        None => Decision::new(false, format!("only a person may {action}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 1, 15)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
    }

    fn resource(id: &str, kind: ResourceKind, labels: &[&str]) -> Resource {
        Resource {
            id: id.to_owned(),
            kind,
            name: id.to_owned(),
            source_id: None,
            labels: labels.iter().map(|l| l.parse().unwrap()).collect(),
        }
    }

    fn grant(subject: GrantSubject, target: GrantTarget, level: Level) -> Grant {
        Grant {
            id: format!("g-{level}"),
            subject,
            target,
            level,
            expires_at: None,
            justification: None,
            approver: None,
            review_date: None,
            created_at: at(0),
        }
    }

    fn person(roles: &[(Role, RoleSource)], grants: Vec<Grant>) -> Principal {
        Principal {
            member_id: "m1".to_owned(),
            user_name: "dev@example.com".to_owned(),
            active: true,
            roles: roles
                .iter()
                .map(|(role, source)| RoleAssignment {
                    role: *role,
                    source: source.clone(),
                })
                .collect(),
            grants,
        }
    }

    fn level(principal: &Principal, resource: &Resource, source: Option<&Resource>) -> Level {
        principal
            .level_on(Target { resource, source }, at(12))
            .level
    }

    #[test]
    fn the_seeds_example_member() {
        let prod_web = resource(
            "prod-web",
            ResourceKind::Source,
            &["environment:production"],
        );
        let staging = resource(
            "staging-web",
            ResourceKind::Source,
            &["environment:staging"],
        );
        let server = resource("server", ResourceKind::Source, &[]);
        let me = || GrantSubject::Member("m1".to_owned());
        let developer = person(
            &[(Role::Member, RoleSource::Direct)],
            vec![
                grant(
                    me(),
                    GrantTarget::Label("environment:production".parse().unwrap()),
                    Level::ReadOnly,
                ),
                grant(
                    me(),
                    GrantTarget::Label("environment:staging".parse().unwrap()),
                    Level::FullAccess,
                ),
            ],
        );
        assert_eq!(level(&developer, &prod_web, None), Level::ReadOnly);
        assert_eq!(level(&developer, &staging, None), Level::FullAccess);
        assert_eq!(level(&developer, &server, None), Level::ReadWrite);
        let edit = developer
            .decide(
                Action::SourcesEdit,
                Some(Target {
                    resource: &prod_web,
                    source: None,
                }),
                true,
                at(12),
            )
            .unwrap();
        assert!(!edit.allowed, "{}", edit.reason);
        let delete = |resource| {
            developer
                .decide(
                    Action::SourcesDelete,
                    Some(Target {
                        resource,
                        source: None,
                    }),
                    true,
                    at(12),
                )
                .unwrap()
                .allowed
        };
        assert!(delete(&staging), "full access lets a Member delete");
        assert!(!delete(&server), "the Member default does not");
    }

    #[test]
    fn a_direct_no_access_is_raised_by_a_group_grant() {
        let source = resource("s", ResourceKind::Source, &["team:data"]);
        let hidden = grant(
            GrantSubject::Member("m1".to_owned()),
            GrantTarget::Resource("s".to_owned()),
            Level::NoAccess,
        );
        let alone = person(&[(Role::Member, RoleSource::Direct)], vec![hidden.clone()]);
        assert_eq!(level(&alone, &source, None), Level::NoAccess);
        let with_group = person(
            &[(Role::Member, RoleSource::Direct)],
            vec![
                hidden,
                grant(
                    GrantSubject::Group("data".to_owned()),
                    GrantTarget::Label("team:data".parse().unwrap()),
                    Level::ReadOnly,
                ),
            ],
        );
        assert_eq!(level(&with_group, &source, None), Level::ReadOnly);
    }

    #[test]
    fn admins_and_owners_have_full_access_whatever_the_grants() {
        let source = resource("s", ResourceKind::Source, &[]);
        let admin = person(
            &[(
                Role::Admin,
                RoleSource::Group {
                    group: "admins".to_owned(),
                },
            )],
            vec![grant(
                GrantSubject::Member("m1".to_owned()),
                GrantTarget::Resource("s".to_owned()),
                Level::NoAccess,
            )],
        );
        assert_eq!(level(&admin, &source, None), Level::FullAccess);
    }

    #[test]
    fn expired_grants_count_for_nothing() {
        let source = resource("s", ResourceKind::Source, &[]);
        let mut elevation = grant(
            GrantSubject::Member("m1".to_owned()),
            GrantTarget::Resource("s".to_owned()),
            Level::FullAccess,
        );
        elevation.expires_at = Some(at(12));
        let reader = person(&[(Role::ReadOnly, RoleSource::Direct)], vec![elevation]);
        let level_at = |hour| {
            reader
                .level_on(
                    Target {
                        resource: &source,
                        source: None,
                    },
                    at(hour),
                )
                .level
        };
        assert_eq!(level_at(11), Level::FullAccess);
        assert_eq!(level_at(12), Level::ReadOnly, "expired at 12:00 sharp");
    }

    #[test]
    fn a_destination_takes_its_sources_grants() {
        let source = resource("s", ResourceKind::Source, &["environment:production"]);
        let mut destination = resource("d", ResourceKind::Destination, &[]);
        destination.source_id = Some("s".to_owned());
        let member = person(
            &[(Role::Member, RoleSource::Direct)],
            vec![grant(
                GrantSubject::Member("m1".to_owned()),
                GrantTarget::Label("environment:production".parse().unwrap()),
                Level::ReadOnly,
            )],
        );
        assert_eq!(level(&member, &destination, Some(&source)), Level::ReadOnly);
    }

    #[test]
    fn roles_add_up_and_deactivation_ends_everything() {
        let mut member = person(
            &[
                (Role::ReadOnly, RoleSource::Direct),
                (
                    Role::Admin,
                    RoleSource::Group {
                        group: "segment-admins".to_owned(),
                    },
                ),
            ],
            Vec::new(),
        );
        let team = member
            .decide(Action::TeamManage, None, true, at(12))
            .unwrap();
        assert!(team.allowed);
        assert!(team.reason.contains("segment-admins"), "{}", team.reason);
        member.active = false;
        assert!(
            !member
                .decide(Action::WorkspaceView, None, true, at(12))
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn a_resource_of_the_wrong_kind_is_an_error() {
        let destination = resource("d", ResourceKind::Destination, &[]);
        let member = person(&[(Role::Member, RoleSource::Direct)], Vec::new());
        let target = Some(Target {
            resource: &destination,
            source: None,
        });
        assert!(
            member
                .decide(Action::SourcesEdit, target, true, at(12))
                .is_err()
        );
        assert!(
            decide_for_token(
                &Scopes::parse("sources:write").unwrap(),
                Action::SourcesEdit,
                target
            )
            .is_err()
        );
    }
}
