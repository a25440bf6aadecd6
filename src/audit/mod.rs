//! The append-only audit log. Every change to access is recorded by [`record`], called inside the
//! same transaction as the change, so a change that fails leaves no entry and an entry never
//! describes a change that did not happen. The database refuses UPDATE and DELETE on the table.

use chrono::NaiveDateTime;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, Nullable, Text, Timestamp};
use serde::Serialize;

use crate::db::schema::{audit_events, workspaces};
use crate::db::{DbConnection, MultiBackend, Tx};

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API token, by id.
    Token(String),
    /// A person logged in through SSO, by person id.
    Person(String),
    /// The workspace's identity provider (a SAML login, say), by entity id.
    Idp(String),
    /// idgate itself; the id names the part (`cli`, a background job).
    System(String),
    /// Whoever holds a setup link of the admin console, by link id.
    SetupLink(String),
}

impl Actor {
    /// The actor's kind (`token`, `person`, ...) and id.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Actor::Token(id) => ("token", id),
            Actor::Person(id) => ("person", id),
            Actor::Idp(id) => ("idp", id),
            Actor::System(id) => ("system", id),
            Actor::SetupLink(id) => ("setup_link", id),
        }
    }
}

/// The actor and request a change belongs to, passed to every function that changes access.
#[derive(Debug, Clone)]
pub struct AuditContext {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl AuditContext {
    /// An operator at the command line.
    pub fn cli() -> Self {
        AuditContext {
            actor: Actor::System("cli".to_owned()),
            request_id: None,
        }
    }
}

/// What was changed: a kind (`workspace`, `token`, ...) and its id.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: &'a str,
    pub id: &'a str,
}

pub struct Event<'a> {
    pub workspace_id: Option<&'a str>,
    pub action: &'a str,
    pub target: Target<'a>,
    pub details: serde_json::Value,
}

/// Absent values are written as NULL rather than left out: the statement is then the same for
/// every event, and a connection keeps it prepared.
#[derive(Insertable)]
#[diesel(table_name = audit_events, treat_none_as_default_value = false)]
struct NewEventRow<'a> {
    occurred_at: NaiveDateTime,
    workspace_id: Option<&'a str>,
    actor_type: &'a str,
    actor_id: Option<&'a str>,
    action: &'a str,
    target_type: &'a str,
    target_id: Option<&'a str>,
    details: String,
    request_id: Option<&'a str>,
}

/// Appends one event, and raises the workspace's access version so that decisions cached at an
/// older version are recomputed. Call it inside the transaction that makes the change: the version
/// is then raised exactly when the change commits, and the row lock orders concurrent changes.
pub fn record(tx: &mut Tx<'_>, context: &AuditContext, event: Event<'_>) -> QueryResult<()> {
    let workspace_id = event.workspace_id;
    record_leaving_decisions_alone(tx, context, event)?;
    if let Some(workspace_id) = workspace_id {
        crate::with_backend!(tx.conn(), |conn| crate::kept_update!(
            workspaces::table,
            workspaces::id.eq(workspace_id),
            workspaces::access_version.eq(workspaces::access_version + 1)
        )
        .execute(conn))?;
    }
    Ok(())
}

/// [`record`] as part of the statement that makes the change, on PostgreSQL (see
/// `Conn::write_in_one_statement`): the table expressions `recorded` and `raised` of a `WITH`,
/// which append the [`Events`] and raise the workspace's access version once if any was
/// appended. A statement may make the changes of several requests: each event names its
/// requester, by the position of its context among `requesters` (from 1). The workspace's row is
/// locked last, as [`record`] locks it.
pub struct RecordInStatement<'a> {
    occurred_at: NaiveDateTime,
    workspace_id: &'a str,
    request_ids: Vec<Option<&'a str>>,
    actor_types: Vec<&'static str>,
    actor_ids: Vec<&'a str>,
    action: &'a str,
    target: Target<'a>,
    events: Events,
    raises_access_version: bool,
}

/// The events a [`RecordInStatement`] appends.
pub enum Events {
    /// One event, by the first requester, for each row of `changed` (a table expression written
    /// before), with these details (JSON text).
    One(String),
    /// The SQL of a query, which may read the statement's other table expressions, with a row
    /// `(requester, details)` for each event.
    Each(&'static str),
}

impl<'a> RecordInStatement<'a> {
    pub fn new(
        requesters: impl IntoIterator<Item = &'a AuditContext>,
        workspace_id: &'a str,
        action: &'a str,
        target: Target<'a>,
        events: Events,
    ) -> Self {
        let mut record = RecordInStatement {
            occurred_at: crate::time::now(),
            workspace_id,
            request_ids: Vec::new(),
            actor_types: Vec::new(),
            actor_ids: Vec::new(),
            action,
            target,
            events,
            raises_access_version: true,
        };
        for context in requesters {
            let (actor_type, actor_id) = context.actor.parts();
            record.request_ids.push(context.request_id.as_deref());
            record.actor_types.push(actor_type);
            record.actor_ids.push(actor_id);
        }
        record
    }

    /// As [`record_leaving_decisions_alone`]: no `raised`, and no lock on the workspace's row.
    pub fn leaving_decisions_alone(mut self) -> Self {
        self.raises_access_version = false;
        self
    }
}

impl QueryFragment<Pg> for RecordInStatement<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "recorded AS (INSERT INTO audit_events (occurred_at, request_id, workspace_id, \
             actor_type, actor_id, action, target_type, target_id, details) SELECT ",
        );
        out.push_bind_param::<Timestamp, _>(&self.occurred_at)?;
        out.push_sql(", requesters.request_id, ");
        out.push_bind_param::<Text, &str>(&self.workspace_id)?;
        out.push_sql(", requesters.actor_type, requesters.actor_id");
        for text in [&self.action, &self.target.kind, &self.target.id] {
            out.push_sql(", ");
            out.push_bind_param::<Text, &str>(text)?;
        }
        out.push_sql(", events.details FROM (");
        match &self.events {
            Events::One(details) => {
                out.push_sql("SELECT 1, ");
                out.push_bind_param::<Text, String>(details)?;
                out.push_sql(" FROM changed");
            }
            Events::Each(events) => out.push_sql(events),
        }
        out.push_sql(") AS events (requester, details) JOIN unnest(");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.request_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.actor_types)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.actor_ids)?;
        out.push_sql(
            ") WITH ORDINALITY AS requesters (request_id, actor_type, actor_id, requester) \
             USING (requester) RETURNING id)",
        );
        if self.raises_access_version {
            out.push_sql(
                ", raised AS (UPDATE workspaces SET access_version = access_version + 1 \
                 WHERE EXISTS (SELECT 1 FROM recorded) AND id = ",
            );
            out.push_bind_param::<Text, &str>(&self.workspace_id)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

/// Whether the workspace's log holds at least `count` events of `action` since `since` (read
/// from the newest back, so it costs `count` index entries however long the log is).
pub fn at_least_since(
    conn: &mut DbConnection,
    workspace_id: &str,
    action: &str,
    count: i64,
    since: NaiveDateTime,
) -> QueryResult<bool> {
    let nth_newest: Option<NaiveDateTime> = audit_events::table
        .filter(audit_events::workspace_id.eq(workspace_id))
        .filter(audit_events::action.eq(action))
        .order(audit_events::id.desc())
        .offset(count - 1)
        .select(audit_events::occurred_at)
        .first(conn)
        .optional()?;
    Ok(nth_newest.is_some_and(|at| at >= since))
}

/// Whether the workspace's log already holds an event `action` about `target_id`: a warning
/// recorded once, not on every hourly check.
pub fn recorded(
    conn: &mut DbConnection,
    workspace_id: &str,
    action: &str,
    target_id: &str,
) -> QueryResult<bool> {
    let found: i64 = audit_events::table
        .filter(audit_events::workspace_id.eq(workspace_id))
        .filter(audit_events::action.eq(action))
        .filter(audit_events::target_id.eq(target_id))
        .count()
        .get_result(conn)?;
    Ok(found > 0)
}

/// Appends one event without raising the access version: only for a change that cannot alter a
/// decision already made, such as a new user (no roles, groups or grants yet, and cached decisions
/// are keyed by member id). Skipping the version there keeps concurrent provisioning from queueing
/// on the workspace's row (on PostgreSQL it halved creates per second).
pub fn record_leaving_decisions_alone(
    tx: &mut Tx<'_>,
    context: &AuditContext,
    event: Event<'_>,
) -> QueryResult<()> {
    let (actor_type, actor_id) = context.actor.parts();
    let insert = diesel::insert_into(audit_events::table).values(NewEventRow {
        occurred_at: crate::time::now(),
        workspace_id: event.workspace_id,
        actor_type,
        actor_id: Some(actor_id),
        action: event.action,
        target_type: event.target.kind,
        target_id: Some(event.target.id),
        details: event.details.to_string(),
        request_id: context.request_id.as_deref(),
    });
    crate::with_backend!(tx.conn(), |conn| insert.execute(conn))?;
    Ok(())
}

#[derive(Debug, Clone, Queryable)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    pub workspace_id: Option<String>,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub details: String,
    pub request_id: Option<String>,
}

/// `type` or `type:id`, as the `actor` and `target` filters take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindAndId {
    pub kind: String,
    pub id: Option<String>,
}

impl KindAndId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (kind, id) = match raw.split_once(':') {
            Some((kind, id)) => (kind, Some(id)),
            None => (raw, None),
        };
        if kind.is_empty() || id.is_some_and(str::is_empty) {
            return Err(format!(
                "{raw:?} must be TYPE or TYPE:ID, such as token:0123abcd"
            ));
        }
        Ok(KindAndId {
            kind: kind.to_owned(),
            id: id.map(str::to_owned),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<KindAndId>,
    pub action: Option<String>,
    /// Actions that start with this, such as `scim.`.
    pub action_prefix: Option<String>,
    pub target: Option<KindAndId>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Copy)]
pub enum Order {
    /// Newest first, from before the given event id.
    NewestBefore(Option<i64>),
    /// Oldest first, from after the given event id.
    OldestAfter(Option<i64>),
}

/// One page of a workspace's events. Paging is by event id, so a page never repeats or skips an
/// event already committed, however many are added meanwhile.
pub fn page(
    conn: &mut DbConnection,
    workspace_id: &str,
    filter: &Filter,
    order: Order,
    limit: i64,
) -> QueryResult<Vec<AuditEvent>> {
    use audit_events::dsl as a;
    let mut query = a::audit_events
        .filter(a::workspace_id.eq(workspace_id))
        .into_boxed::<MultiBackend>();
    if let Some(actor) = &filter.actor {
        query = query.filter(a::actor_type.eq(actor.kind.clone()));
        if let Some(id) = &actor.id {
            query = query.filter(a::actor_id.eq(id.clone()));
        }
    }
    if let Some(target) = &filter.target {
        query = query.filter(a::target_type.eq(target.kind.clone()));
        if let Some(id) = &target.id {
            query = query.filter(a::target_id.eq(id.clone()));
        }
    }
    if let Some(action) = &filter.action {
        query = query.filter(a::action.eq(action.clone()));
    }
    if let Some(prefix) = &filter.action_prefix {
        // Action names are dotted lower-case words, with no LIKE wildcard in them.
        query = query.filter(a::action.like(format!("{prefix}%")));
    }
    if let Some(since) = filter.since {
        query = query.filter(a::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(a::occurred_at.lt(until));
    }
    query = match order {
        Order::NewestBefore(before) => {
            let query = query.order(a::id.desc());
            match before {
                Some(before) => query.filter(a::id.lt(before)),
                None => query,
            }
        }
        Order::OldestAfter(after) => {
            let query = query.order(a::id.asc());
            match after {
                Some(after) => query.filter(a::id.gt(after)),
                None => query,
            }
        }
    };
    query.limit(limit).load(conn)
}

/// The form clients see, in the API and in exports.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub id: i64,
    #[serde(serialize_with = "crate::time::serialize")]
    pub time: NaiveDateTime,
    pub workspace_id: Option<String>,
    pub actor: KindAndIdView,
    pub action: String,
    pub target: KindAndIdView,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct KindAndIdView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

impl From<AuditEvent> for EventView {
    fn from(event: AuditEvent) -> Self {
        EventView {
            id: event.id,
            time: event.occurred_at,
            workspace_id: event.workspace_id,
            actor: KindAndIdView {
                kind: event.actor_type,
                id: event.actor_id,
            },
            action: event.action,
            target: KindAndIdView {
                kind: event.target_type,
                id: event.target_id,
            },
            // Written by `record` from a JSON value, so it parses; anything else is shown as text.
            details: serde_json::from_str(&event.details)
                .unwrap_or(serde_json::Value::String(event.details)),
            request_id: event.request_id,
        }
    }
}
