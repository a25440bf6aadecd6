//! Per-caller rate limits for the SCIM and admin APIs, with governor's keyed GCRA limiter: each API
//! token and each person with a session may make the configured rate, with bursts of twice that.
//! A caller past its limit is answered 429 with `Retry-After`. Only authenticated callers are
//! counted, so a burst of bad tokens (even ones naming a real token's id) never spends an honest
//! caller's allowance. Counters live in each process: with several replicas, each allows the rate.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};

use crate::audit::Actor;
use crate::tokens::auth::AuthError;

/// Callers remembered at most before those at rest are forgotten.
const MAX_CALLERS: usize = 10_000;

type Keyed<C> =
    Governor<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

pub struct RateLimiter<C: Clock = DefaultClock> {
    /// None when limits are off.
    limiter: Option<Keyed<C>>,
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
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(2).expect("two is not zero"));
            let quota = Quota::per_second(rate).allow_burst(burst);
            Governor::new(quota, DefaultKeyedStateStore::default(), clock.clone())
        });
        RateLimiter { limiter, clock }
    }

    /// Admits one request of an authenticated caller, or refuses it with the whole seconds
    /// (at least one) to wait, for `Retry-After`.
    pub fn admit(&self, caller: &Actor) -> Result<(), AuthError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let (kind, id) = caller.parts();
        let outcome = limiter.check_key(&format!("{kind}:{id}"));
        if limiter.len() > MAX_CALLERS {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        outcome.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            AuthError::RateLimited((wait.as_secs_f64().ceil() as u64).max(1))
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
        for _ in 0..10 {
            assert!(limiter.admit(&token("a")).is_ok());
        }
        assert!(matches!(
            limiter.admit(&token("a")),
            Err(AuthError::RateLimited(1))
        ));
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
        let remembered = limiter.limiter.as_ref().unwrap().len();
        assert!(remembered <= 1, "{remembered} callers remembered");
    }
}
