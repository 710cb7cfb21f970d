//! A downloaded chain is checked against what the journal says it is for
//! before it is journalled as downloaded: the leaf certifies the journalled
//! key and names every ordered identifier (a name the CA adds is logged),
//! and each certificate is issued (name and signature) by another of the
//! chain. A signature algorithm this build cannot verify is logged, not
//! taken for a mismatch: the check must not strand a good certificate.
//!
//! A broken CA, or a journal resumed with another key than the one an
//! earlier finalize sent, would otherwise store a certificate that does not
//! match its key, reported valid until its renewal.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::client::CertificateChain;
use crate::crypto::CertificateKey;
use crate::error::{Error, Result};
use crate::protocol::Identifier;

/// Fails with [`Error::CertificateMismatch`] unless `chain` is a
/// certificate for `key_pem`'s key naming every one of `identifiers`,
/// each certificate issued by another of the chain.
pub(super) fn check_chain(
    chain: &CertificateChain,
    key_pem: &str,
    identifiers: &[Identifier],
) -> Result<()> {
    let mismatch = |reason: String| Error::CertificateMismatch {
        url: chain.url().to_owned(),
        reason,
    };
    let key = CertificateKey::from_pkcs8_pem(key_pem)?;
    let ders = chain.certificates_der();
    let parsed = ders
        .iter()
        .map(|der| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| cert)
                .map_err(|e| mismatch(format!("a certificate of the chain does not parse: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let leaf = &parsed[0];
    if leaf.public_key().raw != key.public_key_der().as_slice() {
        return Err(mismatch(
            "the leaf certifies another public key than the journalled certificate key".into(),
        ));
    }
    let theirs = leaf_names(leaf).map_err(mismatch)?;
    let ours: BTreeSet<Name> = identifiers.iter().filter_map(Name::of).collect();
    let show = |set: &BTreeSet<Name>| {
        set.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: BTreeSet<Name> = ours.difference(&theirs).cloned().collect();
    if !missing.is_empty() {
        return Err(mismatch(format!(
            "the leaf does not name [{}] (it names [{}])",
            show(&missing),
            show(&theirs)
        )));
    }
    let extra: BTreeSet<Name> = theirs.difference(&ours).cloned().collect();
    if !extra.is_empty() {
        // Some CAs add a name (the apex beside www): the certificate still
        // serves every ordered name.
        tracing::warn!(certificate = %chain.url(), extra = %show(&extra), "the certificate names more than the order");
    }
    // Each certificate is issued by another of the chain (RFC 8555 wants
    // them in order; a CA that shuffles them is read tolerantly): its
    // issuer's name, and its signature under that key. The top one's
    // issuer (a root the CA leaves out) may be missing, the leaf's may not
    // (unless the leaf comes alone); a self-issued root is not checked.
    let mut loose = 0;
    for (i, child) in parsed.iter().enumerate() {
        if parsed.len() == 1 || child.issuer().as_raw() == child.subject().as_raw() {
            continue;
        }
        let Some(parent) = parsed
            .iter()
            .enumerate()
            .find(|(j, p)| *j != i && p.subject().as_raw() == child.issuer().as_raw())
            .map(|(_, p)| p)
        else {
            loose += 1;
            if i == 0 || loose > 1 {
                return Err(mismatch(format!(
                    "certificate {i} of the chain names the issuer \"{}\", which the chain does not hold",
                    child.issuer()
                )));
            }
            continue;
        };
        match child.verify_signature(Some(parent.public_key())) {
            Ok(()) => {}
            // An algorithm the verifier does not know (ECDSA with SHA-512,
            // P-521) is not a mismatch: unchecked, said so.
            Err(x509_parser::error::X509Error::SignatureUnsupportedAlgorithm) => {
                tracing::warn!(certificate = %chain.url(), index = i, "a signature of the chain uses an algorithm this build cannot verify; not checked");
            }
            Err(e) => {
                return Err(mismatch(format!(
                    "certificate {i} of the chain is not signed by its issuer's key ({e})"
                )));
            }
        }
    }
    Ok(())
}

/// A name a certificate can carry, compared as the CA issues it (DNS names
/// case-insensitively, IP addresses by value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Name {
    Dns(String),
    Ip(IpAddr),
}

impl Name {
    fn of(id: &Identifier) -> Option<Self> {
        match id.kind.as_str() {
            "ip" => id.ip_addr().map(Name::Ip),
            _ => Some(Name::Dns(id.value.to_ascii_lowercase())),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Dns(name) => f.write_str(name),
            Name::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The leaf's subjectAltName DNS names and IP addresses.
fn leaf_names(leaf: &X509Certificate<'_>) -> std::result::Result<BTreeSet<Name>, String> {
    let san = leaf
        .subject_alternative_name()
        .map_err(|e| format!("the leaf's subjectAltName does not parse: {e}"))?
        .ok_or_else(|| "the leaf has no subjectAltName".to_owned())?;
    let mut names = BTreeSet::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => {
                names.insert(Name::Dns(dns.to_ascii_lowercase()));
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                    n => return Err(format!("the leaf names an IP address of {n} bytes")),
                };
                names.insert(Name::Ip(ip));
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CertificateKeyType;

    struct Pki {
        root_key: rcgen::KeyPair,
        root: rcgen::Certificate,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    fn pki(cn: &str) -> Pki {
        let root_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.clone().self_signed(&root_key).unwrap();
        let issuer = rcgen::Issuer::new(
            params,
            rcgen::KeyPair::from_pem(&root_key.serialize_pem()).unwrap(),
        );
        Pki {
            root_key,
            root,
            issuer,
        }
    }

    fn leaf(pki: &Pki, key: &CertificateKey, names: &[&str]) -> String {
        let pair = rcgen::KeyPair::from_pem(&key.to_pkcs8_pem()).unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&pair, &pki.issuer).unwrap();
        format!("{}{}", cert.pem(), pki.root.pem())
    }

    fn ids(names: &[&str]) -> Vec<Identifier> {
        names
            .iter()
            .map(|n| Identifier::parse(n).unwrap())
            .collect()
    }

    fn check(pem: &str, key: &CertificateKey, names: &[&str]) -> Result<()> {
        let chain = CertificateChain::parse_pem("https://ca.test/cert/1", pem).unwrap();
        check_chain(&chain, &key.to_pkcs8_pem(), &ids(names))
    }

    #[test]
    fn a_chain_for_the_key_and_names_passes() {
        let pki = pki("Root A");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let pem = leaf(&pki, &key, &["a.example", "B.example", "192.0.2.1"]);
        check(&pem, &key, &["b.example", "a.example", "192.0.2.1"]).unwrap();
        let _ = &pki.root_key;
    }

    #[test]
    fn a_leaf_for_another_key_is_refused() {
        let pki = pki("Root A");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let other = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let pem = leaf(&pki, &other, &["a.example"]);
        let err = check(&pem, &key, &["a.example"]).unwrap_err();
        assert!(matches!(err, Error::CertificateMismatch { .. }), "{err}");
        assert!(err.to_string().contains("another public key"), "{err}");
        assert_eq!(err.class(), crate::ErrorClass::Protocol);
    }

    #[test]
    fn a_leaf_without_an_ordered_name_is_refused_one_with_more_is_not() {
        let pki = pki("Root A");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let pem = leaf(&pki, &key, &["a.example"]);
        let err = check(&pem, &key, &["a.example", "b.example"]).unwrap_err();
        assert!(
            err.to_string().contains("does not name [b.example]"),
            "{err}"
        );
        // A CA that adds a name: every ordered name is served.
        let pem = leaf(&pki, &key, &["a.example", "b.example", "c.example"]);
        check(&pem, &key, &["a.example", "b.example"]).unwrap();
    }

    #[test]
    fn a_chain_to_another_issuer_is_refused() {
        let a = pki("Root A");
        let b = pki("Root B");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        // The leaf of A followed by B's root: names do not chain.
        let pem = leaf(&a, &key, &["a.example"]).replace(&a.root.pem(), &b.root.pem());
        let err = check(&pem, &key, &["a.example"]).unwrap_err();
        assert!(err.to_string().contains("does not hold"), "{err}");
        // Same name, another key: the signature does not verify.
        let c = pki("Root A");
        let pem = leaf(&a, &key, &["a.example"]).replace(&a.root.pem(), &c.root.pem());
        let err = check(&pem, &key, &["a.example"]).unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");
    }

    #[test]
    fn a_chain_out_of_order_is_read_tolerantly() {
        // Root -> intermediate -> leaf, served leaf, root, intermediate.
        let root = pki("Root A");
        let inter_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Intermediate A");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let inter = params.clone().signed_by(&inter_key, &root.issuer).unwrap();
        let inter_issuer = rcgen::Issuer::new(params, inter_key);
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let pair = rcgen::KeyPair::from_pem(&key.to_pkcs8_pem()).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap()
            .signed_by(&pair, &inter_issuer)
            .unwrap();
        let in_order = format!("{}{}{}", leaf.pem(), inter.pem(), root.root.pem());
        check(&in_order, &key, &["a.example"]).unwrap();
        let shuffled = format!("{}{}{}", leaf.pem(), root.root.pem(), inter.pem());
        check(&shuffled, &key, &["a.example"]).unwrap();
        // Without the intermediate, the leaf's issuer is not there.
        let missing = format!("{}{}", leaf.pem(), root.root.pem());
        let err = check(&missing, &key, &["a.example"]).unwrap_err();
        assert!(err.to_string().contains("does not hold"), "{err}");
    }

    #[test]
    fn a_lone_leaf_is_checked_for_key_and_names() {
        let pki = pki("Root A");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let full = leaf(&pki, &key, &["a.example"]);
        let only_leaf = full.replace(&pki.root.pem(), "");
        check(&only_leaf, &key, &["a.example"]).unwrap();
        assert!(check(&only_leaf, &key, &["b.example"]).is_err());
    }
}
