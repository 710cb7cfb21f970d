//! The identifier policy of both dialects: how many, which types, valid
//! names and addresses, blocked domains; the result in one canonical form
//! ([`IdentifierSet`]).

use std::net::IpAddr;

use super::Config;
use crate::jws::Rejection;
use sturdy_acme::Identifier;
use sturdy_acme::IdentifierSet;
use sturdy_acme::ProblemType;

/// The most identifiers one order (or v1 CSR) may hold.
pub(super) const MAX_IDENTIFIERS: usize = 100;

/// Refuses more than [`MAX_IDENTIFIERS`] identifiers.
pub(super) fn check_count(n: usize) -> Result<(), Rejection> {
    if n > MAX_IDENTIFIERS {
        return Err(Rejection::new(
            ProblemType::RejectedIdentifier,
            400,
            format!("Order cannot contain more than {MAX_IDENTIFIERS} identifiers"),
        ));
    }
    Ok(())
}

/// Whether `name` is a blocked domain or below one.
fn blocked(config: &Config, name: &str) -> bool {
    config
        .blocked_domains
        .iter()
        .any(|b| name == b || name.ends_with(&format!(".{b}")))
}

/// Checks the identifiers asked for: `dns` names valid (normalized), `ip`
/// addresses that parse, nothing blocked. Every refusal is collected; the
/// result is sorted and deduplicated.
pub(super) fn check_identifiers(
    requested: Vec<Identifier>,
    config: &Config,
) -> Result<Vec<Identifier>, Rejection> {
    check_count(requested.len())?;
    let mut out = Vec::new();
    let mut subproblems = Vec::new();
    for id in requested {
        let checked = match id.kind.as_str() {
            "dns" => {
                Identifier::dns(&id.value).map_err(|e| (ProblemType::Malformed, e.to_string()))
            }
            "ip" => id.value.parse::<IpAddr>().map(Identifier::ip).map_err(|_| {
                (
                    ProblemType::Malformed,
                    format!("invalid IP address {:?}", id.value),
                )
            }),
            other => Err((
                ProblemType::UnsupportedIdentifier,
                format!("identifier type {other:?} is not supported"),
            )),
        };
        match checked {
            Ok(c) if blocked(config, c.base_name()) => {
                subproblems.push((
                    id,
                    ProblemType::RejectedIdentifier,
                    "The ACME server refuses to issue a certificate for this domain name, because it is forbidden by policy".to_owned(),
                ));
            }
            Ok(c) => out.push(c),
            Err((kind, detail)) => subproblems.push((id, kind, detail)),
        }
    }
    if !subproblems.is_empty() {
        return Err(Rejection {
            kind: if subproblems.len() == 1 {
                subproblems[0].1.clone()
            } else {
                ProblemType::RejectedIdentifier
            },
            status: 400,
            detail: subproblems
                .iter()
                .map(|(id, _, d)| format!("{}: {d}", id.value))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(IdentifierSet::new(&out).into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, value: &str) -> Identifier {
        Identifier {
            kind: kind.into(),
            value: value.into(),
        }
    }

    #[test]
    fn identifiers_are_normalized_sorted_and_deduplicated() {
        let config = Config::default();
        let ids = check_identifiers(
            vec![
                id("dns", "B.Example."),
                id("dns", "a.example"),
                id("dns", "b.example"),
                id("ip", "127.0.0.1"),
            ],
            &config,
        )
        .unwrap();
        assert_eq!(
            ids,
            vec![
                id("dns", "a.example"),
                id("dns", "b.example"),
                id("ip", "127.0.0.1")
            ]
        );
    }

    #[test]
    fn refusals_are_collected() {
        let config = Config {
            blocked_domains: vec!["blocked.test".into()],
            ..Config::default()
        };
        let one = check_identifiers(vec![id("email", "a@b.c")], &config).unwrap_err();
        assert_eq!(one.kind, ProblemType::UnsupportedIdentifier);
        let two = check_identifiers(
            vec![id("dns", "www.blocked.test"), id("ip", "not-an-ip")],
            &config,
        )
        .unwrap_err();
        assert_eq!(two.kind, ProblemType::RejectedIdentifier);
        assert!(
            two.detail.starts_with("www.blocked.test: "),
            "{}",
            two.detail
        );
        assert!(two.detail.contains("; not-an-ip: invalid IP address"));
        let many = vec![id("dns", "a.example"); MAX_IDENTIFIERS + 1];
        assert_eq!(
            check_identifiers(many, &config).unwrap_err().kind,
            ProblemType::RejectedIdentifier
        );
    }
}
