//! Who this process is, for leases: host, pid, the process's start time
//! and its PID namespace, so that a lease of a crashed process can be
//! taken over at once on the same host without trusting a reused PID or
//! another namespace's `/proc`.

use std::fs;
use std::sync::OnceLock;

/// A process as a lease records it, so a store can take over the lease of
/// a crashed holder on the same host at once (a backend's building block:
/// [`Lease`](super::Lease) carries the same fields).
///
/// ```
/// use sturdy_acme::store::ProcessIdentity;
///
/// let me = ProcessIdentity::current();
/// assert_eq!(me.pid, std::process::id());
/// assert!(!me.is_dead()); // this process runs
/// let holder = ProcessIdentity::unique_holder(Some("node-a"));
/// assert!(holder.starts_with("node-a@"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessIdentity {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The start time in clock ticks since boot (`/proc/<pid>/stat` field
    /// 22; 0: unknown).
    pub start_time: u64,
    /// The PID namespace (`/proc/self/ns/pid` link text; empty: unknown).
    pub pid_ns: String,
}

impl ProcessIdentity {
    /// A process as a store recorded it.
    pub fn new(
        host: impl Into<String>,
        pid: u32,
        start_time: u64,
        pid_ns: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            pid,
            start_time,
            pid_ns: pid_ns.into(),
        }
    }

    /// This process.
    pub fn current() -> &'static ProcessIdentity {
        current()
    }

    /// A holder name unique to this process: host, pid, start time and a
    /// random part, after `label` (if any). Two processes given the same
    /// label never share a lease.
    pub fn unique_holder(label: Option<&str>) -> String {
        unique_holder(label)
    }

    /// True only when this process is provably gone: on this host, in this
    /// PID namespace, and its PID no longer exists or belongs to a process
    /// started at another time (PID reuse). Anything unknown (another
    /// host, another namespace, no start time) is not dead: its lease is
    /// waited out.
    ///
    /// Only for a holder known to have run on this machine: host names and
    /// the initial PID namespace repeat across cloned machines, so a store
    /// shared between machines must first tell that the holder ran here (a
    /// boot id recorded with the lease, as `PostgresStore` does) before
    /// asking this.
    pub fn is_dead(&self) -> bool {
        holder_is_dead(&self.host, self.pid, self.start_time, &self.pid_ns)
    }
}

/// This process.
pub(crate) fn current() -> &'static ProcessIdentity {
    static CURRENT: OnceLock<ProcessIdentity> = OnceLock::new();
    CURRENT.get_or_init(|| {
        let pid = std::process::id();
        ProcessIdentity {
            host: host_name(),
            pid,
            start_time: start_time(pid).unwrap_or(0),
            pid_ns: fs::read_link("/proc/self/ns/pid")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    })
}

/// This machine's name.
pub(crate) fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The start time of process `pid` (clock ticks since boot), from
/// `/proc/<pid>/stat`; `None` when there is no such process.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 is the first after ')', so field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A holder name unique to this process: host, pid, start time and a
/// random part, after the caller's `label` (if any). Two processes given
/// the same label never share a lease.
pub(crate) fn unique_holder(label: Option<&str>) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let me = current();
    let id = format!(
        "{}-{}-{}-{:08x}",
        if me.host.is_empty() { "host" } else { &me.host },
        me.pid,
        me.start_time,
        u32::from_le_bytes(b)
    );
    match label {
        Some(label) => format!("{label}@{id}"),
        None => id,
    }
}

/// True only when the holder is provably gone: a process on this host, in
/// this PID namespace, whose PID no longer exists or now belongs to a
/// process started at another time (PID reuse). Anything unknown (another
/// host, another namespace, no start time) is not dead: its lease is
/// waited out.
pub(crate) fn holder_is_dead(host: &str, pid: u32, started: u64, pid_ns: &str) -> bool {
    let me = current();
    if pid == 0 || host.is_empty() || host != me.host || pid == me.pid {
        return false;
    }
    if pid_ns.is_empty() || me.pid_ns.is_empty() || pid_ns != me.pid_ns {
        return false;
    }
    match start_time(pid) {
        // Gone, unless /proc hides other users' processes (hidepid).
        None => std::path::Path::new("/proc/self/stat").exists() && !proc_hides_pids(),
        Some(now_started) => started != 0 && now_started != started,
    }
}

/// True when `/proc` is mounted with `hidepid` (other users' processes are
/// invisible, so a missing `/proc/<pid>` proves nothing) or cannot be read.
fn proc_hides_pids() -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return true;
    };
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, point, kind, options) =
            (fields.next(), fields.next(), fields.next(), fields.next());
        point == Some("/proc")
            && kind == Some("proc")
            && options.is_some_and(|o| {
                o.split(',').any(|opt| {
                    opt.strip_prefix("hidepid=")
                        .is_some_and(|v| v != "0" && v != "off")
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_known() {
        let me = current();
        assert!(me.start_time > 0);
        assert!(!me.pid_ns.is_empty());
        assert_eq!(start_time(me.pid), Some(me.start_time));
        assert!(!holder_is_dead(&me.host, me.pid, me.start_time, &me.pid_ns));
    }

    #[test]
    fn dead_reused_and_foreign_holders() {
        let me = current();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Gone, same host and namespace: dead.
        assert!(holder_is_dead(&me.host, pid, 12345, &me.pid_ns));
        // Another namespace: never trusted, waited out.
        assert!(!holder_is_dead(&me.host, pid, 12345, "pid:[1]"));
        // Another host: waited out.
        assert!(!holder_is_dead("elsewhere", pid, 12345, &me.pid_ns));
        // A live PID with another start time: reused, so the holder is dead.
        let parent = std::os::unix::process::parent_id();
        let started = start_time(parent).unwrap();
        assert!(holder_is_dead(&me.host, parent, started + 1, &me.pid_ns));
        assert!(!holder_is_dead(&me.host, parent, started, &me.pid_ns));
    }

    #[test]
    fn holders_are_unique_even_with_one_label() {
        assert_ne!(unique_holder(Some("node")), unique_holder(Some("node")));
        assert!(unique_holder(Some("node")).starts_with("node@"));
    }
}
