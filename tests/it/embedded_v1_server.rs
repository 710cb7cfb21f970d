//! The embedded test CA in ACME v1 mode (`Dialect::V1`), spoken to by hand:
//! every JWS is built here with ring, independently of the crate's own v1
//! client (tests/embedded_v1.rs), so the server is checked against the
//! reference rather than against the client.
//! What is checked is what Boulder's acme-v01 did (see the v1 wire reference).

use crate::common;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use common::verify;
use http::HeaderMap;
use serde_json::{Value, json};
use sturdy_acme::solver::http01::Http01Responder;
use sturdy_acme::{
    AccountKey, CertificateKey, CertificateKeyType, Endpoint, Identifier, KeyAlgorithm,
};
use sturdy_acme::{Dialect, Limit, RateLimits};
use sturdy_acme_testca::{CaaPolicy, Fault, FaultRule, StaticDns, TestCa, TestCaBuilder, Trigger};

// ---------------------------------------------------------------------------
// A minimal hand-rolled v1 client.

fn b64(data: impl AsRef<[u8]>) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn sign(key: &AccountKey, msg: &[u8]) -> Vec<u8> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.pkcs8_der(), &rng).unwrap();
    pair.sign(&rng, msg).unwrap().as_ref().to_vec()
}

/// A flattened JWS with exactly this protected header and payload.
fn jws(key: &AccountKey, header: Value, payload: &str) -> Value {
    let protected = b64(header.to_string());
    let payload = b64(payload);
    let sig = sign(key, format!("{protected}.{payload}").as_bytes());
    json!({"protected": protected, "payload": payload, "signature": b64(sig)})
}

/// The v1 protected header: alg, jwk, nonce.
fn v1_header(key: &AccountKey, nonce: &str) -> Value {
    json!({"alg": "ES256", "jwk": key.jwk(), "nonce": nonce})
}

fn new_key() -> AccountKey {
    AccountKey::generate(KeyAlgorithm::Es256).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location: {self:?}"))
    }

    /// The URL of the `Link` with this rel (each link in its own header).
    fn link(&self, rel: &str) -> Option<String> {
        self.headers.get_all("link").iter().find_map(|v| {
            let v = v.to_str().unwrap();
            let (url, params) = v.split_once(';')?;
            (params.trim() == format!("rel=\"{rel}\""))
                .then(|| url.trim().trim_matches(['<', '>']).to_owned())
        })
    }

    fn nonce(&self) -> String {
        self.header("replay-nonce")
            .unwrap_or_else(|| panic!("no Replay-Nonce: {self:?}"))
    }

    /// Asserts a v1 problem document: status, `urn:acme:error:<kind>`, a
    /// detail containing `detail`, and a nonce.
    #[track_caller]
    fn assert_problem(&self, status: u16, kind: &str, detail: &str) {
        let p = self.json();
        assert_eq!(self.status, status, "{p}");
        assert_eq!(p["type"], format!("urn:acme:error:{kind}"), "{p}");
        assert_eq!(p["status"], status, "{p}");
        assert!(
            p["detail"].as_str().unwrap_or("").contains(detail),
            "{detail:?} not in {p}"
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        assert!(self.header("replay-nonce").is_some(), "no nonce: {self:?}");
    }
}

struct V1 {
    ca: TestCa,
    http: reqwest::Client,
    dir: Value,
}

impl V1 {
    async fn start(builder: TestCaBuilder) -> Self {
        let ca = builder.dialect(Dialect::V1).start().await.unwrap();
        let http = common::http_client_trusting(&ca.root_pem());
        let dir = common::get_json(&http, &ca.directory_url()).await;
        Self { ca, http, dir }
    }

    fn url(&self, key: &str) -> String {
        self.dir[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.dir))
            .to_owned()
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap();
        Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        }
    }

    async fn get(&self, url: &str) -> Resp {
        self.send(self.http.get(url)).await
    }

    async fn head(&self, url: &str) -> Resp {
        self.send(self.http.head(url)).await
    }

    /// A nonce the way certbot 1.x gets one: HEAD the URL it will POST to.
    async fn nonce_for(&self, url: &str) -> String {
        self.head(url).await.nonce()
    }

    /// POSTs a body as certbot does for new-cert: no Content-Type at all.
    async fn post_body(&self, url: &str, body: &Value) -> Resp {
        self.send(self.http.post(url).body(body.to_string())).await
    }

    /// A signed v1 POST (fresh nonce, `{alg, jwk, nonce}`).
    async fn post(&self, url: &str, key: &AccountKey, payload: Value) -> Resp {
        let nonce = self.nonce_for(url).await;
        let body = jws(key, v1_header(key, &nonce), &payload.to_string());
        self.post_body(url, &body).await
    }

    /// new-reg, then agreement to the terms it links to. Returns the reg URL.
    async fn register(&self, key: &AccountKey) -> String {
        let r = self
            .post(
                &self.url("new-reg"),
                key,
                json!({"resource": "new-reg", "contact": ["mailto:v1@example.com"]}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json());
        let reg = r.location();
        let terms = r.link("terms-of-service").unwrap();
        let r = self
            .post(&reg, key, json!({"resource": "reg", "agreement": terms}))
            .await;
        assert_eq!(r.status, 202, "{}", r.json());
        reg
    }

    /// new-authz for `name`; returns (authz URL, authz body).
    async fn new_authz(&self, key: &AccountKey, name: &str) -> (String, Value) {
        let r = self
            .post(
                &self.url("new-authz"),
                key,
                json!({"resource": "new-authz", "identifier": {"type": "dns", "value": name}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json());
        (r.location(), r.json())
    }

    /// Authorizes `name` (always-valid CA): new-authz and an http-01 answer.
    async fn authorize(&self, key: &AccountKey, name: &str) {
        let (authz_url, authz) = self.new_authz(key, name).await;
        let uri = challenge(&authz, "http-01")["uri"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = self
            .post(
                &uri,
                key,
                json!({"resource": "challenge", "type": "http-01"}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.json());
        assert_eq!(self.get(&authz_url).await.json()["status"], "valid");
    }

    async fn new_cert(&self, key: &AccountKey, csr: &[u8]) -> Resp {
        self.post(
            &self.url("new-cert"),
            key,
            json!({"resource": "new-cert", "csr": b64(csr)}),
        )
        .await
    }
}

fn challenge<'a>(authz: &'a Value, kind: &str) -> &'a Value {
    authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} challenge in {authz}"))
}

fn csr_for(names: &[&str]) -> (CertificateKey, Vec<u8>) {
    let key = CertificateKey::generate(CertificateKeyType::P256).unwrap();
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::dns(n).unwrap()).collect();
    let csr = key.csr_der(&ids).unwrap();
    (key, csr)
}

fn pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn directory_is_v1_only_and_every_head_gives_a_nonce() {
    let v1 = V1::start(TestCa::builder()).await;
    assert_eq!(v1.ca.dialect(), Dialect::V1);
    assert!(v1.ca.directory_url().ends_with("/directory"));
    let base = v1
        .ca
        .directory_url()
        .trim_end_matches("/directory")
        .to_owned();
    for key in [
        "new-reg",
        "new-authz",
        "new-cert",
        "revoke-cert",
        "key-change",
    ] {
        assert!(v1.url(key).starts_with(&base), "{key}: {}", v1.dir);
    }
    assert!(v1.dir["meta"]["terms-of-service"].is_string(), "{}", v1.dir);
    for v2_key in [
        "newNonce",
        "newAccount",
        "newOrder",
        "new-nonce",
        "termsOfService",
    ] {
        assert!(v1.dir.get(v2_key).is_none(), "{v2_key}: {}", v1.dir);
    }
    // Boulder's random anti-hardcoding entry.
    let random: Vec<&String> = v1
        .dir
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            ![
                "new-reg",
                "new-authz",
                "new-cert",
                "revoke-cert",
                "key-change",
                "meta",
            ]
            .contains(&k.as_str())
        })
        .collect();
    assert_eq!(random.len(), 1, "{}", v1.dir);

    // The directory itself carries a nonce; HEAD on it is 200.
    let r = v1.get(&v1.ca.directory_url()).await;
    assert_eq!(r.status, 200);
    let first = r.nonce();
    let r = v1.head(&v1.ca.directory_url()).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.nonce(), first);
    // HEAD on a POST-only URL: 405, Allow: POST, and a nonce (what certbot 1.x does).
    for key in [
        "new-reg",
        "new-authz",
        "new-cert",
        "revoke-cert",
        "key-change",
    ] {
        let r = v1.head(&v1.url(key)).await;
        assert_eq!(r.status, 405, "{key}");
        assert_eq!(r.header("allow").as_deref(), Some("POST"), "{key}");
        assert!(r.header("replay-nonce").is_some(), "{key}");
    }
    // Every HEAD counts as a nonce request.
    assert_eq!(v1.ca.ledger().requests_to(Endpoint::NewNonce), 6);
    assert_eq!(v1.ca.ledger().requests_to(Endpoint::Directory), 2);

    // Pre-0.6 certbot gets the directory without unknown keys.
    let r = v1
        .send(
            v1.http
                .get(v1.ca.directory_url())
                .header("user-agent", "LetsEncryptPythonClient/0.5"),
        )
        .await;
    let keys: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[tokio::test]
async fn registration_conflict_agreement_and_deactivation() {
    let v1 = V1::start(TestCa::builder()).await;
    let key = new_key();
    let new_reg = v1.url("new-reg");
    let r = v1
        .post(
            &new_reg,
            &key,
            json!({"resource": "new-reg", "contact": ["mailto:a@example.com"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let reg = r.location();
    assert!(reg.contains("/acme/reg/"), "{reg}");
    let terms = r.link("terms-of-service").expect("terms link");
    assert_eq!(terms, v1.dir["meta"]["terms-of-service"].as_str().unwrap());
    assert_eq!(r.link("next"), Some(v1.url("new-authz")));
    let body = r.json();
    assert_eq!(body["key"], *key.jwk());
    assert_eq!(body["status"], "valid");
    assert_eq!(body["contact"], json!(["mailto:a@example.com"]));
    assert!(body.get("agreement").is_none(), "{body}");
    assert!(body.get("termsOfServiceAgreed").is_none(), "{body}");

    // The same key again: 409 with the registration's Location.
    let r = v1
        .post(&new_reg, &key, json!({"resource": "new-reg"}))
        .await;
    r.assert_problem(409, "malformed", "Registration key is already in use");
    assert_eq!(r.location(), reg);

    // Nothing works before agreeing to the terms.
    let r = v1
        .post(
            &v1.url("new-authz"),
            &key,
            json!({"resource": "new-authz", "identifier": {"type": "dns", "value": "a.example"}}),
        )
        .await;
    r.assert_problem(403, "unauthorized", "Must agree to subscriber agreement");

    // A wrong agreement URL, then the right one (certbot echoes the whole body back).
    let r = v1
        .post(
            &reg,
            &key,
            json!({"resource": "reg", "agreement": "https://example.com/old-terms"}),
        )
        .await;
    r.assert_problem(400, "malformed", "does not match current agreement URL");
    let mut echoed = body.clone();
    echoed["resource"] = json!("reg");
    echoed["agreement"] = json!(terms);
    let r = v1.post(&reg, &key, echoed).await;
    assert_eq!(r.status, 202, "{}", r.json());
    assert!(r.header("location").is_none());
    assert_eq!(r.link("terms-of-service").as_deref(), Some(terms.as_str()));
    assert_eq!(r.json()["agreement"], json!(terms));

    // Query; invalid contact; someone else's registration URL.
    let r = v1.post(&reg, &key, json!({"resource": "reg"})).await;
    assert_eq!(
        (r.status, r.json()["agreement"].clone()),
        (202, json!(terms))
    );
    let r = v1
        .post(
            &reg,
            &key,
            json!({"resource": "reg", "contact": ["tel:+1555"]}),
        )
        .await;
    r.assert_problem(400, "invalidEmail", "tel:");
    let other = new_key();
    let other_reg = v1.register(&other).await;
    let r = v1.post(&other_reg, &key, json!({"resource": "reg"})).await;
    r.assert_problem(403, "unauthorized", "did not match registration key");
    let r = v1
        .post(&reg, &key, json!({"resource": "reg", "status": "revoked"}))
        .await;
    r.assert_problem(400, "malformed", "Invalid value provided for status field");

    // Deactivation: 200, then the key is refused.
    let r = v1
        .post(
            &reg,
            &key,
            json!({"resource": "reg", "status": "deactivated"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, json!("deactivated"))
    );
    let r = v1.post(&reg, &key, json!({"resource": "reg"})).await;
    r.assert_problem(403, "unauthorized", "has status 'deactivated'");
    assert_eq!(v1.ca.ledger().requests_to(Endpoint::NewAccount), 3);
}

#[tokio::test]
async fn jws_rules_resource_kid_nonce_and_signature() {
    let v1 = V1::start(TestCa::builder()).await;
    let key = new_key();
    let new_reg = v1.url("new-reg");
    let new_authz = v1.url("new-authz");

    // Missing and wrong `resource`.
    let r = v1.post(&new_reg, &key, json!({"contact": []})).await;
    r.assert_problem(
        400,
        "malformed",
        "Request payload does not specify a resource",
    );
    let r = v1.post(&new_reg, &key, json!({"resource": "reg"})).await;
    r.assert_problem(
        400,
        "malformed",
        "JWS resource payload does not match the HTTP resource: reg != new-reg",
    );
    // A payload that is not JSON (e.g. v2's empty POST-as-GET).
    let nonce = v1.nonce_for(&new_reg).await;
    let r = v1
        .post_body(&new_reg, &jws(&key, v1_header(&key, &nonce), ""))
        .await;
    r.assert_problem(400, "malformed", "Request payload did not parse as JSON");

    // `kid` (v2 style, and next to a jwk) is refused; v1 has no kid.
    let nonce = v1.nonce_for(&new_reg).await;
    let header = json!({"alg": "ES256", "kid": "https://x/acme/reg/0", "nonce": nonce});
    let r = v1
        .post_body(&new_reg, &jws(&key, header, r#"{"resource":"new-reg"}"#))
        .await;
    r.assert_problem(400, "malformed", "kid");
    let nonce = v1.nonce_for(&new_reg).await;
    let mut header = v1_header(&key, &nonce);
    header["kid"] = json!("https://x/acme/reg/0");
    let r = v1
        .post_body(&new_reg, &jws(&key, header, r#"{"resource":"new-reg"}"#))
        .await;
    r.assert_problem(400, "malformed", "kid");
    assert_eq!(v1.ca.ledger().certificates.len(), 0);

    // A `url` header is harmless (Boulder ignored it) and not required.
    let nonce = v1.nonce_for(&new_reg).await;
    let mut header = v1_header(&key, &nonce);
    header["url"] = json!("https://elsewhere.example/whatever");
    let r = v1
        .post_body(&new_reg, &jws(&key, header, r#"{"resource":"new-reg"}"#))
        .await;
    assert_eq!(r.status, 201, "{}", r.json());

    // Nonces: missing, replayed.
    let body = jws(
        &key,
        json!({"alg": "ES256", "jwk": key.jwk()}),
        r#"{"resource":"new-reg"}"#,
    );
    v1.post_body(&new_reg, &body).await.assert_problem(
        400,
        "badNonce",
        "JWS has no anti-replay nonce",
    );
    let nonce = v1.nonce_for(&new_reg).await;
    let body = jws(&key, v1_header(&key, &nonce), r#"{"resource":"new-reg"}"#);
    assert_eq!(v1.post_body(&new_reg, &body).await.status, 409);
    v1.post_body(&new_reg, &body).await.assert_problem(
        400,
        "badNonce",
        "invalid anti-replay nonce",
    );

    // Bad signature; unsupported algorithm.
    let nonce = v1.nonce_for(&new_reg).await;
    let mut body = jws(&key, v1_header(&key, &nonce), r#"{"resource":"new-reg"}"#);
    let input = format!(
        "{}.{}",
        body["protected"].as_str().unwrap(),
        body["payload"].as_str().unwrap()
    );
    body["signature"] = json!(b64(sign(&new_key(), input.as_bytes())));
    v1.post_body(&new_reg, &body)
        .await
        .assert_problem(400, "malformed", "JWS verification error");
    let nonce = v1.nonce_for(&new_reg).await;
    let header = json!({"alg": "HS256", "jwk": key.jwk(), "nonce": nonce});
    v1.post_body(&new_reg, &jws(&key, header, r#"{"resource":"new-reg"}"#))
        .await
        .assert_problem(400, "malformed", "unsupported algorithm \"HS256\"");

    // An unregistered key where a registration is needed.
    let stranger = new_key();
    let r = v1
        .post(
            &new_authz,
            &stranger,
            json!({"resource": "new-authz", "identifier": {"type": "dns", "value": "a.example"}}),
        )
        .await;
    r.assert_problem(
        403,
        "unauthorized",
        "No registration exists matching provided key",
    );

    // Garbage and the general serialization.
    v1.post_body(&new_reg, &json!("x"))
        .await
        .assert_problem(400, "malformed", "");
    let nonce = v1.nonce_for(&new_reg).await;
    let flat = jws(&key, v1_header(&key, &nonce), r#"{"resource":"new-reg"}"#);
    let sig = json!({"protected": flat["protected"], "signature": flat["signature"]});
    let general = json!({"payload": flat["payload"], "signatures": [sig.clone(), sig]});
    v1.post_body(&new_reg, &general).await.assert_problem(
        400,
        "malformed",
        "Too many signatures in POST body",
    );
}

#[tokio::test]
async fn authorization_challenge_and_issuance_like_boulder() {
    let v1 = V1::start(TestCa::builder()).await;
    let key = new_key();
    let reg = v1.register(&key).await;
    let names = ["v1.example.com", "www.v1.example.com"];

    // new-authz: 201, Location, Link next; the identifier as sent (lower-cased).
    let r = v1
        .post(
            &v1.url("new-authz"),
            &key,
            json!({"resource": "new-authz", "identifier": {"type": "dns", "value": "V1.Example.COM"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.link("next"), Some(v1.url("new-cert")));
    let authz_url = r.location();
    let authz = r.json();
    assert_eq!(
        authz["identifier"],
        json!({"type": "dns", "value": "v1.example.com"})
    );
    assert_eq!(authz["status"], "pending");
    assert!(authz["expires"].is_string());
    let challenges = authz["challenges"].as_array().unwrap();
    let kinds: Vec<&str> = challenges
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"http-01") && kinds.contains(&"dns-01"),
        "{kinds:?}"
    );
    for c in challenges {
        assert!(c["uri"].is_string() && c.get("url").is_none(), "{c}");
        assert_eq!(c["status"], "pending");
        assert!(b64_decode(c["token"].as_str().unwrap()).len() >= 16);
    }
    assert_eq!(
        authz["combinations"].as_array().unwrap().len(),
        challenges.len()
    );
    // The same name again hands back the pending authorization.
    let (again, _) = v1.new_authz(&key, "v1.example.com").await;
    assert_eq!(again, authz_url);
    // Wildcards and IP identifiers are not v1.
    let r = v1
        .post(
            &v1.url("new-authz"),
            &key,
            json!({"resource": "new-authz", "identifier": {"type": "dns", "value": "*.v1.example.com"}}),
        )
        .await;
    r.assert_problem(400, "malformed", "Wildcard names not supported");
    let r = v1
        .post(
            &v1.url("new-authz"),
            &key,
            json!({"resource": "new-authz", "identifier": {"type": "ip", "value": "127.0.0.1"}}),
        )
        .await;
    r.assert_problem(400, "malformed", "Error creating new authz :: ");

    // Answer http-01 as certbot >= 0.32 does (no keyAuthorization): 202,
    // Location = uri, Link up = authz.
    let uri = challenge(&authz, "http-01")["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = v1
        .post(
            &uri,
            &key,
            json!({"resource": "challenge", "type": "http-01"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.json());
    assert_eq!(r.link("up"), Some(authz_url.clone()));
    assert_eq!(r.location(), uri);
    assert_eq!(r.json()["uri"], json!(uri));
    let expected_ka = format!(
        "{}.{}",
        challenge(&authz, "http-01")["token"].as_str().unwrap(),
        key.thumbprint()
    );
    assert_eq!(r.json()["keyAuthorization"], json!(expected_ka));
    // The challenge GET quirk: 202 too.
    let r = v1.get(&uri).await;
    assert_eq!((r.status, r.link("up")), (202, Some(authz_url.clone())));

    // Plain GET of the authorization: valid, Link next.
    let r = v1.get(&authz_url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.link("next"), Some(v1.url("new-cert")));
    assert!(r.header("replay-nonce").is_some());
    assert_eq!(r.json()["status"], "valid");
    assert_eq!(challenge(&r.json(), "http-01")["status"], "valid");

    // new-cert without an authorization for every name: 403.
    let (_, csr) = csr_for(&names);
    let r = v1.new_cert(&key, &csr).await;
    r.assert_problem(
        403,
        "unauthorized",
        "authorizations for these names not found or expired: www.v1.example.com",
    );
    v1.authorize(&key, "www.v1.example.com").await;
    // The account key in the CSR is refused.
    let as_cert_key = CertificateKey::from_pkcs8_der(key.pkcs8_der()).unwrap();
    let ids: Vec<Identifier> = names.iter().map(|n| Identifier::dns(n).unwrap()).collect();
    let r = v1.new_cert(&key, &as_cert_key.csr_der(&ids).unwrap()).await;
    r.assert_problem(400, "malformed", "different than account key");
    // A CSR that is not one.
    let r = v1.new_cert(&key, b"not a csr").await;
    r.assert_problem(400, "malformed", "Error parsing certificate request");

    // Issuance: 201, DER leaf, Location, Link up to the DER intermediate.
    let r = v1.new_cert(&key, &csr).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/pkix-cert")
    );
    assert!(r.header("replay-nonce").is_some());
    let leaf = r.body.clone();
    let cert_url = r.location();
    let up = r.link("up").expect("Link rel=up");
    let issuer = v1.get(&up).await;
    assert_eq!(issuer.status, 200);
    assert_eq!(
        issuer.header("content-type").as_deref(),
        Some("application/pkix-cert")
    );
    assert_eq!(issuer.link("up"), None);
    verify::verify_chain(
        &format!("{}{}", pem(&leaf), pem(&issuer.body)),
        &[v1.ca.root_pem()],
        &names,
        &[],
    );
    // The certificate URL gives the same DER, with Link up.
    let again = v1.get(&cert_url).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, leaf);
    assert_eq!(again.link("up"), Some(up));
    assert_eq!(v1.get(&format!("{cert_url}00")).await.status, 404);

    // The ledger: one certificate, for the registration.
    let ledger = v1.ca.ledger();
    assert_eq!(ledger.issued_for(&names), 1);
    assert_eq!(ledger.certificates[0].account, reg);
    assert_eq!(ledger.certificates[0].order, cert_url);
    assert_eq!(
        ledger.certificates[0].serial.trim_start_matches('0'),
        verify::serial_hex(&leaf)
    );
    assert_eq!(ledger.requests_to(Endpoint::Finalize), 4);
    assert_eq!(ledger.requests_to(Endpoint::Certificate), 3);
    assert_eq!(ledger.requests_to(Endpoint::Challenge), 3);
    assert!(ledger.finalizations.is_empty());

    // A valid authorization is reused by new-authz (201 again, valid).
    let (reused, body) = v1.new_authz(&key, "v1.example.com").await;
    assert_eq!(
        (reused, body["status"].clone()),
        (authz_url, json!("valid"))
    );
}

#[tokio::test]
async fn real_http01_validation() {
    let dns = StaticDns::new();
    let http_port = free_port();
    let responder = Http01Responder::bind(SocketAddr::from(([127, 0, 0, 1], http_port)))
        .await
        .unwrap();
    let v1 = V1::start(
        TestCa::builder()
            .real_validation(http_port, free_port(), Arc::new(dns))
            .poll_retry_after(1),
    )
    .await;
    let key = new_key();
    v1.register(&key).await;

    // Served: valid (answered the pre-0.32 way, with keyAuthorization).
    let (authz_url, authz) = v1.new_authz(&key, "real.v1.test").await;
    let ch = challenge(&authz, "http-01");
    let token = ch["token"].as_str().unwrap();
    let key_authorization = format!("{token}.{}", key.thumbprint());
    responder.tokens().insert(token, key_authorization.clone());
    let r = v1
        .post(
            ch["uri"].as_str().unwrap(),
            &key,
            json!({"resource": "challenge", "type": "http-01", "keyAuthorization": key_authorization}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.json());
    let body = poll(&v1, &authz_url).await;
    assert_eq!(body["status"], "valid", "{body}");

    // Not served: invalid, with a v1 error in the challenge.
    let (authz_url, authz) = v1.new_authz(&key, "unserved.v1.test").await;
    let r = v1
        .post(
            challenge(&authz, "http-01")["uri"].as_str().unwrap(),
            &key,
            json!({"resource": "challenge", "type": "http-01"}),
        )
        .await;
    assert_eq!(r.status, 202);
    let body = poll(&v1, &authz_url).await;
    assert_eq!(body["status"], "invalid", "{body}");
    let error = &challenge(&body, "http-01")["error"];
    assert!(
        error["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:acme:error:"),
        "{error}"
    );

    // The valid name can be issued for.
    let (_, csr) = csr_for(&["real.v1.test"]);
    assert_eq!(v1.new_cert(&key, &csr).await.status, 201);
}

/// Polls an authorization until it is no longer pending (pending answers
/// carry the configured Retry-After).
async fn poll(v1: &V1, url: &str) -> Value {
    for _ in 0..100 {
        let r = v1.get(url).await;
        assert_eq!(r.status, 200);
        let body = r.json();
        if body["status"] != "pending" {
            return body;
        }
        assert_eq!(r.header("retry-after").as_deref(), Some("1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} stayed pending");
}

#[tokio::test]
async fn nonces_on_404_405_and_errors() {
    let v1 = V1::start(TestCa::builder()).await;
    let base = v1
        .ca
        .directory_url()
        .trim_end_matches("/directory")
        .to_owned();

    let r = v1.get(&format!("{base}/acme/nowhere")).await;
    r.assert_problem(404, "malformed", "");
    let r = v1.get(&format!("{base}/acme/authz/999")).await;
    r.assert_problem(404, "malformed", "No such authorization");
    let r = v1
        .get(&format!("{base}/acme/cert/{}", "ab".repeat(16)))
        .await;
    r.assert_problem(404, "malformed", "Certificate not found");
    let r = v1.get(&v1.url("new-reg")).await;
    r.assert_problem(405, "malformed", "Method not allowed");
    assert_eq!(r.header("allow").as_deref(), Some("POST"));
    let r = v1
        .send(v1.http.post(v1.ca.directory_url()).body("{}"))
        .await;
    r.assert_problem(405, "malformed", "");
    // The v2 paths do not exist here.
    let r = v1.head(&format!("{base}/acme/new-nonce")).await;
    assert_eq!(r.status, 404);
    assert!(r.header("replay-nonce").is_some());

    // An error's nonce is good for the next request.
    let key = new_key();
    let r = v1.post(&v1.url("new-reg"), &key, json!({})).await;
    r.assert_problem(400, "malformed", "resource");
    let body = jws(
        &key,
        v1_header(&key, &r.nonce()),
        r#"{"resource":"new-reg"}"#,
    );
    assert_eq!(v1.post_body(&v1.url("new-reg"), &body).await.status, 201);
}

#[tokio::test]
async fn revocation_by_account_key_and_by_certificate_key() {
    let v1 = V1::start(TestCa::builder()).await;
    let key = new_key();
    v1.register(&key).await;
    v1.authorize(&key, "revoke.v1.example").await;
    let revoke = v1.url("revoke-cert");

    let (_, csr) = csr_for(&["revoke.v1.example"]);
    let leaf = v1.new_cert(&key, &csr).await.body;
    let payload = |reason: u8| json!({"resource": "revoke-cert", "certificate": b64(&leaf), "reason": reason});
    // Reason 2 is not allowed.
    v1.post(&revoke, &key, payload(2)).await.assert_problem(
        400,
        "badRevocationReason",
        "unsupported revocation reason",
    );
    // A registered account with nothing to do with it.
    let stranger = new_key();
    v1.register(&stranger).await;
    v1.post(&revoke, &stranger, payload(1))
        .await
        .assert_problem(403, "unauthorized", "Revocation request must be signed");
    // The issuing account: 200, empty body; then 409.
    let r = v1.post(&revoke, &key, payload(4)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.body.is_empty());
    assert!(r.header("replay-nonce").is_some());
    assert_eq!(v1.ca.ledger().certificates[0].revoked, Some(4));
    v1.post(&revoke, &key, payload(4)).await.assert_problem(
        409,
        "malformed",
        "Certificate already revoked",
    );

    // The certificate's own key, no registration needed.
    let (cert_key, csr) = csr_for(&["revoke.v1.example"]);
    let leaf2 = v1.new_cert(&key, &csr).await.body;
    let signer = cert_key.to_signing_key().unwrap();
    let r = v1
        .post(
            &revoke,
            &signer,
            json!({"resource": "revoke-cert", "certificate": b64(&leaf2)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(v1.ca.ledger().certificates[1].revoked, Some(0));
    // Unknown certificate.
    let r = v1
        .post(
            &revoke,
            &key,
            json!({"resource": "revoke-cert", "certificate": b64(b"nope")}),
        )
        .await;
    r.assert_problem(404, "malformed", "No such certificate");
}

#[tokio::test]
async fn key_change_rolls_the_registration_over() {
    let v1 = V1::start(TestCa::builder()).await;
    let old = new_key();
    let reg = v1.register(&old).await;
    let new = new_key();
    let key_change = v1.url("key-change");

    let inner_for = |account: &str, new_jwk: &Value| {
        jws(
            &new,
            json!({"alg": "ES256", "jwk": new.jwk()}),
            &json!({"account": account, "newKey": new_jwk}).to_string(),
        )
    };
    let splice = |inner: Value| {
        let mut outer = inner;
        outer["resource"] = json!("key-change");
        outer
    };
    // Wrong account URL, wrong newKey.
    let r = v1
        .post(
            &key_change,
            &old,
            splice(inner_for("https://x/acme/reg/7", new.jwk())),
        )
        .await;
    r.assert_problem(
        400,
        "malformed",
        "Incorrect account URL provided in payload",
    );
    let r = v1
        .post(&key_change, &old, splice(inner_for(&reg, old.jwk())))
        .await;
    r.assert_problem(400, "malformed", "New JWK in inner payload doesn't match");

    let r = v1
        .post(&key_change, &old, splice(inner_for(&reg, new.jwk())))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["key"], *new.jwk());
    // The old key is gone; the new one is the registration.
    v1.post(&reg, &old, json!({"resource": "reg"}))
        .await
        .assert_problem(403, "unauthorized", "No registration exists");
    let r = v1
        .post(&v1.url("new-reg"), &new, json!({"resource": "new-reg"}))
        .await;
    assert_eq!((r.status, r.location()), (409, reg.clone()));
    assert_eq!(v1.ca.ledger().requests_to(Endpoint::KeyChange), 3);
}

#[tokio::test]
async fn duplicate_certificate_limit_and_caa_at_new_cert() {
    let limits = RateLimits {
        duplicate_certificates: Some(Limit::new(1, Duration::from_secs(7 * 24 * 3600))),
        ..RateLimits::default()
    };
    let v1 = V1::start(
        TestCa::builder()
            .rate_limits(limits)
            .caa("forbidden.example", CaaPolicy::Forbid),
    )
    .await;
    let key = new_key();
    v1.register(&key).await;
    v1.authorize(&key, "dup.v1.example").await;
    v1.authorize(&key, "x.forbidden.example").await;

    let (_, csr) = csr_for(&["dup.v1.example"]);
    assert_eq!(v1.new_cert(&key, &csr).await.status, 201);
    let (_, csr) = csr_for(&["dup.v1.example"]);
    let r = v1.new_cert(&key, &csr).await;
    r.assert_problem(
        429,
        "rateLimited",
        "too many certificates already issued for exact set of domains: dup.v1.example",
    );
    assert_eq!(r.header("retry-after"), None, "v1 never sent Retry-After");

    let (_, csr) = csr_for(&["x.forbidden.example"]);
    let r = v1.new_cert(&key, &csr).await;
    r.assert_problem(403, "caa", "Error creating new cert :: ");
    assert_eq!(
        r.json()["subproblems"][0]["type"],
        "urn:acme:error:caa",
        "{}",
        r.json()
    );
    assert_eq!(v1.ca.ledger().certificates.len(), 1);
}

/// The lost-response trap: new-cert issues, then the connection drops. The
/// certificate exists (the ledger says so) although the client never saw it.
#[tokio::test]
async fn dropped_new_cert_response_still_issues() {
    let v1 = V1::start(TestCa::builder().faults(vec![
        FaultRule::new(Endpoint::Finalize, Trigger::Nth(1), Fault::DropAfterCommit),
        FaultRule::new(Endpoint::NewOrder, Trigger::Nth(1), Fault::BadNonce),
    ]))
    .await;
    let key = new_key();
    v1.register(&key).await;

    // The badNonce fault on new-authz answers in v1 terms, with a nonce.
    let r = v1
        .post(
            &v1.url("new-authz"),
            &key,
            json!({"resource": "new-authz", "identifier": {"type": "dns", "value": "lost.v1.example"}}),
        )
        .await;
    r.assert_problem(400, "badNonce", "");
    v1.authorize(&key, "lost.v1.example").await;

    let (_, csr) = csr_for(&["lost.v1.example"]);
    let nonce = v1.nonce_for(&v1.url("new-cert")).await;
    let body = jws(
        &key,
        v1_header(&key, &nonce),
        &json!({"resource": "new-cert", "csr": b64(&csr)}).to_string(),
    );
    let err = v1
        .http
        .post(v1.url("new-cert"))
        .body(body.to_string())
        .send()
        .await
        .expect_err("the response is dropped");
    assert!(!err.is_status(), "{err}");
    let ledger = v1.ca.ledger();
    assert_eq!(ledger.issued_for(&["lost.v1.example"]), 1);
    assert_eq!(ledger.requests_to(Endpoint::Finalize), 1);

    // The next new-cert goes through: a second certificate for the same set.
    let (_, csr) = csr_for(&["lost.v1.example"]);
    assert_eq!(v1.new_cert(&key, &csr).await.status, 201);
    assert_eq!(v1.ca.ledger().issued_for(&["lost.v1.example"]), 2);
}
