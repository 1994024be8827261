//! What registering a node costs: a rate per source.
//!
//! Anyone may register a node, and each costs the ledger state for good, so a source
//! (an IPv4 address, or an IPv6 /64, which one host can hold whole) gets at most
//! `per_hour` registrations an hour: a token bucket that holds `per_hour` tokens and
//! refills at that rate. A registration past it is refused with 429 and when to come
//! back, and is never logged. The rate is the server's, not the ledger's: it lives
//! only in memory, the log never depends on it, and an operator tunes it with
//! `--registrations-per-source-per-hour`.
//!
//! The table is bounded: past [`SOURCES_MAX`] sources it first forgets the buckets
//! that have refilled, which hold nothing a fresh one would not; if that frees no
//! room, a new source is refused until some do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at once: about 3 MiB.
pub const SOURCES_MAX: usize = 65_536;

const HOUR: Duration = Duration::from_secs(3_600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    /// The /64 prefix.
    V6(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(ip) => Source::V4(ip.into()),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(ip) => Source::V4(ip.into()),
                None => Source::V6((u128::from(ip) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Registrations available at `at`, in units of a whole registration.
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RegistrationRate {
    per_hour: u32,
    buckets: Mutex<HashMap<Source, Bucket>>,
}

impl RegistrationRate {
    pub fn new(per_hour: u32) -> RegistrationRate {
        assert!(per_hour > 0, "the server checks its limits at start");
        RegistrationRate {
            per_hour,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The tokens of `bucket` at `now`.
    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let per_hour = f64::from(self.per_hour);
        (bucket.tokens + elapsed * per_hour / HOUR.as_secs_f64()).min(per_hour)
    }

    /// Takes one registration for `ip` at `now`, or says how long until one is free.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let source = Source::of(ip);
        let per_hour = f64::from(self.per_hour);
        let mut buckets = self.buckets.lock().expect("the rate lock");
        if !buckets.contains_key(&source) && buckets.len() >= SOURCES_MAX {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < per_hour);
            if buckets.len() >= SOURCES_MAX {
                return Err(HOUR / self.per_hour);
            }
        }
        let bucket = buckets.entry(source).or_insert(Bucket {
            tokens: per_hour,
            at: now,
        });
        let tokens = self.refilled(*bucket, now);
        if tokens < 1.0 {
            let wait = (1.0 - tokens) * HOUR.as_secs_f64() / per_hour;
            return Err(Duration::from_secs_f64(wait));
        }
        *bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        Ok(())
    }

    /// Gives back the registration [`RegistrationRate::take`] took for `ip`: the
    /// ledger refused it, or could not take it (a full queue), so it cost nothing.
    pub fn refund(&self, ip: IpAddr, now: Instant) {
        let per_hour = f64::from(self.per_hour);
        let mut buckets = self.buckets.lock().expect("the rate lock");
        if let Some(bucket) = buckets.get_mut(&Source::of(ip)) {
            *bucket = Bucket {
                tokens: (self.refilled(*bucket, now) + 1.0).min(per_hour),
                at: now,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn a_source_gets_its_rate_and_its_neighbours_their_own() {
        let rate = RegistrationRate::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            rate.take(v4(1), start).unwrap();
        }
        let wait = rate.take(v4(1), start).unwrap_err();
        assert!(
            wait > Duration::from_secs(1_190) && wait <= Duration::from_secs(1_200),
            "{wait:?}"
        );
        rate.take(v4(2), start).unwrap();

        // A registration the ledger refused is given back.
        rate.refund(v4(2), start);
        for _ in 0..3 {
            rate.take(v4(2), start).unwrap();
        }
        assert!(rate.take(v4(2), start).is_err());

        // One token back after a third of an hour, not two.
        let later = start + Duration::from_secs(1_200);
        rate.take(v4(1), later).unwrap();
        assert!(rate.take(v4(1), later).is_err());
        // Refilled, but never past the bucket.
        let much_later = later + 10 * HOUR;
        for _ in 0..3 {
            rate.take(v4(1), much_later).unwrap();
        }
        assert!(rate.take(v4(1), much_later).is_err());
    }

    #[test]
    fn an_ipv6_host_is_one_source_per_64_and_a_mapped_ipv4_is_its_ipv4() {
        let rate = RegistrationRate::new(1);
        let now = Instant::now();
        let host = |low: u64| {
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_0000_0001u128 << 64) | u128::from(low),
            ))
        };
        rate.take(host(1), now).unwrap();
        assert!(rate.take(host(2), now).is_err(), "the same /64");
        rate.take(
            IpAddr::V6(Ipv6Addr::from(0x2001_0db8_0000_0002u128 << 64)),
            now,
        )
        .unwrap();
        rate.take(v4(9), now).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        assert!(rate.take(mapped, now).is_err(), "the same IPv4 source");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_only_refilled_sources() {
        let rate = RegistrationRate::new(2);
        let now = Instant::now();
        let source = |index: usize| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + index as u32));
        for index in 0..SOURCES_MAX {
            rate.take(source(index), now).unwrap();
        }
        // Full of sources that owe: a new one waits, a known one goes on.
        assert!(rate.take(source(SOURCES_MAX), now).is_err());
        rate.take(source(0), now).unwrap();
        // Once they refill, they make room.
        let later = now + HOUR;
        rate.take(source(SOURCES_MAX), later).unwrap();
        assert_eq!(rate.buckets.lock().unwrap().len(), 1);
    }
}
