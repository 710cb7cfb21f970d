//! The test CA's certificates: a root, an issuing intermediate, optionally an
//! alternate root with a cross-signed copy of the intermediate (for
//! alternate chains, RFC 8555 §7.4.2), the HTTPS listener's certificate, and
//! the issuance of end-entity certificates from CSRs.
//!
//! Everything is generated in memory when the CA starts; nothing is persisted.
//!
//! (Over 800 lines: the certificate authority itself is about 600; the rest
//! are its tests, beside the code whose encodings they check.)

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use sturdy_acme::Identifier;

/// How long the generated CA certificates (and the listener's) are valid.
const CA_VALIDITY: Duration = Duration::days(10 * 365);
/// How far back the generated CA certificates' `notBefore` is set, to
/// tolerate clock skew between the CA and its clients.
const BACKDATE: Duration = Duration::hours(1);
/// The longest CN a certificate gets (RFC 5280 `ub-common-name`).
const MAX_CN_LEN: usize = 64;

/// A CA certificate in both encodings.
#[derive(Clone)]
struct CaCert {
    der: Vec<u8>,
    pem: String,
}

impl CaCert {
    fn new(cert: &rcgen::Certificate) -> Self {
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }
}

/// The test CA's key material: a root CA, the intermediate that signs
/// end-entity certificates, optionally an alternate root with a cross-signed
/// intermediate, and the HTTPS listener's TLS configuration.
///
/// All keys are ECDSA P-256 and live only in memory.
pub(crate) struct Pki {
    root: CaCert,
    intermediate: CaCert,
    /// The alternate root and the intermediate cross-signed by it.
    alternate: Option<(CaCert, CaCert)>,
    /// Signs end-entity certificates (the intermediate's name and key).
    issuer: Issuer<'static, KeyPair>,
    /// The intermediate's Subject Key Identifier: the AKI of every
    /// certificate it issues, and the first half of their ARI CertIDs.
    issuer_key_id: Vec<u8>,
    listener: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("alternate_chain", &self.alternate.is_some())
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Generates a fresh PKI. `name` prefixes the subject CNs: `"sturdy-acme
    /// Test"` gives `"sturdy-acme Test Root CA"`, `"… Intermediate CA"` and
    /// (with `alternate_chain`) `"… Alternate Root CA"`. Root and
    /// intermediate keys are P-256.
    pub(crate) fn generate(name: &str, alternate_chain: bool) -> Result<Pki, String> {
        let now = OffsetDateTime::now_utc();

        let root_key = new_p256_key()?;
        let root_params = ca_params(&format!("{name} Root CA"), None, now)?;
        let root_cert = root_params
            .self_signed(&root_key)
            .map_err(|e| format!("self-signing the root: {e}"))?;
        let root_issuer = Issuer::from_params(&root_params, &root_key);

        let intermediate_key = new_p256_key()?;
        let intermediate_params = ca_params(&format!("{name} Intermediate CA"), Some(0), now)?;
        let intermediate_cert = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .map_err(|e| format!("signing the intermediate: {e}"))?;

        let alternate = if alternate_chain {
            let alt_key = new_p256_key()?;
            let alt_params = ca_params(&format!("{name} Alternate Root CA"), None, now)?;
            let alt_cert = alt_params
                .self_signed(&alt_key)
                .map_err(|e| format!("self-signing the alternate root: {e}"))?;
            // Same subject and key as the intermediate, another serial and issuer.
            let mut cross_params = intermediate_params.clone();
            cross_params.serial_number = Some(random_serial()?.0);
            let cross_cert = cross_params
                .signed_by(
                    &intermediate_key,
                    &Issuer::from_params(&alt_params, &alt_key),
                )
                .map_err(|e| format!("cross-signing the intermediate: {e}"))?;
            Some((CaCert::new(&alt_cert), CaCert::new(&cross_cert)))
        } else {
            None
        };

        let listener = listener_config(name, &root_issuer, now)?;
        let issuer_key_id = subject_key_id(intermediate_cert.der())?;

        Ok(Pki {
            root: CaCert::new(&root_cert),
            intermediate: CaCert::new(&intermediate_cert),
            issuer_key_id,
            alternate,
            issuer: Issuer::new(intermediate_params, intermediate_key),
            listener,
        })
    }

    /// The root certificate, PEM (what clients of the test CA trust).
    pub(crate) fn root_pem(&self) -> String {
        self.root.pem.clone()
    }

    /// The alternate root certificate, PEM (when generated with an alternate chain).
    pub(crate) fn alternate_root_pem(&self) -> Option<String> {
        self.alternate.as_ref().map(|(root, _)| root.pem.clone())
    }

    /// The root certificate, DER.
    #[allow(dead_code, reason = "part of the PKI's API, not wired into the CA yet")]
    pub(crate) fn root_der(&self) -> Vec<u8> {
        self.root.der.clone()
    }

    /// The issuing intermediate's Subject Key Identifier (the cross-signed
    /// copy has the same key, hence the same identifier).
    pub(crate) fn issuer_key_id(&self) -> &[u8] {
        &self.issuer_key_id
    }

    /// The issuing intermediate certificate, DER (ACME v1's `issuer-cert`).
    pub(crate) fn intermediate_der(&self) -> Vec<u8> {
        self.intermediate.der.clone()
    }

    /// A rustls server configuration (ring provider, ALPN `http/1.1`) that
    /// presents a certificate for `127.0.0.1`, `::1` and `localhost`, issued
    /// directly by the root: a client trusting [`Pki::root_pem`] accepts it.
    pub(crate) fn listener_tls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.listener)
    }

    /// Issues an end-entity certificate for the CSR's identifiers and public
    /// key, valid from `not_before` to `not_after`, signed by the
    /// intermediate: a random positive 16-byte serial, the identifiers as
    /// DNS / IP SANs, the first DNS name (if at most 64 characters) as CN,
    /// EKU serverAuth only (as every Let's Encrypt profile since 2026: no
    /// clientAuth), KU digitalSignature (+ keyEncipherment for RSA keys),
    /// basicConstraints CA:false, AKI and SKI; no Authority Information
    /// Access OCSP URL (Let's Encrypt dropped OCSP in 2025).
    ///
    /// Fails for keys it cannot put into a certificate ([`KeyKind::Other`]);
    /// whether a key is acceptable (e.g. RSA size) is the caller's policy.
    #[cfg(test)]
    pub(crate) fn issue(
        &self,
        csr: &CsrInfo,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, String> {
        self.issue_with(csr, not_before, not_after, true, None)
    }

    /// [`Pki::issue`], with a subject common name (the first DNS name that
    /// fits) or none (Let's Encrypt's `tlsserver` and `shortlived`), and
    /// the URL of its revocation list (CRL Distribution Points) if any.
    pub(crate) fn issue_with(
        &self,
        csr: &CsrInfo,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        common_name: bool,
        crl_url: Option<String>,
    ) -> Result<Issued, String> {
        if csr.identifiers.is_empty() {
            return Err("no identifiers to issue for".into());
        }
        if not_after <= not_before {
            return Err("notAfter is not after notBefore".into());
        }
        let public_key = CsrPublicKey::new(csr)?;
        let (serial, serial_hex) = random_serial()?;

        let mut params = CertificateParams::default();
        params.serial_number = Some(serial);
        params.not_before = not_before;
        params.not_after = not_after;
        let mut dn = DistinguishedName::new();
        if let Some(cn) = csr
            .identifiers
            .iter()
            .filter(|_| common_name)
            .find(|i| i.kind == "dns" && i.value.len() <= MAX_CN_LEN)
        {
            dn.push(DnType::CommonName, cn.value.clone());
        }
        params.distinguished_name = dn;
        params.subject_alt_names = csr
            .identifiers
            .iter()
            .map(san_for)
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if matches!(csr.key, KeyKind::Rsa { .. }) {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        // serverAuth only: Let's Encrypt dropped clientAuth from `classic`
        // on 2026-02-11 and ended `tlsclient` on 2026-07-08.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = crl_url
            .into_iter()
            .map(|url| rcgen::CrlDistributionPoint { uris: vec![url] })
            .collect();

        let leaf = params
            .signed_by(&public_key, &self.issuer)
            .map_err(|e| format!("signing the certificate: {e}"))?;
        let leaf_pem = leaf.pem();
        let chain_pem = format!("{leaf_pem}{}", self.intermediate.pem);
        let alternate_chain_pem = self
            .alternate
            .as_ref()
            .map(|(_, cross)| format!("{leaf_pem}{}", cross.pem));
        Ok(Issued {
            serial_hex,
            leaf_der: leaf.der().to_vec(),
            chain_pem,
            alternate_chain_pem,
        })
    }
}

impl Pki {
    /// A revocation list (DER, signed by the intermediate) for the shard at
    /// `url`: its Issuing Distribution Point names `url` (user
    /// certificates only), as Let's Encrypt's sharded CRLs do.
    pub(crate) fn crl(
        &self,
        url: &str,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        revoked: &[(String, OffsetDateTime, u8)],
    ) -> Result<Vec<u8>, String> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial_hex, at, reason)| {
                let padded = if serial_hex.len() % 2 == 1 {
                    format!("0{serial_hex}")
                } else {
                    serial_hex.clone()
                };
                let bytes = (0..padded.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|e| format!("serial {serial_hex}: {e}"))?;
                Ok(rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from(bytes),
                    revocation_time: *at,
                    reason_code: revocation_reason(*reason),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number.to_be_bytes().to_vec()),
            issuing_distribution_point: Some(rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec![url.to_owned()],
                },
                scope: Some(rcgen::CrlScope::UserCertsOnly),
            }),
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .map(|crl| crl.der().to_vec())
        .map_err(|e| format!("signing the revocation list: {e}"))
    }
}

/// The CRL entry reason for an RFC 5280 reason code (0, unspecified, is
/// left out, as RFC 5280 §5.3.1 asks).
fn revocation_reason(code: u8) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    Some(match code {
        1 => R::KeyCompromise,
        2 => R::CaCompromise,
        3 => R::AffiliationChanged,
        4 => R::Superseded,
        5 => R::CessationOfOperation,
        6 => R::CertificateHold,
        8 => R::RemoveFromCrl,
        9 => R::PrivilegeWithdrawn,
        10 => R::AaCompromise,
        _ => return None,
    })
}

/// The Subject Key Identifier of a DER certificate.
fn subject_key_id(der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::X509Certificate;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("parsing a CA certificate: {e}"))?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| "the intermediate has no Subject Key Identifier".to_owned())
}

/// An issued certificate.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// The serial number, lowercase hex without leading zeros.
    pub(crate) serial_hex: String,
    /// The end-entity certificate, DER.
    pub(crate) leaf_der: Vec<u8>,
    /// The leaf and the intermediate, PEM (the default chain).
    pub(crate) chain_pem: String,
    /// The leaf and the intermediate cross-signed by the alternate root, PEM
    /// (when the PKI has an alternate chain).
    pub(crate) alternate_chain_pem: Option<String>,
}

/// What the CA takes from a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsrInfo {
    /// The requested identifiers: the subjectAltName DNS names and IP
    /// addresses plus the subject CN(s), normalized (DNS names lower case),
    /// sorted and deduplicated.
    pub(crate) identifiers: Vec<Identifier>,
    /// The SubjectPublicKeyInfo, DER.
    pub(crate) public_key_der: Vec<u8>,
    /// The kind of key.
    pub(crate) key: KeyKind,
    /// Whether it asks for OCSP Must-Staple: a TLS Feature extension
    /// (RFC 7633, `id-pe-tlsfeature`) whose value is exactly
    /// `status_request`, as Boulder's `containsMustStaple` matches it.
    pub(crate) must_staple: bool,
}

/// RFC 7633 `id-pe-tlsfeature`.
const TLS_FEATURE_OID: &str = "1.3.6.1.5.5.7.1.24";
/// `SEQUENCE { INTEGER 5 }`: the `status_request` feature (RFC 6066).
const MUST_STAPLE_VALUE: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x05];

/// The kind of a CSR's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// The modulus length.
        bits: usize,
    },
    /// Ed25519.
    Ed25519,
    /// Anything else, described (algorithm OID, curve).
    Other(String),
}

/// Parses a DER CSR and verifies its self-signature.
///
/// The errors are human-readable (the CA sends them as `badCSR` details):
/// unparsable DER, a bad signature, unsupported subjectAltName types or
/// malformed names, no identifiers at all.
pub(crate) fn parse_csr(der: &[u8]) -> Result<CsrInfo, String> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| format!("CSR could not be parsed: {e}"))?;
    if !rest.is_empty() {
        return Err("CSR has trailing data after the DER structure".into());
    }
    csr.verify_signature()
        .map_err(|e| format!("CSR signature could not be verified: {e}"))?;
    let info = &csr.certification_request_info;

    let mut identifiers = Vec::new();
    for cn in info.subject.iter_common_name() {
        let cn = cn
            .as_str()
            .map_err(|_| "CSR subject common name is not a string".to_owned())?;
        let id = Identifier::parse(cn).map_err(|e| {
            format!("CSR subject common name {cn:?} is not a valid identifier: {e}")
        })?;
        identifiers.push(id);
    }
    for ext in csr.requested_extensions().into_iter().flatten() {
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    identifiers.push(identifier_from_san(name)?);
                }
            }
            ParsedExtension::ParseError { error } => {
                return Err(format!("CSR has a malformed requested extension: {error}"));
            }
            _ => {}
        }
    }
    identifiers.sort();
    identifiers.dedup();
    if identifiers.is_empty() {
        return Err("CSR contains no identifiers (no subjectAltName, no common name)".into());
    }

    let must_staple = info.iter_attributes().any(|attr| {
        matches!(
            attr.parsed_attribute(),
            x509_parser::cri_attributes::ParsedCriAttribute::ExtensionRequest(request)
                if request.extensions.iter().any(|ext| {
                    ext.oid.to_id_string() == TLS_FEATURE_OID && ext.value == MUST_STAPLE_VALUE
                })
        )
    });
    let spki = &info.subject_pki;
    Ok(CsrInfo {
        identifiers,
        public_key_der: spki.raw.to_vec(),
        key: key_kind(spki),
        must_staple,
    })
}

/// The serial number (lowercase hex, no leading zeros) and the
/// SubjectPublicKeyInfo (DER) of a DER certificate.
#[allow(dead_code, reason = "part of the PKI's API, not wired into the CA yet")]
pub(crate) fn certificate_serial_and_key(der: &[u8]) -> Result<(String, Vec<u8>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a DER certificate: {e}"))?;
    Ok((
        hex_no_leading_zeros(cert.raw_serial()),
        cert.public_key().raw.to_vec(),
    ))
}

fn identifier_from_san(name: &GeneralName<'_>) -> Result<Identifier, String> {
    match name {
        GeneralName::DNSName(dns) => Identifier::dns(dns)
            .map_err(|e| format!("CSR contains an invalid DNS name {dns:?}: {e}")),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => Ok(Identifier::ip(IpAddr::from(
                <[u8; 4]>::try_from(*bytes).expect("length checked"),
            ))),
            16 => Ok(Identifier::ip(IpAddr::from(
                <[u8; 16]>::try_from(*bytes).expect("length checked"),
            ))),
            n => Err(format!("CSR contains an IP address SAN of {n} bytes")),
        },
        other => Err(format!(
            "CSR contains an unsupported subjectAltName ({}): only DNS names and IP addresses are allowed",
            san_kind(other)
        )),
    }
}

fn san_kind(name: &GeneralName<'_>) -> &'static str {
    match name {
        GeneralName::OtherName(..) => "otherName",
        GeneralName::RFC822Name(_) => "rfc822Name",
        GeneralName::DNSName(_) => "dNSName",
        GeneralName::X400Address(_) => "x400Address",
        GeneralName::DirectoryName(_) => "directoryName",
        GeneralName::EDIPartyName(_) => "ediPartyName",
        GeneralName::URI(_) => "uniformResourceIdentifier",
        GeneralName::IPAddress(_) => "iPAddress",
        GeneralName::RegisteredID(_) => "registeredID",
        GeneralName::Invalid(..) => "invalid",
    }
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> KeyKind {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => KeyKind::EcdsaP256,
                OID_P384 => KeyKind::EcdsaP384,
                _ => KeyKind::Other(format!("ECDSA on curve {curve:?}")),
            }
        }
        OID_RSA => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => KeyKind::Rsa {
                bits: bit_length(rsa.modulus),
            },
            _ => KeyKind::Other("malformed RSA public key".into()),
        },
        OID_ED25519 => KeyKind::Ed25519,
        other => KeyKind::Other(format!("public key algorithm {other}")),
    }
}

/// The length in bits of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    let trimmed: &[u8] = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    trimmed.len() * 8 - trimmed[0].leading_zeros() as usize
}

/// A CSR's public key as rcgen embeds it in a certificate.
struct CsrPublicKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl CsrPublicKey {
    fn new(csr: &CsrInfo) -> Result<Self, String> {
        let alg = match &csr.key {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Other(what) => return Err(format!("unsupported key type: {what}")),
        };
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&csr.public_key_der)
            .map_err(|e| format!("malformed public key: {e}"))?;
        Ok(Self {
            raw: spki.subject_public_key.data.to_vec(),
            alg,
        })
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

fn san_for(id: &Identifier) -> Result<SanType, String> {
    match (id.kind.as_str(), id.ip_addr()) {
        ("ip", Some(ip)) => Ok(SanType::IpAddress(ip)),
        ("dns", _) => Ok(SanType::DnsName(
            id.value
                .clone()
                .try_into()
                .map_err(|_| format!("invalid DNS name {id}"))?,
        )),
        _ => Err(format!("cannot put {id} in a certificate")),
    }
}

fn new_p256_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("generating a P-256 key: {e}"))
}

/// Parameters of a CA certificate; `path_len` `None` for a root.
fn ca_params(
    cn: &str,
    path_len: Option<u8>,
    now: OffsetDateTime,
) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sturdy-acme testing");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?.0);
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    // Roots are self-signed: an AKI would only repeat the SKI.
    params.use_authority_key_identifier_extension = path_len.is_some();
    Ok(params)
}

/// The HTTPS listener's configuration, with a leaf issued by the root.
fn listener_config(
    name: &str,
    root: &Issuer<'_, &KeyPair>,
    now: OffsetDateTime,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let key = new_p256_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sturdy-acme testing");
    dn.push(DnType::CommonName, format!("{name} listener"));
    params.distinguished_name = dn;
    params.serial_number = Some(random_serial()?.0);
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.subject_alt_names = vec![
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        SanType::DnsName(
            "localhost"
                .try_into()
                .map_err(|e| format!("localhost SAN: {e}"))?,
        ),
    ];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, root)
        .map_err(|e| format!("signing the listener certificate: {e}"))?;

    let provider = sturdy_acme::tls_provider();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("listener TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| format!("listener TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A random positive 16-byte serial and its hex form (no leading zeros).
fn random_serial() -> Result<(SerialNumber, String), String> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_owned())?;
    // Positive, and no leading zero octet (DER INTEGERs are minimal).
    bytes[0] = (bytes[0] & 0x7f).max(1);
    Ok((
        SerialNumber::from_slice(&bytes),
        hex_no_leading_zeros(&bytes),
    ))
}

/// Lowercase hex of a big-endian integer, without leading zeros ("0" for zero).
fn hex_no_leading_zeros(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match hex.trim_start_matches('0') {
        "" => "0".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{ServerName, SignatureVerificationAlgorithm, UnixTime};
    use sturdy_acme::{AccountKey, CertificateKey, CertificateKeyType, KeyAlgorithm};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    static RING_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
        webpki::ring::ECDSA_P256_SHA256,
        webpki::ring::ECDSA_P256_SHA384,
        webpki::ring::ECDSA_P384_SHA256,
        webpki::ring::ECDSA_P384_SHA384,
        webpki::ring::ED25519,
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    ];

    const RSA_PEM: &str = include_str!("../testdata/rsa2048-cert.pk8.pem");

    fn ids() -> Vec<Identifier> {
        vec![
            Identifier::dns("www.example.test").unwrap(),
            Identifier::dns("Example.test").unwrap(),
            Identifier::ip("127.0.0.1".parse().unwrap()),
            Identifier::ip("::1".parse().unwrap()),
        ]
    }

    fn pem_certs(pem_text: &str) -> Vec<CertificateDer<'static>> {
        pem::parse_many(pem_text)
            .unwrap()
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect()
    }

    /// Verifies `chain_pem` (leaf first) against `root_pem` for server auth
    /// and every identifier.
    fn verify(chain_pem: &str, root_pem: &str, identifiers: &[Identifier]) {
        let chain = pem_certs(chain_pem);
        let roots = pem_certs(root_pem);
        assert_eq!(roots.len(), 1);
        let anchors = vec![webpki::anchor_from_trusted_cert(&roots[0]).unwrap()];
        let leaf = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
        leaf.verify_for_usage(
            RING_ALGS,
            &anchors,
            &chain[1..],
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
        for id in identifiers {
            let name = match id.ip_addr() {
                Some(ip) => ServerName::IpAddress(ip.into()),
                None => ServerName::try_from(id.value.as_str()).unwrap(),
            };
            leaf.verify_is_valid_for_subject_name(&name)
                .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        }
    }

    fn issue_for(pki: &Pki, key: &CertificateKey) -> (CsrInfo, Issued) {
        let der = key.csr_der(&ids()).unwrap();
        let csr = parse_csr(&der).unwrap();
        let now = OffsetDateTime::now_utc();
        let issued = pki
            .issue(&csr, now - Duration::hours(1), now + Duration::days(90))
            .unwrap();
        (csr, issued)
    }

    #[test]
    fn csr_identifiers_are_normalized_sorted_and_deduplicated() {
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let csr = parse_csr(&key.csr_der(&ids()).unwrap()).unwrap();
        let values: Vec<_> = csr
            .identifiers
            .iter()
            .map(|i| format!("{}:{}", i.kind, i.value))
            .collect();
        // The CN (example.test) repeats a SAN and appears once.
        assert_eq!(
            values,
            [
                "dns:example.test",
                "dns:www.example.test",
                "ip:127.0.0.1",
                "ip:::1"
            ]
        );
        assert_eq!(csr.key, KeyKind::EcdsaP256);
        assert_eq!(csr.public_key_der, key.public_key_der());
    }

    #[test]
    fn issues_verifiable_chains_for_p256_p384_rsa_and_ed25519_keys() {
        let pki = Pki::generate("sturdy-acme Test", true).unwrap();
        let ed25519 = AccountKey::generate(KeyAlgorithm::EdDsa).unwrap();
        let keys = [
            (
                CertificateKey::generate(CertificateKeyType::P256).unwrap(),
                KeyKind::EcdsaP256,
            ),
            (
                CertificateKey::generate(CertificateKeyType::P384).unwrap(),
                KeyKind::EcdsaP384,
            ),
            (
                CertificateKey::from_pkcs8_pem(RSA_PEM).unwrap(),
                KeyKind::Rsa { bits: 2048 },
            ),
            (
                CertificateKey::from_pkcs8_der(ed25519.pkcs8_der()).unwrap(),
                KeyKind::Ed25519,
            ),
        ];
        let mut serials = Vec::new();
        for (key, kind) in keys {
            let (csr, issued) = issue_for(&pki, &key);
            assert_eq!(csr.key, kind);
            verify(&issued.chain_pem, &pki.root_pem(), &csr.identifiers);
            let alternate = issued.alternate_chain_pem.as_deref().unwrap();
            verify(
                alternate,
                &pki.alternate_root_pem().unwrap(),
                &csr.identifiers,
            );
            assert_eq!(pem_certs(&issued.chain_pem).len(), 2);
            assert_eq!(pem_certs(&issued.chain_pem)[0].as_ref(), issued.leaf_der);
            assert_eq!(pem_certs(alternate)[0].as_ref(), issued.leaf_der);

            // The leaf carries the CSR's key and the advertised serial.
            let (serial, spki) = certificate_serial_and_key(&issued.leaf_der).unwrap();
            assert_eq!(serial, issued.serial_hex);
            assert!(!serial.starts_with('0'));
            assert_eq!(spki, key.public_key_der());
            serials.push(serial);

            let (_, cert) = x509_parser::parse_x509_certificate(&issued.leaf_der).unwrap();
            let cn: Vec<_> = cert
                .subject()
                .iter_common_name()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(cn, ["example.test"]);
            assert!(!cert.is_ca());
            assert!(cert.tbs_certificate.raw_serial()[0] & 0x80 == 0);
            let ku = cert.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature());
            assert_eq!(ku.key_encipherment(), matches!(kind, KeyKind::Rsa { .. }));
            assert!(
                cert.extended_key_usage()
                    .unwrap()
                    .unwrap()
                    .value
                    .server_auth
            );
            let ski = cert
                .extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "2.5.29.14");
            let aki = cert
                .extensions()
                .iter()
                .any(|e| e.oid.to_id_string() == "2.5.29.35");
            assert!(ski && aki);
        }
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), 4);
    }

    #[test]
    fn names_and_alternate_chain() {
        let pki = Pki::generate("sturdy-acme Test", true).unwrap();
        let cn = |pem_text: &str, index: usize| {
            let der = pem_certs(pem_text)[index].to_vec();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            (
                cert.subject()
                    .iter_common_name()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                cert.issuer()
                    .iter_common_name()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                cert.public_key().raw.to_vec(),
            )
        };
        let (root_cn, root_issuer, _) = cn(&pki.root_pem(), 0);
        assert_eq!(root_cn, "sturdy-acme Test Root CA");
        assert_eq!(root_issuer, root_cn);
        let (alt_cn, _, _) = cn(&pki.alternate_root_pem().unwrap(), 0);
        assert_eq!(alt_cn, "sturdy-acme Test Alternate Root CA");
        assert_eq!(pem_certs(&pki.root_pem())[0].as_ref(), pki.root_der());

        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let (_, issued) = issue_for(&pki, &key);
        let (int_cn, int_issuer, int_key) = cn(&issued.chain_pem, 1);
        let (cross_cn, cross_issuer, cross_key) =
            cn(issued.alternate_chain_pem.as_ref().unwrap(), 1);
        assert_eq!(int_cn, "sturdy-acme Test Intermediate CA");
        assert_eq!(cross_cn, int_cn);
        assert_eq!(cross_key, int_key);
        assert_eq!(int_issuer, "sturdy-acme Test Root CA");
        assert_eq!(cross_issuer, "sturdy-acme Test Alternate Root CA");
        assert_eq!(
            pem_certs(&pki.intermediate.pem)[0],
            pem_certs(&issued.chain_pem)[1]
        );

        // The default chain does not verify against the alternate root alone.
        let chain = pem_certs(&issued.chain_pem);
        let alt = pem_certs(&pki.alternate_root_pem().unwrap());
        let anchors = vec![webpki::anchor_from_trusted_cert(&alt[0]).unwrap()];
        let leaf = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
        assert!(
            leaf.verify_for_usage(
                RING_ALGS,
                &anchors,
                &chain[1..],
                UnixTime::now(),
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .is_err()
        );

        let plain = Pki::generate("x", false).unwrap();
        assert!(plain.alternate_root_pem().is_none());
        let (_, issued) = issue_for(&plain, &key);
        assert!(issued.alternate_chain_pem.is_none());
    }

    #[test]
    fn ip_only_certificates_and_long_names() {
        let pki = Pki::generate("t", false).unwrap();
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let now = OffsetDateTime::now_utc();
        let ip_only = parse_csr(
            &key.csr_der(&[Identifier::ip("192.0.2.7".parse().unwrap())])
                .unwrap(),
        )
        .unwrap();
        let issued = pki.issue(&ip_only, now, now + Duration::days(6)).unwrap();
        verify(&issued.chain_pem, &pki.root_pem(), &ip_only.identifiers);
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.leaf_der).unwrap();
        assert_eq!(cert.subject().iter().count(), 0);
        assert_eq!(
            cert.validity().not_after.timestamp(),
            (now + Duration::days(6)).unix_timestamp()
        );

        let long = format!("{}.example.test", "a".repeat(60));
        let csr = parse_csr(&key.csr_der(&[Identifier::dns(&long).unwrap()]).unwrap()).unwrap();
        let issued = pki.issue(&csr, now, now + Duration::days(6)).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.leaf_der).unwrap();
        assert_eq!(cert.subject().iter_common_name().count(), 0);
        verify(&issued.chain_pem, &pki.root_pem(), &csr.identifiers);
    }

    #[test]
    fn bad_csrs_are_rejected() {
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let good = key.csr_der(&ids()).unwrap();
        let mut tampered = good.clone();
        *tampered.last_mut().unwrap() ^= 0x01;
        let err = parse_csr(&tampered).unwrap_err();
        assert!(err.contains("signature"), "{err}");

        // A changed byte inside the signed part breaks the signature too.
        let mut body = good.clone();
        let at = body
            .windows(b"www.example.test".len())
            .position(|w| w == b"www.example.test")
            .unwrap();
        body[at] = b'x';
        assert!(parse_csr(&body).is_err());

        assert!(parse_csr(b"garbage").is_err());
        assert!(parse_csr(&[]).is_err());
        assert!(parse_csr(&good[..good.len() / 2]).is_err());

        // No identifiers at all.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let kp = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let empty = params.serialize_request(&kp).unwrap();
        let err = parse_csr(empty.der()).unwrap_err();
        assert!(err.contains("no identifiers"), "{err}");

        // An email SAN.
        let mut params = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("a@example.test".try_into().unwrap()));
        let email = params.serialize_request(&kp).unwrap();
        let err = parse_csr(email.der()).unwrap_err();
        assert!(err.contains("rfc822Name"), "{err}");

        // A CN that is no identifier.
        let mut params = CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "not a name");
        let bad_cn = params.serialize_request(&kp).unwrap();
        let err = parse_csr(bad_cn.der()).unwrap_err();
        assert!(err.contains("common name"), "{err}");
    }

    #[test]
    fn unsupported_keys_are_not_issued() {
        let pki = Pki::generate("t", false).unwrap();
        let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
        let mut csr = parse_csr(&key.csr_der(&ids()).unwrap()).unwrap();
        csr.key = KeyKind::Other("DSA".into());
        let now = OffsetDateTime::now_utc();
        assert!(pki.issue(&csr, now, now + Duration::days(1)).is_err());
        assert!(certificate_serial_and_key(b"nope").is_err());
        assert_eq!(hex_no_leading_zeros(&[0, 0x0a, 0xbc]), "abc");
        assert_eq!(hex_no_leading_zeros(&[0]), "0");
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0]), 9);
    }

    #[tokio::test]
    async fn listener_config_is_trusted_through_the_root() {
        let pki = Pki::generate("sturdy-acme Test", false).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.listener_tls_config());
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(b"pong").await.unwrap();
            tls.shutdown().await.unwrap();
            buf
        });

        let mut roots = rustls::RootCertStore::empty();
        for cert in pem_certs(&pki.root_pem()) {
            roots.add(cert).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            (*sturdy_acme::tls_provider()).clone(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
        let mut tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"ping").await.unwrap();
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"pong");
        assert_eq!(&server.await.unwrap(), b"ping");

        // The presented leaf is valid for all three names.
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let leaf_pem = pem::encode(&pem::Pem::new("CERTIFICATE", leaf.to_vec()));
        verify(
            &leaf_pem,
            &pki.root_pem(),
            &[
                Identifier::ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                Identifier::ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                Identifier::dns("localhost").unwrap(),
            ],
        );
    }
}
