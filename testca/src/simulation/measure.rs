//! Measuring a run: the least time a token bucket needs to serve the
//! arrivals (the makespan's lower bound), an issued certificate's
//! validity, the answers counted by status, and the tally of what was
//! issued per set (expiries, duplicates, renewals).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use sturdy_acme::{Error, Limit, Result};

/// When the last of `arrivals` (sorted) is served by a token bucket that
/// starts full, each served as soon as it has arrived and a token is there.
pub(super) fn greedy_finish(limit: &Limit, arrivals: &[Duration]) -> Duration {
    let interval = limit.refill_interval().as_secs_f64();
    let cap = f64::from(limit.burst);
    let (mut t, mut tokens) = (0.0f64, cap);
    for a in arrivals {
        let a = a.as_secs_f64();
        if a > t {
            tokens = (tokens + (a - t) / interval).min(cap);
            t = a;
        }
        if tokens < 1.0 {
            t += (1.0 - tokens) * interval;
            tokens = 1.0;
        }
        tokens -= 1.0;
    }
    Duration::from_secs_f64(t)
}

/// An issued certificate's validity.
pub(super) fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::InvalidInput(format!("an issued certificate does not parse: {e}")))?;
    let at = |t: i64| sturdy_acme::timestamp::from_unix(t);
    Ok((
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    ))
}

/// Answers counted by status.
#[derive(Default)]
pub(super) struct Mutex429(std::sync::Mutex<HashMap<u16, u64>>);

impl Mutex429 {
    pub(super) fn count(&self, status: u16) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
    }
    pub(super) fn all(&self) -> BTreeMap<u16, u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(s, _)| **s >= 400)
            .map(|(s, n)| (*s, *n))
            .collect()
    }
    pub(super) fn get(&self, status: u16) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&status)
            .copied()
            .unwrap_or(0)
    }
}

/// What the certificates issued for a fleet came to, per set.
pub(super) struct Tally {
    pub(super) ever_expired: usize,
    pub(super) never_issued: usize,
    /// Certificates issued before half of their predecessor's lifetime
    /// without the CA asking.
    pub(super) duplicates: usize,
    pub(super) renewals: usize,
    /// Each set's first certificate.
    pub(super) first_issued: HashMap<String, SystemTime>,
}

/// Tallies `issued` (from every CA) for the sets `ids`, by the end of the
/// run `end`; `asked` are the serials the CA asked to replace early (their
/// replacements are renewals, however early).
pub(super) fn tally(
    issued: &[&crate::IssuedCertificate],
    ids: &[String],
    asked: &std::collections::HashSet<String>,
    end: SystemTime,
) -> Result<Tally> {
    type Issued = (SystemTime, SystemTime, SystemTime, bool);
    let mut by_set: HashMap<String, Vec<Issued>> = HashMap::new();
    for cert in issued {
        let id = cert
            .identifiers
            .iter()
            .map(|i| i.value.clone())
            .collect::<Vec<_>>()
            .join(",");
        let (not_before, not_after) = validity(&cert.leaf_der)?;
        by_set.entry(id).or_default().push((
            cert.issued_at,
            not_before,
            not_after,
            asked.contains(&cert.serial),
        ));
    }
    let mut tally = Tally {
        ever_expired: 0,
        never_issued: 0,
        duplicates: 0,
        renewals: 0,
        first_issued: HashMap::new(),
    };
    for id in ids {
        let Some(certs) = by_set.get_mut(id) else {
            tally.never_issued += 1;
            continue;
        };
        certs.sort();
        tally.first_issued.insert(id.clone(), certs[0].0);
        let mut expired = false;
        for pair in certs.windows(2) {
            let ((_, nb, na, asked), (issued, ..)) = (pair[0], pair[1]);
            if issued > na {
                expired = true;
            }
            let half = nb + na.duration_since(nb).unwrap_or_default() / 2;
            if issued < half && !asked {
                tally.duplicates += 1;
            } else {
                tally.renewals += 1;
            }
        }
        if certs.last().is_some_and(|(_, _, na, _)| *na < end) {
            expired = true;
        }
        if expired {
            tally.ever_expired += 1;
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    const HOUR: u64 = 3600;

    #[test]
    fn a_bucket_serves_its_burst_at_once_then_one_per_refill() {
        let limit = Limit::new(300, Duration::from_secs(3 * HOUR));
        let at_once = vec![Duration::ZERO; 300];
        assert_eq!(greedy_finish(&limit, &at_once), Duration::ZERO);
        let more = vec![Duration::ZERO; 2000];
        // 1,700 beyond the burst, one per 36 s.
        assert_eq!(greedy_finish(&limit, &more).as_secs(), 1700 * 36);
        // A later burst finds the bucket refilled meanwhile.
        let mut two = vec![Duration::ZERO; 300];
        two.extend(vec![Duration::from_secs(3 * HOUR); 300]);
        assert_eq!(greedy_finish(&limit, &two), Duration::from_secs(3 * HOUR));
    }
}
