//! Sessions: what a SAML login leaves behind. The token is a JWT (RS256, `kid` in the header, keys
//! at `/.well-known/jwks.json`) so other services can check it; idgate itself also checks the
//! server-side record on every request, so a logout, a deprovisioning, or a workspace becoming
//! HIPAA-eligible ends or shortens sessions that already exist.
//!
//! Trust: a session is good for one workspace, the one whose IdP signed the person in. Any workspace
//! admin can point their IdP at a key they hold and assert any email, so an assertion never speaks
//! for a membership in another workspace; being the same person there takes that workspace's own
//! IdP (a login there, which gives a session of its own).
//!
//! The lifetime is the one place where other workspaces count: a person is their normalised email
//! (trimmed, lower-case), and a membership in any HIPAA-eligible workspace shortens every session
//! of theirs. That can only shorten a session, never lengthen or widen it. An alias such as
//! `name+acme@example.com` is another person, so it keeps its own lifetime.

pub mod keys;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::db::schema::sessions;
use crate::db::{DbConnection, StoreError, Tx};
use crate::directory::{self, Member};
use crate::workspaces::Workspace;
use keys::{KeyRing, Signer};

/// The session of a Team Member.
pub const MAX_LIFETIME: TimeDelta = TimeDelta::days(7);
/// The session of anyone who is a member of a HIPAA-eligible workspace, in every workspace.
pub const HIPAA_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// The cookie that carries the session token.
pub const COOKIE: &str = "idgate_session";

pub fn normalise_email(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// The claims of a session token. `sid` names the server-side record.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    email: String,
    ws: String,
    sid: String,
    iat: i64,
    exp: i64,
}

/// A new session's record: who, in which workspace, and what the IdP said about it.
pub struct NewSession<'a> {
    pub email: &'a str,
    pub workspace: &'a Workspace,
    pub member_id: &'a str,
    pub name_id: &'a str,
    pub session_index: Option<&'a str>,
    pub idp_expires_at: Option<NaiveDateTime>,
}

/// A signed session token and when it ends.
pub struct Issued {
    pub session_id: String,
    pub token: String,
    pub expires_at: NaiveDateTime,
}

/// A session that passed every check just now.
#[derive(Debug, Clone)]
pub struct Active {
    pub session_id: String,
    pub email: String,
    /// The one workspace the session is good for: the one whose IdP signed the person in.
    pub workspace: Workspace,
    /// The person's membership in that workspace.
    pub member: Member,
    pub expires_at: NaiveDateTime,
}

/// When a session that started at `created_at` ends, for a person with these memberships.
fn ends_at(
    created_at: NaiveDateTime,
    idp_expires_at: Option<NaiveDateTime>,
    memberships: &[(Workspace, Member)],
) -> NaiveDateTime {
    let lifetime = if memberships.iter().any(|(workspace, _)| workspace.hipaa) {
        HIPAA_LIFETIME
    } else {
        MAX_LIFETIME
    };
    let ends = created_at + lifetime;
    idp_expires_at.map_or(ends, |idp| idp.min(ends))
}

/// Records a session and signs its token, inside the login's transaction.
pub fn create(
    tx: &mut Tx<'_>,
    signer: &Signer,
    issuer: &str,
    new: NewSession,
    now: NaiveDateTime,
) -> Result<Issued, StoreError> {
    let session_id = crate::secrets::random_secret();
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(&session_id),
            sessions::email.eq(new.email),
            sessions::workspace_id.eq(&new.workspace.id),
            sessions::member_id.eq(new.member_id),
            sessions::name_id.eq(new.name_id),
            sessions::session_index.eq(new.session_index),
            sessions::created_at.eq(now),
            sessions::idp_expires_at.eq(new.idp_expires_at),
        ))
        .execute(tx.conn())?;
    let memberships = directory::memberships_of(tx, new.email)?;
    let expires_at = ends_at(now, new.idp_expires_at, &memberships);
    let claims = Claims {
        iss: issuer.to_owned(),
        sub: new.member_id.to_owned(),
        email: new.email.to_owned(),
        ws: new.workspace.slug.clone(),
        sid: session_id.clone(),
        iat: now.and_utc().timestamp(),
        exp: expires_at.and_utc().timestamp(),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(signer.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &signer.key)
        .map_err(|e| StoreError::Corrupt(format!("signing a session token: {e}")))?;
    Ok(Issued {
        session_id,
        token,
        expires_at,
    })
}

/// Why a token is not a session; the client learns only that it is not.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no valid session")]
    Invalid(&'static str),
    /// A state-changing request from another origin carried the session cookie.
    #[error("a request from another site cannot act with your session")]
    CrossSite,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for SessionError {
    fn from(error: diesel::result::Error) -> Self {
        SessionError::Store(error.into())
    }
}

/// Checks a session token: signature, then the record (not revoked, membership active, within
/// the lifetime the person's memberships allow now).
pub fn authenticate(
    conn: &mut DbConnection,
    keys: &KeyRing,
    token: &str,
    now: NaiveDateTime,
) -> Result<Active, SessionError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid("not a JWT"))?;
    let kid = header.kid.ok_or(SessionError::Invalid("no kid"))?;
    let key = keys
        .decoding_key(conn, &kid, now)?
        .ok_or(SessionError::Invalid("unknown or retired key"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    // Expiry is checked below against the service's clock, with the record's own lifetime.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|_| SessionError::Invalid("bad signature or claims"))?
        .claims;
    if claims.exp <= now.and_utc().timestamp() {
        return Err(SessionError::Invalid("expired"));
    }
    type Row = (
        String,
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<NaiveDateTime>,
    );
    let (email, workspace_id, member_id, created_at, idp_expires_at, revoked_at): Row =
        sessions::table
            .find(&claims.sid)
            .select((
                sessions::email,
                sessions::workspace_id,
                sessions::member_id,
                sessions::created_at,
                sessions::idp_expires_at,
                sessions::revoked_at,
            ))
            .first(conn)
            .optional()?
            .ok_or(SessionError::Invalid("no such session"))?;
    if revoked_at.is_some() {
        return Err(SessionError::Invalid("logged out"));
    }
    // The other memberships count only toward the lifetime: it says nothing about who the
    // person may act as.
    let memberships = directory::memberships_of(conn, &email)?;
    // The record's own workspace and member, never another membership of the same email.
    let Some((workspace, member)) = memberships
        .iter()
        .find(|(workspace, member)| workspace.id == workspace_id && member.id == member_id)
    else {
        return Err(SessionError::Invalid("the membership is no longer active"));
    };
    // The token's own expiry bounds it too: a lifetime longer now (a HIPAA membership ended)
    // does not lengthen a token already issued.
    let token_expires_at =
        chrono::DateTime::from_timestamp(claims.exp, 0).map_or(now, |at| at.naive_utc());
    let expires_at = ends_at(created_at, idp_expires_at, &memberships).min(token_expires_at);
    if expires_at <= now {
        return Err(SessionError::Invalid("expired"));
    }
    Ok(Active {
        session_id: claims.sid,
        email,
        workspace: workspace.clone(),
        member: member.clone(),
        expires_at,
    })
}

/// How many sessions are live at `now`: not ended, and within their workspace's lifetime and the
/// IdP's. (A person who is also in a HIPAA-eligible workspace has 15 minutes everywhere; their
/// sessions elsewhere are counted for up to 7 days.)
pub fn live(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<i64> {
    let hipaa = crate::workspaces::hipaa_ids(conn)?;
    let live = || {
        sessions::table
            .filter(sessions::revoked_at.is_null())
            .filter(
                sessions::idp_expires_at
                    .is_null()
                    .or(sessions::idp_expires_at.gt(now)),
            )
            .count()
    };
    let in_hipaa_workspaces: i64 = live()
        .filter(sessions::workspace_id.eq_any(&hipaa))
        .filter(sessions::created_at.gt(now - HIPAA_LIFETIME))
        .get_result(conn)?;
    let elsewhere: i64 = live()
        .filter(sessions::workspace_id.ne_all(&hipaa))
        .filter(sessions::created_at.gt(now - MAX_LIFETIME))
        .get_result(conn)?;
    Ok(in_hipaa_workspaces + elsewhere)
}

/// The NameID and SessionIndex the IdP gave a session, for the LogoutRequest that ends the IdP's
/// side of it.
pub fn idp_identity(
    conn: &mut DbConnection,
    session_id: &str,
) -> QueryResult<(String, Option<String>)> {
    sessions::table
        .find(session_id)
        .select((sessions::name_id, sessions::session_index))
        .first(conn)
}

/// Ends the sessions of a workspace that the IdP's LogoutRequest names: those of `name_id`, and
/// of those only the ones with one of `session_indexes` when it gives any. Returns how many.
pub fn end_for_idp(
    tx: &mut Tx<'_>,
    workspace_id: &str,
    name_id: &str,
    session_indexes: &[String],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let mut matching = diesel::update(sessions::table)
        .filter(sessions::workspace_id.eq(workspace_id))
        .filter(sessions::name_id.eq(name_id))
        .filter(sessions::revoked_at.is_null())
        .into_boxed();
    if !session_indexes.is_empty() {
        matching = matching.filter(sessions::session_index.eq_any(session_indexes));
    }
    matching
        .set(sessions::revoked_at.eq(now))
        .execute(tx.conn())
}

/// Ends a session. Returns false when it was already ended.
pub fn revoke(tx: &mut Tx<'_>, session_id: &str, now: NaiveDateTime) -> QueryResult<bool> {
    let ended = diesel::update(
        sessions::table
            .find(session_id)
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(now))
    .execute(tx.conn())?;
    Ok(ended == 1)
}

/// Ends every session of a membership (its deprovisioning). Returns how many were live.
pub fn revoke_member(tx: &mut Tx<'_>, member_id: &str, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .filter(sessions::member_id.eq(member_id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(now))
    .execute(tx.conn())
}
