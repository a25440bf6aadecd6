//! One settings type, layered: flag > environment (`IDGATE_*`) > `idgate.toml` or `--config FILE` > default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::db::DatabaseUrl;
use crate::forwarded::TrustedProxies;
use crate::outbound::InternalAllowList;

/// Read from the working directory when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "idgate.toml";

/// The keys a config file or `IDGATE_*` variable may set. Other `IDGATE_*` variables (the test
/// suite's `IDGATE_TEST_POSTGRES_URL`, say) are not settings and are left alone.
const KEYS: [&str; 7] = [
    "bind",
    "database_url",
    "base_url",
    "log_format",
    "rate_limit",
    "allowed_internal_hosts",
    "trusted_proxies",
];

/// Requests a second each API token (or person with a session) may make, by default, with a
/// burst of 50 seconds of them (the rate limiter's `BURST_SECONDS`).
pub const DEFAULT_RATE_LIMIT: u32 = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// `sqlite://PATH` (embedded default) or `postgres://...` (several replicas).
    pub database_url: DatabaseUrl,
    /// The public URL used in SAML metadata, SCIM `meta.location` and redirects.
    /// Defaults to `http://` and the bound address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<BaseUrl>,
    pub log_format: LogFormat,
    /// Requests a second per API token or session on the SCIM and admin APIs, with a burst of
    /// 50 seconds of them; 0 turns limits off. Replicas on one PostgreSQL share each allowance.
    pub rate_limit: u32,
    /// Host names and address ranges on an internal network that IdP metadata may be fetched
    /// from; every other loopback, private, link-local or unique-local address is refused.
    #[serde(default)]
    pub allowed_internal_hosts: InternalAllowList,
    /// The proxies (addresses and ranges) whose `Forwarded` or `X-Forwarded-For` header names the
    /// client that per-address limits count; none by default.
    #[serde(default)]
    pub trusted_proxies: TrustedProxies,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: DatabaseUrl::parse("sqlite://idgate.db")
                .expect("the default URL is valid"),
            base_url: None,
            log_format: LogFormat::Pretty,
            rate_limit: DEFAULT_RATE_LIMIT,
            allowed_internal_hosts: InternalAllowList::default(),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// An absolute `http` or `https` URL with no query or fragment, kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(raw).map_err(|e| format!("base URL {raw:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "base URL {raw:?} must be an http:// or https:// URL with a host"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "base URL {raw:?} must not have a query or fragment"
            ));
        }
        Ok(BaseUrl(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BaseUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<BaseUrl> for String {
    fn from(url: BaseUrl) -> String {
        url.0
    }
}

/// The settings that may come from the command line. Each is global, so it may follow the
/// subcommand: `idgate workspace list --database-url postgres://...`.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct ConfigArgs {
    /// Config file [default: ./idgate.toml when it exists]
    #[arg(
        long,
        global = true,
        env = "IDGATE_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080] [env: IDGATE_BIND]
    #[arg(long, global = true, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    /// sqlite://PATH or postgres://... [default: sqlite://idgate.db] [env: IDGATE_DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Public URL of this service [default: http://BIND] [env: IDGATE_BASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// json or pretty [default: pretty] [env: IDGATE_LOG_FORMAT]
    #[arg(long, global = true, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Requests a second per API token or session, bursts of 50 s of them; 0 for none [default: 200] [env: IDGATE_RATE_LIMIT]
    #[arg(long, global = true, value_name = "PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Internal hosts and ranges IdP metadata may come from, comma-separated: idp.corp.example,10.0.0.0/8 [default: none] [env: IDGATE_ALLOWED_INTERNAL_HOSTS]
    #[arg(long, global = true, value_name = "HOSTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_internal_hosts: Option<String>,
    /// Proxies whose Forwarded / X-Forwarded-For header names the client, comma-separated: 10.0.0.0/8,192.0.2.7 [default: none] [env: IDGATE_TRUSTED_PROXIES]
    #[arg(long, global = true, value_name = "ADDRESSES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    pub fn load(args: &ConfigArgs) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file(args) {
            // Checked here so that a missing or unreadable file is an error, not an empty layer.
            std::fs::read(&path).map_err(|source| ConfigError::Unreadable {
                path: path.clone(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(&path));
        }
        figment
            .merge(Env::prefixed("IDGATE_").only(&KEYS))
            .merge(args)
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string().lines().collect::<Vec<_>>().join("; ")))
    }

    /// The public base URL, from the setting or else from the address actually bound.
    pub fn public_base_url(&self, bound: SocketAddr) -> BaseUrl {
        self.base_url
            .clone()
            .unwrap_or_else(|| BaseUrl(format!("http://{bound}")))
    }
}

/// Flags are a figment layer of their own, named so that an error says where the bad value came from.
impl figment::Provider for ConfigArgs {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("command-line flags")
    }

    fn data(&self) -> figment::Result<figment::value::Map<figment::Profile, figment::value::Dict>> {
        Serialized::defaults(self).data()
    }
}

fn config_file(args: &ConfigArgs) -> Option<PathBuf> {
    args.config.clone().or_else(|| {
        let default = Path::new(DEFAULT_CONFIG_FILE);
        default.exists().then(|| default.to_path_buf())
    })
}

#[cfg(test)]
// `Jail` closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(args: &ConfigArgs) -> Result<Settings, String> {
        Settings::load(args).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_apply_with_no_configuration() {
        Jail::expect_with(|_| {
            let settings = load(&ConfigArgs::default())?;
            assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
            assert_eq!(settings.database_url.expose(), "sqlite://idgate.db");
            assert_eq!(settings.log_format, LogFormat::Pretty);
            assert_eq!(
                settings.public_base_url(settings.bind).as_str(),
                "http://127.0.0.1:8080"
            );
            Ok(())
        });
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                "bind = \"127.0.0.1:7001\"\ndatabase_url = \"sqlite://file.db\"\nlog_format = \"json\"\n",
            )?;
            jail.set_env("IDGATE_BIND", "127.0.0.1:7002");
            jail.set_env("IDGATE_DATABASE_URL", "sqlite://env.db");
            let args = ConfigArgs {
                bind: Some("127.0.0.1:7003".into()),
                ..ConfigArgs::default()
            };
            let settings = load(&args)?;
            assert_eq!(settings.bind.to_string(), "127.0.0.1:7003", "flag wins");
            assert_eq!(
                settings.database_url.expose(),
                "sqlite://env.db",
                "env beats file"
            );
            assert_eq!(settings.log_format, LogFormat::Json, "file beats default");
            assert_eq!(settings.base_url, None, "default");
            Ok(())
        });
    }

    #[test]
    fn explicit_config_file_replaces_the_default_one() {
        Jail::expect_with(|jail| {
            jail.create_file(DEFAULT_CONFIG_FILE, "bind = \"127.0.0.1:7001\"\n")?;
            jail.create_file("other.toml", "base_url = \"https://idgate.example.com/\"\n")?;
            let args = ConfigArgs {
                config: Some("other.toml".into()),
                ..ConfigArgs::default()
            };
            let settings = load(&args)?;
            assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
            let base = settings.base_url.expect("set by the file");
            assert_eq!(base.as_str(), "https://idgate.example.com");
            Ok(())
        });
    }

    #[test]
    fn numeric_flags_parse_from_the_command_line() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            config: ConfigArgs,
        }
        Jail::expect_with(|jail| {
            jail.set_env("IDGATE_RATE_LIMIT", "50");
            let flags = Flags::try_parse_from(["idgate", "--rate-limit", "0"]).unwrap();
            assert_eq!(
                load(&flags.config)?.rate_limit,
                0,
                "the flag beats the environment"
            );
            let error = Flags::try_parse_from(["idgate", "--rate-limit", "many"])
                .err()
                .expect("not a number");
            assert!(
                error.to_string().contains("invalid value 'many'"),
                "{error}"
            );
            Ok(())
        });
    }

    #[test]
    fn unrelated_idgate_variables_are_ignored() {
        Jail::expect_with(|jail| {
            jail.set_env("IDGATE_TEST_POSTGRES_URL", "postgres://localhost/test");
            load(&ConfigArgs::default())?;
            Ok(())
        });
    }

    #[test]
    fn each_start_up_error_is_one_clear_line() {
        Jail::expect_with(|jail| {
            jail.create_file(
                DEFAULT_CONFIG_FILE,
                "bind = \"127.0.0.1:1\"\nlisten = \"x\"\n",
            )?;
            let error = load(&ConfigArgs::default()).unwrap_err();
            assert!(
                error.contains("unknown field") && error.contains("listen"),
                "{error}"
            );
            assert!(!error.contains('\n'));

            let missing = ConfigArgs {
                config: Some("missing.toml".into()),
                ..ConfigArgs::default()
            };
            let error = load(&missing).unwrap_err();
            assert!(
                error.starts_with("cannot read config file missing.toml"),
                "{error}"
            );

            jail.create_file(DEFAULT_CONFIG_FILE, "")?;
            jail.set_env("IDGATE_DATABASE_URL", "mysql://db/idgate");
            let error = load(&ConfigArgs::default()).unwrap_err();
            assert!(
                error.contains("must start with sqlite:// or postgres://"),
                "{error}"
            );
            assert!(
                error.contains("IDGATE_") && error.contains("environment"),
                "names the source: {error}"
            );

            let args = ConfigArgs {
                database_url: Some("sqlite://ok.db".into()),
                base_url: Some("ftp://example.com".into()),
                ..ConfigArgs::default()
            };
            let error = load(&args).unwrap_err();
            assert!(error.contains("http:// or https://"), "{error}");
            assert!(
                error.contains("command-line flags"),
                "names the source: {error}"
            );

            let args = ConfigArgs {
                database_url: Some("sqlite://ok.db".into()),
                bind: Some("localhost".into()),
                ..ConfigArgs::default()
            };
            assert!(load(&args).unwrap_err().contains("bind"));

            let args = ConfigArgs {
                database_url: Some("sqlite://ok.db".into()),
                log_format: Some("xml".into()),
                ..ConfigArgs::default()
            };
            assert!(load(&args).unwrap_err().contains("log_format"));
            Ok(())
        });
    }
}
