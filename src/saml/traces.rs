//! Sign-in traces: the SAML responses a workspace's ACS received lately, decoded with signatures,
//! certificates and encrypted content redacted ([`super::response::redacted`]), with what became of
//! each and the attributes of those that passed. The console's sign-in debugger shows them, and its
//! attribute-mapping preview reads the latest sign-in's attributes. Kept [`KEPT_FOR`], and in three
//! pools so that anyone's posts (the ACS is open to all) never push out what the IdP sent: at most
//! [`SIGN_INS_KEPT`] sign-ins, [`REFUSALS_KEPT`] refusals of responses whose signature checked out,
//! and [`REFUSALS_KEPT`] refusals of anything else; of the refusals, only the newest
//! [`REFUSALS_KEPT_PER_CLIENT`] from one client address are kept, so one sender cannot fill a pool
//! while an admin retrying from their desk still sees their latest attempts.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use crate::db::schema::saml_sign_in_traces;
use crate::db::{DbConnection, Tx};

pub const KEPT_FOR: TimeDelta = TimeDelta::days(7);
pub const SIGN_INS_KEPT: i64 = 50;
pub const REFUSALS_KEPT: i64 = 20;
pub const REFUSALS_KEPT_PER_CLIENT: i64 = 3;
/// The outcome of a response that signed its person in; refusals have their reason's code.
pub const SIGNED_IN: &str = "signed_in";

#[derive(Debug, Clone)]
pub struct Trace {
    pub id: i64,
    pub occurred_at: NaiveDateTime,
    /// [`SIGNED_IN`], or the refusal's reason code.
    pub outcome: String,
    /// What exactly was refused.
    pub detail: Option<String>,
    pub email: Option<String>,
    /// The attributes of a response that passed (values by name); empty for a refusal, whose
    /// contents were not verified.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// The redacted response.
    pub response: String,
}

type Row = (
    i64,
    NaiveDateTime,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

crate::columns!(
    TRACE_COLUMNS = (
        saml_sign_in_traces::id,
        saml_sign_in_traces::occurred_at,
        saml_sign_in_traces::outcome,
        saml_sign_in_traces::detail,
        saml_sign_in_traces::email,
        saml_sign_in_traces::attributes,
        saml_sign_in_traces::response
    )
);

fn from_row((id, occurred_at, outcome, detail, email, attributes, response): Row) -> Trace {
    Trace {
        id,
        occurred_at,
        outcome,
        detail,
        email,
        // Written below from a map, so it parses.
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        response,
    }
}

/// What one response to the ACS became.
pub struct Outcome<'a> {
    pub outcome: &'a str,
    pub detail: Option<&'a str>,
    pub email: Option<&'a str>,
    pub attributes: &'a BTreeMap<String, Vec<String>>,
    /// The `SAMLResponse` as posted.
    pub posted: &'a str,
    /// Whether its signature checked out against the IdP's certificates.
    pub signed: bool,
    /// The address it came from.
    pub client: Option<&'a str>,
}

/// Keeps a trace of a response, and lets the oldest of its pool go (see the module's comment).
pub fn record(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    outcome: Outcome<'_>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let attributes = serde_json::to_string(outcome.attributes).expect("a map of strings");
    diesel::insert_into(saml_sign_in_traces::table)
        .values((
            saml_sign_in_traces::workspace_id.eq(workspace_id),
            saml_sign_in_traces::occurred_at.eq(now),
            saml_sign_in_traces::outcome.eq(outcome.outcome),
            saml_sign_in_traces::detail.eq(outcome.detail),
            saml_sign_in_traces::email.eq(outcome.email),
            saml_sign_in_traces::attributes.eq(attributes),
            saml_sign_in_traces::response.eq(super::response::redacted(outcome.posted)),
            saml_sign_in_traces::signed.eq(outcome.signed),
            saml_sign_in_traces::client.eq(outcome.client),
        ))
        .execute(tx.conn())?;
    // The pool is small (it is trimmed at every insert), so it is read whole and trimmed here.
    let pool: Vec<(i64, String, Option<String>)> = saml_sign_in_traces::table
        .filter(saml_sign_in_traces::workspace_id.eq(workspace_id))
        .filter(saml_sign_in_traces::signed.eq(outcome.signed))
        .order(saml_sign_in_traces::id.desc())
        .select((
            saml_sign_in_traces::id,
            saml_sign_in_traces::outcome,
            saml_sign_in_traces::client,
        ))
        .load(tx.conn())?;
    let (mut sign_ins, mut refusals) = (0, 0);
    let mut from_client = std::collections::HashMap::new();
    let let_go: Vec<i64> = pool
        .into_iter()
        .filter(|(_, kind, client)| {
            if kind == SIGNED_IN {
                sign_ins += 1;
                return sign_ins > SIGN_INS_KEPT;
            }
            let from_this_client = from_client.entry(client.clone()).or_insert(0);
            *from_this_client += 1;
            if client.is_some() && *from_this_client > REFUSALS_KEPT_PER_CLIENT {
                return true;
            }
            refusals += 1;
            refusals > REFUSALS_KEPT
        })
        .map(|(id, ..)| id)
        .collect();
    if !let_go.is_empty() {
        diesel::delete(saml_sign_in_traces::table.filter(saml_sign_in_traces::id.eq_any(let_go)))
            .execute(tx.conn())?;
    }
    Ok(())
}

/// Removes every trace older than [`KEPT_FOR`]. Returns how many.
pub fn purge(tx: &mut Tx<'_>, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(
        saml_sign_in_traces::table.filter(saml_sign_in_traces::occurred_at.lt(now - KEPT_FOR)),
    )
    .execute(tx.conn())
}

/// The workspace's traces, newest first, from within [`KEPT_FOR`] of `now`.
pub fn recent(
    conn: &mut DbConnection,
    workspace_id: &str,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Trace>> {
    let rows: Vec<Row> = saml_sign_in_traces::table
        .filter(saml_sign_in_traces::workspace_id.eq(workspace_id))
        .filter(saml_sign_in_traces::occurred_at.ge(now - KEPT_FOR))
        .order(saml_sign_in_traces::id.desc())
        .limit(limit)
        .select(TRACE_COLUMNS)
        .load(conn)?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// The newest trace of a sign-in that passed, within [`KEPT_FOR`] of `now`.
pub fn latest_signed_in(
    conn: &mut DbConnection,
    workspace_id: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<Trace>> {
    let row: Option<Row> = saml_sign_in_traces::table
        .filter(saml_sign_in_traces::workspace_id.eq(workspace_id))
        .filter(saml_sign_in_traces::outcome.eq(SIGNED_IN))
        .filter(saml_sign_in_traces::occurred_at.ge(now - KEPT_FOR))
        .order(saml_sign_in_traces::id.desc())
        .select(TRACE_COLUMNS)
        .first(conn)
        .optional()?;
    Ok(row.map(from_row))
}
