//! CAA records and what they allow (RFC 8659 §4, RFC 8657): pure, no DNS.

use std::fmt;

/// One CAA record as DNS serves it.
///
/// Example: [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CaaRecord {
    /// The flags octet (bit 7, value 128, is issuer-critical).
    pub flags: u8,
    /// The property tag (`issue`, `issuewild`, `iodef`, …), lower case.
    pub tag: String,
    /// The value, as text.
    pub value: String,
}

impl CaaRecord {
    /// A record from its parts.
    pub fn new(flags: u8, tag: &str, value: &str) -> Self {
        Self {
            flags,
            tag: tag.to_ascii_lowercase(),
            value: value.to_owned(),
        }
    }

    fn critical(&self) -> bool {
        self.flags & 0x80 != 0
    }
}

impl fmt::Display for CaaRecord {
    /// Zone-file form: `0 issue "ca.example; accounturi=…"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.flags, self.tag, self.value)
    }
}

/// Who is asking: the CA's identities and how we would validate.
///
/// Example: [`evaluate`].
#[derive(Debug, Clone, Default)]
pub struct CaaContext {
    /// The CA's CAA identities (the directory's `caaIdentities`), lower case.
    pub ca_identities: Vec<String>,
    /// The account URL, checked against RFC 8657 `accounturi`; `None` when
    /// no account exists yet (an `accounturi` then cannot be satisfied).
    pub account_uri: Option<String>,
    /// The challenge types we may use (`dns-01`, `http-01`), checked
    /// against RFC 8657 `validationmethods`.
    pub validation_methods: Vec<String>,
}

/// What one relevant record set says about one name.
///
/// Example: [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A record permits us.
    Permitted {
        /// The record.
        record: CaaRecord,
    },
    /// The records restrict nothing that applies (only `iodef`, only
    /// `issuewild` for a non-wildcard name, unknown non-critical tags).
    Unrestricted,
    /// No record permits us.
    Forbidden {
        /// The record that decided (the first relevant one, or the critical
        /// unknown one).
        record: CaaRecord,
        /// Why, in words.
        reason: String,
    },
    /// Issuer records exist but the CA announces no CAA identity, so
    /// whether one of them names it cannot be told.
    Undetermined {
        /// The relevant records.
        records: Vec<CaaRecord>,
    },
}

/// The parsed value of an `issue` / `issuewild` record.
struct IssuerValue {
    /// The issuer domain name; `None` for an empty value (`";"`: nobody).
    domain: Option<String>,
    parameters: Vec<(String, String)>,
}

/// RFC 8659 §4.2: `[issuer-domain-name] *(";" parameter)`, parameters
/// `tag=value`. `None` when malformed.
fn parse_issuer_value(value: &str) -> Option<IssuerValue> {
    let mut parts = value.split(';');
    let domain = parts.next()?.trim();
    let domain = if domain.is_empty() {
        None
    } else {
        let valid = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !valid {
            return None;
        }
        Some(domain.to_ascii_lowercase())
    };
    let mut parameters = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (tag, value) = part.split_once('=')?;
        let tag = tag.trim();
        if !parameter_tag(tag) {
            return None;
        }
        parameters.push((tag.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(IssuerValue { domain, parameters })
}

/// RFC 8659 §4.2 `tag = (ALPHA / DIGIT) *( *("-") (ALPHA / DIGIT))`:
/// letters and digits, hyphens inside only.
fn parameter_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        }
        _ => false,
    }
}

/// Decides what the relevant record set `records` (found at one name of the
/// climb) says about issuing for a name, a wildcard one when `wildcard`.
///
/// - An issuer-critical record with a tag we do not know forbids (§4.1).
/// - For a wildcard name, `issuewild` records are the relevant ones when
///   there are any, else `issue` (§4.3); for other names only `issue`.
/// - A record permits when its issuer domain is one of the CA's
///   identities and its RFC 8657 parameters accept us: `accounturi` must be
///   our account URL, `validationmethods` must list a method we use.
///
/// # Example
///
/// ```
/// use sturdy_acme::caa::{evaluate, CaaContext, CaaRecord, Decision};
///
/// let ctx = CaaContext {
///     ca_identities: vec!["letsencrypt.org".into()],
///     account_uri: Some("https://ca/acct/1".into()),
///     validation_methods: vec!["dns-01".into()],
/// };
/// let ours = [CaaRecord::new(0, "issue", "letsencrypt.org")];
/// assert!(matches!(evaluate(&ours, false, &ctx), Decision::Permitted { .. }));
///
/// let pinned = [CaaRecord::new(0, "issue", "letsencrypt.org; accounturi=https://ca/acct/2")];
/// let Decision::Forbidden { reason, .. } = evaluate(&pinned, false, &ctx) else { panic!() };
/// assert!(reason.contains("accounturi"));
///
/// let wild_only = [CaaRecord::new(0, "issuewild", "other.example")];
/// assert_eq!(evaluate(&wild_only, false, &ctx), Decision::Unrestricted);
/// assert!(matches!(evaluate(&wild_only, true, &ctx), Decision::Forbidden { .. }));
/// ```
pub fn evaluate(records: &[CaaRecord], wildcard: bool, ctx: &CaaContext) -> Decision {
    const KNOWN: [&str; 3] = ["issue", "issuewild", "iodef"];
    if let Some(critical) = records
        .iter()
        .find(|r| r.critical() && !KNOWN.contains(&r.tag.as_str()))
    {
        return Decision::Forbidden {
            record: critical.clone(),
            reason: format!(
                "issuer-critical property {:?} is not understood, so no CA may issue",
                critical.tag
            ),
        };
    }
    let of = |tag: &str| -> Vec<&CaaRecord> { records.iter().filter(|r| r.tag == tag).collect() };
    let (relevant, tag) = match (wildcard, of("issuewild")) {
        (true, wild) if !wild.is_empty() => (wild, "issuewild"),
        _ => (of("issue"), "issue"),
    };
    if relevant.is_empty() {
        return Decision::Unrestricted;
    }
    // A set none of whose records names an issuer (all `";"` or
    // malformed) permits no CA, whoever this one is.
    let names_an_issuer = relevant
        .iter()
        .any(|r| parse_issuer_value(&r.value).is_some_and(|v| v.domain.is_some()));
    if ctx.ca_identities.is_empty() && names_an_issuer {
        return Decision::Undetermined {
            records: relevant.into_iter().cloned().collect(),
        };
    }
    let mut first_reason = None;
    for record in &relevant {
        match judge(record, ctx) {
            Ok(()) => {
                return Decision::Permitted {
                    record: (*record).clone(),
                };
            }
            Err(reason) => {
                first_reason.get_or_insert(((*record).clone(), reason));
            }
        }
    }
    let (record, reason) = first_reason.expect("relevant is not empty");
    let reason = if wildcard && tag == "issuewild" {
        format!("{reason} (issuewild decides for wildcard names)")
    } else {
        reason
    };
    Decision::Forbidden { record, reason }
}

/// The methods of `ctx.validation_methods` that `records` lets this CA
/// validate with (RFC 8657 `validationmethods`), in `ctx`'s order: each
/// method is judged alone, so records permitting different methods add
/// up. Every method when nothing restricts, none when the set forbids.
///
/// # Example
///
/// ```
/// use sturdy_acme::caa::{permitted_methods, CaaContext, CaaRecord};
///
/// let ctx = CaaContext {
///     ca_identities: vec!["letsencrypt.org".into()],
///     account_uri: None,
///     validation_methods: vec!["http-01".into(), "dns-01".into()],
/// };
/// let dns_only = [CaaRecord::new(0, "issue", "letsencrypt.org; validationmethods=dns-01")];
/// assert_eq!(permitted_methods(&dns_only, false, &ctx), ["dns-01"]);
/// ```
pub fn permitted_methods(records: &[CaaRecord], wildcard: bool, ctx: &CaaContext) -> Vec<String> {
    ctx.validation_methods
        .iter()
        .filter(|method| {
            let alone = CaaContext {
                validation_methods: vec![(*method).clone()],
                ..ctx.clone()
            };
            !matches!(
                evaluate(records, wildcard, &alone),
                Decision::Forbidden { .. }
            )
        })
        .cloned()
        .collect()
}

/// Why `record` does not permit us, if it does not.
fn judge(record: &CaaRecord, ctx: &CaaContext) -> Result<(), String> {
    let Some(value) = parse_issuer_value(&record.value) else {
        return Err(format!("malformed {} value {:?}", record.tag, record.value));
    };
    let Some(domain) = value.domain else {
        return Err(format!("{} \";\" permits no CA", record.tag));
    };
    if !ctx
        .ca_identities
        .iter()
        .any(|id| id.eq_ignore_ascii_case(&domain))
    {
        return Err(format!(
            "{} names {domain}, not this CA ({})",
            record.tag,
            ctx.ca_identities.join(", ")
        ));
    }
    for (tag, param) in &value.parameters {
        match tag.as_str() {
            "accounturi" => match &ctx.account_uri {
                Some(ours) if ours == param => {}
                Some(ours) => {
                    return Err(format!("accounturi is {param}, this account is {ours}"));
                }
                None => {
                    return Err(format!(
                        "accounturi is {param}, and there is no account yet to match"
                    ));
                }
            },
            "validationmethods" => {
                let allowed: Vec<&str> = param.split(',').map(str::trim).collect();
                if !ctx
                    .validation_methods
                    .iter()
                    .any(|m| allowed.contains(&m.as_str()))
                {
                    return Err(format!(
                        "validationmethods={param} excludes {}",
                        ctx.validation_methods.join(", ")
                    ));
                }
            }
            // Unknown parameters are ignored (RFC 8659 §4.2).
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CaaContext {
        CaaContext {
            ca_identities: vec!["ca.example".into()],
            account_uri: Some("https://ca.example/acct/1".into()),
            validation_methods: vec!["dns-01".into()],
        }
    }

    fn forbidden(records: &[CaaRecord], wildcard: bool) -> String {
        match evaluate(records, wildcard, &ctx()) {
            Decision::Forbidden { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn issue_records() {
        let r = |v: &str| CaaRecord::new(0, "issue", v);
        assert!(matches!(
            evaluate(&[r("other.example"), r("CA.example")], false, &ctx()),
            Decision::Permitted { record } if record.value == "CA.example"
        ));
        assert!(forbidden(&[r("other.example")], false).contains("names other.example"));
        assert!(forbidden(&[r(";")], false).contains("permits no CA"));
        assert!(forbidden(&[r("ca.example; =x")], false).contains("malformed"));
        assert!(forbidden(&[r("bad domain!")], false).contains("malformed"));
        // Parameters.
        assert!(matches!(
            evaluate(
                &[r(
                    "ca.example; accounturi=https://ca.example/acct/1; validationmethods=http-01,dns-01"
                )],
                false,
                &ctx()
            ),
            Decision::Permitted { .. }
        ));
        assert!(
            forbidden(&[r("ca.example; validationmethods=http-01")], false)
                .contains("excludes dns-01")
        );
        let mut no_account = ctx();
        no_account.account_uri = None;
        assert!(matches!(
            evaluate(
                &[r("ca.example; accounturi=https://x/1")],
                false,
                &no_account
            ),
            Decision::Forbidden { .. }
        ));
        // Unknown parameters are ignored, hyphenated tags included; a tag
        // with an outer hyphen is malformed.
        assert!(matches!(
            evaluate(&[r("ca.example; policy=ev; x-future-2=a")], false, &ctx()),
            Decision::Permitted { .. }
        ));
        assert!(forbidden(&[r("ca.example; -x=a")], false).contains("malformed"));
        assert!(forbidden(&[r("ca.example; x-=a")], false).contains("malformed"));
    }

    #[test]
    fn methods_are_judged_one_by_one() {
        let r = |v: &str| CaaRecord::new(0, "issue", v);
        let mut both = ctx();
        both.validation_methods = vec!["http-01".into(), "dns-01".into()];
        assert_eq!(
            permitted_methods(&[r("ca.example; validationmethods=dns-01")], false, &both),
            ["dns-01"]
        );
        // Two records, one method each: both.
        assert_eq!(
            permitted_methods(
                &[
                    r("ca.example; validationmethods=http-01"),
                    r("ca.example; validationmethods=dns-01")
                ],
                false,
                &both
            ),
            ["http-01", "dns-01"]
        );
        assert_eq!(permitted_methods(&[r("ca.example")], false, &both).len(), 2);
        assert!(permitted_methods(&[r("other.example")], false, &both).is_empty());
        assert_eq!(permitted_methods(&[], false, &both).len(), 2);
    }

    proptest::proptest! {
        /// Whatever the records hold, a decision comes back (no panic), and
        /// a set with no issue / issuewild / critical record restricts
        /// nothing.
        #[test]
        fn any_records_get_a_decision(
            records in proptest::collection::vec(
                (proptest::num::u8::ANY, "[a-z]{0,10}", "\\PC{0,40}"), 0..6),
            wildcard in proptest::bool::ANY,
        ) {
            let records: Vec<CaaRecord> = records
                .iter()
                .map(|(f, t, v)| CaaRecord::new(*f, t, v))
                .collect();
            let decision = evaluate(&records, wildcard, &ctx());
            let restricting = records.iter().any(|r| {
                r.tag == "issue" || r.tag == "issuewild" || r.critical()
            });
            if !restricting {
                proptest::prop_assert_eq!(decision, Decision::Unrestricted);
            }
        }
    }

    #[test]
    fn wildcards_tags_and_criticality() {
        let issue = CaaRecord::new(0, "issue", "ca.example");
        let wild_other = CaaRecord::new(0, "issuewild", "other.example");
        // issuewild decides for wildcards, issue for the rest.
        let set = [issue.clone(), wild_other.clone()];
        assert!(matches!(
            evaluate(&set, false, &ctx()),
            Decision::Permitted { .. }
        ));
        assert!(forbidden(&set, true).contains("issuewild decides"));
        // Without issuewild, issue applies to wildcards too.
        assert!(matches!(
            evaluate(std::slice::from_ref(&issue), true, &ctx()),
            Decision::Permitted { .. }
        ));
        // Only iodef, or unknown non-critical tags: no restriction.
        let iodef = CaaRecord::new(0, "iodef", "mailto:x@example");
        assert_eq!(evaluate(&[iodef], false, &ctx()), Decision::Unrestricted);
        assert_eq!(
            evaluate(&[CaaRecord::new(0, "future", "x")], false, &ctx()),
            Decision::Unrestricted
        );
        // A critical unknown tag forbids, whatever else is there.
        let critical = CaaRecord::new(128, "tbs", "x");
        assert!(forbidden(&[issue.clone(), critical], false).contains("issuer-critical"));
        // No identities: cannot tell, unless no record names any issuer.
        assert!(matches!(
            evaluate(&[issue], false, &CaaContext::default()),
            Decision::Undetermined { .. }
        ));
        let nobody = CaaRecord::new(0, "issue", ";");
        assert!(matches!(
            evaluate(&[nobody], false, &CaaContext::default()),
            Decision::Forbidden { reason, .. } if reason.contains("permits no CA")
        ));
    }
}
