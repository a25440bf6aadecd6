//! Outbound HTTP to URLs that a tenant names (an IdP's metadata URL). A workspace admin could
//! name any address, so by default a fetch reaches public addresses only: never loopback, private,
//! link-local, unique-local, shared (CGNAT) or otherwise special ones. The check is made on the
//! address each connection is actually opened to (a host name's addresses are filtered by the
//! resolver the connector uses, so a name that resolves differently the second time, as DNS
//! rebinding does, still reaches no internal address), for every hop, redirects included.
//! An operator allows IdPs on an internal network by name or by address range
//! ([`InternalAllowList`]). Bodies are capped in size and the whole fetch in time, and an error
//! never repeats what was fetched.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use actix_tls::connect::{Connector as TcpConnector, Resolve, Resolver};
use awc::http::header::LOCATION;
use futures_util::future::LocalBoxFuture;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How many redirects a fetch follows.
const MAX_REDIRECTS: usize = 5;

/// Host names and address ranges that fetches may reach although they are internal; empty by
/// default. Written as one comma-separated string: `idp.corp.example, 10.20.0.0/16, fd00::1`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InternalAllowList {
    hosts: Vec<String>,
    ranges: Vec<IpNet>,
}

impl InternalAllowList {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut allowed = InternalAllowList::default();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(range) = entry.parse::<IpNet>() {
                allowed.ranges.push(range);
            } else if let Ok(address) = entry.parse::<IpAddr>() {
                allowed.ranges.push(IpNet::from(address));
            } else if url::Host::parse(entry).is_ok() && !entry.contains(['/', ':']) {
                allowed.hosts.push(entry.to_ascii_lowercase());
            } else {
                return Err(format!(
                    "{entry:?} is neither a host name, an address nor an address range (CIDR)"
                ));
            }
        }
        Ok(allowed)
    }

    fn allows_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|allowed| allowed == host)
    }

    /// Whether a connection to this address is allowed.
    fn allows(&self, address: IpAddr) -> bool {
        !is_internal(address) || self.ranges.iter().any(|range| range.contains(&address))
    }
}

impl TryFrom<String> for InternalAllowList {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<InternalAllowList> for String {
    fn from(list: InternalAllowList) -> String {
        let ranges = list.ranges.iter().map(ToString::to_string);
        list.hosts
            .into_iter()
            .chain(ranges)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Addresses that are not on the public internet: where an attacker would aim a server-side fetch.
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                // 0.0.0.0/8, shared address space 100.64.0.0/10, IETF protocol assignments
                // 192.0.0.0/24, benchmarking 198.18.0.0/15, reserved 240.0.0.0/4.
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // Site-local (deprecated, still routed inside some networks), NAT64 and
                // documentation prefixes, and IPv4-compatible addresses.
                || (first & 0xffc0) == 0xfec0
                || (first == 0x64 && v6.segments()[1] == 0xff9b)
                || (first == 0x2001 && v6.segments()[1] == 0xdb8)
                || v6.segments()[..6].iter().all(|s| *s == 0)
        }
    }
}

/// Why a fetch failed, in words that never repeat what the other side sent.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} must be an http(s) URL")]
    NotHttp(String),
    #[error(
        "{0} is an internal address; an operator can allow it with the allowed_internal_hosts setting"
    )]
    Internal(String),
    #[error("{url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0} answered {1}")]
    Status(String, u16),
    #[error("{0} redirects more than {MAX_REDIRECTS} times")]
    TooManyRedirects(String),
    #[error("{0} sent more than {1} bytes")]
    TooLarge(String, usize),
    #[error("{0} did not answer within {1} s")]
    TimedOut(String, u64),
}

/// Fetches `url` with GET, following redirects, within `limit` bytes and `timeout`.
pub async fn fetch(
    allowed: &InternalAllowList,
    url: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    actix_web::rt::time::timeout(timeout, follow(allowed, url, limit, timeout))
        .await
        .unwrap_or_else(|_| Err(FetchError::TimedOut(url.to_owned(), timeout.as_secs())))
}

async fn follow(
    allowed: &InternalAllowList,
    url: &str,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    let mut current = checked(allowed, url)?;
    for _ in 0..=MAX_REDIRECTS {
        let shown = current.to_string();
        let client = client(allowed, &current, timeout);
        let mut response =
            client
                .get(shown.as_str())
                .send()
                .await
                .map_err(|e| FetchError::Unreachable {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
        let status = response.status();
        if status.is_redirection() {
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| current.join(location).ok())
                .ok_or(FetchError::Status(shown, status.as_u16()))?;
            current = checked(allowed, next.as_str())?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status(shown, status.as_u16()));
        }
        let body = response.body().limit(limit).await.map_err(|e| match e {
            awc::error::PayloadError::Overflow => FetchError::TooLarge(shown.clone(), limit),
            other => FetchError::Unreachable {
                url: shown.clone(),
                reason: other.to_string(),
            },
        })?;
        return Ok(body.to_vec());
    }
    Err(FetchError::TooManyRedirects(url.to_owned()))
}

/// The URL, if it is http(s) and, where its host is an address, an allowed one. (A host name is
/// checked when it resolves, by [`Guard`].)
fn checked(allowed: &InternalAllowList, raw: &str) -> Result<url::Url, FetchError> {
    let url = url::Url::parse(raw.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| FetchError::NotHttp(format!("{raw:?}")))?;
    let address = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(url),
        None => return Err(FetchError::NotHttp(format!("{raw:?}"))),
    };
    if allowed.allows(address) {
        Ok(url)
    } else {
        Err(FetchError::Internal(url.to_string()))
    }
}

/// A client for one hop: no redirects of its own (each is checked here), no kept connections,
/// and a resolver that hands the connector only the addresses the policy allows.
fn client(allowed: &InternalAllowList, url: &url::Url, timeout: Duration) -> awc::Client {
    let guard = Guard {
        allowed: Rc::new(allowed.clone()),
        url: url.to_string(),
    };
    let tcp = TcpConnector::new(Resolver::custom(guard)).service();
    let connector = awc::Connector::new()
        .connector(tcp)
        .timeout(timeout)
        .limit(1);
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .timeout(timeout)
        .finish()
}

/// Resolves a host name and keeps only the addresses a connection may be opened to.
struct Guard {
    allowed: Rc<InternalAllowList>,
    url: String,
}

impl Resolve for Guard {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(async move {
            let host_lower = host.to_ascii_lowercase();
            let name = host_lower.clone();
            let resolved: Vec<SocketAddr> = actix_web::rt::task::spawn_blocking(move || {
                std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
                    .map(Iterator::collect)
            })
            .await??;
            if self.allowed.allows_host(&host_lower) {
                return Ok(resolved);
            }
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| self.allowed.allows(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(FetchError::Internal(self.url.clone()).to_string().into());
            }
            Ok(public)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "8.8.8.8",
            "20.190.128.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn an_allow_list_names_hosts_addresses_and_ranges() {
        let allowed = InternalAllowList::parse(" IdP.corp.example, 10.20.0.0/16 ,fd00::1").unwrap();
        assert!(allowed.allows_host("idp.corp.example"));
        assert!(!allowed.allows_host("other.corp.example"));
        assert!(allowed.allows("10.20.3.4".parse().unwrap()));
        assert!(!allowed.allows("10.21.0.1".parse().unwrap()));
        assert!(allowed.allows("fd00::1".parse().unwrap()));
        assert!(!allowed.allows("fd00::2".parse().unwrap()));
        assert!(allowed.allows("8.8.8.8".parse().unwrap()));
        assert_eq!(
            InternalAllowList::parse("").unwrap(),
            InternalAllowList::default()
        );
        for bad in ["http://idp", "10.0.0.0/33", "idp.example:8443"] {
            assert!(InternalAllowList::parse(bad).is_err(), "{bad}");
        }
        let round_trip: String = allowed.clone().into();
        assert_eq!(InternalAllowList::parse(&round_trip).unwrap(), allowed);
    }
}
