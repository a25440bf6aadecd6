//! Authorization decisions per second on one core, on a workspace of 1,000 members, 1,000
//! resources and 100 groups (the size issue 4 names), printed as a Markdown table.
//!
//! Three figures, each over batches of 100 random checks (random member, resource and action):
//! `decide_all` as the `/authorize` endpoint runs it with nothing cached (load each subject's
//! roles, groups and grants and each resource with its labels, then decide); the same with the
//! decision cache kept across batches, as the server keeps it, with subjects named by member id
//! and by email; and decisions alone over principals already in memory.
//!
//! Usage: bench-authorize [DATABASE_URL]   (default: a new SQLite file in a temporary directory)

use std::time::{Duration, Instant};

use idgate::access::authorize::{Check, decide_all};
use idgate::access::cache::DecisionCache;
use idgate::access::decide::Target;
use idgate::access::grants::{self, NewGrant};
use idgate::access::members::{self, OwnerAuthority};
use idgate::access::resources::{self, NewResource};
use idgate::audit::AuditContext;
use idgate::db::{self, DatabaseUrl};
use idgate::directory::{groups, users};
use idgate::permissions::{Action, Level, ResourceKind, Role};
use idgate::scim::resource::normalize;
use idgate::scim::schema::ResourceKind as ScimKind;
use idgate::workspaces::{self, NewWorkspace};
use serde_json::json;

const MEMBERS: usize = 1000;
const GROUPS: usize = 100;
const SOURCES: usize = 600;
const DESTINATIONS: usize = 400;
const BATCH: usize = 100;
const RUN_FOR: Duration = Duration::from_secs(5);

/// xorshift64: reproducible picks without a dependency.
struct Picker(u64);

impl Picker {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = match std::env::args().nth(1) {
        Some(url) => url,
        None => format!("sqlite://{}", dir.path().join("authorize.db").display()),
    };
    let url = DatabaseUrl::parse(&url).map_err(anyhow::Error::msg)?;
    let mut conn = db::connect(&url)?;
    db::run_migrations(&mut conn)?;
    let context = AuditContext::cli();
    let workspace = workspaces::create(
        &mut conn,
        NewWorkspace {
            slug: "bench-authorize".into(),
            name: None,
            hipaa: false,
        },
        &context,
    )?;
    let ws = workspace.id.clone();
    let seeding = Instant::now();

    let mut member_ids = Vec::new();
    for n in 0..MEMBERS {
        let name = format!("member{n:04}@example.com");
        let document = normalize(
            ScimKind::User,
            &json!({"userName": name, "emails": [{"value": name}], "active": true}),
        )?;
        let id = users::create(&mut conn, &ws, document, &context)?.id;
        let role = if n % 4 == 0 {
            Role::ReadOnly
        } else {
            Role::Member
        };
        members::set_roles(
            &mut conn,
            &ws,
            &id,
            &[role].into(),
            OwnerAuthority::Held,
            &context,
        )?;
        member_ids.push(id);
    }
    // Every member is in three groups, so each group has about 30 members.
    for g in 0..GROUPS {
        let group_members: Vec<String> = (0..MEMBERS)
            .filter(|n| [n % GROUPS, (n * 7) % GROUPS, (n * 13) % GROUPS].contains(&g))
            .map(|n| member_ids[n].clone())
            .collect();
        let document = normalize(
            ScimKind::Group,
            &json!({"displayName": format!("team-{g}")}),
        )?;
        groups::create(&mut conn, &ws, document, group_members, &context)?;
        if g < 20 {
            let role = [Role::Admin, Role::Member, Role::ReadOnly][g % 3];
            members::set_mapping(
                &mut conn,
                &ws,
                &format!("team-{g}"),
                role,
                OwnerAuthority::Held,
                &context,
            )?;
        }
    }
    let environments = ["production", "staging", "development"];
    let mut resource_ids = Vec::new();
    let mut sources = Vec::new();
    for n in 0..SOURCES {
        let labels = [
            format!("environment:{}", environments[n % 3])
                .parse()
                .unwrap(),
            format!("team:t{}", n % GROUPS).parse().unwrap(),
        ];
        let new = NewResource {
            kind: ResourceKind::Source,
            name: format!("source-{n}"),
            source_id: None,
            labels: labels.into(),
        };
        let (source, _) = resources::create(&mut conn, &ws, new, &context)?;
        sources.push(source.id.clone());
        resource_ids.push((source.id, ResourceKind::Source));
    }
    for n in 0..DESTINATIONS {
        let new = NewResource {
            kind: ResourceKind::Destination,
            name: format!("destination-{n}"),
            source_id: Some(sources[n % SOURCES].clone()),
            labels: Default::default(),
        };
        let (destination, _) = resources::create(&mut conn, &ws, new, &context)?;
        resource_ids.push((destination.id, ResourceKind::Destination));
    }
    let levels = [
        Level::NoAccess,
        Level::ReadOnly,
        Level::ReadWrite,
        Level::FullAccess,
    ];
    let grant = |member: Option<String>, group: Option<String>, resource, label, level| NewGrant {
        member,
        group,
        resource,
        label,
        level,
        expires_at: None,
        justification: Some("benchmark".into()),
        approver: None,
        review_date: None,
    };
    for g in 0..GROUPS {
        let label = format!("team:t{g}").parse().ok();
        let new = grant(None, Some(format!("team-{g}")), None, label, levels[g % 4]);
        grants::create(&mut conn, &ws, new, &context)?;
        let label = format!("environment:{}", environments[g % 3]).parse().ok();
        let new = grant(
            None,
            Some(format!("team-{g}")),
            None,
            label,
            levels[(g + 1) % 4],
        );
        grants::create(&mut conn, &ws, new, &context)?;
    }
    for (n, member) in member_ids.iter().enumerate() {
        let resource = Some(resource_ids[(n * 31) % resource_ids.len()].0.clone());
        let new = grant(Some(member.clone()), None, resource, None, levels[n % 4]);
        grants::create(&mut conn, &ws, new, &context)?;
    }
    eprintln!(
        "seeded {MEMBERS} members, {GROUPS} groups, {} resources and {} grants in {:.1} s",
        resource_ids.len(),
        GROUPS * 2 + MEMBERS,
        seeding.elapsed().as_secs_f64()
    );

    let mut picker = Picker(0x9e37_79b9_7f4a_7c15);
    let pick_check = |picker: &mut Picker, by_email: bool| {
        let (resource, kind) = &resource_ids[picker.below(resource_ids.len())];
        let actions: &[Action] = match kind {
            ResourceKind::Source => &[
                Action::SourcesView,
                Action::SourcesEdit,
                Action::SourcesDelete,
            ],
            _ => &[
                Action::DestinationsView,
                Action::DestinationsEdit,
                Action::DestinationsDelete,
            ],
        };
        let with_resource = picker.below(4) != 0;
        Check {
            subject: {
                let n = picker.below(MEMBERS);
                if by_email {
                    format!("member{n:04}@example.com")
                } else {
                    member_ids[n].clone()
                }
            },
            action: if with_resource {
                actions[picker.below(actions.len())].as_str().to_owned()
            } else {
                Action::ALL[picker.below(Action::ALL.len())]
                    .as_str()
                    .to_owned()
            },
            resource: with_resource.then(|| resource.clone()),
        }
    };

    // 1. As the endpoint does it, first with nothing cached (every batch loads from the database),
    // then with one cache kept across batches, as a server keeps it between requests, naming
    // subjects by member id and then by email.
    let mut rows = Vec::new();
    for (label, keep_cache, by_email) in [
        (
            "`decide_all`, nothing cached: load from the database, then decide",
            false,
            false,
        ),
        (
            "`decide_all`, cache kept across batches (steady state), subjects by member id",
            true,
            false,
        ),
        (
            "`decide_all`, cache kept across batches, subjects by email (resolved every batch)",
            true,
            true,
        ),
    ] {
        let mut cache = DecisionCache::default();
        let mut batch_times = Vec::new();
        let (mut decided, mut allowed) = (0usize, 0usize);
        let started = Instant::now();
        while started.elapsed() < RUN_FOR {
            if !keep_cache {
                cache = DecisionCache::default();
            }
            let checks: Vec<Check> = (0..BATCH)
                .map(|_| pick_check(&mut picker, by_email))
                .collect();
            let batch_started = Instant::now();
            let decisions = decide_all(&mut conn, &cache, &ws, checks, &|_| true)?;
            batch_times.push(batch_started.elapsed());
            decided += decisions.len();
            allowed += decisions.iter().filter(|d| d.allowed).count();
        }
        let rate = decided as f64 / started.elapsed().as_secs_f64();
        batch_times.sort();
        let p50 = batch_times[batch_times.len() / 2];
        let p99 = batch_times[batch_times.len() * 99 / 100];
        rows.push(format!(
            "| {label}; {:.0}% allowed | {rate:.0} | {:.2} ms | {:.2} ms |",
            100.0 * allowed as f64 / decided as f64,
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        ));
    }

    // 2. Decisions alone, over every member loaded once.
    let everyone = idgate::directory::list(&mut conn, &ws)?;
    let principals = members::principals(&mut conn, &ws, &everyone)?;
    let all_resources = resources::list(&mut conn, &ws)?;
    let by_id: std::collections::BTreeMap<&str, &idgate::access::decide::Resource> =
        all_resources.iter().map(|r| (r.id.as_str(), r)).collect();
    let now = idgate::time::now();
    let mut in_memory = 0usize;
    let started = Instant::now();
    while started.elapsed() < RUN_FOR {
        for _ in 0..10_000 {
            let principal = &principals[picker.below(principals.len())];
            let resource = &all_resources[picker.below(all_resources.len())];
            let action = match resource.kind {
                ResourceKind::Source => Action::SourcesEdit,
                _ => Action::DestinationsEdit,
            };
            let target = Target::with_source(resource, |id| by_id.get(id).copied());
            std::hint::black_box(principal.decide(action, Some(target), true, now)?);
            in_memory += 1;
        }
    }
    let pure = in_memory as f64 / started.elapsed().as_secs_f64();

    println!(
        "| Authorization decisions, one core ({:?}) | decisions/s | batch of {BATCH}: p50 | p99 |",
        url.backend()
    );
    println!("|---|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    println!("| decisions over loaded principals | {pure:.0} | - | - |");
    Ok(())
}
