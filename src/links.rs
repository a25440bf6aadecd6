//! Links into the admin console, each a secret in a URL that is stored only as its SHA-256:
//!
//! - a **bootstrap link** (`idgate console link`) signs one person in once, within 15 minutes, as an
//!   Owner of a workspace: the way in before any IdP is connected;
//! - a **setup link** opens a workspace's IdP-connection and SCIM pages to a customer's IT admin
//!   until it expires or is revoked.
//!
//! A link has a public id (what the API and the console name it by, so that revoking one never puts
//! its secret in a URL) and the secret its URL carries. Creating, using and revoking are audited.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, AuditContext, Event, Target};
use crate::db::schema::console_links;
use crate::db::{DbConnection, Tx};

/// How long a bootstrap link works.
pub const BOOTSTRAP_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// How long a setup link works when its maker does not say.
pub const SETUP_LIFETIME: Duration = Duration::from_secs(3 * 24 * 3600);
/// The longest a setup link may work: it opens a workspace's sign-in to whoever holds it.
pub const SETUP_MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bootstrap,
    Setup,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Bootstrap => "bootstrap",
            Kind::Setup => "setup",
        }
    }
}

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct Link {
    pub id: String,
    pub workspace_id: String,
    /// Whom a bootstrap link signs in.
    pub email: Option<String>,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize")]
    pub expires_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub used_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub revoked_at: Option<NaiveDateTime>,
}

crate::columns!(
    LINK_COLUMNS = (
        console_links::id,
        console_links::workspace_id,
        console_links::email,
        console_links::created_at,
        console_links::expires_at,
        console_links::used_at,
        console_links::revoked_at
    )
);

impl Link {
    /// `active`, `expired` or `revoked`.
    pub fn status(&self, now: NaiveDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "active"
        }
    }
}

/// A new link and its secret, which is shown this once.
pub struct Issued {
    pub link: Link,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    InvalidLifetime(String),
    #[error("no setup link {0} in this workspace")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] diesel::result::Error),
}

/// Reads a setup link's lifetime such as `3d` or `12h`.
pub fn parse_setup_lifetime(raw: &str) -> Result<Duration, LinkError> {
    let lifetime = humantime::parse_duration(raw.trim()).map_err(|_| {
        LinkError::InvalidLifetime(format!("{raw:?} is not a duration such as 3d or 12h"))
    })?;
    if lifetime.is_zero() || lifetime > SETUP_MAX_LIFETIME {
        return Err(LinkError::InvalidLifetime(format!(
            "{raw:?} must be more than 0 and at most 30 days"
        )));
    }
    Ok(lifetime)
}

/// Makes a link: a bootstrap link for `email`, or a setup link.
pub fn create(
    tx: &mut Tx<'_>,
    kind: Kind,
    workspace_id: &str,
    email: Option<&str>,
    lifetime: TimeDelta,
    context: &AuditContext,
) -> QueryResult<Issued> {
    let secret = crate::secrets::random_secret();
    let now = crate::time::now();
    let link = Link {
        id: uuid::Uuid::now_v7().to_string(),
        workspace_id: workspace_id.to_owned(),
        email: email.map(str::to_owned),
        created_at: now,
        expires_at: now + lifetime,
        used_at: None,
        revoked_at: None,
    };
    diesel::insert_into(console_links::table)
        .values((
            console_links::id.eq(&link.id),
            console_links::kind.eq(kind.as_str()),
            console_links::workspace_id.eq(workspace_id),
            console_links::email.eq(email),
            console_links::secret_hash.eq(crate::secrets::hash(&secret).as_slice()),
            console_links::created_at.eq(now),
            console_links::expires_at.eq(link.expires_at),
        ))
        .execute(tx.conn())?;
    audit::record_leaving_decisions_alone(
        tx,
        context,
        event(
            &link,
            kind,
            Step::Created,
            json!({ "email": email, "expires_at": crate::time::rfc3339(&link.expires_at) }),
        ),
    )?;
    Ok(Issued { link, secret })
}

/// What happened to a link, for its audit event.
#[derive(Clone, Copy)]
enum Step {
    Created,
    Used,
    Revoked,
}

fn event<'a>(link: &'a Link, kind: Kind, step: Step, details: serde_json::Value) -> Event<'a> {
    let action = match (kind, step) {
        (Kind::Bootstrap, Step::Created) => "console.bootstrap_link.created",
        (Kind::Bootstrap, _) => "console.bootstrap_link.used",
        (Kind::Setup, Step::Created) => "console.setup_link.created",
        (Kind::Setup, Step::Used) => "console.setup_link.used",
        (Kind::Setup, Step::Revoked) => "console.setup_link.revoked",
    };
    Event {
        workspace_id: Some(&link.workspace_id),
        action,
        target: Target {
            kind: "console_link",
            id: &link.id,
        },
        details,
    }
}

/// The link whose secret was presented, if it works now: not revoked, not expired, and for a
/// bootstrap link not used.
pub fn find_live(
    conn: &mut DbConnection,
    kind: Kind,
    secret: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<Link>> {
    console_links::table
        .filter(console_links::secret_hash.eq(crate::secrets::hash(secret).as_slice()))
        .filter(console_links::kind.eq(kind.as_str()))
        .filter(console_links::revoked_at.is_null())
        .filter(console_links::expires_at.gt(now))
        .filter(
            console_links::used_at
                .is_null()
                .or(console_links::kind.ne(Kind::Bootstrap.as_str())),
        )
        .select(LINK_COLUMNS)
        .first(conn)
        .optional()
}

/// Uses a link, inside the transaction of what it is used for: a bootstrap link is spent (false
/// when another request spent it first); a setup link records its last use.
pub fn record_use(
    tx: &mut Tx<'_>,
    kind: Kind,
    link: &Link,
    context: &AuditContext,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let mut update = diesel::update(console_links::table.find(&link.id)).into_boxed();
    if kind == Kind::Bootstrap {
        update = update.filter(console_links::used_at.is_null());
    }
    if update
        .set(console_links::used_at.eq(now))
        .execute(tx.conn())?
        == 0
    {
        return Ok(false);
    }
    audit::record_leaving_decisions_alone(tx, context, event(link, kind, Step::Used, json!({})))?;
    Ok(true)
}

/// The workspace's setup links, newest first.
pub fn list_setup(conn: &mut DbConnection, workspace_id: &str) -> QueryResult<Vec<Link>> {
    console_links::table
        .filter(console_links::workspace_id.eq(workspace_id))
        .filter(console_links::kind.eq(Kind::Setup.as_str()))
        .order(console_links::created_at.desc())
        .select(LINK_COLUMNS)
        .load(conn)
}

/// Revokes a setup link of the workspace. Revoking it again is not an error.
pub fn revoke_setup(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    id: &str,
    context: &AuditContext,
) -> Result<Link, LinkError> {
    let link: Link = console_links::table
        .filter(console_links::id.eq(id))
        .filter(console_links::workspace_id.eq(workspace_id))
        .filter(console_links::kind.eq(Kind::Setup.as_str()))
        .select(LINK_COLUMNS)
        .first(tx.conn())
        .optional()?
        .ok_or_else(|| LinkError::NotFound(id.to_owned()))?;
    if link.revoked_at.is_some() {
        return Ok(link);
    }
    let now = crate::time::now();
    diesel::update(console_links::table.find(id))
        .set(console_links::revoked_at.eq(now))
        .execute(tx.conn())?;
    audit::record_leaving_decisions_alone(
        tx,
        context,
        event(&link, Kind::Setup, Step::Revoked, json!({})),
    )?;
    Ok(Link {
        revoked_at: Some(now),
        ..link
    })
}
