//! A private PostgreSQL server for one test.
//!
//! ```ignore
//! let Some(pg) = Postgres::start() else { return };
//! let url = pg.url();          // postgres://sturdy@127.0.0.1:PORT/sturdy
//! pg.restart();                // fast restart: every session is dropped
//! pg.stop();                   // ... the server is down ...
//! pg.start_again();            // same port, same data
//! ```
//!
//! Each instance is a fresh cluster (`initdb`) in its own temp dir: superuser
//! `sturdy`, `trust` authentication, UTF-8, listening on a free loopback port
//! (TCP) and on a Unix socket in the temp dir. Database `sturdy` is created
//! when `createdb` is installed next to the server, else the tests use the
//! built-in database `postgres`; [`Postgres::url`] names whichever it is.
//!
//! The binaries (`initdb`, `pg_ctl`, `postgres`) are looked up in `PATH`
//! first, then in the highest-numbered `/usr/lib/postgresql/*/bin` (where
//! Debian installs them). PostgreSQL refuses to run as root: when the tests
//! run as root the server runs as the `postgres` user (created by Debian's
//! package), or else as a system user `sturdy-pg` created on first use, through
//! `runuser`.
//!
//! [`Postgres::start_with_clock_offset`] runs the server under libfaketime
//! (Debian `faketime`): its clock (`now()`) is off from the test's by a
//! fixed number of seconds, as a database on another machine may be.
//!
//! `pg_ctl` detaches the server from the test process: a test binary killed
//! hard (SIGKILL, timeout) leaks it together with its temp dir
//! (`sturdy-pg-*` in the temp directory). A normal exit or a panic stops it.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The superuser `initdb` creates, and the user in [`Postgres::url`].
const SUPERUSER: &str = "sturdy";
/// The database created with `createdb` when available.
const DATABASE: &str = "sturdy";
/// The database used when `createdb` is not installed.
const FALLBACK_DATABASE: &str = "postgres";
/// The system user created to run the server when the tests run as root and
/// there is no `postgres` user.
const FALLBACK_SERVER_USER: &str = "sturdy-pg";
/// `pg_ctl` options: wait for a start, restart or stop to complete, at most
/// 60 s.
const WAIT_ARGS: [&str; 3] = ["-w", "-t", "60"];
/// How many times [`Postgres::start`] tries fresh ports when the one picked
/// was taken by another process between picking and binding.
const START_ATTEMPTS: usize = 3;
/// How many log lines [`Postgres::log_tail`] returns.
const LOG_TAIL_LINES: usize = 40;
/// libfaketime, as Debian's `faketime` package installs it, under
/// `/usr/lib/<multiarch triplet>/`.
const LIBFAKETIME: &str = "faketime/libfaketime.so.1";
/// The server binaries that must all be present in one directory.
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// A running private PostgreSQL server. It is stopped (`pg_ctl -m immediate
/// stop`) and its temp dir removed when this is dropped; if the test is
/// panicking at that point the tail of the server log is printed to stderr.
/// Set `STURDY_ACME_KEEP_PG_DIR` to keep the temp dir.
///
/// Every method takes `&self`, so the server can be shared between threads
/// (for instance in an `Arc`) while a test restarts or stops it.
pub struct Postgres {
    /// The temp dir: holds `data/` (the cluster), `log` and the Unix socket.
    dir: PathBuf,
    /// The directory holding `initdb`, `pg_ctl` (and maybe `createdb`).
    bindir: PathBuf,
    /// The user the server runs as through `runuser`; `None` to run it as
    /// ourselves (when the tests are not root).
    server_user: Option<&'static str>,
    /// The loopback TCP port the server listens on.
    port: u16,
    /// The database named by [`Postgres::url`].
    database: &'static str,
    /// Set when a panic message already carried the log tail, so that `Drop`
    /// does not print it a second time.
    log_reported: AtomicBool,
    /// How far the server's clock is off from ours, in seconds, and the
    /// libfaketime it runs under to be so (`None`: the real clock).
    clock: Option<(i64, PathBuf)>,
}

impl Postgres {
    /// Create a fresh cluster and start a server for it on a free loopback
    /// port (waits until it accepts connections), then create database
    /// `sturdy` when `createdb` is installed.
    ///
    /// Returns `None` (after printing why) when PostgreSQL is not installed,
    /// unless `CI=true`, where that panics. Panics with the command output or
    /// the server log tail when the cluster cannot be created or the server
    /// does not come up within 60 s.
    pub fn start() -> Option<Postgres> {
        Self::start_with(None)
    }

    /// [`Postgres::start`], with the server's clock `seconds` ahead of this
    /// process's (behind when negative): the server runs under libfaketime
    /// (`FAKETIME=+N`, the monotonic clock left alone), so `now()` in SQL is
    /// shifted and nothing else. Returns `None` (after printing why) when
    /// libfaketime is not installed, unless `CI=true`, where that panics.
    pub fn start_with_clock_offset(seconds: i64) -> Option<Postgres> {
        let Some(faketime) = find_libfaketime() else {
            if super::in_ci() {
                panic!(
                    "/usr/lib/*/{LIBFAKETIME} not found: missing test tools are failures in CI \
                     (scripts/setup.sh installs Debian's faketime)"
                );
            }
            eprintln!("skipping: libfaketime not installed (apt-get install faketime)");
            return None;
        };
        Self::start_with(Some((seconds, faketime)))
    }

    fn start_with(clock: Option<(i64, PathBuf)>) -> Option<Postgres> {
        let Some(bindir) = find_bindir() else {
            if super::in_ci() {
                panic!(
                    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in PATH \
                     or /usr/lib/postgresql/*/bin: missing test servers are failures in CI \
                     (scripts/setup.sh installs them)"
                );
            }
            eprintln!("skipping: PostgreSQL not installed (scripts/setup.sh installs it)");
            return None;
        };
        let server_user = server_user();
        let database = if bindir.join("createdb").is_file() {
            DATABASE
        } else {
            FALLBACK_DATABASE
        };
        // Built before anything runs in the dir, so that a panic below still
        // stops whatever was started and removes the dir.
        let mut pg = Postgres {
            dir: make_temp_dir(),
            bindir,
            server_user,
            port: 0,
            database,
            log_reported: AtomicBool::new(false),
            clock,
        };
        if let Some(user) = server_user {
            make_ancestors_traversable(&pg.dir);
            run(
                Command::new("chown").arg("-R").arg(user).arg(&pg.dir),
                "chown of the PostgreSQL temp dir",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }

        let mut initdb = pg.server_command("initdb");
        initdb
            .arg("-D")
            .arg(pg.data_dir())
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8"])
            // Not the environment's locale: it may not be installed, which
            // makes initdb fail. C works with every encoding.
            .arg("--locale=C")
            .arg("--no-sync");
        run(&mut initdb, "initdb").unwrap_or_else(|e| panic!("{e}"));

        for attempt in 1..=START_ATTEMPTS {
            pg.port = pick_port();
            match pg.pg_ctl_start() {
                Ok(()) => break,
                Err(_) if attempt < START_ATTEMPTS && pg.port_was_taken() => {
                    // The next attempt's log should show only its own story.
                    let _ = fs::remove_file(pg.log_path());
                }
                Err(e) => pg.fail(&e),
            }
        }

        if database == DATABASE {
            let port = pg.port.to_string();
            let mut createdb = Command::new(pg.bindir.join("createdb"));
            pg.prepare(&mut createdb);
            createdb
                .args(["-h", "127.0.0.1", "-p", port.as_str(), "-U", SUPERUSER])
                .arg(DATABASE);
            if let Err(e) = run(&mut createdb, "createdb") {
                pg.fail(&e);
            }
        }
        Some(pg)
    }

    /// `postgres://sturdy@127.0.0.1:PORT/DB`, where DB is `sturdy` (or
    /// `postgres` when `createdb` is not installed). No password: the server
    /// trusts every connection.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    /// The loopback TCP port the server listens on (the same across
    /// [`restart`](Self::restart) and [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, e.g. as the upstream of a
    /// [`TcpProxy`](super::tcp_proxy::TcpProxy).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Restart the server (`pg_ctl -m fast restart`): every session is
    /// terminated and open transactions are rolled back; returns once the
    /// server accepts connections again. Panics with the log tail on failure.
    pub fn restart(&self) {
        let mut restart = self.pg_ctl();
        restart.arg("-l").arg(self.log_path()).args(WAIT_ARGS);
        restart
            .args(["-m", "fast", "-o"])
            .arg(self.server_options());
        restart.arg("restart");
        if let Err(e) = run(&mut restart, "pg_ctl restart") {
            self.fail(&e);
        }
    }

    /// Stop the server (`pg_ctl -m fast stop`): sessions are terminated, open
    /// transactions rolled back, and new connections refused until
    /// [`start_again`](Self::start_again). Panics with the log tail on failure.
    pub fn stop(&self) {
        let mut stop = self.pg_ctl();
        stop.args(WAIT_ARGS).args(["-m", "fast", "stop"]);
        if let Err(e) = run(&mut stop, "pg_ctl stop") {
            self.fail(&e);
        }
    }

    /// Start the server again after [`stop`](Self::stop), on the same port
    /// with the same data; returns once it accepts connections. Panics with
    /// the log tail on failure (including when the port was taken meanwhile).
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            self.fail(&e);
        }
    }

    /// The last 40 lines of the server log (or why it cannot be read).
    pub fn log_tail(&self) -> String {
        let path = self.log_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", path.display()),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The server options passed with `pg_ctl -o`. `pg_ctl` hands them to
    /// `/bin/sh`, hence the quoted socket directory.
    fn server_options(&self) -> String {
        format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} \
             -c max_connections=200 -c fsync=on",
            self.port,
            shell_quote(&self.dir.display().to_string())
        )
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut start = self.pg_ctl();
        start.arg("-l").arg(self.log_path()).args(WAIT_ARGS);
        start.arg("-o").arg(self.server_options()).arg("start");
        run(&mut start, "pg_ctl start")
    }

    /// `pg_ctl -D <data>`, run as the server user.
    fn pg_ctl(&self) -> Command {
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir());
        cmd
    }

    /// A command running `program` from the bindir, through `runuser` when
    /// the tests run as root (PostgreSQL refuses to run as root).
    fn server_command(&self, program: &str) -> Command {
        let program = self.bindir.join(program);
        let mut cmd = match self.server_user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        };
        self.prepare(&mut cmd);
        cmd
    }

    /// Run in the temp dir (the server user may not be able to enter the
    /// test's working directory), with no stdin and without the `PG*`
    /// environment variables (PGDATA, PGPORT, ... would override the
    /// harness's settings).
    fn prepare(&self, cmd: &mut Command) {
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((offset, faketime)) = &self.clock {
            cmd.env("LD_PRELOAD", faketime)
                .env("FAKETIME", format!("{offset:+}"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                cmd.env_remove(key);
            }
        }
    }

    /// Whether the last start failed because the port was taken.
    fn port_was_taken(&self) -> bool {
        fs::read_to_string(self.log_path()).is_ok_and(|log| log.contains("Address already in use"))
    }

    /// Panic with `what` and the log tail.
    fn fail(&self, what: &str) -> ! {
        self.log_reported.store(true, Ordering::SeqCst);
        panic!(
            "{what}\n--- PostgreSQL log tail ({}) ---\n{}\n---",
            self.log_path().display(),
            self.log_tail()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.pg_ctl();
        stop.args(WAIT_ARGS).args(["-m", "immediate", "stop"]);
        // Fails harmlessly when the server is not running (stopped by the
        // test, or never started).
        let _ = run(&mut stop, "pg_ctl stop");
        if std::thread::panicking()
            && !self.log_reported.load(Ordering::SeqCst)
            && self.log_path().exists()
        {
            eprintln!(
                "--- PostgreSQL log tail ({}) ---\n{}\n---",
                self.log_path().display(),
                self.log_tail()
            );
        }
        if std::env::var_os("STURDY_ACME_KEEP_PG_DIR").is_some() {
            eprintln!("keeping PostgreSQL dir {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Run `cmd` to completion with its output captured. The error names `what`
/// and holds the command line, exit status and output.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {cmd:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    ))
}

/// The directory holding all of `initdb`, `pg_ctl` and `postgres`: the first
/// such `PATH` entry, else the highest-numbered `/usr/lib/postgresql/*/bin`.
fn find_bindir() -> Option<PathBuf> {
    let complete = |dir: &Path| SERVER_BINARIES.iter().all(|b| dir.join(b).is_file());
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(dir) = path_dirs.into_iter().find(|d| complete(d)) {
        // PATH often holds symlinks into the real bindir (e.g. /usr/local/bin
        // -> /usr/lib/postgresql/15/bin); only the real one has `createdb`.
        let real = fs::canonicalize(dir.join("initdb"))
            .ok()
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
            .filter(|real| complete(real));
        return Some(real.unwrap_or(dir));
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = version_key(entry.file_name().to_str()?)?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `/usr/lib/<triplet>/faketime/libfaketime.so.1`, if installed.
fn find_libfaketime() -> Option<PathBuf> {
    fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join(LIBFAKETIME))
        .find(|lib| lib.is_file())
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`; `None` for anything else.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The user to run the server as: `None` when the tests are not root,
/// otherwise `postgres`, or `sturdy-pg` (created with `useradd` if needed).
/// Decided once per process.
fn server_user() -> Option<&'static str> {
    static USER: OnceLock<Option<&'static str>> = OnceLock::new();
    *USER.get_or_init(|| {
        if !running_as_root() {
            return None;
        }
        if let Some(user) = ["postgres", FALLBACK_SERVER_USER]
            .into_iter()
            .find(|user| user_exists(user))
        {
            return Some(user);
        }
        let created = run(
            Command::new("useradd").args(["--system", "--no-create-home", FALLBACK_SERVER_USER]),
            "useradd (PostgreSQL refuses to run as root)",
        );
        // Another test binary may have created it meanwhile.
        if let Err(e) = created
            && !user_exists(FALLBACK_SERVER_USER)
        {
            panic!("{e}");
        }
        Some(FALLBACK_SERVER_USER)
    })
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .args(["-u", user])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether the effective uid is 0: from `/proc/self/status`, else `id -u`.
fn running_as_root() -> bool {
    effective_uid_from_proc().or_else(effective_uid_from_id) == Some(0)
}

/// The second field (effective uid) of the `Uid:` line of `/proc/self/status`.
fn effective_uid_from_proc() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

fn effective_uid_from_id() -> Option<u32> {
    let output = Command::new("id").arg("-u").output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// A free loopback TCP port (free when picked; the caller retries when
/// another process takes it before the server binds it).
fn pick_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to pick a port");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// `s` single-quoted for `/bin/sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A new, empty directory `sturdy-pg-<pid>-<counter>-<nanos>` in the temp
/// directory, mode 0700.
fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "sturdy-pg-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                set_private(&dir);
                return dir;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("creating temp dir {}: {e}", dir.display()),
        }
    }
}

#[cfg(unix)]
fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("chmod 0700 {}: {e}", dir.display()));
}

#[cfg(not(unix))]
fn set_private(_dir: &Path) {}

/// Give "others" search (execute) permission on every ancestor of `dir`
/// lacking it, so that the server user can reach `dir`. A no-op for the
/// usual `/tmp`.
#[cfg(unix)]
fn make_ancestors_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o001 == 0 {
            eprintln!(
                "postgres harness: chmod o+x {} (the server user must reach {})",
                ancestor.display(),
                dir.display()
            );
            fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))
                .unwrap_or_else(|e| panic!("chmod o+x {}: {e}", ancestor.display()));
        }
    }
}

#[cfg(not(unix))]
fn make_ancestors_traversable(_dir: &Path) {}

/// A new, empty database on `pg`, and its URL.
pub async fn fresh_database(pg: &Postgres) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database");
    format!("postgres://sturdy@127.0.0.1:{}/{name}", pg.port())
}
