//! Rate limits that stop abuse without pacing honest clients, with governor's keyed GCRA limiter.
//! Each API token and each person with a session may make the configured rate with a burst of
//! [`BURST_SECONDS`] of it: Okta and Entra send imports and pushes of thousands of requests back
//! to back (Okta walks 100,000 people as 1,000 pages, and documents up to 75 concurrent
//! transactions), and the public SCIM checkers fire without pause, so the burst holds a whole import
//! while the rate still holds a leaked token to a few hundred requests a second. A `/Bulk`
//! request counts once. Only authenticated callers are counted, so a burst of bad tokens (even
//! ones naming a real token's id) never spends an honest caller's allowance. A caller past its
//! limit is answered 429 with `Retry-After` and the IETF `RateLimit-Policy` and `RateLimit`
//! headers. Counters live in each process, and replicas on one PostgreSQL share each allowance by
//! charging a request as many cells as there are live replicas (counted by `replicas.rs`).

use std::net::{IpAddr, Ipv6Addr};

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};

use crate::audit::Actor;
use crate::auth::AuthError;

/// Callers remembered at most before those at rest are forgotten.
const MAX_CALLERS: usize = 10_000;

type Keyed<C> =
    Governor<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// How many seconds of its rate a caller may spend at once.
pub const BURST_SECONDS: u32 = 50;

/// A refused request: when to come back, and the policy that refused it, for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until a request is allowed again, at least one.
    pub retry_after: u64,
    /// The policy: `quota` requests at once, refilled over `window` seconds.
    pub quota: u32,
    pub window: u32,
}

impl Limited {
    /// Adds `Retry-After` and the RateLimit header fields to a refusal.
    pub fn add_to(&self, response: &mut HttpResponse) {
        for (name, value) in self.headers() {
            response.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("digits and quotes"),
            );
        }
    }

    /// `Retry-After`, and the IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers):
    /// the policy, and that nothing remains until `retry_after`.
    fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("retry-after", self.retry_after.to_string()),
            (
                "ratelimit-policy",
                format!("\"burst\";q={};w={}", self.quota, self.window),
            ),
            ("ratelimit", format!("\"burst\";r=0;t={}", self.retry_after)),
        ]
    }
}

/// Requests a second one client address may make to the SAML endpoints anyone may call (login
/// starts, the ACS, single logout), with bursts of ten times that: an office behind one NAT
/// signing in at nine stays far below it, a flood of forged responses does not.
pub const PER_ADDRESS: u32 = 20;

/// One keyed limiter and the policy it enforces.
struct Policy<C: Clock> {
    limiter: Keyed<C>,
    quota: u32,
    window: u32,
}

pub struct RateLimiter<C: Clock = DefaultClock> {
    /// Callers by token or person; None when limits are off.
    callers: Option<Policy<C>>,
    /// Unauthenticated callers by client address (an IPv6 client by its /64); None when off.
    addresses: Option<Policy<C>>,
    /// The replicas sharing each allowance (counted by `replicas.rs`): what one request costs.
    replicas: AtomicU32,
    clock: C,
}

impl RateLimiter {
    /// `per_second` requests a second for each caller; 0 turns limits off.
    pub fn new(per_second: u32) -> Self {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    fn with_clock(per_second: u32, clock: C) -> Self {
        let policy = |rate: NonZeroU32, burst_seconds: u32| {
            let burst = rate.saturating_mul(NonZeroU32::new(burst_seconds).expect("not zero"));
            let quota = Quota::per_second(rate).allow_burst(burst);
            Policy {
                limiter: Governor::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
                quota: burst.get(),
                window: burst_seconds,
            }
        };
        let on = per_second > 0;
        RateLimiter {
            callers: NonZeroU32::new(per_second).map(|rate| policy(rate, BURST_SECONDS)),
            addresses: NonZeroU32::new(PER_ADDRESS)
                .filter(|_| on)
                .map(|rate| policy(rate, 10)),
            replicas: AtomicU32::new(1),
            clock,
        }
    }

    /// How many replicas share each allowance now.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed)
    }

    pub fn set_replicas(&self, alive: u32) {
        self.replicas.store(alive.max(1), Ordering::Relaxed);
    }

    /// Admits one request of an authenticated caller, or refuses it.
    pub fn admit(&self, caller: &Actor) -> Result<(), AuthError> {
        let (kind, id) = caller.parts();
        self.check(&self.callers, format!("{kind}:{id}"))
            .map_err(AuthError::RateLimited)
    }

    /// Admits one request from a client address to an endpoint anyone may call, or refuses it
    /// with the seconds to wait.
    pub fn admit_address(&self, address: IpAddr) -> Result<(), Limited> {
        let key = match address {
            IpAddr::V4(v4) => v4.to_string(),
            // One host of IPv6 holds a whole /64, so that is what one client is counted by.
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Ipv6Addr::from(prefix).to_string()
            }
        };
        self.check(&self.addresses, key)
    }

    /// A refused API token counts against the client's address: a flood of bad tokens meets 429
    /// once past [`PER_ADDRESS`], while a caller with a valid token never touches that allowance.
    /// (Sessions are not counted: a reverse proxy asks about everyone's cookies from one address.)
    pub fn refused(&self, client: IpAddr, error: AuthError) -> AuthError {
        if !matches!(error, AuthError::Rejected(_)) {
            return error;
        }
        match self.admit_address(client) {
            Err(limited) => AuthError::RateLimited(limited),
            Ok(()) => error,
        }
    }

    fn check(&self, policy: &Option<Policy<C>>, key: String) -> Result<(), Limited> {
        let Some(policy) = policy else {
            return Ok(());
        };
        let limiter = &policy.limiter;
        // Each replica charges a request as many cells as there are replicas, so that together
        // they allow one allowance.
        let cost = NonZeroU32::new(self.replicas().min(policy.quota)).expect("at least one");
        let outcome = limiter
            .check_key_n(&key, cost)
            .expect("a cost within the burst always fits");
        if limiter.len() > MAX_CALLERS {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Limited {
                retry_after: (wait.as_secs_f64().ceil() as u64).max(1),
                quota: policy.quota,
                window: policy.window,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn token(id: &str) -> Actor {
        Actor::Token(id.to_owned())
    }

    #[test]
    fn a_caller_gets_a_burst_then_the_rate_and_others_are_untouched() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(5, clock.clone());
        for _ in 0..5 * BURST_SECONDS {
            assert!(limiter.admit(&token("a")).is_ok());
        }
        let refused = Limited {
            retry_after: 1,
            quota: 5 * BURST_SECONDS,
            window: BURST_SECONDS,
        };
        assert!(matches!(
            limiter.admit(&token("a")),
            Err(AuthError::RateLimited(limited)) if limited == refused
        ));
        assert_eq!(
            refused.headers()[1..],
            [
                ("ratelimit-policy", "\"burst\";q=250;w=50".to_owned()),
                ("ratelimit", "\"burst\";r=0;t=1".to_owned()),
            ]
        );
        assert!(
            limiter.admit(&token("b")).is_ok(),
            "b has its own allowance"
        );
        assert!(
            limiter.admit(&Actor::Person("a".to_owned())).is_ok(),
            "a person is not a token with the same id"
        );
        clock.advance(Duration::from_millis(200));
        assert!(limiter.admit(&token("a")).is_ok(), "one more after 1/5 s");
        assert!(limiter.admit(&token("a")).is_err());
    }

    #[test]
    fn client_addresses_are_limited_by_host_and_ipv6_by_its_64() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(100, clock.clone());
        let burst = PER_ADDRESS as usize * 10;
        let one: IpAddr = "203.0.113.7".parse().unwrap();
        assert!((0..burst).all(|_| limiter.admit_address(one).is_ok()));
        assert_eq!(limiter.admit_address(one).unwrap_err().retry_after, 1);
        assert!(
            limiter
                .admit_address("203.0.113.8".parse().unwrap())
                .is_ok()
        );
        let v6 = |host: &str| -> IpAddr { format!("2001:db8:1:2::{host}").parse().unwrap() };
        assert!((0..burst).all(|n| limiter.admit_address(v6(&format!("{:x}", n + 1))).is_ok()));
        assert!(
            limiter.admit_address(v6("ffff")).is_err(),
            "another host of the same /64"
        );
        clock.advance(Duration::from_millis(50));
        assert!(limiter.admit_address(one).is_ok(), "one more after 1/20 s");
        assert!(
            RateLimiter::new(0).admit_address(one).is_ok(),
            "limits off, addresses too"
        );
    }

    #[test]
    fn replicas_share_one_allowance() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(1, clock.clone());
        limiter.set_replicas(2);
        let allowed = (0..BURST_SECONDS)
            .take_while(|_| limiter.admit(&token("a")).is_ok())
            .count();
        assert_eq!(
            allowed,
            BURST_SECONDS as usize / 2,
            "half the burst on each of two"
        );
        limiter.set_replicas(0);
        assert_eq!(limiter.replicas(), 1, "never fewer than this one");
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        assert!((0..10_000).all(|_| limiter.admit(&token("a")).is_ok()));
    }

    #[test]
    fn callers_at_rest_are_forgotten_when_there_are_too_many() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(1, clock.clone());
        for caller in 0..=MAX_CALLERS {
            limiter.admit(&token(&caller.to_string())).unwrap();
        }
        clock.advance(Duration::from_secs(5));
        limiter.admit(&token("newcomer")).unwrap();
        let remembered = limiter.callers.as_ref().unwrap().limiter.len();
        assert!(remembered <= 1, "{remembered} callers remembered");
    }
}
