//! Which address a request comes from. By default the TCP peer's: a header naming another can be
//! sent by anyone. Behind a load balancer or reverse proxy every client's peer is the proxy, so
//! limits per address would hold every client to one allowance; an operator names the proxies
//! ([`TrustedProxies`]), and for a request whose peer is one of them the client is the right-most
//! address of `Forwarded` (RFC 7239), or of `X-Forwarded-For` when there is no `Forwarded`, that
//! is not itself a trusted proxy. Addresses to its left were written by the client and are never
//! believed.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::web;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Addresses and ranges of the proxies whose forwarding headers name the client; none by default.
/// Written as one comma-separated string: `10.0.0.0/8, 192.0.2.7, fd00::/8`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{entry:?} is neither an address nor an address range (CIDR)")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|range| range.contains(&address))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = forwarded_for(headers, &actix_web::http::header::FORWARDED, for_element);
        let chain = match forwarded {
            Some(chain) => chain,
            None => {
                match forwarded_for(headers, &X_FORWARDED_FOR, |element| Some(element.trim())) {
                    Some(chain) => chain,
                    None => return peer,
                }
            }
        };
        // From the right: each hop appended the address it was reached from.
        for hop in chain.iter().rev() {
            match hop {
                Some(address) if self.trusts(*address) => continue,
                Some(address) => return *address,
                // Not an address ("unknown", an obfuscated name, garbage): the hop that wrote it
                // is the nearest client known.
                None => return peer,
            }
        }
        chain.first().copied().flatten().unwrap_or(peer)
    }
}

impl TryFrom<String> for TrustedProxies {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<TrustedProxies> for String {
    fn from(proxies: TrustedProxies) -> String {
        let written: Vec<String> = proxies.0.iter().map(ToString::to_string).collect();
        written.join(",")
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The request's client (see the module's comment), or None for a request with no peer address
/// (one made inside a test).
pub fn client_address(request: &HttpRequest) -> Option<IpAddr> {
    let peer = request.peer_addr()?.ip();
    let proxies = request
        .app_data::<web::Data<TrustedProxies>>()
        .expect("the app registers its TrustedProxies");
    Some(proxies.client(peer, request.headers()))
}

/// Every comma-separated element of every `name` header, in order, each read by `element` as an
/// address (None where it is not one); None when there is no such header or one is not text.
fn forwarded_for<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    element: impl Fn(&'h str) -> Option<&'h str>,
) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all(name) {
        for part in value.to_str().ok()?.split(',') {
            chain.push(element(part).and_then(address));
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// The `for=` parameter of one `Forwarded` element, unquoted.
fn for_element(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as a hop writes it: `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:4711`.
fn address(written: &str) -> Option<IpAddr> {
    written
        .parse::<IpAddr>()
        .ok()
        .or_else(|| written.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            let bracketed = written.strip_prefix('[')?.strip_suffix(']')?;
            bracketed.parse::<IpAddr>().ok()
        })
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn ip(written: &str) -> IpAddr {
        written.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let sent = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(
            proxies.client(ip("198.51.100.1"), &sent),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &sent),
            ip("10.0.0.1"),
            "none is trusted by default"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_right_most_untrusted_hop() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").unwrap();
        let peer = ip("10.1.2.3");
        // The client wrote the first entry itself: it is never believed.
        let sent = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 192.0.2.7")]);
        assert_eq!(proxies.client(peer, &sent), ip("203.0.113.9"));
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(proxies.client(peer, &split), ip("203.0.113.9"));
        let forwarded = headers(&[
            ("forwarded", "for=1.1.1.1"),
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=192.0.2.7:80",
            ),
            ("x-forwarded-for", "198.51.100.20"),
        ]);
        assert_eq!(
            proxies.client(peer, &forwarded),
            ip("2001:db8:cafe::17"),
            "Forwarded, when sent, is what counts"
        );
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 192.0.2.7")]);
        assert_eq!(proxies.client(peer, &all_trusted), ip("10.9.9.9"));
        let none = headers(&[]);
        assert_eq!(proxies.client(peer, &none), peer);
        let unknown = headers(&[("forwarded", "for=unknown, for=_hidden")]);
        assert_eq!(proxies.client(peer, &unknown), peer);
        let mapped = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(proxies.client(peer, &mapped), ip("203.0.113.9"));
    }

    #[test]
    fn proxies_are_addresses_or_ranges() {
        let parsed = TrustedProxies::parse("10.0.0.0/8,192.0.2.7, fd00::/8").unwrap();
        assert_eq!(String::from(parsed), "10.0.0.0/8,192.0.2.7/32,fd00::/8");
        let error = TrustedProxies::parse("proxy.internal").unwrap_err();
        assert!(error.contains("proxy.internal"), "{error}");
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
    }
}
