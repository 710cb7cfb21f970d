//! The embedded CA on its own runtime thread, so a test can run the client
//! on tokio's paused clock: the CA's timers and I/O keep real time while the
//! client's backoff sleeps are skipped instantly.

use std::sync::mpsc;
use std::thread::JoinHandle;

use sturdy_acme_testca::{TestCa, TestCaBuilder};

/// A test CA served by a runtime on another thread. Stops when dropped.
pub struct CaThread {
    ca: Option<TestCa>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CaThread {
    /// Starts `builder` on a fresh runtime thread.
    pub fn start(builder: TestCaBuilder) -> Self {
        let (ca_tx, ca_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("CA runtime");
            let ca = rt.block_on(builder.start()).expect("test CA starts");
            ca_tx.send(ca).expect("test alive");
            let _ = stop_rx.recv();
            rt.shutdown_background();
        });
        let ca = ca_rx.recv().expect("CA thread started");
        Self {
            ca: Some(ca),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The CA.
    pub fn ca(&self) -> &TestCa {
        self.ca.as_ref().expect("running")
    }
}

impl Drop for CaThread {
    fn drop(&mut self) {
        drop(self.ca.take());
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
