//! A private Pebble ACME server (plus `pebble-challtestsrv` as its DNS server)
//! for one test.
//!
//! ```ignore
//! let Some(pebble) = Pebble::start(PebbleOptions::default()).await else { return };
//! let url = pebble.directory_url();            // https://127.0.0.1:PORT/dir
//! let trust = pebble.listener_root_pem();      // CA of Pebble's HTTPS certificate
//! ```
//!
//! Layout of one instance (all on 127.0.0.1, ports picked free at start):
//! * Pebble ACME listener (`directory_url()`) and management listener
//!   (`management_url()`), both HTTPS with a certificate for `127.0.0.1` and
//!   `localhost` issued by a throwaway CA (`listener_root_pem()`).
//! * Pebble's VA connects to `http_port()` for http-01 and `tls_port()` for
//!   tls-alpn-01 (nothing listens there unless the test does), and resolves
//!   every name through challtestsrv.
//! * `pebble-challtestsrv` runs as a DNS server only (UDP+TCP on
//!   `dns_server_addr()`): every A query is answered with 127.0.0.1, AAAA
//!   queries get no answer (Pebble's VA would otherwise dial `::1` first), TXT
//!   records come from `set_txt`. Its HTTP management API is at
//!   `challtestsrv_url()`.
//!
//! Pebble's ACME endpoints (paths as they appear in the directory and in the
//! request log lines that [`Pebble::count_requests`] counts; the log shows the
//! route pattern, never the resource id after the trailing slash):
//!
//! | resource          | method(s)      | log line prefix              |
//! |-------------------|----------------|------------------------------|
//! | directory         | GET            | `GET /dir`                   |
//! | newNonce          | HEAD, GET      | `HEAD /nonce-plz`            |
//! | newAccount        | POST           | `POST /sign-me-up`           |
//! | account           | POST           | `POST /my-account/`          |
//! | newOrder          | POST           | `POST /order-plz`            |
//! | order             | POST (as GET)  | `POST /my-order/`            |
//! | finalize          | POST           | `POST /finalize-order/`      |
//! | authorization     | POST           | `POST /authZ/`               |
//! | challenge         | POST           | `POST /chalZ/`               |
//! | certificate       | POST (as GET)  | `POST /certZ/`               |
//! | revokeCert        | POST           | `POST /revoke-cert`          |
//! | keyChange         | POST           | `POST /rollover-account-key` |
//! | orders list       | POST (as GET)  | `POST /list-orderz/`         |
//!
//! Management API (HTTPS, not logged): `/roots/<i>`, `/intermediates/<i>`,
//! `/root-keys/<i>`, `/intermediate-keys/<i>`, `/cert-status-by-serial/<hex>`.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;

/// How long `Pebble::start` waits for both servers to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many times `Pebble::start` retries with fresh ports when a port turned
/// out to be taken by another process between picking and binding.
const START_ATTEMPTS: usize = 3;

/// Options for [`Pebble::start`]. Every option is passed to Pebble explicitly
/// (environment variables are always set, so nothing is inherited).
#[derive(Clone, Debug)]
pub struct PebbleOptions {
    /// `PEBBLE_VA_ALWAYS_VALID`: every challenge validates without Pebble
    /// contacting anything. Default false.
    pub always_valid: bool,
    /// `PEBBLE_VA_NOSLEEP`: no random 0–5 s sleep before each validation.
    /// Default true.
    pub no_sleep: bool,
    /// `PEBBLE_WFE_NONCEREJECT`: percentage of valid nonces rejected with
    /// `badNonce`. Default 0 (Pebble's own default would be 5).
    pub nonce_reject_percent: u8,
    /// `PEBBLE_AUTHZREUSE`: percentage of new orders that reuse an existing
    /// valid authorization. Default 0 (Pebble's own default would be 50, which
    /// can also deadlock Pebble 2.4 under concurrency).
    pub authz_reuse_percent: u8,
    /// `PEBBLE_ALTERNATE_ROOTS`: number of extra root hierarchies (alternate
    /// chains offered with `Link: rel="alternate"`). Default 0.
    pub alternate_roots: u8,
    /// `PEBBLE_CHAIN_LENGTH`: `None` = Pebble's default (1).
    pub chain_length: Option<u8>,
    /// `externalAccountBindingRequired` in the config.
    pub eab_required: bool,
    /// `externalAccountMACKeys`: (kid, base64url HMAC key without padding).
    pub eab_keys: Vec<(String, String)>,
    /// `-dnsserver`: the DNS server Pebble's VA asks (dns-01 TXT, and the
    /// addresses of http-01 / tls-alpn-01 names). Default: challtestsrv.
    pub dns_server: Option<SocketAddr>,
}

impl Default for PebbleOptions {
    fn default() -> Self {
        Self {
            always_valid: false,
            no_sleep: true,
            nonce_reject_percent: 0,
            authz_reuse_percent: 0,
            alternate_roots: 0,
            chain_length: None,
            eab_required: false,
            eab_keys: Vec::new(),
            dns_server: None,
        }
    }
}

/// A running Pebble + challtestsrv pair. Both processes are killed (and
/// reaped) and the temp dir removed when this is dropped; if the test is
/// panicking at that point the tail of both logs is printed to stderr.
///
/// Keep one per test, owned by the test: do not put it in a `static` (it
/// holds a reqwest client tied to the test's runtime, and on Linux the
/// servers get SIGKILL when the thread that started them exits).
pub struct Pebble {
    dir: PathBuf,
    pebble: Child,
    challtestsrv: Child,
    ports: Ports,
    listener_root_pem: String,
    pebble_log: PathBuf,
    challtestsrv_log: PathBuf,
    client: reqwest::Client,
}

#[derive(Clone, Copy, Debug)]
struct Ports {
    acme: u16,
    management: u16,
    http: u16,
    tls: u16,
    dns: u16,
    challtestsrv_management: u16,
}

/// Why one start attempt failed.
enum StartFailure {
    /// A port was taken between picking and binding: retry with new ports.
    PortTaken(String),
    /// Anything else: give up with this message.
    Fatal(String),
}

impl Pebble {
    /// Start Pebble and challtestsrv. Returns `None` (after printing a SKIP
    /// line) when the binaries are not installed, unless `CI=true`, where that
    /// panics. Panics with the log tail when the servers do not come up within
    /// 15 s.
    pub async fn start(opts: PebbleOptions) -> Option<Pebble> {
        let Some((pebble_bin, challtestsrv_bin)) = find_binaries() else {
            let msg = "pebble / pebble-challtestsrv not found in PATH or /usr/bin \
                       (install the Debian package `pebble`)";
            if super::in_ci() {
                panic!("{msg}: missing test servers are failures in CI");
            }
            eprintln!("SKIP: {msg}");
            return None;
        };
        let mut last_port_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&opts, &pebble_bin, &challtestsrv_bin).await {
                Ok(pebble) => return Some(pebble),
                Err(StartFailure::PortTaken(msg)) => last_port_error = msg,
                Err(StartFailure::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!(
            "Pebble could not start after {START_ATTEMPTS} attempts (ports taken):\n{last_port_error}"
        );
    }

    async fn try_start(
        opts: &PebbleOptions,
        pebble_bin: &Path,
        challtestsrv_bin: &Path,
    ) -> Result<Pebble, StartFailure> {
        let dir = make_temp_dir();
        let ports = pick_ports();
        let (listener_root_pem, cert_path, key_path) = write_listener_cert(&dir);

        let eab_keys: serde_json::Map<String, serde_json::Value> = opts
            .eab_keys
            .iter()
            .map(|(kid, key)| (kid.clone(), serde_json::Value::String(key.clone())))
            .collect();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", ports.acme),
                "managementListenAddress": format!("127.0.0.1:{}", ports.management),
                "certificate": cert_path,
                "privateKey": key_path,
                "httpPort": ports.http,
                "tlsPort": ports.tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": opts.eab_required,
                "externalAccountMACKeys": eab_keys,
            }
        });
        let config_path = dir.join("pebble-config.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));

        let challtestsrv_log = dir.join("challtestsrv.log");
        let dns_addr = format!("127.0.0.1:{}", ports.dns);
        let challtestsrv = spawn_logged(
            Command::new(challtestsrv_bin)
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-dns01", &dns_addr])
                .args([
                    "-management",
                    &format!("127.0.0.1:{}", ports.challtestsrv_management),
                ])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]),
            &challtestsrv_log,
            &dir,
        );

        let pebble_log = dir.join("pebble.log");
        let flag = |b: bool| if b { "1" } else { "0" };
        let mut cmd = Command::new(pebble_bin);
        cmd.arg("-config").arg(&config_path).args([
            "-dnsserver",
            &opts.dns_server.map_or(dns_addr.clone(), |a| a.to_string()),
        ]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PEBBLE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PEBBLE_VA_ALWAYS_VALID", flag(opts.always_valid))
            .env("PEBBLE_VA_NOSLEEP", flag(opts.no_sleep))
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                opts.nonce_reject_percent.to_string(),
            )
            .env("PEBBLE_AUTHZREUSE", opts.authz_reuse_percent.to_string())
            .env("PEBBLE_ALTERNATE_ROOTS", opts.alternate_roots.to_string())
            .env(
                "PEBBLE_CHAIN_LENGTH",
                opts.chain_length.unwrap_or(1).to_string(),
            );
        let pebble = spawn_logged(&mut cmd, &pebble_log, &dir);

        let client = super::http_client_trusting(&listener_root_pem);
        let mut me = Pebble {
            dir,
            pebble,
            challtestsrv,
            ports,
            listener_root_pem,
            pebble_log,
            challtestsrv_log,
            client,
        };
        match me.wait_ready().await {
            Ok(()) => Ok(me),
            Err(reason) => {
                let report = format!(
                    "Pebble did not start: {reason}\n--- pebble log ---\n{}\n--- challtestsrv log ---\n{}",
                    tail(&me.log(), 40),
                    tail(&me.challtestsrv_log(), 20),
                );
                let port_taken = report.contains("address already in use");
                drop(me); // kills and reaps both, removes the dir
                Err(if port_taken {
                    StartFailure::PortTaken(report)
                } else {
                    StartFailure::Fatal(report)
                })
            }
        }
    }

    /// Poll until Pebble's ACME and management listeners complete a TLS
    /// handshake with our listener certificate (proving they are ours, and
    /// without adding a request line to the log), challtestsrv's DNS server
    /// answers a UDP query and its management API accepts a request.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(super::client_config_trusting(&[
                &self.listener_root_pem
            ])));
        let mut pending = vec![
            Probe::Tls(self.ports.acme),
            Probe::Tls(self.ports.management),
            Probe::Dns,
            Probe::ChalltestsrvApi,
        ];
        loop {
            if let Some(status) = self.pebble.try_wait().expect("try_wait on pebble") {
                return Err(format!("pebble exited early with {status}"));
            }
            if let Some(status) = self
                .challtestsrv
                .try_wait()
                .expect("try_wait on challtestsrv")
            {
                return Err(format!("pebble-challtestsrv exited early with {status}"));
            }
            // challtestsrv only logs listener errors and keeps running.
            if self.challtestsrv_log().contains("address already in use") {
                return Err("pebble-challtestsrv could not bind a port".to_owned());
            }
            let mut still = Vec::new();
            for probe in pending {
                let ok = match probe {
                    Probe::Tls(port) => tls_probe(&connector, port).await,
                    Probe::Dns => self
                        .try_dns_query("ready.sturdy-acme.test", 1, Duration::from_millis(200))
                        .await
                        .is_some(),
                    // Also makes sure AAAA queries get no answer, whatever the
                    // flag parsing of this challtestsrv version did.
                    Probe::ChalltestsrvApi => self
                        .try_challtestsrv_post("/set-default-ipv6", serde_json::json!({"ip": ""}))
                        .await
                        .is_some_and(|s| s == 200),
                };
                if !ok {
                    still.push(probe);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready after {START_TIMEOUT:?}, still waiting for {pending:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `https://127.0.0.1:PORT/dir`
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.ports.acme)
    }

    /// `https://127.0.0.1:PORT` of Pebble's management API.
    pub fn management_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.ports.management)
    }

    /// `http://127.0.0.1:PORT` of challtestsrv's management API.
    pub fn challtestsrv_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.challtestsrv_management)
    }

    /// PEM of the throwaway CA that signed Pebble's HTTPS certificate (ACME and
    /// management listeners): the ACME client must trust it.
    pub fn listener_root_pem(&self) -> String {
        self.listener_root_pem.clone()
    }

    /// A rustls `ClientConfig` (ring) trusting only `listener_root_pem()`.
    pub fn client_config(&self) -> rustls::ClientConfig {
        super::client_config_trusting(&[&self.listener_root_pem])
    }

    /// A reqwest client trusting `listener_root_pem()` (the one the harness
    /// uses for management requests).
    pub fn http_client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// Port on 127.0.0.1 that Pebble's VA connects to for http-01.
    pub fn http_port(&self) -> u16 {
        self.ports.http
    }

    /// Port on 127.0.0.1 that Pebble's VA connects to for tls-alpn-01.
    pub fn tls_port(&self) -> u16 {
        self.ports.tls
    }

    /// challtestsrv's DNS server (UDP and TCP), which Pebble uses as resolver.
    pub fn dns_server_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.dns))
    }

    /// Temp dir holding the config, the listener cert/key and the logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PEM of issuing root `i` (0 = the default chain's root; 1.. exist with
    /// `alternate_roots`). Roots are regenerated at every Pebble start.
    pub async fn issuing_root_pem(&self, i: usize) -> String {
        self.management_get_text(&format!("/roots/{i}")).await
    }

    /// PEM of the intermediate of chain `i` (the one directly above leaves).
    pub async fn intermediate_pem(&self, i: usize) -> String {
        self.management_get_text(&format!("/intermediates/{i}"))
            .await
    }

    /// `GET /cert-status-by-serial/<hex>` on the management API.
    ///
    /// Pebble parses `serial_hex` as a hexadecimal big integer, so case and
    /// leading zeros do not matter ([`super::verify::serial_hex`] gives the
    /// canonical form). Returns `serde_json::Value::Null` when Pebble does not
    /// know the serial (404; a non-hex serial gives 400 and panics). Otherwise
    /// an object:
    ///
    /// ```text
    /// {
    ///   "Status": "Valid" | "Revoked",
    ///   "Serial": "15fd50bd60062e40",        // lowercase hex, no leading zeros
    ///   "Certificate": "-----BEGIN CERTIFICATE-----\n...",  // the leaf only
    ///   "Reason": 4,                         // only when revoked (RFC 5280 code)
    ///   "RevokedAt": "2026-11-29 23:41:29.278313749 +0000 UTC"  // only when revoked (Go time format)
    /// }
    /// ```
    pub async fn cert_status(&self, serial_hex: &str) -> serde_json::Value {
        let url = format!(
            "{}/cert-status-by-serial/{serial_hex}",
            self.management_url()
        );
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return serde_json::Value::Null;
        }
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: reading body: {e}"));
        assert!(status.is_success(), "GET {url}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: bad JSON ({e}): {body}"))
    }

    /// Add a TXT record value for `host` in challtestsrv (for dns-01, `host` is
    /// `_acme-challenge.<domain>.`; a missing trailing dot is added). Several
    /// values for one host accumulate. Panics unless challtestsrv answers 200.
    pub async fn set_txt(&self, host: &str, value: &str) {
        let host = fqdn(host);
        self.challtestsrv_post(
            "/set-txt",
            serde_json::json!({ "host": host, "value": value }),
        )
        .await;
    }

    /// Remove all TXT values for `host` (trailing dot added if missing).
    pub async fn clear_txt(&self, host: &str) {
        let host = fqdn(host);
        self.challtestsrv_post("/clear-txt", serde_json::json!({ "host": host }))
            .await;
    }

    /// POST a JSON body to challtestsrv's management API (e.g. `/add-a`
    /// `{"host": "x.test.", "addresses": ["127.0.0.1"]}`, `/clear-a`,
    /// `/add-caa`, `/clear-caa`, `/set-default-ipv4` `{"ip": ...}`). Panics
    /// unless the answer is 200.
    pub async fn challtestsrv_post(&self, path: &str, body: serde_json::Value) {
        let url = format!("{}{path}", self.challtestsrv_url());
        let resp = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status();
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "POST {url} {body}: challtestsrv answered {status}"
        );
    }

    /// Query challtestsrv's DNS server over UDP. Returns the RDATA of each
    /// answer record of type `qtype` (1 = A, 16 = TXT, 28 = AAAA, 257 = CAA).
    /// Panics when there is no answer within 2 s or the rcode is an error.
    pub async fn dns_query(&self, name: &str, qtype: u16) -> Vec<Vec<u8>> {
        for _ in 0..4 {
            if let Some(result) = self
                .try_dns_query(name, qtype, Duration::from_millis(500))
                .await
            {
                return result.unwrap_or_else(|e| panic!("DNS query {name} type {qtype}: {e}"));
            }
        }
        panic!("DNS query {name} type {qtype}: no answer from challtestsrv");
    }

    /// The TXT strings for `name` as challtestsrv serves them to Pebble.
    pub async fn query_txt(&self, name: &str) -> Vec<String> {
        self.dns_query(name, 16)
            .await
            .iter()
            .flat_map(|rdata| {
                let mut out = Vec::new();
                let mut rest = rdata.as_slice();
                while let Some((&len, tail)) = rest.split_first() {
                    let len = usize::from(len).min(tail.len());
                    out.push(String::from_utf8_lossy(&tail[..len]).into_owned());
                    rest = &tail[len..];
                }
                out
            })
            .collect()
    }

    /// Pebble's stdout+stderr so far.
    pub fn log(&self) -> String {
        read_lossy(&self.pebble_log)
    }

    /// challtestsrv's stdout+stderr so far.
    pub fn challtestsrv_log(&self) -> String {
        read_lossy(&self.challtestsrv_log)
    }

    /// Number of ACME requests Pebble has handled whose `METHOD /route` starts
    /// with `method_and_path_prefix`, e.g. `"HEAD /nonce-plz"`,
    /// `"POST /order-plz"`, `"POST /my-order/"`, or `"POST "` for all POSTs.
    /// See the module docs for the routes. Management API calls are not
    /// counted (Pebble does not log them).
    pub fn count_requests(&self, method_and_path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(method_and_path_prefix))
            .count()
    }

    /// Every handled ACME request so far, in order, as `"METHOD /route"`.
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| {
                let head = line.strip_suffix(" -> calling handler()")?;
                // "Pebble 2026/11/29 23:41:28 POST /my-order/"
                head.splitn(4, ' ').nth(3).map(str::to_owned)
            })
            .collect()
    }

    /// Number of certificates Pebble has issued.
    pub fn issued_count(&self) -> usize {
        self.issued_serials().len()
    }

    /// Serials of the certificates issued so far, in order, normalized like
    /// [`super::verify::serial_hex`] and the `Serial` of `cert_status`
    /// (lowercase hex, no leading zeros). Pebble's log line itself prints the
    /// serial's bytes in hex, so it keeps a leading zero nibble
    /// (`Issued certificate serial 03b53509ce5ab46e`) where `cert_status`
    /// says `3b53509ce5ab46e`.
    pub fn issued_serials(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| {
                let rest = line.split_once("Issued certificate serial ")?.1;
                let hex = rest.split_whitespace().next()?.to_ascii_lowercase();
                let trimmed = hex.trim_start_matches('0');
                Some(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
            })
            .collect()
    }

    async fn management_get_text(&self, path: &str) -> String {
        let url = format!("{}{path}", self.management_url());
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: reading body: {e}"));
        assert!(status.is_success(), "GET {url}: {status}: {body}");
        body
    }

    async fn try_challtestsrv_post(&self, path: &str, body: serde_json::Value) -> Option<u16> {
        let url = format!("{}{path}", self.challtestsrv_url());
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .ok()?;
        Some(resp.status().as_u16())
    }

    /// One UDP query. `None` = no answer within `wait` (retry); `Some(Err)` =
    /// malformed answer or error rcode.
    async fn try_dns_query(
        &self,
        name: &str,
        qtype: u16,
        wait: Duration,
    ) -> Option<Result<Vec<Vec<u8>>, String>> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
        socket.connect(self.dns_server_addr()).await.ok()?;
        let id: u16 = rand_u16();
        let query = dns::build_query(id, name, qtype);
        socket.send(&query).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .ok()?
                .ok()?;
            match dns::parse_response(&buf[..n], id, qtype) {
                Ok(None) => continue, // another id: a late answer to an old query
                Ok(Some(answers)) => return Some(Ok(answers)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.challtestsrv] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- pebble log tail ({}) ---\n{}\n--- challtestsrv log tail ---\n{}\n---",
                self.pebble_log.display(),
                tail(&self.log(), 60),
                tail(&self.challtestsrv_log(), 20)
            );
        }
        if std::env::var_os("STURDY_ACME_KEEP_PEBBLE_DIR").is_some() {
            eprintln!("keeping Pebble dir {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug)]
enum Probe {
    Tls(u16),
    Dns,
    ChalltestsrvApi,
}

async fn tls_probe(connector: &tokio_rustls::TlsConnector, port: u16) -> bool {
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let name = ServerName::try_from("127.0.0.1").ok()?;
        connector.connect(name, tcp).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(_))
    )
}

fn find_binaries() -> Option<(PathBuf, PathBuf)> {
    Some((find_binary("pebble")?, find_binary("pebble-challtestsrv")?))
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn spawn_logged(cmd: &mut Command, log_path: &Path, dir: &Path) -> Child {
    let log =
        File::create(log_path).unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("cloning log file handle");
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    die_with_parent(cmd);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()))
}

/// On Linux, have the child get SIGKILL when the thread that spawned it dies,
/// so that a test binary killed hard (timeout, SIGKILL) leaks no server.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    unsafe extern "C" {
        fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
    }
    const PR_SET_PDEATHSIG: std::ffi::c_int = 1;
    const SIGKILL: std::ffi::c_ulong = 9;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Ports already handed out by this process, so that Pebbles started
/// concurrently by tests of one binary never share a port.
static USED_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Pick six distinct free loopback ports. The DNS port is free for both TCP
/// and UDP. All sockets are held until every port is chosen, then released.
fn pick_ports() -> Ports {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut held_tcp = Vec::new();
    let mut held_udp = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 6 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if used.contains(&port) || ports.contains(&port) {
            held_tcp.push(listener);
            continue;
        }
        if ports.len() == 4 {
            // DNS: needs UDP too.
            match UdpSocket::bind(("127.0.0.1", port)) {
                Ok(udp) => held_udp.push(udp),
                Err(_) => {
                    held_tcp.push(listener);
                    continue;
                }
            }
        }
        held_tcp.push(listener);
        ports.push(port);
    }
    used.extend(&ports);
    Ports {
        acme: ports[0],
        management: ports[1],
        http: ports[2],
        tls: ports[3],
        dns: ports[4],
        challtestsrv_management: ports[5],
    }
}

fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "sturdy-acme-pebble-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating temp dir {}: {e}", dir.display()),
        }
    }
}

/// Generate a throwaway CA and a leaf for 127.0.0.1 + localhost signed by it,
/// write the leaf cert and key for Pebble, return (CA PEM, cert path, key path).
fn write_listener_cert(dir: &Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("generating CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sturdy-acme test Pebble listener CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-signing CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("generating listener key");
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("listener params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "pebble listener");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("signing listener certificate");

    let cert_path = dir.join("listener-cert.pem");
    let key_path = dir.join("listener-key.pem");
    fs::write(&cert_path, leaf_cert.pem()).expect("writing listener cert");
    fs::write(&key_path, leaf_key.serialize_pem()).expect("writing listener key");
    (ca_cert.pem(), cert_path, key_path)
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn rand_u16() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(nanos) ^ COUNTER.fetch_add(0x9e37, Ordering::Relaxed)) as u16
}

/// Just enough DNS to query challtestsrv.
mod dns {
    pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = Vec::with_capacity(64);
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
        q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
        q.extend_from_slice(&[0; 6]); // AN, NS, AR
        for label in name.trim_end_matches('.').split('.') {
            assert!(
                !label.is_empty() && label.len() < 64,
                "bad DNS name {name:?}"
            );
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes()); // IN
        q
    }

    /// `Ok(None)` when the id does not match.
    pub fn parse_response(msg: &[u8], id: u16, qtype: u16) -> Result<Option<Vec<Vec<u8>>>, String> {
        let u16_at = |pos: usize| -> Result<u16, String> {
            msg.get(pos..pos + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| format!("truncated DNS message at {pos}"))
        };
        if u16_at(0)? != id {
            return Ok(None);
        }
        let flags = u16_at(2)?;
        let rcode = flags & 0x000f;
        if rcode != 0 {
            return Err(format!("DNS rcode {rcode}"));
        }
        let qdcount = u16_at(4)?;
        let ancount = u16_at(6)?;
        let mut pos = 12;
        for _ in 0..qdcount {
            pos = skip_name(msg, pos)? + 4;
        }
        let mut answers = Vec::new();
        for _ in 0..ancount {
            pos = skip_name(msg, pos)?;
            let rtype = u16_at(pos)?;
            let rdlen = usize::from(u16_at(pos + 8)?);
            let start = pos + 10;
            let rdata = msg.get(start..start + rdlen).ok_or("truncated DNS rdata")?;
            if rtype == qtype {
                answers.push(rdata.to_vec());
            }
            pos = start + rdlen;
        }
        Ok(Some(answers))
    }

    fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, String> {
        loop {
            let len = *msg.get(pos).ok_or("truncated DNS name")?;
            if len & 0xc0 == 0xc0 {
                return Ok(pos + 2);
            }
            if len == 0 {
                return Ok(pos + 1);
            }
            pos += 1 + usize::from(len);
        }
    }
}

impl crate::suite::AcmeServer for Pebble {
    async fn start(options: crate::suite::ServerOptions) -> Option<Self> {
        let (eab_required, eab_keys) = match options.eab {
            Some(key) => (true, vec![key]),
            None => (false, Vec::new()),
        };
        Pebble::start(PebbleOptions {
            always_valid: !options.real_validation,
            alternate_roots: if options.alternate_chain { 2 } else { 0 },
            eab_required,
            eab_keys,
            ..Default::default()
        })
        .await
    }

    fn client_builder(&self) -> sturdy_acme::ClientBuilder {
        sturdy_acme::Client::builder(self.directory_url())
            .root_certificates_pem(self.listener_root_pem())
            .built_in_roots(false)
    }

    fn http_port(&self) -> u16 {
        Pebble::http_port(self)
    }

    fn tls_port(&self) -> u16 {
        Pebble::tls_port(self)
    }

    async fn set_txt(&self, host: &str, value: &str) {
        Pebble::set_txt(self, host, value).await
    }

    async fn issuing_roots(&self) -> Vec<String> {
        let mut roots = vec![self.issuing_root_pem(0).await];
        // Alternate roots exist only when Pebble was started with them.
        for i in 1..=2 {
            let url = format!("{}/roots/{i}", self.management_url());
            if let Ok(r) = self.http_client().get(&url).send().await
                && r.status().is_success()
            {
                roots.push(r.text().await.unwrap());
            }
        }
        roots
    }

    async fn revocation_reason(&self, serial_hex: &str) -> Option<Option<u64>> {
        let status = self.cert_status(serial_hex).await;
        match status["Status"].as_str()? {
            "Revoked" => Some(Some(status["Reason"].as_u64().unwrap_or(0))),
            _ => Some(None),
        }
    }

    fn issued_count(&self) -> usize {
        Pebble::issued_count(self)
    }
}
