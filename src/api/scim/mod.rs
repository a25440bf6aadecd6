//! The SCIM service: the HTTP endpoints under `/scim/v2`, over the documents of [`crate::scim`]
//! and the storage of [`crate::directory`]. The bearer token (scope `scim`) decides the workspace
//! ([`actions::Context`]); [`provisioning`] keeps the access rules around each write.

pub mod actions;
pub mod bulk;
pub mod paths;
pub mod provisioning;
pub mod render;

use crate::auth::ratelimit::RateLimiter;
use actix_web::dev::{Payload, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::LocalBoxFuture;
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::pin::Pin;

use crate::auth::{AuthError, bearer_token};
use crate::config::BaseUrl;
use crate::db::Store;
use crate::directory::groups;
use crate::directory::query;
use crate::directory::store::{Page, etag, matches_version};
use crate::scim::error::{MEDIA_TYPE, ScimError, ScimType};
use crate::scim::filter::{self, parse_filter};
use crate::scim::resource::{self, Projection};
use crate::scim::schema::{self, ResourceKind};
use actions::{Context, Credentials, MemberAdds, Rendered, Reply, ScimMemo};

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const DEFAULT_COUNT: i64 = 100;
pub const MAX_COUNT: i64 = 1000;
/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// Where the SCIM API is served.
pub const SCOPE: &str = "/scim/v2";

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope(SCOPE)
            .wrap(ErrorHandlers::new().default_handler(scim_error_body))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            // Resources rather than routes, so that another method on a known path is a 405.
            .service(web::resource("/ServiceProviderConfig").get(service_provider_config))
            .service(web::resource("/ResourceTypes").get(resource_types))
            .service(web::resource("/ResourceTypes/{id}").get(resource_type))
            .service(web::resource("/Schemas").get(schemas))
            .service(web::resource("/Schemas/{id}").get(schema_by_id))
            .service(web::resource("/Bulk").post(self::bulk::bulk))
            .service(web::resource("/.search").post(search_all))
            .configure(|config| resource_routes(config, ResourceKind::User))
            .configure(|config| resource_routes(config, ResourceKind::Group))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ScimError::NotFound("no such SCIM endpoint".to_owned()))
            })),
    );
}

/// Errors raised before a SCIM handler runs (a body over the limit, a wrong method) come from actix
/// as plain text; they get the SCIM Error body like every other SCIM error.
fn scim_error_body<B>(response: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value == MEDIA_TYPE);
    if is_scim {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    }
    let status = response.status();
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ScimError::PayloadTooLarge(format!("the request body is larger than {MAX_BODY} bytes"))
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            ScimError::Http(status, "method not allowed here".to_owned())
        }
        status => ScimError::Http(
            status,
            status.canonical_reason().unwrap_or("error").to_owned(),
        ),
    };
    let (request, _) = response.into_parts();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, error.error_response()).map_into_right_body(),
    ))
}

/// A SCIM request's context, from a bearer token with the `scim` scope: the token's workspace,
/// the token as the actor, and where resources live. The token is checked here, so a refused
/// caller is answered before the handler reads or judges anything of its request.
impl FromRequest for Context {
    type Error = ScimError;
    type Future = LocalBoxFuture<'static, Result<Self, ScimError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(request);
        let store = request
            .app_data::<web::Data<Store>>()
            .expect("the app registers its Store")
            .get_ref()
            .clone();
        let base_url = request
            .app_data::<web::Data<BaseUrl>>()
            .expect("the app registers its base URL");
        let base = scim_base(base_url);
        let limiter = request
            .app_data::<web::Data<RateLimiter>>()
            .expect("the app registers its RateLimiter")
            .clone();
        let memo = request
            .app_data::<web::Data<ScimMemo>>()
            .expect("the app registers its ScimMemo")
            .clone();
        let member_adds = request
            .app_data::<web::Data<MemberAdds>>()
            .expect("the app registers its MemberAdds")
            .clone();
        let credentials = token.map(|token| Credentials {
            store: store.clone(),
            token,
            request_id: crate::telemetry::request_id(),
            limiter,
            client: crate::forwarded::client_address(request),
            memo: memo.clone(),
        });
        Box::pin(async move {
            Ok(Context {
                tenant: credentials?.check().await?,
                store,
                base,
                memo,
                member_adds,
            })
        })
    }
}

/// `{base}/scim/v2`, the prefix of every `meta.location`.
pub fn scim_base(base_url: &BaseUrl) -> String {
    format!("{}{SCOPE}", base_url.as_str())
}

pub fn scim_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(MEDIA_TYPE)
        .body(body.to_string())
}

/// Parses a request body, accepting `application/scim+json` and `application/json`.
pub fn parse_body(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body).map_err(|e| {
        ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

pub fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// 304 when `If-None-Match` names the current version.
pub fn not_modified(headers: &HeaderMap, version: i64) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| matches_version(tag.trim(), version))
        })
}

/// The list parameters shared by GET (query string) and POST `.search` (body).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: Option<Value>,
    pub count: Option<Value>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub attributes: Option<Value>,
    pub excluded_attributes: Option<Value>,
    /// RFC 9865 cursor paging: empty for the first page, then the `nextCursor` given.
    pub cursor: Option<String>,
}

/// How a list is paged: by index (RFC 7644) or by cursor (RFC 9865).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    Index(i64),
    Cursor,
}

const CURSOR_PREFIX: &str = "seq:";

/// The opaque cursor that resumes after the resource numbered `seq`.
pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{seq}"))
}

fn decode_cursor(cursor: &str) -> Result<Option<i64>, ScimError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ScimError::bad(
                ScimType::InvalidCursor,
                "the cursor is not one this server issued",
            )
        })
}

impl ListParams {
    /// Query-string values arrive as text; `.search` bodies as JSON numbers and arrays.
    fn integer(value: &Option<Value>, name: &str) -> Result<Option<i64>, ScimError> {
        match value {
            None => Ok(None),
            Some(Value::Number(number)) => number
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer"))),
            Some(_) => Err(ScimError::invalid_value(format!(
                "{name} must be an integer"
            ))),
        }
    }

    fn list(value: &Option<Value>) -> Option<String> {
        match value {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    }

    pub fn projection(&self) -> Projection {
        Projection::parse(
            Self::list(&self.attributes).as_deref(),
            Self::list(&self.excluded_attributes).as_deref(),
        )
    }

    /// Checks the parameters and turns them into SQL over `kind`'s resources in the workspace.
    pub fn page(
        &self,
        workspace_id: &str,
        kind: ResourceKind,
    ) -> Result<(Page, Paging), ScimError> {
        let scope = query::Scope { workspace_id, kind };
        let condition = match self
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            Some(text) => {
                let parsed = parse_filter(text).map_err(|e| {
                    ScimError::bad(ScimType::InvalidFilter, format!("invalid filter {e}"))
                })?;
                Some(query::condition(scope, &parsed)?)
            }
            None => None,
        };
        let sort = match self.sort_by.as_deref() {
            Some(path) => {
                let parsed = filter::parse_path(path)
                    .ok()
                    .filter(|p| p.filter.is_none())
                    .ok_or_else(|| ScimError::invalid_value(format!("cannot sort by {path:?}")))?;
                let (missing_last, key) = query::sort_key(scope, &parsed.attr)?;
                let descending = match self
                    .sort_order
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None | Some("ascending") => false,
                    Some("descending") => true,
                    Some(other) => {
                        return Err(ScimError::invalid_value(format!(
                            "sortOrder {other:?} must be ascending or descending"
                        )));
                    }
                };
                Some((missing_last, key, descending))
            }
            None => None,
        };
        let count = Self::integer(&self.count, "count")?
            .unwrap_or(DEFAULT_COUNT)
            .clamp(0, MAX_COUNT);
        if let Some(cursor) = &self.cursor {
            if self.start_index.is_some() || sort.is_some() {
                return Err(ScimError::invalid_value(
                    "cursor paging follows creation order: give no startIndex or sortBy with a cursor",
                ));
            }
            let after = decode_cursor(cursor.trim())?;
            let page = Page {
                condition,
                sort,
                offset: 0,
                limit: count,
                after,
                known_total: None,
                read_before: false,
            };
            return Ok((page, Paging::Cursor));
        }
        // RFC 7644 §3.4.2.4: startIndex below 1 means 1; a negative count means 0.
        let start_index = Self::integer(&self.start_index, "startIndex")?
            .unwrap_or(1)
            .max(1);
        let page = Page {
            condition,
            sort,
            offset: start_index - 1,
            limit: count,
            after: None,
            known_total: None,
            read_before: false,
        };
        Ok((page, Paging::Index(start_index)))
    }
}

/// The fields of a ListResponse other than `Resources`. `next` is the cursor of the page after
/// this one, when cursor paging has one.
fn list_envelope(total: i64, paging: Paging, next: Option<String>) -> Value {
    let mut envelope = json!({ "schemas": [LIST_SCHEMA], "totalResults": total });
    match paging {
        Paging::Index(start_index) => envelope["startIndex"] = json!(start_index),
        Paging::Cursor => {
            if let Some(next) = next {
                envelope["nextCursor"] = json!(next);
            }
        }
    }
    envelope
}

/// A ListResponse of discovery documents (small, sent whole).
fn list_response(resources: Vec<Value>) -> HttpResponse {
    let mut body = list_envelope(resources.len() as i64, Paging::Index(1), None);
    body["itemsPerPage"] = json!(resources.len());
    body["Resources"] = Value::Array(resources);
    scim_json(StatusCode::OK, &body)
}

/// The endpoints of one resource type: `/Users` or `/Groups`.
fn resource_routes(config: &mut web::ServiceConfig, kind: ResourceKind) {
    let endpoint = format!("/{}", kind.endpoint());
    config
        .service(
            web::resource(endpoint.clone())
                .app_data(web::Data::new(kind))
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            web::resource(format!("{endpoint}/.search"))
                .app_data(web::Data::new(kind))
                .route(web::post().to(search)),
        )
        .service(
            web::resource(format!("{endpoint}/{{id}}"))
                .app_data(web::Data::new(kind))
                .route(web::get().to(get))
                .route(web::put().to(replace))
                .route(web::patch().to(patch))
                .route(web::delete().to(delete)),
        );
}

/// The HTTP form of an action's reply: SCIM JSON, with `ETag` and, on 201, `Location`.
pub fn respond(reply: Reply) -> HttpResponse {
    let mut response = match &reply.body {
        Some(body) => scim_json(reply.status, body),
        None => HttpResponse::build(reply.status).finish(),
    };
    if let Some(version) = reply.version {
        response.headers_mut().insert(
            header::ETAG,
            etag(version).parse().expect("an ETag is a valid header"),
        );
    }
    if reply.status == StatusCode::CREATED
        && let Some(location) = &reply.location
    {
        response.headers_mut().insert(
            header::LOCATION,
            location.parse().expect("a URL is a valid header"),
        );
    }
    response
}

fn query_params(request: &HttpRequest) -> Result<ListParams, ScimError> {
    web::Query::<ListParams>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ScimError::invalid_value(format!("invalid query string: {e}")))
}

async fn list(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    page(ctx, **kind, query_params(&request)?).await
}

async fn search(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    page(ctx, **kind, search_params(&body)?).await
}

pub fn search_params(body: &[u8]) -> Result<ListParams, ScimError> {
    let value = parse_body(body)?;
    let schemas_ok = value["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s == SEARCH_SCHEMA));
    if !schemas_ok {
        return Err(ScimError::invalid_value(format!(
            "a search request names the schema {SEARCH_SCHEMA}"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| ScimError::invalid_value(format!("invalid search request: {e}")))
}

/// `POST /.search` at the root: Users, then Groups, paged as one list. A filter naming an attribute
/// only one type has matches nothing of the other.
async fn search_all(ctx: Context, body: web::Bytes) -> Result<HttpResponse, ScimError> {
    let params = search_params(&body)?;
    if params.cursor.is_some() {
        return Err(ScimError::invalid_value(
            "a search across resource types pages by startIndex",
        ));
    }
    let (mut total, mut resources, mut start_index) = (0, Vec::new(), 1);
    for kind in [ResourceKind::User, ResourceKind::Group] {
        let listing =
            match actions::list(&ctx, kind, &params, (total, resources.len() as i64)).await {
                Ok(listing) => listing,
                Err(ScimError::BadRequest {
                    scim_type: ScimType::InvalidFilter,
                    detail,
                }) if detail.contains("unknown attribute") => continue,
                Err(error) => return Err(error),
            };
        if let Paging::Index(index) = listing.paging {
            start_index = index;
        }
        total += listing.total;
        resources.extend(
            listing
                .resources
                .into_iter()
                .map(|resource| (kind, resource)),
        );
    }
    let envelope = list_envelope(total, Paging::Index(start_index), None);
    Ok(list_of(&ctx, envelope, resources, &params.projection()))
}

async fn page(
    ctx: Context,
    kind: ResourceKind,
    params: ListParams,
) -> Result<HttpResponse, ScimError> {
    let listing = actions::list(&ctx, kind, &params, (0, 0)).await?;
    let full_page = listing.limit > 0 && listing.resources.len() as i64 == listing.limit;
    let next = listing.last_seq.filter(|_| full_page).map(encode_cursor);
    let envelope = list_envelope(listing.total, listing.paging, next);
    let resources = listing
        .resources
        .into_iter()
        .map(|resource| (kind, resource))
        .collect();
    Ok(list_of(&ctx, envelope, resources, &params.projection()))
}

async fn get(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ScimError> {
    let (kind, projection) = (**kind, query_params(&request)?.projection());
    let not_modified_since = |version| {
        not_modified(request.headers(), version).then(|| {
            HttpResponse::NotModified()
                .insert_header((header::ETAG, etag(version)))
                .finish()
        })
    };
    if kind == ResourceKind::User && projection.is_default() {
        let (json, version) = actions::user_json(&ctx, &id).await?;
        return Ok(not_modified_since(version).unwrap_or_else(|| {
            HttpResponse::Ok()
                .content_type(MEDIA_TYPE)
                .insert_header((header::ETAG, etag(version)))
                .body(json)
        }));
    }
    let (body, version) = actions::get(&ctx, kind, &id, &projection).await?;
    if let Some(response) = not_modified_since(version) {
        return Ok(response);
    }
    if kind == ResourceKind::Group && projection.wants(kind, "members") {
        let body = group_with_streamed_members(&ctx, &body, &projection);
        return Ok(HttpResponse::Ok()
            .content_type(MEDIA_TYPE)
            .insert_header((header::ETAG, etag(version)))
            .streaming(body));
    }
    Ok(respond(Reply {
        status: StatusCode::OK,
        body: Some(body),
        version: Some(version),
        location: None,
    }))
}

/// Members read per batch while a group is streamed.
const MEMBER_BATCH: i64 = 1000;

type Body = Pin<Box<dyn Stream<Item = Result<web::Bytes, ScimError>>>>;

fn chunk(bytes: impl Into<web::Bytes>) -> Body {
    let bytes = bytes.into();
    Box::pin(stream::once(async move { Ok(bytes) }))
}

/// A rendered group with its members streamed after the rest of it, read batch by batch, so a
/// group of 100,000 members is sent without building the whole list in memory.
fn group_with_streamed_members(ctx: &Context, group: &Value, projection: &Projection) -> Body {
    let group_id = group["id"].as_str().unwrap_or_default().to_owned();
    let mut head = group.to_string();
    head.pop();
    head.push_str(",\"members\":[");
    let (base, projection) = (ctx.base.clone(), projection.clone());
    let members = ctx
        .store
        .stream_batches(move |conn, after: Option<String>| {
            let batch = groups::members_of(
                conn,
                std::slice::from_ref(&group_id),
                after.as_deref(),
                Some(MEMBER_BATCH),
            )?;
            let mut out = Vec::new();
            for (index, member) in batch.iter().enumerate() {
                if after.is_some() || index > 0 {
                    out.push(b',');
                }
                let mut wrapper = resource::Document::new();
                wrapper.insert(
                    "members".to_owned(),
                    Value::Array(vec![render::render_member(&base, member)]),
                );
                let projected = projection.apply(ResourceKind::Group, wrapper);
                serde_json::to_writer(&mut out, &projected["members"][0])
                    .expect("serialising to memory succeeds");
            }
            let next = batch
                .last()
                .map(|member| member.member_id.clone())
                .filter(|_| batch.len() as i64 == MEMBER_BATCH);
            Ok::<_, ScimError>((web::Bytes::from(out), next))
        });
    Box::pin(
        chunk(head)
            .chain(members)
            .chain(chunk(web::Bytes::from_static(b"]}"))),
    )
}

/// Whether a resource of `kind` is sent with members read while it is sent.
fn streams_members(kind: ResourceKind, projection: &Projection) -> bool {
    kind == ResourceKind::Group && projection.wants(kind, "members")
}

/// A resource as a body: a group whose members are wanted gets them streamed.
fn resource_body(
    ctx: &Context,
    kind: ResourceKind,
    resource: Rendered,
    projection: &Projection,
) -> Body {
    match resource {
        Rendered::Json(json) => chunk(json),
        Rendered::Value(group) if streams_members(kind, projection) => {
            group_with_streamed_members(ctx, &group, projection)
        }
        Rendered::Value(resource) => chunk(resource.to_string()),
    }
}

/// A ListResponse: one body when every resource is rendered, else a stream that reads each
/// group's members as they are sent.
fn list_of(
    ctx: &Context,
    mut envelope: Value,
    resources: Vec<(ResourceKind, Rendered)>,
    projection: &Projection,
) -> HttpResponse {
    envelope["itemsPerPage"] = json!(resources.len());
    let mut head = envelope.to_string();
    head.pop();
    head.push_str(",\"Resources\":[");
    if !resources
        .iter()
        .any(|(kind, _)| streams_members(*kind, projection))
    {
        // Room for the rendered resources at once: growing by doubling copied a page of 100
        // users seven times.
        let rendered_bytes: usize = resources
            .iter()
            .map(|(_, resource)| match resource {
                Rendered::Json(json) => json.len() + 1,
                Rendered::Value(_) => 0,
            })
            .sum();
        let mut body = head.into_bytes();
        body.reserve(rendered_bytes + 2);
        for (index, (_, resource)) in resources.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            match resource {
                Rendered::Json(json) => body.extend_from_slice(json),
                Rendered::Value(value) => {
                    serde_json::to_writer(&mut body, value).expect("serialising to memory succeeds")
                }
            }
        }
        body.extend_from_slice(b"]}");
        return HttpResponse::Ok().content_type(MEDIA_TYPE).body(body);
    }
    let mut parts = vec![chunk(head)];
    for (index, (kind, resource)) in resources.into_iter().enumerate() {
        if index > 0 {
            parts.push(chunk(web::Bytes::from_static(b",")));
        }
        parts.push(resource_body(ctx, kind, resource, projection));
    }
    parts.push(chunk(web::Bytes::from_static(b"]}")));
    HttpResponse::Ok()
        .content_type(MEDIA_TYPE)
        .streaming(stream::iter(parts).flatten())
}

async fn create(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let result = match parse_body(&body) {
        Ok(body) => actions::create(&ctx, **kind, &body).await,
        Err(error) => Err(error),
    };
    actions::count_write(**kind, "create", &result);
    ctx.note_refusal(&result, format!("POST /{}", kind.endpoint()))
        .await;
    Ok(respond(result?))
}

async fn replace(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let result = match parse_body(&body) {
        Ok(body) => actions::replace(&ctx, **kind, &id, &body, if_match(request.headers())).await,
        Err(error) => Err(error),
    };
    actions::count_write(**kind, "replace", &result);
    ctx.note_refusal(&result, format!("PUT /{}/{id}", kind.endpoint()))
        .await;
    Ok(respond(result?))
}

async fn patch(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ScimError> {
    let result = match parse_body(&body) {
        Ok(body) => actions::patch(&ctx, **kind, &id, &body, if_match(request.headers())).await,
        Err(error) => Err(error),
    };
    actions::count_write(**kind, "patch", &result);
    ctx.note_refusal(&result, format!("PATCH /{}/{id}", kind.endpoint()))
        .await;
    Ok(respond(result?))
}

async fn delete(
    ctx: Context,
    kind: web::Data<ResourceKind>,
    id: web::Path<String>,
) -> Result<HttpResponse, ScimError> {
    let result = actions::delete(&ctx, **kind, &id).await;
    actions::count_write(**kind, "delete", &result);
    Ok(respond(result?))
}

async fn service_provider_config(base_url: web::Data<BaseUrl>) -> HttpResponse {
    let base = scim_base(&base_url);
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/", base_url.as_str()),
            "patch": { "supported": true },
            "bulk": { "supported": true, "maxOperations": self::bulk::MAX_OPERATIONS, "maxPayloadSize": MAX_BODY },
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "pagination": {
                "cursor": true,
                "index": true,
                "defaultPaginationMethod": "index",
                "defaultPageSize": DEFAULT_COUNT,
                "maxPageSize": MAX_COUNT,
            },
            "changePassword": { "supported": false },
            "sort": { "supported": true },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "An idgate API token with the scim scope, sent as Authorization: Bearer TOKEN.",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig") },
        }),
    )
}

async fn resource_types(ctx: Context) -> Result<HttpResponse, ScimError> {
    let types = schema::resource_type_documents(&ctx.base);
    Ok(list_response(types))
}

async fn resource_type(ctx: Context, id: web::Path<String>) -> Result<HttpResponse, ScimError> {
    schema::resource_type_documents(&ctx.base)
        .into_iter()
        .find(|document| document["id"] == id.as_str())
        .map(|document| scim_json(StatusCode::OK, &document))
        .ok_or_else(|| ScimError::NotFound(format!("no resource type {id}")))
}

async fn schemas(ctx: Context) -> Result<HttpResponse, ScimError> {
    let documents = schema::schema_documents(&ctx.base);
    Ok(list_response(documents))
}

async fn schema_by_id(ctx: Context, id: web::Path<String>) -> Result<HttpResponse, ScimError> {
    schema::schema_documents(&ctx.base)
        .into_iter()
        .find(|document| document["id"] == id.as_str())
        .map(|document| scim_json(StatusCode::OK, &document))
        .ok_or_else(|| ScimError::NotFound(format!("no schema {id}")))
}

/// A refusal at the gate, answered as a SCIM Error with the gate's status and headers (the
/// `WWW-Authenticate` challenge, `Retry-After`).
impl From<AuthError> for ScimError {
    fn from(error: AuthError) -> Self {
        if let AuthError::Store(error) = error {
            return ScimError::Store(error);
        }
        let mut headers = HeaderMap::new();
        for (name, value) in error.error_response().headers() {
            if name != header::CONTENT_TYPE {
                headers.insert(name.clone(), value.clone());
            }
        }
        ScimError::Refused {
            status: error.status_code(),
            detail: error.to_string(),
            headers,
        }
    }
}
