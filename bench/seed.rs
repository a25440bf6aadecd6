//! Seeds a database for `bench/run`: a workspace with a SCIM token, USERS users, POOL more users
//! to add to groups during the run, and one group per size given, its members taken from the users;
//! a session for one user, a `workspace:read,sources:read` token and a source to ask decisions
//! about (asking about a resource needs its kind's read scope).
//! Writes what the load scripts need into OUT: token, user-id, user-name, pool-ids, group-SIZE,
//! session, admin-token, source-id.
//!
//! Usage: bench-seed DATABASE_URL OUT USERS POOL [GROUP_SIZE...]

use std::ops::Range;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use idgate::access::resources::{self, NewResource};
use idgate::audit::AuditContext;
use idgate::db::{self, Backend, DatabaseUrl};
use idgate::directory::groups::{self, MemberChange};
use idgate::directory::users;
use idgate::permissions::ResourceKind as AccessKind;
use idgate::permissions::Scopes;
use idgate::scim::error::ScimError;
use idgate::scim::resource::normalize;
use idgate::scim::schema::ResourceKind;
use idgate::sessions::{self, NewSession, keys::KeyRing};
use idgate::tokens::{self, NewToken};
use idgate::workspaces::{self, NewWorkspace};
use serde_json::json;

/// Users made, or members added, per transaction.
const BATCH: usize = 1000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: bench-seed DATABASE_URL OUT USERS POOL [GROUP_SIZE...]");
    }
    let url = DatabaseUrl::parse(&args[0]).map_err(anyhow::Error::msg)?;
    let out = PathBuf::from(&args[1]);
    let (user_count, pool_count): (usize, usize) = (args[2].parse()?, args[3].parse()?);
    let group_sizes: Vec<usize> = args[4..]
        .iter()
        .map(|size| size.parse())
        .collect::<Result<_, _>>()?;
    std::fs::create_dir_all(&out)?;

    let mut conn = db::connect(&url)?;
    db::run_migrations(&mut conn)?;
    let context = AuditContext::cli();
    let workspace = workspaces::create(
        &mut conn,
        NewWorkspace {
            slug: "bench".into(),
            name: None,
            hipaa: false,
        },
        &context,
    )?;
    let token = NewToken {
        name: Some("bench".into()),
        scopes: Scopes::parse("scim")?,
        lifetime: None,
        minted_by: None,
        setup_link_id: None,
    };
    std::fs::write(
        out.join("token"),
        tokens::create(&mut conn, &workspace, token, &context)?.secret,
    )?;

    let started = Instant::now();
    // On PostgreSQL the time goes to each statement's round trip, so several connections write
    // at once; SQLite takes one writer at a time.
    let writers = match url.backend() {
        Backend::Postgres => 4,
        Backend::Sqlite => 1,
    };
    let create = |numbers: Range<usize>| -> anyhow::Result<Vec<String>> {
        let share = numbers.len().div_ceil(writers);
        std::thread::scope(|scope| {
            let parts: Vec<_> = (0..writers)
                .map(|part| {
                    let start = numbers.start + part * share;
                    let part = start..(start + share).min(numbers.end);
                    scope.spawn(|| create_users(&url, &workspace.id, &context, part))
                })
                .collect();
            let mut ids = Vec::with_capacity(numbers.len());
            for part in parts {
                ids.extend(part.join().expect("a seeding thread panicked")?);
            }
            Ok(ids)
        })
    };
    let ids = create(0..user_count)?;
    let pool = create(user_count..user_count + pool_count)?;
    eprintln!(
        "seeded {} users in {:.1} s",
        ids.len() + pool.len(),
        started.elapsed().as_secs_f64()
    );
    let middle = user_count / 2;
    std::fs::write(out.join("user-id"), &ids[middle])?;
    std::fs::write(
        out.join("user-name"),
        format!("user{middle:06}@example.com"),
    )?;
    std::fs::write(out.join("pool-ids"), pool.join("\n") + "\n")?;

    let email = format!("user{middle:06}@example.com");
    let signer = KeyRing::default().signing_key(&mut conn, idgate::time::now())?;
    let session = conn.write(|tx| {
        sessions::create(
            tx,
            &signer,
            "http://127.0.0.1",
            NewSession {
                email: &email,
                workspace: &workspace,
                member_id: &ids[middle],
                name_id: &email,
                session_index: None,
                idp_expires_at: None,
            },
            idgate::time::now(),
        )
    })?;
    std::fs::write(out.join("session"), session.token)?;
    let admin = NewToken {
        name: Some("bench decisions".into()),
        scopes: Scopes::parse("workspace:read,sources:read")?,
        lifetime: None,
        minted_by: None,
        setup_link_id: None,
    };
    std::fs::write(
        out.join("admin-token"),
        tokens::create(&mut conn, &workspace, admin, &context)?.secret,
    )?;
    let source = NewResource {
        kind: AccessKind::Source,
        name: "bench-source".into(),
        source_id: None,
        labels: Default::default(),
    };
    let (source, _) = resources::create(&mut conn, &workspace.id, source, &context)?;
    std::fs::write(out.join("source-id"), source.id)?;

    for size in group_sizes {
        if size > ids.len() {
            bail!("a group of {size} needs at least {size} users");
        }
        let document = normalize(
            ResourceKind::Group,
            &json!({"displayName": format!("group-{size}")}),
        )?;
        let group = groups::create(&mut conn, &workspace.id, document, Vec::new(), &context)
            .with_context(|| format!("creating the group of {size}"))?;
        // Members a batch at a time, as an IdP adds them: one change of a million members would
        // be a single transaction (and audit event) of a million rows.
        for batch in ids[..size].chunks(BATCH) {
            conn.write(|tx| {
                let add = MemberChange {
                    add: batch.to_vec(),
                    ..MemberChange::default()
                };
                let kinds = groups::member_kinds(tx, &workspace.id, add.added())?;
                let current = groups::locked(tx, &workspace.id, &group.id, None)?;
                groups::apply(tx, &workspace.id, &current, current.document(), add, &kinds)
            })
            .with_context(|| format!("adding members to the group of {size}"))?;
        }
        std::fs::write(out.join(format!("group-{size}")), group.id)?;
    }
    Ok(())
}

/// Users `numbers` (their names hold the number), made as SCIM creates them (row, value index,
/// audit event), a batch per transaction: one commit per user is much slower.
fn create_users(
    url: &DatabaseUrl,
    workspace_id: &str,
    context: &AuditContext,
    numbers: Range<usize>,
) -> anyhow::Result<Vec<String>> {
    let mut conn = db::connect(url)?;
    let mut ids = Vec::with_capacity(numbers.len());
    for batch in numbers.collect::<Vec<_>>().chunks(BATCH) {
        let made = conn.write(|tx| {
            batch
                .iter()
                .map(|n| {
                    let document = normalize(
                        ResourceKind::User,
                        &json!({
                            "userName": format!("user{n:06}@example.com"),
                            "name": {"givenName": "User", "familyName": format!("Number {n}")},
                            "emails": [{"value": format!("user{n:06}@example.com"), "type": "work", "primary": true}],
                            "active": true,
                        }),
                    )?;
                    let created = "scim.user.created";
                    Ok(users::insert(tx, workspace_id, document, context, created)?.id)
                })
                .collect::<Result<Vec<_>, ScimError>>()
        })?;
        ids.extend(made);
    }
    Ok(ids)
}
