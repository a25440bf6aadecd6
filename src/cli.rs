//! The command line: `idgate serve` and the admin bootstrap commands, which work with the server
//! stopped or running. Values meant for scripts go to stdout, one per line (lists: one row per
//! line, tab-separated); messages go to stderr; a failure exits non-zero with a one-line reason.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::access::attributes::{self, MappingChange};
use crate::access::members::{self, OwnerAuthority};
use crate::app::Application;
use crate::audit::AuditContext;
use crate::config::{ConfigArgs, Settings};
use crate::db::{self, Conn};
use crate::links;
use crate::outbound::InternalAllowList;
use crate::permissions::Role;
use crate::permissions::Scopes;
use crate::saml::{
    SamlError,
    certificates::Certificate,
    connection::{self, OptionChanges, Source},
};
use crate::tokens::{self, NewToken, Revocation};
use crate::workspaces::{self, NewWorkspace, WorkspaceChanges};

#[derive(Debug, Parser)]
#[command(
    name = "idgate",
    version,
    about = "SCIM 2.0 provisioning and SAML 2.0 SSO for workspaces"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (applies pending migrations first)
    Serve,
    /// Apply pending database migrations; prints the name of each one applied
    Migrate,
    /// Create, list and change workspaces
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Create, list and revoke API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Set and show the workspace's SAML identity provider connection
    #[command(subcommand)]
    Idp(IdpCommand),
    /// Map IdP groups to workspace roles
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// Give members roles directly, and transfer ownership
    #[command(subcommand)]
    Role(RoleCommand),
    /// Which SAML attributes give a person's email, names, role and groups
    #[command(subcommand)]
    Attributes(AttributesCommand),
    /// Sign-in links into the admin console
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Links that open a workspace's IdP and SCIM pages to a customer's IT admin
    #[command(subcommand)]
    SetupLink(SetupLinkCommand),
    /// Exit 0 when the server at the configured address answers /healthz
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Print a sign-in URL (last line) that works once, within 15 minutes, for EMAIL as an Owner
    /// of the workspace (made a member if need be)
    Link {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// Whom the link signs in
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SetupLinkCommand {
    /// Print a setup link (last line) that opens the workspace's IdP and SCIM pages
    Create {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// How long it works, such as 3d or 12h (at most 30d) [default: 3d]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Revoke a setup link at once
    Revoke {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// The link's id, as printed when it was made
        link_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdpCommand {
    /// Set the IdP from its metadata (a file or an http(s) URL), or from --entity-id, --sso-url
    /// and --cert; options alone change the connection's options
    Set {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// The IdP's SAML metadata: a file, or an http(s) URL fetched now and every hour
        #[arg(long, value_name = "FILE|URL", conflicts_with_all = ["entity_id", "sso_url", "cert"])]
        metadata: Option<String>,
        /// The IdP's entity ID (its Issuer), without metadata
        #[arg(long, value_name = "ID")]
        entity_id: Option<String>,
        /// The IdP's single sign-on URL (HTTP-Redirect binding), without metadata
        #[arg(long, value_name = "URL")]
        sso_url: Option<String>,
        /// The IdP's single logout URL (HTTP-Redirect binding), without metadata
        #[arg(long, value_name = "URL")]
        slo_url: Option<String>,
        /// A PEM file of the IdP's signing certificate(s); repeat for rollover
        #[arg(long, value_name = "PEM_FILE")]
        cert: Vec<std::path::PathBuf>,
        /// Accept responses the IdP sends unasked (IdP-initiated sign-in) [default: true]
        #[arg(long, value_name = "true|false")]
        allow_idp_initiated: Option<bool>,
        /// Require the Response itself to be signed [default: false]
        #[arg(long, value_name = "true|false")]
        require_signed_response: Option<bool>,
        /// Require the assertion to be signed; the SP metadata then says so [default: false]
        #[arg(long, value_name = "true|false")]
        require_signed_assertion: Option<bool>,
        /// Clock difference to allow with the IdP, 0 to 600 [default: 120]
        #[arg(long, value_name = "SECONDS")]
        clock_skew: Option<i32>,
        /// The NameID format to ask the IdP for [default: the IdP's choice]
        #[arg(long, value_name = "URI")]
        name_id_format: Option<String>,
        /// Ask the IdP to sign the person in again even when it has a session
        #[arg(long, value_name = "true|false")]
        force_authn: Option<bool>,
        /// Give people the IdP vouches for a membership at first login
        #[arg(long, value_name = "true|false")]
        jit: Option<bool>,
    },
    /// The connection: one `key<TAB>value` line per setting, one `certificate` line per certificate
    Show {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// Map an IdP group (a SCIM group's displayName or a SAML `groups` value) to a role
    Set {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// The group's name as the IdP sends it (matched without case)
        #[arg(long, value_name = "NAME")]
        idp_group: String,
        /// The role its members get
        #[arg(long, value_name = "owner|admin|member|read-only")]
        role: String,
    },
    /// One line per mapping: IdP group, role (tab-separated)
    List {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
    /// Remove a group's mapping: its members lose the role it gave
    Remove {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// The group's name as the IdP sends it (matched without case)
        #[arg(long, value_name = "NAME")]
        idp_group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Replace a member's direct roles (an empty list removes them)
    Set {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// Member id, userName or email
        #[arg(long)]
        member: String,
        /// Comma-separated: owner, admin, member, read-only
        #[arg(long)]
        roles: String,
    },
    /// Make another member the Owner in place of one who is an Owner directly
    TransferOwnership {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// The Owner giving it up: member id, userName or email
        #[arg(long, value_name = "MEMBER")]
        from: String,
        /// The member becoming Owner: member id, userName or email
        #[arg(long, value_name = "MEMBER")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AttributesCommand {
    /// One line per field: field, attribute name (tab-separated)
    Show {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
    /// Start from a preset and/or override attribute names (an empty role or groups removes it)
    Set {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// Start from this IdP's usual attribute names
        #[arg(long, value_name = "okta|entra|onelogin|google|ping")]
        preset: Option<String>,
        /// The attribute that carries the email (else an email NameID is used)
        #[arg(long, value_name = "ATTRIBUTE")]
        email: Option<String>,
        /// The attribute that carries the given name
        #[arg(long, value_name = "ATTRIBUTE")]
        first_name: Option<String>,
        /// The attribute that carries the family name
        #[arg(long, value_name = "ATTRIBUTE")]
        last_name: Option<String>,
        /// The attribute that carries a role name
        #[arg(long, value_name = "ATTRIBUTE")]
        role: Option<String>,
        /// The attribute that carries the groups, mapped to roles by `idgate mapping`
        #[arg(long, value_name = "ATTRIBUTE")]
        groups: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace; prints its id
    Create {
        /// Short name used in URLs: lower-case letters, digits and hyphens
        slug: String,
        /// Display name [default: the slug]
        #[arg(long)]
        name: Option<String>,
        /// Mark it HIPAA-eligible (15-minute sessions for its members)
        #[arg(long)]
        hipaa: bool,
    },
    /// One line per workspace: slug, id, hipaa, name (tab-separated)
    List,
    /// Change a workspace's settings
    Set {
        /// The workspace's slug
        slug: String,
        /// HIPAA-eligible: 15-minute sessions for everyone in it
        #[arg(long, value_name = "true|false")]
        hipaa: Option<bool>,
        /// New display name
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints its secret once, on the last line
    Create {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
        /// Comma-separated: scim, workspace:read, workspace:write, sources:read, sources:write,
        /// tracking_plan:read, tracking_plan:write, audit:read, tokens:write
        #[arg(long)]
        scopes: String,
        /// A label for the token (shown in lists and the audit log) [default: api token]
        #[arg(long)]
        name: Option<String>,
        /// Lifetime such as 90d, 12h or 30m [default: no expiry]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// One line per token: id, status, scopes, created, expires, last used, name (tab-separated)
    List {
        /// The workspace's slug
        #[arg(long, value_name = "SLUG")]
        workspace: String,
    },
    /// Revoke a token at once
    Revoke {
        /// The token's id, as `token list` shows it
        token_id: String,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config)?;
    let default_level = if matches!(cli.command, Command::Serve) {
        "info"
    } else {
        "warn"
    };
    let _log_writer = crate::telemetry::init(settings.log_format, default_level);
    if !matches!(cli.command, Command::Serve) {
        end_quietly_on_a_closed_pipe();
    }
    match cli.command {
        Command::Serve => serve(&settings),
        Command::Migrate => migrate(&settings),
        Command::Healthcheck => healthcheck(&settings),
        Command::Workspace(command) => workspace(&mut open(&settings)?, command),
        Command::Token(command) => token(&mut open(&settings)?, command),
        Command::Idp(command) => idp(
            &mut open(&settings)?,
            command,
            &settings.allowed_internal_hosts,
        ),
        Command::Mapping(command) => mapping(&mut open(&settings)?, command),
        Command::Role(command) => role(&mut open(&settings)?, command),
        Command::Attributes(command) => attributes(&mut open(&settings)?, command),
        Command::Console(command) => console(&mut open(&settings)?, &settings, command),
        Command::SetupLink(command) => setup_link(&mut open(&settings)?, &settings, command),
    }
}

/// A command whose output goes to a reader that stops early (`idgate token list | head`) ends
/// quietly, as other Unix tools do: Rust ignores SIGPIPE, so the next print would panic on the
/// closed pipe instead. The server keeps ignoring it: a client gone is an error to handle there.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: sets a signal's disposition to the system's default, before the command runs; no
    // handler of ours is involved, and nothing in a command relies on SIGPIPE being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn serve(settings: &Settings) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async {
        let app = Application::build(settings)?;
        app.run_until_stopped()
            .await
            .context("the server stopped with an error")
    })
}

/// A connection with the schema up to date, so that the admin commands work on a new database.
fn open(settings: &Settings) -> anyhow::Result<Conn> {
    let mut conn = db::connect(&settings.database_url)?;
    db::run_migrations(&mut conn)?;
    Ok(conn)
}

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let applied = db::run_migrations(&mut *db::connect(&settings.database_url)?)?;
    for name in &applied {
        println!("{name}");
    }
    match applied.len() {
        0 => eprintln!("the database is up to date"),
        n => eprintln!("applied {n} migration(s)"),
    }
    Ok(())
}

fn workspace(conn: &mut Conn, command: WorkspaceCommand) -> anyhow::Result<()> {
    let context = AuditContext::cli();
    match command {
        WorkspaceCommand::Create { slug, name, hipaa } => {
            let workspace = workspaces::create(conn, NewWorkspace { slug, name, hipaa }, &context)?;
            eprintln!("created workspace {} ({})", workspace.slug, workspace.name);
            println!("{}", workspace.id);
        }
        WorkspaceCommand::List => {
            for workspace in workspaces::list(conn)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    workspace.slug,
                    workspace.id,
                    hipaa_label(workspace.hipaa),
                    workspace.name
                );
            }
        }
        WorkspaceCommand::Set { slug, hipaa, name } => {
            if hipaa.is_none() && name.is_none() {
                bail!("nothing to change: give --hipaa true|false or --name NAME");
            }
            let workspace = workspaces::update(
                conn,
                &slug,
                WorkspaceChanges {
                    name,
                    hipaa,
                    ..WorkspaceChanges::default()
                },
                &context,
            )?;
            eprintln!(
                "workspace {}: {}, name {:?}",
                workspace.slug,
                hipaa_label(workspace.hipaa),
                workspace.name
            );
        }
    }
    Ok(())
}

fn hipaa_label(hipaa: bool) -> &'static str {
    if hipaa { "hipaa" } else { "standard" }
}

fn token(conn: &mut Conn, command: TokenCommand) -> anyhow::Result<()> {
    let context = AuditContext::cli();
    match command {
        TokenCommand::Create {
            workspace,
            scopes,
            name,
            expires_in,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let new = NewToken {
                name,
                scopes: Scopes::parse(&scopes)?,
                lifetime: expires_in
                    .as_deref()
                    .map(tokens::parse_lifetime)
                    .transpose()?,
                minted_by: None,
                setup_link_id: None,
            };
            let issued = tokens::create(conn, &workspace, new, &context)?;
            let expiry = issued
                .token
                .expires_at
                .as_ref()
                .map_or("never".to_owned(), crate::time::rfc3339);
            eprintln!(
                "created token {} ({}) for workspace {} with scopes {}, expiring {expiry}; \
                 store the secret below now, it is not shown again:",
                issued.token.id, issued.token.name, workspace.slug, issued.token.scopes
            );
            println!("{}", issued.secret);
        }
        TokenCommand::List { workspace } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let now = crate::time::now();
            let time = |t: &Option<chrono::NaiveDateTime>| {
                t.as_ref().map_or("-".to_owned(), crate::time::rfc3339)
            };
            for token in tokens::list(conn, &workspace.id)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    token.id,
                    token.status(now),
                    token.scopes,
                    crate::time::rfc3339(&token.created_at),
                    time(&token.expires_at),
                    time(&token.last_used_at),
                    token.name
                );
            }
        }
        TokenCommand::Revoke { token_id } => match tokens::revoke(conn, &token_id, None, &context)?
        {
            Revocation::Revoked(token) => eprintln!("revoked token {} ({})", token.id, token.name),
            Revocation::AlreadyRevoked(token) => {
                eprintln!("token {} was already revoked", token.id)
            }
        },
    }
    Ok(())
}

fn idp(conn: &mut Conn, command: IdpCommand, allowed: &InternalAllowList) -> anyhow::Result<()> {
    let connection = match command {
        IdpCommand::Show { workspace } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            connection::get(conn, &workspace.id)?.ok_or(SamlError::NotConfigured)?
        }
        IdpCommand::Set {
            workspace,
            metadata,
            entity_id,
            sso_url,
            slo_url,
            cert,
            allow_idp_initiated,
            require_signed_response,
            require_signed_assertion,
            clock_skew,
            name_id_format,
            force_authn,
            jit,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let source = match (metadata, entity_id, sso_url) {
                (Some(location), _, _) => Some(metadata_source(&location, allowed)?),
                (None, Some(entity_id), Some(sso_url)) => {
                    let mut certificates = Vec::new();
                    for path in &cert {
                        let pem = std::fs::read_to_string(path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        certificates.extend(
                            Certificate::from_pem(&pem)
                                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                        );
                    }
                    Some(Source::Manual {
                        entity_id,
                        sso_url,
                        slo_url,
                        certificates,
                    })
                }
                (None, None, None) if cert.is_empty() => None,
                _ => bail!("without --metadata, give --entity-id, --sso-url and --cert together"),
            };
            let changes = OptionChanges {
                allow_idp_initiated,
                require_signed_response,
                require_signed_assertion,
                clock_skew_seconds: clock_skew,
                name_id_format,
                force_authn,
                jit,
            };
            let connection =
                connection::set(conn, &workspace.id, source, changes, &AuditContext::cli())?;
            eprintln!("IdP connection of {} set", workspace.slug);
            connection
        }
    };
    let view = crate::api::saml::view(&connection);
    for key in [
        "entity_id",
        "sso_url",
        "slo_url",
        "metadata_url",
        "metadata_valid_until",
    ] {
        println!("{key}\t{}", plain(&view[key]));
    }
    if let Some(options) = view["options"].as_object() {
        for (key, value) in options {
            println!("{key}\t{}", plain(value));
        }
    }
    for certificate in view["certificates"].as_array().into_iter().flatten() {
        println!(
            "certificate\t{}\t{}\t{}\t{}",
            plain(&certificate["fingerprint"]),
            plain(&certificate["status"]),
            plain(&certificate["not_after"]),
            plain(&certificate["subject"])
        );
    }
    Ok(())
}

/// A JSON value as one plain line: strings without quotes, null as `-`.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Metadata from a file, or fetched when the location is an http(s) URL.
fn metadata_source(location: &str, allowed: &InternalAllowList) -> anyhow::Result<Source> {
    if location.starts_with("https://") || location.starts_with("http://") {
        let xml =
            actix_web::rt::System::new().block_on(connection::fetch_metadata(allowed, location))?;
        return Ok(Source::Metadata {
            xml,
            url: Some(location.to_owned()),
        });
    }
    let xml = std::fs::read_to_string(location)
        .with_context(|| format!("cannot read the metadata file {location}"))?;
    Ok(Source::Metadata { xml, url: None })
}

fn mapping(conn: &mut Conn, command: MappingCommand) -> anyhow::Result<()> {
    let context = AuditContext::cli();
    match command {
        MappingCommand::Set {
            workspace,
            idp_group,
            role,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let role = role.parse::<Role>().map_err(anyhow::Error::msg)?;
            let mapping = members::set_mapping(
                conn,
                &workspace.id,
                &idp_group,
                role,
                OwnerAuthority::Held,
                &context,
            )?;
            eprintln!(
                "IdP group {:?} now gives role {} in workspace {}",
                mapping.idp_group, mapping.role, workspace.slug
            );
        }
        MappingCommand::List { workspace } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            for mapping in members::mappings(conn, &workspace.id)? {
                println!("{}\t{}", mapping.idp_group, mapping.role);
            }
        }
        MappingCommand::Remove {
            workspace,
            idp_group,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            members::remove_mapping(
                conn,
                &workspace.id,
                &idp_group,
                OwnerAuthority::Held,
                &context,
            )?;
            eprintln!(
                "IdP group {idp_group:?} no longer gives a role in {}",
                workspace.slug
            );
        }
    }
    Ok(())
}

fn role(conn: &mut Conn, command: RoleCommand) -> anyhow::Result<()> {
    let context = AuditContext::cli();
    match command {
        RoleCommand::Set {
            workspace,
            member,
            roles,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let roles = roles
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| name.parse::<Role>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<BTreeSet<Role>>>()?;
            let (member, roles) = members::set_roles(
                conn,
                &workspace.id,
                &member,
                &roles,
                OwnerAuthority::Held,
                &context,
            )?;
            let names: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
            eprintln!(
                "{} has direct roles [{}] in {}",
                member.user_name,
                names.join(", "),
                workspace.slug
            );
        }
        RoleCommand::TransferOwnership {
            workspace,
            from,
            to,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let (from, to) =
                members::transfer_ownership(conn, &workspace.id, &from, &to, &context)?;
            eprintln!(
                "{} is now an Owner of {} in place of {}",
                to.user_name, workspace.slug, from.user_name
            );
        }
    }
    Ok(())
}

fn attributes(conn: &mut Conn, command: AttributesCommand) -> anyhow::Result<()> {
    let (workspace, mapping) = match command {
        AttributesCommand::Show { workspace } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let mapping = attributes::get(conn, &workspace.id)?;
            (workspace, mapping)
        }
        AttributesCommand::Set {
            workspace,
            preset,
            email,
            first_name,
            last_name,
            role,
            groups,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let change = MappingChange {
                preset,
                email,
                first_name,
                last_name,
                role,
                groups,
            };
            let mapping = attributes::set(conn, &workspace.id, change, &AuditContext::cli())?;
            (workspace, mapping)
        }
    };
    eprintln!(
        "attribute mapping of {} ({})",
        workspace.slug,
        mapping.preset.as_deref().unwrap_or("custom")
    );
    let optional = |name: &Option<String>| name.clone().unwrap_or_else(|| "-".to_owned());
    println!("email\t{}", mapping.email);
    println!("first_name\t{}", mapping.first_name);
    println!("last_name\t{}", mapping.last_name);
    println!("role\t{}", optional(&mapping.role));
    println!("groups\t{}", optional(&mapping.groups));
    Ok(())
}

/// The public base URL the links printed start with: the configured one, or the local address.
fn link_base(settings: &Settings) -> String {
    settings
        .public_base_url(local_address(settings.bind))
        .as_str()
        .to_owned()
}

fn console(conn: &mut Conn, settings: &Settings, command: ConsoleCommand) -> anyhow::Result<()> {
    let ConsoleCommand::Link { workspace, email } = command;
    let email = crate::sessions::normalise_email(&email);
    if !email.contains('@') || email.chars().any(char::is_whitespace) {
        bail!("--email {email:?} is not an email address");
    }
    let workspace = workspaces::find_by_slug(conn, &workspace)?;
    let issued = conn.write(|tx| {
        links::create(
            tx,
            links::Kind::Bootstrap,
            &workspace.id,
            Some(&email),
            links::BOOTSTRAP_LIFETIME,
            &AuditContext::cli(),
        )
    })?;
    eprintln!(
        "signs in {email} as an Owner of {}, once, until {}:",
        workspace.slug,
        crate::time::rfc3339(&issued.link.expires_at)
    );
    println!("{}/console/-/link/{}", link_base(settings), issued.secret);
    Ok(())
}

fn setup_link(
    conn: &mut Conn,
    settings: &Settings,
    command: SetupLinkCommand,
) -> anyhow::Result<()> {
    let context = AuditContext::cli();
    match command {
        SetupLinkCommand::Create {
            workspace,
            expires_in,
        } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            let made = crate::api::links::create_setup_link(
                conn,
                &link_base(settings),
                &workspace.id,
                None,
                expires_in.as_deref(),
                &context,
            )?;
            eprintln!(
                "setup link {} for {}, until {}:",
                made.link.id,
                workspace.slug,
                crate::time::rfc3339(&made.link.expires_at)
            );
            println!("{}", made.url);
        }
        SetupLinkCommand::Revoke { workspace, link_id } => {
            let workspace = workspaces::find_by_slug(conn, &workspace)?;
            conn.write(|tx| links::revoke_setup(tx, &workspace.id, &link_id, &context))?;
            eprintln!("revoked setup link {link_id}");
        }
    }
    Ok(())
}

fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    let address = local_address(settings.bind);
    let url = format!("http://{address}/healthz");
    actix_web::rt::System::new().block_on(async {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(5))
            .finish();
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("no answer from {url}: {e}"))?;
        if !response.status().is_success() {
            bail!("{url} answered {}", response.status());
        }
        Ok(())
    })
}

/// Where to reach a server bound to `bind` from this machine: a wildcard address is reached on loopback.
fn local_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of every command says what it is, and names its variable once.
    #[test]
    fn every_flag_says_what_it_does_once() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                assert!(!help.trim().is_empty(), "{path} {id} has no help");
                let named = help.matches("[env:").count() + usize::from(arg.get_env().is_some());
                assert!(named <= 1, "{path} {id} names its variable {named} times");
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&Cli::command(), "idgate");
    }
}
