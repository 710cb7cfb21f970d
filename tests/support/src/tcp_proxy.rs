//! A TCP proxy between a client under test and a server, able to simulate a
//! network partition.
//!
//! ```ignore
//! let proxy = TcpProxy::start(pg.addr());
//! let url = format!("postgres://sturdy@127.0.0.1:{}/sturdy", proxy.port());
//! proxy.partition();   // no byte moves; connections stay open
//! proxy.heal();        // everything held is delivered, in order
//! ```
//!
//! Plain std threads (no async runtime), so it works under any runtime and
//! from synchronous tests: one accept thread, and per connection two threads
//! each pumping one direction.
//!
//! A partition behaves like a cable pulled out while TCP retransmits: data is
//! delayed, not lost, and nothing is closed. While partitioned the pumps
//! neither read nor forward (a chunk read just before is held), so a peer's
//! writes pile up in the socket buffers and eventually block, and a peer
//! closing its end is not seen until healed; new connections are accepted but
//! not connected upstream until healed.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Read and write timeout of the proxied sockets, and the sleep between
/// checks of the partition and stop flags: how long it takes a pump to notice
/// a partition, a heal or the proxy being dropped.
const POLL: Duration = Duration::from_millis(50);
/// Sleep of the accept loop when no connection is pending.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Timeout of the connection to the upstream server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of each pump's buffer: at most this much is held by a pump during a
/// partition.
const BUF_SIZE: usize = 16 * 1024;

/// A running proxy: listens on `127.0.0.1:<free port>` and forwards every
/// connection to the upstream address given to [`TcpProxy::start`].
///
/// Dropping it stops accepting, closes every proxied connection (both sides)
/// and waits for its threads to exit (about 50 ms).
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// State shared by the proxy handle and its threads.
struct Shared {
    upstream: SocketAddr,
    /// Set by `Drop`: every thread exits.
    stopping: AtomicBool,
    partitioned: AtomicBool,
    /// Held (shared) by each write to a peer and each upstream connect, taken
    /// exclusively by `partition` to wait out those already under way.
    gate: RwLock<()>,
    /// Clones of the sockets of every open connection, by connection id, so
    /// that `Drop` can shut them all down.
    open: Mutex<HashMap<u64, [TcpStream; 2]>>,
}

impl TcpProxy {
    /// Start a proxy to `upstream` on a free loopback port. Nothing connects
    /// to `upstream` until a client connects to the proxy (one upstream
    /// connection per client connection; a refused upstream connection closes
    /// the client's).
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("tcp proxy: binding 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("tcp proxy: local_addr of its listener");
        // Nonblocking, so that the accept loop can notice `stopping`.
        listener
            .set_nonblocking(true)
            .expect("tcp proxy: making its listener nonblocking");
        let shared = Arc::new(Shared {
            upstream,
            stopping: AtomicBool::new(false),
            partitioned: AtomicBool::new(false),
            gate: RwLock::new(()),
            open: Mutex::new(HashMap::new()),
        });
        let acceptor = thread::Builder::new()
            .name(format!("tcp-proxy-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, &shared)
            })
            .expect("tcp proxy: spawning its accept thread");
        TcpProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The address clients connect to: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Cut the network: from the return of this call until
    /// [`heal`](Self::heal), no byte is forwarded in either direction on any
    /// connection and new connections are accepted but not connected
    /// upstream. Nothing is closed. Bytes already handed to the kernel (up to
    /// a socket buffer) may still be delivered. Idempotent.
    pub fn partition(&self) {
        self.shared.partitioned.store(true, Ordering::SeqCst);
        // Wait for writes and connects that began before the flag was set;
        // later ones see it.
        drop(
            self.shared
                .gate
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }

    /// Restore the network: everything held is forwarded in order, and
    /// connections accepted during the partition are connected upstream.
    /// Takes effect within about 50 ms. Idempotent.
    pub fn heal(&self) {
        self.shared.partitioned.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let open = std::mem::take(&mut *self.shared.lock_open());
        for stream in open.values().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            // The accept thread joins every connection thread before exiting.
            let _ = acceptor.join();
        }
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn partitioned(&self) -> bool {
        self.partitioned.load(Ordering::SeqCst)
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, [TcpStream; 2]>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until no partition is in effect, then run `op` (one bounded
    /// network operation) with the gate held, so that `partition` waits for
    /// it. `None` when the proxy stops first.
    fn when_healed<T>(&self, op: impl FnOnce() -> T) -> Option<T> {
        loop {
            if self.stopping() {
                return None;
            }
            {
                let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
                if !self.partitioned() {
                    return Some(op());
                }
            }
            thread::sleep(POLL);
        }
    }

    /// Record a connection's sockets for `Drop`. False (record nothing) when
    /// the proxy is stopping or the sockets cannot be cloned: close it then.
    fn register(&self, id: u64, client: &TcpStream, upstream: &TcpStream) -> bool {
        let (Ok(client), Ok(upstream)) = (client.try_clone(), upstream.try_clone()) else {
            return false;
        };
        let mut open = self.lock_open();
        // Checked under the lock `Drop` takes after setting the flag: either
        // `Drop` sees this entry or this sees the flag.
        if self.stopping() {
            return false;
        }
        open.insert(id, [client, upstream]);
        true
    }

    fn unregister(&self, id: u64) {
        self.lock_open().remove(&id);
    }
}

/// Accept connections until the proxy stops, one thread each; then wait for
/// those threads.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id: u64 = 0;
    while !shared.stopping() {
        match listener.accept() {
            Ok((client, _)) => {
                next_id += 1;
                let id = next_id;
                let shared = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name(format!("tcp-proxy-conn-{id}"))
                    .spawn(move || serve(id, client, &shared));
                match spawned {
                    Ok(handle) => connections.push(handle),
                    // The client socket went down with the closure: closed.
                    Err(e) => eprintln!("tcp proxy: cannot spawn a connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // E.g. out of file descriptors: do not spin.
                eprintln!("tcp proxy: accept failed: {e}");
                thread::sleep(POLL);
            }
        }
        connections.retain(|handle| !handle.is_finished());
    }
    for handle in connections {
        let _ = handle.join();
    }
}

/// Proxy one accepted connection until both directions are done (or the
/// proxy stops). Both sockets are closed on return.
fn serve(id: u64, client: TcpStream, shared: &Shared) {
    // Accepted sockets may inherit the listener's nonblocking mode on some
    // platforms.
    if client.set_nonblocking(false).is_err() {
        return;
    }
    // During a partition the SYN would not get through: wait for the heal.
    let Some(connected) =
        shared.when_healed(|| TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT))
    else {
        return;
    };
    let Ok(upstream) = connected else {
        // Upstream down: the client sees its connection closed.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    for stream in [&client, &upstream] {
        let _ = stream.set_nodelay(true);
        if stream.set_read_timeout(Some(POLL)).is_err()
            || stream.set_write_timeout(Some(POLL)).is_err()
        {
            return;
        }
    }
    if !shared.register(id, &client, &upstream) {
        return;
    }
    thread::scope(|scope| {
        let to_upstream = thread::Builder::new()
            .name(format!("tcp-proxy-conn-{id}-up"))
            .spawn_scoped(scope, || pump(&client, &upstream, shared));
        match to_upstream {
            Ok(_) => pump(&upstream, &client, shared),
            Err(e) => {
                eprintln!("tcp proxy: cannot spawn a pump thread: {e}");
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
            }
        }
        // The scope joins the other pump.
    });
    shared.unregister(id);
}

/// Copy `from` to `to` until `from` reaches end of stream (then pass the FIN
/// on with `shutdown(Write)`, leaving the other direction running until it
/// ends too), an error (then shut both sockets down, which ends the other
/// direction too), or the proxy stopping.
fn pump(from: &TcpStream, to: &TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut reader = from;
    loop {
        if shared.stopping() {
            return;
        }
        // Not reading during a partition leaves the bytes (and any FIN) in
        // flight, as a real partition would.
        if shared.partitioned() {
            thread::sleep(POLL);
            continue;
        }
        let read = match reader.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if is_retryable(&e) => continue,
            Err(_) => break,
        };
        // Held here while a partition lasts.
        if forward(to, &buf[..read], shared).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Write all of `data` to `to`, waiting through partitions. Fails when the
/// peer is gone or the proxy stops.
fn forward(to: &TcpStream, mut data: &[u8], shared: &Shared) -> io::Result<()> {
    while !data.is_empty() {
        let written = shared
            .when_healed(|| {
                let mut writer = to;
                writer.write(data)
            })
            .ok_or_else(|| io::Error::other("tcp proxy stopping"))?;
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            // The peer is not reading (its buffer is full): check the flags
            // and try again.
            Err(e) if is_retryable(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A socket timeout (reported as `WouldBlock` on Unix, `TimedOut` on
/// Windows) or an interrupted call.
fn is_retryable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
