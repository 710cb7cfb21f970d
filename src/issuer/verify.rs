//! A downloaded chain is checked against what the journal says it is for
//! before it is journalled as downloaded: the leaf certifies the journalled
//! key, for exactly the ordered identifiers, and each certificate is
//! issued (name and signature) by the next one in the chain.
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
/// certificate for `key_pem`'s key and exactly `identifiers`, chained to
/// the issuers it names.
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
    if theirs != ours {
        let show = |set: &BTreeSet<Name>| {
            set.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(mismatch(format!(
            "the leaf names [{}], the order [{}]",
            show(&theirs),
            show(&ours)
        )));
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(mismatch(format!(
                "certificate {i} of the chain names the issuer \"{}\", the next one is \"{}\"",
                child.issuer(),
                parent.subject()
            )));
        }
        if let Err(e) = child.verify_signature(Some(parent.public_key())) {
            return Err(mismatch(format!(
                "certificate {i} of the chain is not signed by the next one's key ({e})"
            )));
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
    fn a_leaf_for_other_names_is_refused() {
        let pki = pki("Root A");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        for names in [&["a.example"][..], &["a.example", "b.example", "c.example"]] {
            let pem = leaf(&pki, &key, names);
            let err = check(&pem, &key, &["a.example", "b.example"]).unwrap_err();
            assert!(err.to_string().contains("the leaf names"), "{err}");
        }
    }

    #[test]
    fn a_chain_to_another_issuer_is_refused() {
        let a = pki("Root A");
        let b = pki("Root B");
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        // The leaf of A followed by B's root: names do not chain.
        let pem = leaf(&a, &key, &["a.example"]).replace(&a.root.pem(), &b.root.pem());
        let err = check(&pem, &key, &["a.example"]).unwrap_err();
        assert!(err.to_string().contains("names the issuer"), "{err}");
        // Same name, another key: the signature does not verify.
        let c = pki("Root A");
        let pem = leaf(&a, &key, &["a.example"]).replace(&a.root.pem(), &c.root.pem());
        let err = check(&pem, &key, &["a.example"]).unwrap_err();
        assert!(err.to_string().contains("not signed"), "{err}");
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
