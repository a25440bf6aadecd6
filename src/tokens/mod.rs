//! API tokens: bearer secrets bound to one workspace, with scopes.
//!
//! A token reads `idg_<id>_<secret>`: the id (32 hex digits) finds the row without scanning, the
//! secret is 256 random bits. Only the SHA-256 of the whole token is stored: the secret's entropy makes
//! a slow password hash pointless, and the hash is compared in constant time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, AuditContext, Event, Target};
use crate::db::memo::{DataVersion, Memo};
use crate::db::schema::{api_tokens, workspaces};
use crate::db::{Conn, DbConnection, StoreError, Tx};
use crate::permissions::{ScopeError, Scopes};
use crate::secrets::{hash, random_secret};
use crate::workspaces::Workspace;

pub(crate) const PREFIX: &str = "idg_";
const ID_LEN: usize = 32;
/// base64url without padding of 32 bytes.
const SECRET_LEN: usize = 43;
const NAME_MAX: usize = 100;
const DEFAULT_NAME: &str = "api token";
/// The longest lifetime a token may be given; "never" is asked for by giving none.
/// How long a token minted through a person's session lives unless the request says otherwise.
pub const MINTED_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// `last_used_at` is written at most this often per token, so that authenticating a request
/// is not a database write every time.
const LAST_USED_RESOLUTION: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A token as stored, less its hash.
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub scopes: Scopes,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: NaiveDateTime,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub expires_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub revoked_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "crate::time::serialize_option")]
    pub last_used_at: Option<NaiveDateTime>,
    /// The member whose session minted it, whose authority it carries; None for the operator's.
    pub minted_by: Option<String>,
    /// The setup link it was made through, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_link_id: Option<String>,
}

impl ApiToken {
    /// `active`, `expired` or `revoked`, as of `now`.
    pub fn status(&self, now: NaiveDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|expiry| expiry <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

crate::columns!(
    TOKEN_COLUMNS = (
        api_tokens::id,
        api_tokens::workspace_id,
        api_tokens::name,
        api_tokens::scopes,
        api_tokens::created_at,
        api_tokens::expires_at,
        api_tokens::revoked_at,
        api_tokens::last_used_at,
        api_tokens::minted_by,
        api_tokens::setup_link_id
    )
);

type TokenRow = (
    String,
    String,
    String,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
    Option<String>,
);

fn from_row(row: TokenRow) -> Result<ApiToken, TokenError> {
    let (
        id,
        workspace_id,
        name,
        scopes,
        created_at,
        expires_at,
        revoked_at,
        last_used_at,
        minted_by,
        setup_link_id,
    ) = row;
    // Scopes are written by this module, so a row that does not parse means the data was damaged.
    let scopes = Scopes::parse(&scopes).map_err(|_| TokenError::CorruptScopes(id.clone()))?;
    Ok(ApiToken {
        id,
        workspace_id,
        name,
        scopes,
        created_at,
        expires_at,
        revoked_at,
        last_used_at,
        minted_by,
        setup_link_id,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Scopes(#[from] ScopeError),
    #[error("a token cannot be given scopes its creator lacks: {0}")]
    ScopeEscalation(String),
    #[error("token name must be 1 to 100 characters")]
    InvalidName,
    #[error("{0}")]
    InvalidExpiry(String),
    #[error("no token with id {0}")]
    NotFound(String),
    #[error("token {0} has unreadable scopes")]
    CorruptScopes(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for TokenError {
    fn from(error: diesel::result::Error) -> Self {
        TokenError::Store(error.into())
    }
}

/// Parses `90d`, `12h`, `30m` and the like.
pub fn parse_lifetime(raw: &str) -> Result<Duration, TokenError> {
    let lifetime = humantime::parse_duration(raw.trim()).map_err(|_| {
        TokenError::InvalidExpiry(format!("{raw:?} is not a duration such as 90d, 12h or 30m"))
    })?;
    if lifetime.is_zero() || lifetime > MAX_LIFETIME {
        return Err(TokenError::InvalidExpiry(format!(
            "{raw:?} must be more than 0 and at most 10 years"
        )));
    }
    Ok(lifetime)
}

pub struct NewToken {
    pub name: Option<String>,
    pub scopes: Scopes,
    pub lifetime: Option<Duration>,
    /// The member minting it through a session (or through a token they minted); None for the
    /// operator.
    pub minted_by: Option<String>,
    /// The setup link it is made through, if any.
    pub setup_link_id: Option<String>,
}

/// A freshly made token and its secret, which exists nowhere else: show it once and drop it.
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

pub fn create(
    conn: &mut Conn,
    workspace: &Workspace,
    new: NewToken,
    context: &AuditContext,
) -> Result<IssuedToken, TokenError> {
    let name = match new.name {
        Some(name) => name.trim().to_owned(),
        None => DEFAULT_NAME.to_owned(),
    };
    if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(TokenError::InvalidName);
    }
    let now = crate::time::now();
    let expires_at = new.lifetime.map(|lifetime| {
        now + chrono::TimeDelta::from_std(lifetime).expect("bounded by MAX_LIFETIME")
    });
    let id = uuid::Uuid::new_v4().simple().to_string();
    let secret = generate_secret(&id);
    let token = ApiToken {
        id,
        workspace_id: workspace.id.clone(),
        name,
        scopes: new.scopes,
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        minted_by: new.minted_by,
        setup_link_id: new.setup_link_id,
    };
    conn.write(|tx| {
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(&token.id),
                api_tokens::workspace_id.eq(&token.workspace_id),
                api_tokens::name.eq(&token.name),
                api_tokens::secret_hash.eq(hash(&secret).as_slice()),
                api_tokens::scopes.eq(token.scopes.to_string()),
                api_tokens::created_at.eq(token.created_at),
                api_tokens::expires_at.eq(token.expires_at),
                api_tokens::minted_by.eq(&token.minted_by),
                api_tokens::setup_link_id.eq(&token.setup_link_id),
            ))
            .execute(tx.conn())?;
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(&workspace.id),
                action: "token.created",
                target: Target {
                    kind: "token",
                    id: &token.id,
                },
                details: json!({
                    "name": token.name,
                    "scopes": token.scopes,
                    "expires_at": token.expires_at.as_ref().map(crate::time::rfc3339),
                }),
            },
        )?;
        Ok::<_, TokenError>(())
    })?;
    Ok(IssuedToken { token, secret })
}

pub fn list(conn: &mut DbConnection, workspace_id: &str) -> Result<Vec<ApiToken>, TokenError> {
    api_tokens::table
        .filter(api_tokens::workspace_id.eq(workspace_id))
        .order((api_tokens::created_at.asc(), api_tokens::id.asc()))
        .select(TOKEN_COLUMNS)
        .load::<TokenRow>(conn)?
        .into_iter()
        .map(from_row)
        .collect()
}

/// A token of the workspace by id, whatever its status.
pub fn find(
    conn: &mut DbConnection,
    workspace_id: &str,
    id: &str,
) -> Result<Option<ApiToken>, TokenError> {
    api_tokens::table
        .filter(api_tokens::workspace_id.eq(workspace_id))
        .filter(api_tokens::id.eq(id))
        .select(TOKEN_COLUMNS)
        .first::<TokenRow>(conn)
        .optional()?
        .map(from_row)
        .transpose()
}

/// Ends every live token a member minted (their deprovisioning). Returns how many were live.
pub fn revoke_minted_by(
    tx: &mut Tx<'_>,
    member_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        api_tokens::table
            .filter(api_tokens::minted_by.eq(member_id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(now))
    .execute(tx.conn())
}

#[derive(Debug)]
pub enum Revocation {
    Revoked(ApiToken),
    AlreadyRevoked(ApiToken),
}

/// Revokes a token. With `workspace_id`, a token of another workspace is reported as not found.
/// Revoking twice is not an error and records nothing the second time.
pub fn revoke(
    conn: &mut Conn,
    token_id: &str,
    workspace_id: Option<&str>,
    context: &AuditContext,
) -> Result<Revocation, TokenError> {
    conn.write(|tx| {
        let row = api_tokens::table
            .find(token_id)
            .select(TOKEN_COLUMNS)
            .first::<TokenRow>(tx.conn())
            .optional()?;
        let mut token = match row {
            Some(row) => from_row(row)?,
            None => return Err(TokenError::NotFound(token_id.to_owned())),
        };
        if workspace_id.is_some_and(|workspace_id| workspace_id != token.workspace_id) {
            return Err(TokenError::NotFound(token_id.to_owned()));
        }
        if token.revoked_at.is_some() {
            return Ok(Revocation::AlreadyRevoked(token));
        }
        let now = crate::time::now();
        diesel::update(api_tokens::table.find(token_id))
            .set(api_tokens::revoked_at.eq(now))
            .execute(tx.conn())?;
        token.revoked_at = Some(now);
        audit::record(
            tx,
            context,
            Event {
                workspace_id: Some(&token.workspace_id),
                action: "token.revoked",
                target: Target {
                    kind: "token",
                    id: &token.id,
                },
                details: json!({ "name": token.name }),
            },
        )?;
        Ok(Revocation::Revoked(token))
    })
}

/// Why a presented token was refused. Unknown ids and wrong secrets read the same to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token is not of the form idg_<id>_<secret>")]
    Malformed,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token has been revoked")]
    Revoked,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    #[error(transparent)]
    Rejected(Rejection),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for AuthenticationError {
    fn from(error: diesel::result::Error) -> Self {
        AuthenticationError::Store(error.into())
    }
}

impl From<Rejection> for AuthenticationError {
    fn from(rejection: Rejection) -> Self {
        AuthenticationError::Rejected(rejection)
    }
}

/// A token as its check needs it: the stored hash, the token, its workspace.
#[derive(Debug)]
pub struct Credential {
    secret_hash: Vec<u8>,
    token: ApiToken,
    workspace: Workspace,
}

/// Credentials by token id, kept while the database is unchanged (see [`crate::db::memo`]).
pub type CredentialMemo = Memo<String, Arc<Credential>>;

/// Credentials kept at most: one per token in use, and a few bytes each.
pub const CREDENTIALS_KEPT: usize = 1024;

/// Finds the token a client presented and checks it: secret, revocation, expiry, in that order,
/// so that only the holder of the secret learns whether it was revoked or has expired. With a
/// memo and the data version read before this call, the credential read is kept for
/// [`authenticate_from_memo`].
pub fn authenticate(
    conn: &mut Conn,
    presented: &str,
    now: NaiveDateTime,
    memo: Option<(&CredentialMemo, DataVersion)>,
) -> Result<(ApiToken, Workspace), AuthenticationError> {
    let id = parse_id(presented).ok_or(Rejection::Malformed)?;
    let query = api_tokens::table
        .inner_join(workspaces::table)
        .filter(api_tokens::id.eq(id))
        .select((
            api_tokens::secret_hash,
            TOKEN_COLUMNS,
            workspaces::all_columns,
        ));
    let found = crate::with_backend!(&mut **conn, |conn| query
        .first::<(Vec<u8>, TokenRow, Workspace)>(conn)
        .optional())?;
    let Some((secret_hash, row, workspace)) = found else {
        return Err(Rejection::Invalid.into());
    };
    let token = from_row(row).map_err(|error| {
        tracing::error!(%error, "refusing a token whose stored scopes do not parse");
        Rejection::Invalid
    })?;
    let credential = Credential {
        secret_hash,
        token,
        workspace,
    };
    check(&credential, presented, now)?;
    if needs_last_use_recorded(&credential.token, now) {
        let id = &credential.token.id;
        conn.write(|tx| {
            diesel::update(api_tokens::table.find(id))
                .set(api_tokens::last_used_at.eq(now))
                .execute(tx.conn())
        })?;
        // Not kept: the row has just changed.
        return Ok((credential.token, credential.workspace));
    }
    let found = (credential.token.clone(), credential.workspace.clone());
    if let Some((memo, version)) = memo {
        memo.put(version, id.to_owned(), Arc::new(credential));
    }
    Ok(found)
}

/// The check of [`authenticate`] against the credential kept at `version`, without reading.
/// None when nothing is kept for the token, or when its last use is due to be recorded (a write).
pub fn authenticate_from_memo(
    memo: &CredentialMemo,
    version: DataVersion,
    presented: &str,
    now: NaiveDateTime,
) -> Option<Result<(ApiToken, Workspace), Rejection>> {
    let id = parse_id(presented)?;
    let credential = memo.get(version, id)?;
    if needs_last_use_recorded(&credential.token, now) {
        return None;
    }
    Some(
        check(&credential, presented, now)
            .map(|()| (credential.token.clone(), credential.workspace.clone())),
    )
}

fn check(credential: &Credential, presented: &str, now: NaiveDateTime) -> Result<(), Rejection> {
    let expected = hash(presented);
    let stored = &credential.secret_hash;
    // `memcmp::eq` compares in constant time but panics on unequal lengths, hence the length check.
    if stored.len() != expected.len() || !openssl::memcmp::eq(stored, &expected) {
        return Err(Rejection::Invalid);
    }
    let token = &credential.token;
    if token.revoked_at.is_some() {
        return Err(Rejection::Revoked);
    }
    if token.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(Rejection::Expired);
    }
    Ok(())
}

fn needs_last_use_recorded(token: &ApiToken, now: NaiveDateTime) -> bool {
    token
        .last_used_at
        .is_none_or(|used| now - used >= LAST_USED_RESOLUTION)
}

fn generate_secret(id: &str) -> String {
    format!("{PREFIX}{id}_{}", random_secret())
}

/// The id part of a well-formed token. The secret may itself contain `_`, so the parts are taken
/// by position rather than by splitting.
fn parse_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, rest) = (rest.get(..ID_LEN)?, rest.get(ID_LEN..)?);
    let secret = rest.strip_prefix('_')?;
    let id_ok = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() == SECRET_LEN && URL_SAFE_NO_PAD.decode(secret).is_ok();
    (id_ok && secret_ok).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memo holding, at version 1, the credential of a token just used.
    fn memo_with(token: &str, change: impl FnOnce(&mut ApiToken)) -> CredentialMemo {
        let now = chrono::Utc::now().naive_utc();
        let id = parse_id(token).unwrap().to_owned();
        let mut api_token = ApiToken {
            id: id.clone(),
            workspace_id: "w1".to_owned(),
            name: DEFAULT_NAME.to_owned(),
            scopes: Scopes::parse("scim").unwrap(),
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: Some(now),
            minted_by: None,
            setup_link_id: None,
        };
        change(&mut api_token);
        let workspace = Workspace {
            id: "w1".to_owned(),
            slug: "acme".to_owned(),
            name: "acme".to_owned(),
            hipaa: false,
            created_at: now,
            updated_at: now,
            tracking_plan_approval: false,
            access_version: 0,
        };
        let memo = CredentialMemo::new("test", CREDENTIALS_KEPT);
        let credential = Credential {
            secret_hash: hash(token).to_vec(),
            token: api_token,
            workspace,
        };
        memo.put(DataVersion::at(1), id, Arc::new(credential));
        memo
    }

    #[test]
    fn a_kept_credential_is_checked_as_a_read_one_is() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = generate_secret(&id);
        let now = chrono::Utc::now().naive_utc();
        let version = DataVersion::at(1);
        let check = |memo: &CredentialMemo, presented: &str, now| {
            authenticate_from_memo(memo, version, presented, now)
                .map(|checked| checked.map(|(token, _)| token.id))
        };

        let memo = memo_with(&token, |_| {});
        assert_eq!(check(&memo, &token, now), Some(Ok(id.clone())));
        let wrong_secret = generate_secret(&id);
        assert_eq!(
            check(&memo, &wrong_secret, now),
            Some(Err(Rejection::Invalid)),
            "the secret is compared, not only the id"
        );
        assert_eq!(
            authenticate_from_memo(&memo, DataVersion::at(2), &token, now).map(|_| ()),
            None,
            "kept at another version: read again"
        );

        let expiry = now + chrono::TimeDelta::seconds(30);
        let memo = memo_with(&token, |t| t.expires_at = Some(expiry));
        assert!(matches!(check(&memo, &token, now), Some(Ok(_))));
        assert_eq!(
            check(&memo, &token, expiry),
            Some(Err(Rejection::Expired)),
            "a token that expires while kept is refused"
        );

        let memo = memo_with(&token, |t| t.revoked_at = Some(now));
        assert_eq!(check(&memo, &token, now), Some(Err(Rejection::Revoked)));

        let memo = memo_with(&token, |t| {
            t.last_used_at = Some(now - LAST_USED_RESOLUTION);
        });
        assert_eq!(check(&memo, &token, now), None, "its last use is due: read");
    }

    #[test]
    fn generated_tokens_parse_back_to_their_id() {
        for _ in 0..200 {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let secret = generate_secret(&id);
            assert_eq!(parse_id(&secret), Some(id.as_str()), "{secret}");
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let id = "0123456789abcdef0123456789abcdef";
        let good = format!("idg_{id}_{}", "A".repeat(SECRET_LEN));
        assert_eq!(parse_id(&good), Some(id));
        for bad in [
            String::new(),
            "idg_".to_owned(),
            format!("idx_{id}_{}", "A".repeat(SECRET_LEN)),
            format!("idg_{}_{}", id.to_uppercase(), "A".repeat(SECRET_LEN)),
            format!("idg_{id}-{}", "A".repeat(SECRET_LEN)),
            format!("idg_{id}_{}", "A".repeat(SECRET_LEN - 1)),
            format!("idg_{id}_{}", "A".repeat(SECRET_LEN + 1)),
            format!("idg_{id}_{}=", "A".repeat(SECRET_LEN - 1)),
            format!("idg_{id}_{}é", "A".repeat(SECRET_LEN - 2)),
        ] {
            assert_eq!(parse_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(
            parse_lifetime("90d").unwrap(),
            Duration::from_secs(90 * 86400)
        );
        assert_eq!(
            parse_lifetime("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("11y").is_err());
        assert!(parse_lifetime("soon").is_err());
    }
}
