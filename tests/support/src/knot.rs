//! A private authoritative DNS lab for one test: Knot DNS servers on a free
//! port of three loopback addresses, a TSIG key for dynamic updates, and a
//! DNS proxy that delays or drops CAA questions.
//!
//! ```ignore
//! let Some(lab) = DnsLab::start().await else { return };
//! lab.resolver();          // 127.0.0.1:PORT: the primary, authoritative for every zone
//! lab.tsig_key();          // "sturdy-update.:hmac-sha256:BASE64"
//! lab.refresh_secondary(); // the lagging secondary of lag.test transfers now
//! lab.proxy().drop_caa(true);
//! ```
//!
//! Topology (every server on the same port, so that NS records, which carry
//! no port, work with `DnsConfig::authoritative_port(lab.port())`):
//!
//! | address   | what |
//! |-----------|------|
//! | 127.0.0.1 | primary `knotd`: every zone, UPDATE with the TSIG key |
//! | 127.0.0.2 | secondary `knotd` of `lag.test`: transfers only when told ([`DnsLab::refresh_secondary`]) |
//! | 127.0.0.3 | [`DnsProxy`] to the primary: the only nameserver of `slow.test` |
//! | 127.0.0.4 | a CNAME-chasing resolver in front of the primary ([`DnsLab::recursive_resolver`]), for Pebble's VA |
//!
//! Zones (see [`ZONES`]): `test.` (so the CAA climb has a top), `example.test`,
//! `acme-delegated.test` (where `_acme-challenge.alias.example.test` points),
//! `lag.test` (two nameservers, one lagging), `caa.test` (CAA cases),
//! `caa-target.test` (a CNAME target with CAA), `slow.test` (behind the
//! proxy), `dangling.test` (a second NS record, `ns-gone.example.test`,
//! whose name has no address: a dangling nameserver).
//!
//! `knotd` comes from Debian's `knot` package (`scripts/setup.sh`). When it
//! is missing the lab is skipped, except in CI (`CI=true`), where that
//! panics. Both servers are killed and the temp dir removed on drop.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sturdy_acme::dns::{Dns, DnsConfig};
use sturdy_acme::solver::dns01::{Rfc2136Config, Rfc2136Solver};

use super::dns_proxy::DnsProxy;

/// The primary's address.
pub const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// The lagging secondary's address (lag.test only).
pub const SECONDARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The proxy's address (slow.test's nameserver).
pub const PROXIED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// The CNAME-chasing resolver's address (what Pebble's VA asks).
pub const RECURSIVE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// The TSIG key's name.
pub const KEY_NAME: &str = "sturdy-update.";
/// The CAA identity the embedded test CA announces.
pub const TEST_CA_IDENTITY: &str = "sturdy-acme.test";

/// The zones of the primary: (apex, records after SOA/NS). `NS` lines are
/// written here, so each zone says who serves it.
pub const ZONES: &[(&str, &str)] = &[
    ("test", "@ NS ns1.example.test.\n"),
    (
        "example.test",
        "@ NS ns1\n\
         ns1 A 127.0.0.1\n\
         @ A 127.0.0.1\n\
         www A 127.0.0.1\n\
         alias A 127.0.0.1\n\
         _acme-challenge.alias CNAME alias.acme-delegated.test.\n",
    ),
    ("acme-delegated.test", "@ NS ns1.example.test.\n"),
    (
        "lag.test",
        "@ NS ns1\n\
         @ NS ns2\n\
         ns1 A 127.0.0.1\n\
         ns2 A 127.0.0.2\n\
         @ A 127.0.0.1\n",
    ),
    (
        "caa.test",
        "@ NS ns1.example.test.\n\
         allowed CAA 0 issue \"sturdy-acme.test\"\n\
         other CAA 0 issue \"other-ca.example\"\n\
         wild CAA 0 issue \"sturdy-acme.test\"\n\
         wild CAA 0 issuewild \"other-ca.example\"\n\
         account CAA 0 issue \"sturdy-acme.test; accounturi=https://ca.invalid/acct/999\"\n\
         methods CAA 0 issue \"sturdy-acme.test; validationmethods=http-01\"\n\
         dnsonly CAA 0 issue \"sturdy-acme.test; validationmethods=dns-01\"\n\
         wildonly CAA 0 issuewild \";\"\n\
         aliased CNAME aliased.caa-target.test.\n\
         none A 127.0.0.1\n\
         critical CAA 128 tbs \"unknown\"\n",
    ),
    (
        "caa-target.test",
        "@ NS ns1.example.test.\n\
         aliased CAA 0 issue \"other-ca.example\"\n",
    ),
    (
        "slow.test",
        "@ NS ns\n\
         ns A 127.0.0.3\n\
         @ A 127.0.0.1\n\
         www A 127.0.0.1\n",
    ),
    (
        "dangling.test",
        "@ NS ns1.example.test.\n\
         @ NS ns-gone.example.test.\n\
         @ A 127.0.0.1\n\
         www A 127.0.0.1\n\
         allowed CAA 0 issue \"sturdy-acme.test\"\n",
    ),
];

/// A running lab. See the module docs.
pub struct DnsLab {
    dir: PathBuf,
    port: u16,
    primary: Child,
    secondary: Child,
    proxy: DnsProxy,
    resolver: DnsProxy,
    key_secret: String,
}

impl DnsLab {
    /// Starts the servers and the proxy, and waits until every zone is
    /// served (the secondary's first transfer included).
    pub async fn start() -> Option<DnsLab> {
        let Some(knotd) = find_knotd() else {
            if super::in_ci() {
                panic!(
                    "knotd not found (Debian package knot): missing test servers are \
                     failures in CI (scripts/setup.sh installs it)"
                );
            }
            eprintln!("skipping: knotd not installed (scripts/setup.sh installs it)");
            return None;
        };
        // knotd binds UDP with SO_REUSEPORT: two labs that picked the same
        // free port at once would both bind it and share its queries. Labs
        // of this process start one at a time; once a lab is up, its port
        // no longer looks free to `pick_port`.
        static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = STARTING.lock().await;
        let dir = make_temp_dir();
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret).unwrap();
        let key_secret = base64::engine::general_purpose::STANDARD.encode(secret);
        for attempt in 1..=3 {
            let port = pick_port();
            let primary_dir = dir.join("primary");
            let secondary_dir = dir.join("secondary");
            write_primary(&primary_dir, port, &key_secret);
            write_secondary(&secondary_dir, port);
            let primary = spawn(&knotd, &primary_dir);
            let proxy = DnsProxy::start(
                SocketAddr::from((PROXIED, port)),
                SocketAddr::from((PRIMARY, port)),
            )
            .await;
            let resolver = DnsProxy::start_resolver(
                SocketAddr::from((RECURSIVE, port)),
                SocketAddr::from((PRIMARY, port)),
            )
            .await;
            // The secondary's first transfer needs the primary up.
            let up = wait_served(SocketAddr::from((PRIMARY, port)), "slow.test").await;
            let secondary = spawn(&knotd, &secondary_dir);
            let lab = DnsLab {
                dir: dir.clone(),
                port,
                primary,
                secondary,
                proxy,
                resolver,
                key_secret: key_secret.clone(),
            };
            if up && wait_served(lab.secondary_addr(), "lag.test").await {
                return Some(lab);
            }
            let logs = lab.logs();
            drop(lab);
            if attempt == 3 {
                panic!("knotd did not come up on port {port}:\n{logs}");
            }
            let _ = fs::create_dir_all(&dir);
        }
        unreachable!()
    }

    /// The port every server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The primary (authoritative for every zone; takes UPDATEs).
    pub fn resolver(&self) -> SocketAddr {
        SocketAddr::from((PRIMARY, self.port))
    }

    /// A resolver that completes CNAME answers across zones (the primary
    /// answers a CNAME into another of its zones with the CNAME alone), as
    /// a CA's recursive resolver does: give it to Pebble's `-dnsserver`.
    pub fn recursive_resolver(&self) -> SocketAddr {
        self.resolver.addr()
    }

    /// The lagging secondary of `lag.test`.
    pub fn secondary_addr(&self) -> SocketAddr {
        SocketAddr::from((SECONDARY, self.port))
    }

    /// A DNS configuration for this lab: discovery at the primary,
    /// nameservers on the lab's port, 1 s per question.
    pub fn dns_config(&self) -> DnsConfig {
        DnsConfig::new(vec![self.resolver()])
            .authoritative_port(self.port)
            .query_timeout(Duration::from_secs(1))
    }

    /// `NAME:ALGORITHM:BASE64SECRET` of the update key.
    pub fn tsig_key(&self) -> String {
        format!("{KEY_NAME}:hmac-sha256:{}", self.key_secret)
    }

    /// The proxy in front of `slow.test`'s nameserver.
    pub fn proxy(&self) -> &DnsProxy {
        &self.proxy
    }

    /// Makes the secondary transfer `lag.test` from the primary now and
    /// waits until it serves the primary's serial.
    pub async fn refresh_secondary(&self) {
        let status = Command::new(knotc())
            .arg("-s")
            .arg(self.dir.join("secondary/knot.sock"))
            .args(["zone-refresh", "lag.test"])
            .stdout(Stdio::null())
            .status()
            .expect("run knotc");
        assert!(status.success(), "knotc zone-refresh failed: {status}");
        let want = soa_serial(self.resolver(), "lag.test").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while soa_serial(self.secondary_addr(), "lag.test").await != want {
            assert!(
                Instant::now() < deadline,
                "secondary did not catch up\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The RFC 2136 solver of the lab: UPDATEs to the primary signed with
    /// the lab's key, quick polls (50 ms doubling to 200 ms, 20 s at most).
    pub fn solver(&self) -> Rfc2136Solver {
        Rfc2136Solver::new(
            Dns::new(self.dns_config()),
            Rfc2136Config::new(self.resolver(), Some(self.tsig_key().parse().unwrap()))
                .poll_interval(Duration::from_millis(50), Duration::from_millis(200))
                .propagation_timeout(Duration::from_secs(20)),
        )
    }

    /// Adds a record to `zone` on the primary only (a knotc transaction;
    /// the serial goes up, the lagging secondary does not see it until
    /// [`DnsLab::refresh_secondary`]). `rdata` in zone-file form.
    pub fn add_record(&self, zone: &str, owner: &str, rtype: &str, rdata: &str) {
        let knotc = |args: &[&str]| {
            let output = Command::new(knotc())
                .arg("-s")
                .arg(self.dir.join("primary/knot.sock"))
                .args(args)
                .output()
                .expect("run knotc");
            assert!(
                output.status.success(),
                "knotc {args:?}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        knotc(&["zone-begin", zone]);
        knotc(&["zone-set", zone, owner, "60", rtype, rdata]);
        knotc(&["zone-commit", zone]);
    }

    /// The TXT values at `name` as `server` serves them.
    pub async fn txt(&self, server: SocketAddr, name: &str) -> Vec<String> {
        Dns::new(self.dns_config())
            .txt_at(server, name)
            .await
            .unwrap_or_else(|e| panic!("TXT {name} at {server}: {e}"))
    }

    /// Both servers' logs.
    pub fn logs(&self) -> String {
        format!(
            "--- primary knotd ---\n{}\n--- secondary knotd ---\n{}",
            tail(&self.dir.join("primary/knotd.log"), 30),
            tail(&self.dir.join("secondary/knotd.log"), 30)
        )
    }
}

impl Drop for DnsLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for child in [&mut self.primary, &mut self.secondary] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn find_knotd() -> Option<PathBuf> {
    ["/usr/sbin/knotd", "/usr/bin/knotd", "/usr/local/sbin/knotd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn knotc() -> PathBuf {
    ["/usr/sbin/knotc", "/usr/bin/knotc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("knotc next to knotd")
}

fn spawn(knotd: &Path, dir: &Path) -> Child {
    let log = fs::File::create(dir.join("knotd.log")).unwrap();
    Command::new(knotd)
        .arg("-c")
        .arg(dir.join("knot.conf"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", knotd.display()))
}

fn server_section(dir: &Path, listen: &[String]) -> String {
    format!(
        "server:\n    rundir: \"{d}\"\n    listen: [ {l} ]\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: \"{d}/db\"\n\
         control:\n    listen: \"{d}/knot.sock\"\n",
        d = dir.display(),
        l = listen.join(", ")
    )
}

fn write_primary(dir: &Path, port: u16, secret: &str) {
    fs::create_dir_all(dir.join("db")).unwrap();
    let mut conf = server_section(dir, &[format!("{PRIMARY}@{port}")]);
    conf.push_str(&format!(
        "key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
         acl:\n  - id: update\n    key: {KEY_NAME}\n    action: update\n\
         \x20 - id: transfer\n    address: 127.0.0.0/8\n    action: transfer\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: changes\n\
         zone:\n",
        d = dir.display()
    ));
    for (apex, records) in ZONES {
        conf.push_str(&format!(
            "  - domain: {apex}\n    acl: [update, transfer]\n"
        ));
        let zone = format!(
            "$ORIGIN {apex}.\n$TTL 60\n@ SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60\n{records}"
        );
        fs::write(dir.join(format!("{apex}.zone")), zone).unwrap();
    }
    fs::write(dir.join("knot.conf"), conf).unwrap();
}

fn write_secondary(dir: &Path, port: u16) {
    fs::create_dir_all(dir.join("db")).unwrap();
    let mut conf = server_section(dir, &[format!("{SECONDARY}@{port}")]);
    conf.push_str(&format!(
        "remote:\n  - id: primary\n    address: {PRIMARY}@{port}\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    journal-content: none\n\
         zone:\n  - domain: lag.test\n    master: primary\n",
        d = dir.display()
    ));
    fs::write(dir.join("knot.conf"), conf).unwrap();
}

/// Waits (at most 10 s) until `server` answers authoritatively for `apex`.
async fn wait_served(server: SocketAddr, apex: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if soa_serial(server, apex).await.is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// The SOA serial `server` serves for `apex`, if it serves one.
async fn soa_serial(server: SocketAddr, apex: &str) -> Option<u32> {
    let dns = Dns::new(DnsConfig::new(vec![server]).query_timeout(Duration::from_millis(300)));
    dns.soa_serial_at(server, apex).await.ok().flatten()
}

/// A port free on TCP and UDP at every lab address.
fn pick_port() -> u16 {
    loop {
        let probe = TcpListener::bind((PRIMARY, 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let free = [PRIMARY, SECONDARY, PROXIED, RECURSIVE].iter().all(|ip| {
            TcpListener::bind((*ip, port)).is_ok() && UdpSocket::bind((*ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
}

fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "sturdy-knot-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
