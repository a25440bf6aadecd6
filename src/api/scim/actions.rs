//! What each SCIM request does, apart from HTTP: the handlers and `/Bulk` both call these, so a
//! bulk operation behaves exactly as the same request sent alone.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use benjamin_batchly::{BatchMutex, BatchResult};
use hashbrown::Equivalent;
use serde_json::{Value, json};

use super::provisioning;
use super::render::{self, GroupOf, location, render_group, render_user};
use super::{ListParams, Paging};

/// Refused SCIM writes kept in the audit log per workspace and minute, at most.
const REFUSALS_AUDITED_PER_MINUTE: i64 = 60;
use crate::audit::{self, Actor, AuditContext};
use crate::db::memo::{DataVersion, Memo};
use crate::db::{Backend, Conn, DbConnection, Store, budget};
use crate::directory::groups::{self, Member, MemberChange, StoredGroup};
use crate::directory::store::Page;
use crate::directory::users::{self, Listed, StoredUser};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::filter::{CompValue, CompareOp, Filter};
use crate::scim::patch::{self, Op, Operation};
use crate::scim::resource::{self, Document, Projection};
use crate::scim::schema::ResourceKind;
use std::net::IpAddr;

use crate::auth::AuthError;
use crate::auth::ratelimit::RateLimiter;
use crate::permissions::Scope;
use crate::tokens::{self, ApiToken};
use crate::workspaces::Workspace;

pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM request whose token checked out (see [`Credentials::check`]): its tenant, and where
/// resources live (`{base_url}/scim/v2`).
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub base: String,
    /// The checked token's workspace and actor.
    pub tenant: Tenant,
    pub memo: actix_web::web::Data<ScimMemo>,
    pub member_adds: actix_web::web::Data<MemberAdds>,
}

/// What a SCIM request presents, to be checked before anything of the request is read: the
/// bearer token, and what checking it needs.
pub struct Credentials {
    pub store: Store,
    pub token: String,
    pub request_id: Option<String>,
    /// Counts the request once its token checks.
    pub limiter: actix_web::web::Data<RateLimiter>,
    /// The client's address, which a refused token is counted against.
    pub client: Option<IpAddr>,
    pub memo: actix_web::web::Data<ScimMemo>,
}

/// The member adds waiting for each group, by workspace id and group id: those that arrive while
/// one batch is made are made together next.
pub type MemberAdds =
    BatchMutex<(String, String), provisioning::MemberAdd, Result<StoredGroup, ScimError>>;

/// Whose request it is, once the token has been checked: its workspace, and the actor to audit.
#[derive(Clone)]
pub struct Tenant {
    pub workspace_id: String,
    pub audit: AuditContext,
}

/// A user as read, with the groups they are in, and once asked for, the JSON of the whole user.
pub struct ReadUser {
    user: StoredUser,
    groups: Vec<GroupOf>,
    json: OnceLock<Bytes>,
}

impl ReadUser {
    fn new(user: StoredUser, groups: Vec<GroupOf>) -> ReadUser {
        ReadUser {
            user,
            groups,
            json: OnceLock::new(),
        }
    }

    /// The user with every attribute a request gets without naming any, rendered once.
    fn json(&self, base: &str) -> Bytes {
        self.json
            .get_or_init(|| Bytes::from(render::user_json(base, &self.user, &self.groups)))
            .clone()
    }
}

/// What SCIM requests keep between them while the database is unchanged (see
/// [`crate::db::memo`]): tokens' credentials, users read by id or by a page, lookups of a user, and an
/// import's walk. Every key holds the workspace, so one workspace's reads are never another's
/// answer.
pub struct ScimMemo {
    /// At the credentials version, which provisioning does not move (see [`crate::db::changes`]).
    credentials: tokens::CredentialMemo,
    /// By workspace id and user id; looked up by a [`UserKey`].
    users: Memo<(String, String), Arc<ReadUser>>,
    /// Lists of a few users, by workspace id and [`lookup_key`].
    lookups: Memo<(String, String), Arc<FoundPage>>,
    /// What an import walking a workspace's whole list page by page needs on every page (see
    /// [`Walk`]).
    walks: Memo<Walk, i64>,
}

/// A user's key in [`ScimMemo::users`], borrowed: a look-up makes no key. It hashes as the tuple
/// of strings it stands for.
#[derive(Hash)]
struct UserKey<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for UserKey<'_> {
    fn equivalent(&self, (workspace_id, user_id): &(String, String)) -> bool {
        self.0 == workspace_id && self.1 == user_id
    }
}

/// An IdP imports a workspace by listing every user a page at a time (`startIndex` 1, 101, 201,
/// ... at 100,000 users, a thousand pages) while nothing changes. Each page would count the
/// workspace's resources and skip past every one before it; while the data version holds, the
/// count is kept, and so is where each page ended, so that the next page starts from there.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Walk {
    /// How many resources of this type the workspace holds.
    Total(String, ResourceKind),
    /// The creation number of the last resource before this offset.
    EndBefore(String, ResourceKind, i64),
}

/// Users kept at most: a user is a kilobyte or two, so a few megabytes.
const USERS_KEPT: usize = 4096;
/// Lookups kept at most: each holds at most [`LOOKUP_KEPT`] user.
const LOOKUPS_KEPT: usize = 1024;
/// Walks' totals and page ends kept at most: a walk of 100,000 users makes a thousand.
const WALKS_KEPT: usize = 16_384;

impl Default for ScimMemo {
    fn default() -> Self {
        ScimMemo {
            credentials: Memo::new("token_credentials", tokens::CREDENTIALS_KEPT),
            users: Memo::new("scim_users", USERS_KEPT),
            lookups: Memo::new("scim_lookups", LOOKUPS_KEPT),
            walks: Memo::new("scim_list_walks", WALKS_KEPT),
        }
    }
}

impl Context {
    /// Keeps a write the IdP sent that was refused as its mistake (400, 409, 412) in the audit
    /// log as `scim.request.refused`, with the status, scimType and detail, so the console's
    /// provisioning page shows it. At most [`REFUSALS_AUDITED_PER_MINUTE`] a minute per
    /// workspace, so a client in a loop cannot grow the log without bound; a request whose token
    /// does not check is not kept.
    pub async fn note_refusal<T>(&self, result: &Result<T, ScimError>, operation: String) {
        let Err(error) = result else {
            return;
        };
        let status = actix_web::ResponseError::status_code(error);
        if !matches!(status.as_u16(), 400 | 409 | 412) {
            return;
        }
        let details = json!({
            "status": status.as_u16(),
            "scimType": error.scim_type().map(ScimType::as_str),
            "detail": error.to_string(),
        });
        let noted = self
            .run(move |conn, tenant| {
                let minute_ago = crate::time::now() - chrono::TimeDelta::minutes(1);
                let action = "scim.request.refused";
                if audit::at_least_since(
                    conn,
                    &tenant.workspace_id,
                    action,
                    REFUSALS_AUDITED_PER_MINUTE,
                    minute_ago,
                )? {
                    return Ok(());
                }
                conn.write(|tx| {
                    audit::record_leaving_decisions_alone(
                        tx,
                        &tenant.audit,
                        audit::Event {
                            workspace_id: Some(&tenant.workspace_id),
                            action,
                            target: audit::Target {
                                kind: "scim_request",
                                id: &operation,
                            },
                            details,
                        },
                    )
                })?;
                Ok(())
            })
            .await;
        if let Err(error) = noted {
            tracing::warn!(error = %error, "cannot keep a refused SCIM request in the audit log");
        }
    }

    /// Runs `work` for the checked token's workspace.
    pub async fn run<T, F>(&self, work: F) -> Result<T, ScimError>
    where
        F: FnOnce(&mut Conn, &Tenant) -> Result<T, ScimError> + Send + 'static,
        T: Send + 'static,
    {
        let tenant = self.tenant.clone();
        self.store.run(move |conn| work(conn, &tenant)).await
    }

    /// A read whose answer may be kept (see [`ScimMemo`]): `kept` looks for it in the memo, `read`
    /// reads it from the database, given the version to keep it at (None: keep nothing).
    async fn read_through<T, F>(
        &self,
        kept: impl FnOnce(&ScimMemo, DataVersion, &Tenant) -> Option<T>,
        read: F,
    ) -> Result<T, ScimError>
    where
        F: FnOnce(
                &mut DbConnection,
                &Tenant,
                Option<(&ScimMemo, DataVersion)>,
            ) -> Result<T, ScimError>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let version = self.store.data_version();
        if let Some(found) = version.and_then(|version| kept(&self.memo, version, &self.tenant)) {
            return Ok(found);
        }
        let memo = self.memo.clone();
        self.run(move |conn, tenant| read(conn, tenant, version.map(|version| (&**memo, version))))
            .await
    }
}

impl Credentials {
    /// Checks the token (valid, with the `scim` scope, within its rate limit): from the memo when
    /// its check is kept at the credentials version (see [`crate::db::changes`]), else read.
    pub async fn check(self) -> Result<Tenant, ScimError> {
        let credentials = self.store.credentials_version();
        if let Some(tenant) = credentials.and_then(|version| self.tenant_from_memo(version)) {
            return tenant;
        }
        let store = self.store.clone();
        store
            .run(move |conn| {
                let memo = credentials.map(|version| (&self.memo.credentials, version));
                let (token, workspace) =
                    tokens::authenticate(conn, &self.token, crate::time::now(), memo)
                        .map_err(|error| self.refused(AuthError::from(error)))?;
                self.tenant(token, workspace)
            })
            .await
    }

    /// The check made without the database, when the token's credential is kept at `version`.
    fn tenant_from_memo(&self, version: DataVersion) -> Option<Result<Tenant, ScimError>> {
        let checked = tokens::authenticate_from_memo(
            &self.memo.credentials,
            version,
            &self.token,
            crate::time::now(),
        )?;
        Some(
            checked
                .map_err(|rejection| self.refused(AuthError::Rejected(rejection)).into())
                .and_then(|(token, workspace)| self.tenant(token, workspace)),
        )
    }

    /// A refused token counts against the client's address (see [`RateLimiter::refused`]).
    fn refused(&self, error: AuthError) -> AuthError {
        match self.client {
            Some(client) => self.limiter.refused(client, error),
            None => error,
        }
    }

    /// The tenant of a checked token that holds the `scim` scope, once admitted by its rate limit.
    fn tenant(&self, token: ApiToken, workspace: Workspace) -> Result<Tenant, ScimError> {
        if !token.scopes.contains(Scope::Scim) {
            return Err(AuthError::MissingScope(Scope::Scim).into());
        }
        let tenant = Tenant {
            workspace_id: workspace.id,
            audit: AuditContext {
                actor: Actor::Token(token.id),
                request_id: self.request_id.clone(),
            },
        };
        self.limiter.admit(&tenant.audit.actor)?;
        Ok(tenant)
    }
}

/// The outcome of an action: status, body, and the resource's version and location where there is one.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub version: Option<i64>,
    pub location: Option<String>,
}

impl Reply {
    fn resource(status: StatusCode, body: Value, version: i64) -> Reply {
        let location = body["meta"]["location"].as_str().map(str::to_owned);
        Reply {
            status,
            body: Some(body),
            version: Some(version),
            location,
        }
    }
}

/// Counts a SCIM write (sent alone or inside `/Bulk`) in `/metrics`, by its outcome.
pub fn count_write(kind: ResourceKind, operation: &str, result: &Result<Reply, ScimError>) {
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    crate::metrics::metrics()
        .scim_operations
        .with_label_values(&[kind.name(), operation, outcome])
        .inc();
}

/// Splits `members` out of a group body: the document without it, and the member ids.
fn split_members(input: &Value) -> Result<(Document, Vec<String>), ScimError> {
    let mut body = input.clone();
    let members = body.as_object_mut().and_then(|fields| {
        let key = fields
            .keys()
            .find(|key| key.eq_ignore_ascii_case("members"))
            .cloned();
        key.and_then(|key| fields.remove(&key))
    });
    let document = resource::normalize(ResourceKind::Group, &body)?;
    Ok((document, member_ids(members.as_ref())?))
}

/// The ids of a `members` value: `[{"value": "id", "type"?: ..., "$ref"?: ...}]`.
fn member_ids(members: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let items = match members {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
        Some(single @ Value::Object(_)) => vec![single],
        Some(_) => {
            return Err(ScimError::invalid_value(
                "members must be an array of {\"value\": id}",
            ));
        }
    };
    items
        .into_iter()
        .map(|item| match item.get("value") {
            Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
            _ => Err(ScimError::invalid_value(
                "each member needs a value: the member's id",
            )),
        })
        .collect()
}

/// The ids a `members[...]` filter names: `value eq "id"`, joined by `or`.
fn filtered_ids(filter: &Filter) -> Result<Vec<String>, ScimError> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if path.name.eq_ignore_ascii_case("value") && path.sub.is_none() => Ok(vec![id.clone()]),
        Filter::Or(left, right) => {
            let mut ids = filtered_ids(left)?;
            ids.extend(filtered_ids(right)?);
            Ok(ids)
        }
        _ => Err(ScimError::bad(
            ScimType::InvalidPath,
            "a members filter names members by value eq \"id\", joined by or",
        )),
    }
}

fn is_members(name: &str) -> bool {
    name.eq_ignore_ascii_case("members")
        || name.eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:Group:members")
}

/// Takes membership operations out of a group PATCH: what they do to members, and the rest.
fn membership_operations(
    operations: Vec<Operation>,
) -> Result<(MemberChange, Vec<Operation>), ScimError> {
    let mut change = MemberChange::default();
    let mut others = Vec::new();
    for mut operation in operations {
        match &operation.path {
            Some(path) if path.attr.name.eq_ignore_ascii_case("members") => {
                if path.attr.sub.is_some() || path.sub.is_some() {
                    return Err(ScimError::bad(
                        ScimType::Mutability,
                        "member sub-attributes are immutable",
                    ));
                }
                match (operation.op, &path.filter) {
                    (Op::Remove, Some(filter)) => change.remove.extend(filtered_ids(filter)?),
                    // Entra without aadOptscim062020: remove exactly the members listed in the value.
                    (Op::Remove, None) if operation.value.is_some() => {
                        change.remove.extend(member_ids(operation.value.as_ref())?)
                    }
                    (Op::Remove, None) => change.remove_all = true,
                    (Op::Add, None) => change.add.extend(member_ids(operation.value.as_ref())?),
                    (Op::Replace, None) => {
                        change.replace = Some(member_ids(operation.value.as_ref())?)
                    }
                    (_, Some(_)) => {
                        return Err(ScimError::bad(
                            ScimType::InvalidPath,
                            "members filters apply to remove only",
                        ));
                    }
                }
            }
            None => {
                // A no-path value may carry members beside other attributes.
                if let Some(Value::Object(fields)) = operation.value.as_mut() {
                    let key = fields.keys().find(|key| is_members(key)).cloned();
                    if let Some(members) = key.and_then(|key| fields.remove(&key)) {
                        let ids = member_ids(Some(&members))?;
                        match operation.op {
                            Op::Replace => change.replace = Some(ids),
                            _ => change.add.extend(ids),
                        }
                    }
                    if fields.is_empty() {
                        continue;
                    }
                }
                others.push(operation);
            }
            Some(_) => others.push(operation),
        }
    }
    Ok((change, others))
}

/// The user `work` returns, with every group row for it.
async fn user_with_groups(
    ctx: &Context,
    work: impl FnOnce(&mut Conn, &Tenant) -> Result<StoredUser, ScimError> + Send + 'static,
) -> Result<(StoredUser, Vec<GroupOf>), ScimError> {
    ctx.run(move |conn, tenant| {
        let user = work(conn, tenant)?;
        let groups = users::groups_of(conn, std::slice::from_ref(&user.id))?;
        Ok((user, groups))
    })
    .await
}

/// One user with their groups, from the memo when it holds them at the database's version, else
/// read (and kept).
async fn user_by_id(ctx: &Context, id: String) -> Result<Arc<ReadUser>, ScimError> {
    let wanted = id.clone();
    ctx.read_through(
        |memo, version, tenant| {
            memo.users
                .get(version, &UserKey(&tenant.workspace_id, &wanted))
        },
        move |conn, tenant, memo| {
            let user = users::load(conn, &tenant.workspace_id, &id)?;
            let groups = users::groups_of(conn, std::slice::from_ref(&user.id))?;
            let found = Arc::new(ReadUser::new(user, groups));
            if let Some((memo, version)) = memo {
                let key = (tenant.workspace_id.clone(), id);
                memo.users.put(version, key, found.clone());
            }
            Ok(found)
        },
    )
    .await
}

/// The group `work` returns, with its members.
async fn group_with_members(
    ctx: &Context,
    work: impl FnOnce(&mut Conn, &Tenant) -> Result<StoredGroup, ScimError> + Send + 'static,
) -> Result<(StoredGroup, Vec<Member>), ScimError> {
    ctx.run(move |conn, tenant| {
        let group = work(conn, tenant)?;
        let members = groups::members_of(conn, std::slice::from_ref(&group.id), None, None)?;
        Ok((group, members))
    })
    .await
}

pub async fn create(ctx: &Context, kind: ResourceKind, body: &Value) -> Result<Reply, ScimError> {
    match kind {
        ResourceKind::User => {
            let document = resource::normalize(kind, body)?;
            // A new user belongs to no group yet: nothing more to read.
            let user = ctx
                .run(move |conn, t| users::create(conn, &t.workspace_id, document, &t.audit))
                .await?;
            let body = render_user(&ctx.base, &user, [], &Projection::default());
            Ok(Reply::resource(StatusCode::CREATED, body, user.version))
        }
        ResourceKind::Group => {
            let (document, member_ids) = split_members(body)?;
            let (group, members) = group_with_members(ctx, move |conn, t| {
                groups::create(conn, &t.workspace_id, document, member_ids, &t.audit)
            })
            .await?;
            let body = render_group(&ctx.base, &group, Some(&members), &Projection::default());
            Ok(Reply::resource(StatusCode::CREATED, body, group.version))
        }
    }
}

/// Stores the document `change` makes of the current user, and answers 200 with the user.
async fn update_user(
    ctx: &Context,
    id: String,
    if_match: Option<String>,
    change: impl FnOnce(&StoredUser) -> Result<Document, ScimError> + Send + 'static,
) -> Result<Reply, ScimError> {
    let (user, groups) = user_with_groups(ctx, move |conn, t| {
        provisioning::update_user(
            conn,
            &t.workspace_id,
            &id,
            if_match.as_deref(),
            &t.audit,
            change,
        )
    })
    .await?;
    let body = render_user(&ctx.base, &user, &groups, &Projection::default());
    Ok(Reply::resource(StatusCode::OK, body, user.version))
}

pub async fn replace(
    ctx: &Context,
    kind: ResourceKind,
    id: &str,
    body: &Value,
    if_match: Option<String>,
) -> Result<Reply, ScimError> {
    let id = id.to_owned();
    match kind {
        ResourceKind::User => {
            let document = resource::normalize(kind, body)?;
            // PUT replaces every writable attribute; read-only ones were dropped by normalize.
            update_user(ctx, id, if_match, move |_| Ok(document)).await
        }
        ResourceKind::Group => {
            let (document, member_ids) = split_members(body)?;
            let change = MemberChange {
                replace: Some(member_ids),
                ..MemberChange::default()
            };
            let (group, members) = group_with_members(ctx, move |conn, t| {
                provisioning::update_group(
                    conn,
                    &t.workspace_id,
                    &id,
                    if_match.as_deref(),
                    &t.audit,
                    change,
                    |_| Ok(document),
                )
            })
            .await?;
            let body = render_group(&ctx.base, &group, Some(&members), &Projection::default());
            Ok(Reply::resource(StatusCode::OK, body, group.version))
        }
    }
}

/// A user PATCH answers 200 with the user (Okta reads it); a group PATCH answers 204, so that a
/// large member list is never echoed.
pub async fn patch(
    ctx: &Context,
    kind: ResourceKind,
    id: &str,
    body: &Value,
    if_match: Option<String>,
) -> Result<Reply, ScimError> {
    let operations = patch::parse_request(body, PATCH_SCHEMA)?;
    let id = id.to_owned();
    match kind {
        ResourceKind::User => {
            update_user(ctx, id, if_match, move |current| {
                patch::apply(ResourceKind::User, current.document(), &operations)
            })
            .await
        }
        ResourceKind::Group => {
            let (change, others) = membership_operations(operations)?;
            let group = if if_match.is_none() && others.is_empty() && change.only_adds() {
                add_group_members(ctx, id, change.add).await?
            } else {
                ctx.run(move |conn, t| {
                    provisioning::update_group(
                        conn,
                        &t.workspace_id,
                        &id,
                        if_match.as_deref(),
                        &t.audit,
                        change,
                        |current| {
                            if others.is_empty() {
                                Ok(current.document())
                            } else {
                                patch::apply(ResourceKind::Group, current.document(), &others)
                            }
                        },
                    )
                })
                .await?
            };
            let location = Some(location(&ctx.base, kind, &group.id));
            Ok(Reply {
                status: StatusCode::NO_CONTENT,
                body: None,
                version: Some(group.version),
                location,
            })
        }
    }
}

/// Adds `ids` to the group. On PostgreSQL, together with the other adds waiting for the group
/// (see [`MemberAdds`]), or alone if their batch failed; SQLite's writer already makes concurrent
/// writes one transaction (see `db::writer`), and adds waiting for one group would only keep it
/// waiting.
async fn add_group_members(
    ctx: &Context,
    group_id: String,
    ids: Vec<String>,
) -> Result<StoredGroup, ScimError> {
    let tenant = ctx.tenant.clone();
    let add = provisioning::MemberAdd {
        ids,
        context: tenant.audit.clone(),
    };
    if ctx.store.backend() == Backend::Postgres {
        let key = (tenant.workspace_id.clone(), group_id.clone());
        if let Some(answer) = made_together(ctx, key, add.clone()).await {
            return answer;
        }
    }
    ctx.store
        .run(move |conn| add.run_alone(conn, &tenant.workspace_id, &group_id))
        .await
}

/// `add`'s answer from the batch it joined for the group `key` names; None when that batch
/// failed, and `add` is to be made alone.
async fn made_together(
    ctx: &Context,
    key: (String, String),
    add: provisioning::MemberAdd,
) -> Option<Result<StoredGroup, ScimError>> {
    let mut batch = match ctx.member_adds.submit(key.clone(), add).await {
        BatchResult::Done(answer) => return Some(answer),
        BatchResult::Failed => return None,
        BatchResult::Work(batch) => batch,
    };
    let adds = std::mem::take(&mut batch.items);
    let made = ctx.store.run(move |conn| {
        let (workspace_id, group_id) = &key;
        let answers = provisioning::add_group_members(conn, workspace_id, group_id, &adds);
        Ok::<_, ScimError>(answers)
    });
    for (index, answer) in made.await.ok().flatten().into_iter().flatten().enumerate() {
        batch.notify_done(index, answer);
    }
    // None if unanswered: dropped, the batch tells the others to be made alone too.
    batch.recv_local_notify_done()
}

pub async fn delete(ctx: &Context, kind: ResourceKind, id: &str) -> Result<Reply, ScimError> {
    let id = id.to_owned();
    ctx.run(move |conn, t| match kind {
        ResourceKind::User => provisioning::delete_user(conn, &t.workspace_id, &id, &t.audit),
        ResourceKind::Group => provisioning::delete_group(conn, &t.workspace_id, &id, &t.audit),
    })
    .await?;
    Ok(Reply {
        status: StatusCode::NO_CONTENT,
        body: None,
        version: None,
        location: None,
    })
}

/// One user or group. A group comes without `members`: the handler streams them, since a group
/// may have more than fit comfortably in one response buffer.
pub async fn get(
    ctx: &Context,
    kind: ResourceKind,
    id: &str,
    projection: &Projection,
) -> Result<(Value, i64), ScimError> {
    let id = id.to_owned();
    match kind {
        ResourceKind::User => {
            let found = user_by_id(ctx, id).await?;
            Ok((
                render_user(&ctx.base, &found.user, &found.groups, projection),
                found.user.version,
            ))
        }
        ResourceKind::Group => {
            let group = ctx
                .run(move |conn, t| groups::load(conn, &t.workspace_id, &id))
                .await?;
            Ok((
                render_group(&ctx.base, &group, None, projection),
                group.version,
            ))
        }
    }
}

/// A user as JSON with every attribute a request gets without naming any, and its version.
/// Rendered once for as long as the memo keeps the user.
pub async fn user_json(ctx: &Context, id: &str) -> Result<(Bytes, i64), ScimError> {
    let found = user_by_id(ctx, id.to_owned()).await?;
    Ok((found.json(&ctx.base), found.user.version))
}

/// A page of users or groups (groups without their members, which the handler streams).
pub struct Listing {
    /// How many resources match, over all pages.
    pub total: i64,
    pub resources: Vec<Rendered>,
    /// The creation number of the page's last resource, for the next cursor.
    pub last_seq: Option<i64>,
    pub paging: Paging,
    pub limit: i64,
}

/// Lists `kind`'s resources as `params` asks. `before` shifts the window for a list that other
/// resource types fill first (the root `.search`): how many of them matched, and how many of
/// them this page already holds.
pub async fn list(
    ctx: &Context,
    kind: ResourceKind,
    params: &ListParams,
    before: (i64, i64),
) -> Result<Listing, ScimError> {
    let projection = params.projection();
    let wants_groups = projection.wants(kind, "groups");
    let lookup =
        (kind == ResourceKind::User && before == (0, 0)).then(|| lookup_key(params, wants_groups));
    let (params, wanted) = (params.clone(), lookup.clone());
    let found = ctx
        .read_through(
            |memo, version, tenant| {
                let key = (tenant.workspace_id.clone(), wanted?);
                memo.lookups.get(version, &key)
            },
            move |conn, t, memo| {
                let (mut page, paging) = params.page(&t.workspace_id, kind)?;
                page.offset = (page.offset - before.0).max(0);
                page.limit -= before.1;
                let limit = page.limit;
                let walk = memo.filter(|_| before == (0, 0) && page.walks_everything());
                let start = page.offset;
                if let Some((memo, version)) = walk {
                    let workspace = &t.workspace_id;
                    page.known_total = memo
                        .walks
                        .get(version, &Walk::Total(workspace.clone(), kind));
                    let end_before = Walk::EndBefore(workspace.clone(), kind, start);
                    if let Some(seq) = memo.walks.get(version, &end_before).filter(|_| start > 0) {
                        page.after = Some(seq);
                        page.offset = 0;
                    }
                    // Where this page ends is kept only once it was read at this version; its
                    // users were kept with it, if with their groups.
                    let ends = Walk::EndBefore(workspace.clone(), kind, start + limit);
                    page.read_before = wants_groups && memo.walks.get(version, &ends).is_some();
                }
                let read = |conn: &mut DbConnection| -> Result<_, ScimError> {
                    Ok(match kind {
                        ResourceKind::User => {
                            let (total, found) = users_with_their_groups(
                                conn,
                                &t.workspace_id,
                                &page,
                                wants_groups,
                                memo,
                            )?;
                            (Found::Users(found), total)
                        }
                        // Members are streamed by the handler, group by group, not loaded here.
                        ResourceKind::Group => {
                            let (total, found) = groups::list(conn, &t.workspace_id, &page)?;
                            (Found::Groups(found), total)
                        }
                    })
                };
                let (resources, total) = if page.is_budgeted() {
                    budget::within(conn, &t.workspace_id, budget::QUERY_BUDGET, read)?
                } else {
                    read(conn)?
                };
                let found = Arc::new(FoundPage {
                    resources,
                    total,
                    paging,
                    limit,
                });
                if let Some((memo, version)) = walk {
                    let workspace = &t.workspace_id;
                    memo.walks
                        .put(version, Walk::Total(workspace.clone(), kind), total);
                    if let Some(seq) = found.last_seq() {
                        let read = i64::try_from(found.len()).unwrap_or(i64::MAX);
                        let next = Walk::EndBefore(workspace.clone(), kind, start + read);
                        memo.walks.put(version, next, seq);
                    }
                }
                if let (Some(lookup), Some((memo, version))) = (lookup, memo)
                    && matches!(&found.resources, Found::Users(users) if users.len() <= LOOKUP_KEPT)
                {
                    memo.lookups
                        .put(version, (t.workspace_id.clone(), lookup), found.clone());
                }
                Ok(found)
            },
        )
        .await?;
    let (total, paging, limit) = (found.total, found.paging, found.limit);
    let resources = match &found.resources {
        Found::Users(users) if projection.is_default() => users
            .iter()
            .map(|user| Rendered::Json(user.json(&ctx.base)))
            .collect(),
        Found::Users(users) => users
            .iter()
            .map(|read| {
                let user = render_user(&ctx.base, &read.user, &read.groups, &projection);
                Rendered::Value(user)
            })
            .collect(),
        Found::Groups(groups) => groups
            .iter()
            .map(|group| Rendered::Value(render_group(&ctx.base, group, None, &projection)))
            .collect(),
    };
    Ok(Listing {
        total,
        resources,
        last_seq: found.last_seq(),
        paging,
        limit,
    })
}

/// The rows a list loaded, before rendering: users with their groups when the projection wants
/// them.
enum Found {
    Users(Vec<Arc<ReadUser>>),
    Groups(Vec<StoredGroup>),
}

/// A page of users, each with the groups they are in when `wants_groups`. With a memo and groups
/// wanted, a user it keeps comes as kept (rendered already, once asked for; of their row only the
/// id is decoded), and the others are read with their groups and kept: a page asked for again
/// reads no groups and renders nothing, and a GET of a user the page showed reads nothing. Users
/// read without their groups are not kept: a GET would miss them.
fn users_with_their_groups(
    conn: &mut DbConnection,
    workspace_id: &str,
    page: &Page,
    wants_groups: bool,
    memo: Option<(&ScimMemo, DataVersion)>,
) -> Result<(i64, Vec<Arc<ReadUser>>), ScimError> {
    let memo = memo.filter(|_| wants_groups);
    let (total, listed) = users::list(conn, workspace_id, page, |id| {
        memo.and_then(|(memo, version)| memo.users.get(version, &UserKey(workspace_id, id)))
    })?;
    let unread: Vec<String> = listed
        .iter()
        .filter_map(|listed| match listed {
            Listed::Read(user) => Some(user.id.clone()),
            Listed::Kept(_) => None,
        })
        .collect();
    let mut theirs: HashMap<String, Vec<GroupOf>> = HashMap::new();
    if wants_groups && !unread.is_empty() {
        for group in users::groups_of(conn, &unread)? {
            theirs.entry(group.0.clone()).or_default().push(group);
        }
    }
    let found = listed
        .into_iter()
        .map(|listed| match listed {
            Listed::Kept(read) => read,
            Listed::Read(user) => {
                let groups = theirs.remove(&user.id).unwrap_or_default();
                let read = Arc::new(ReadUser::new(user, groups));
                if let Some((memo, version)) = memo {
                    let key = (workspace_id.to_owned(), read.user.id.clone());
                    memo.users.put(version, key, read.clone());
                }
                read
            }
        })
        .collect();
    Ok((total, found))
}

/// A page as read.
pub struct FoundPage {
    resources: Found,
    total: i64,
    paging: Paging,
    limit: i64,
}

impl FoundPage {
    fn len(&self) -> usize {
        match &self.resources {
            Found::Users(users) => users.len(),
            Found::Groups(groups) => groups.len(),
        }
    }

    /// The creation number of the page's last resource.
    fn last_seq(&self) -> Option<i64> {
        match &self.resources {
            Found::Users(users) => users.last().map(|read| read.user.seq),
            Found::Groups(groups) => groups.last().map(|group| group.seq),
        }
    }
}

/// A resource of a list, rendered: JSON as it will be sent, or a value still to be completed
/// (a group's members are streamed after it).
pub enum Rendered {
    Value(Value),
    Json(Bytes),
}

/// Lists of users kept when they found at most this many: the lookups IdPs make before each
/// change (`userName eq`, `externalId eq`), not pages of a listing.
const LOOKUP_KEPT: usize = 1;

/// What decides a list of users' page: the parameters other than the projection, which applies
/// after the read.
fn lookup_key(params: &ListParams, wants_groups: bool) -> String {
    json!([
        params.filter,
        params.start_index,
        params.count,
        params.sort_by,
        params.sort_order,
        params.cursor,
        wants_groups
    ])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user kept for one workspace is found by that workspace's key alone: the borrowed key
    /// hashes as the kept one does and compares both its parts.
    #[test]
    fn a_borrowed_user_key_finds_only_its_workspace_user() {
        let memo = Memo::new("test", 10);
        let version = DataVersion::at(1);
        memo.put(version, ("acme".to_owned(), "u1".to_owned()), 1);
        assert_eq!(memo.get(version, &UserKey("acme", "u1")), Some(1));
        assert_eq!(memo.get(version, &UserKey("acme", "u2")), None);
        assert_eq!(memo.get(version, &UserKey("globex", "u1")), None);
        let kept = ("acme".to_owned(), "u1".to_owned());
        assert!(!UserKey("globex", "u1").equivalent(&kept));
        assert!(!UserKey("acme", "u2").equivalent(&kept));
    }
}
