//! What every test of the `acme` binary needs: the binary (cargo builds it
//! for these tests: `CARGO_BIN_EXE_acme`), scratch directories, and the test
//! CA served as `sturdy-test-ca` serves it (the same flags, parsed by the
//! same [`ServerArgs`]), on a runtime thread of its own so a test may block
//! on the tool.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use sturdy_acme_test_support::ca_thread::CaThread;
use sturdy_acme_testca::command::ServerArgs;

/// The `acme` binary of this build.
pub(crate) fn acme() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_acme"))
}

/// `acme issue`, ready for its flags.
pub(crate) fn acme_issue() -> Command {
    let mut command = Command::new(acme());
    command.arg("issue");
    command
}

pub(crate) use sturdy_acme_test_support::temp_dir;

/// A served test CA; stops when killed or dropped.
pub(crate) struct ServedCa(Option<CaThread>);

impl ServedCa {
    /// Stops serving.
    pub(crate) async fn kill(&mut self) -> std::io::Result<()> {
        drop(self.0.take());
        Ok(())
    }
}

/// Starts the test CA on a free port, its root written to `root_path`;
/// returns it and its directory URL.
pub(crate) async fn start_test_ca(root_path: &Path) -> (ServedCa, String) {
    start_test_ca_with(root_path, &[]).await
}

/// [`start_test_ca`] with more `sturdy-test-ca` flags.
pub(crate) async fn start_test_ca_with(root_path: &Path, extra: &[&OsStr]) -> (ServedCa, String) {
    let mut argv: Vec<&OsStr> = vec![
        "sturdy-test-ca".as_ref(),
        "--port".as_ref(),
        "0".as_ref(),
        "--root-out".as_ref(),
        root_path.as_os_str(),
    ];
    argv.extend_from_slice(extra);
    let args = ServerArgs::try_parse_from(argv).expect("sturdy-test-ca flags");
    let ca = CaThread::start(args.builder().expect("a test CA from these flags"));
    std::fs::write(root_path, ca.ca().root_pem()).expect("root written");
    let directory = ca.ca().directory_url().to_owned();
    (ServedCa(Some(ca)), directory)
}
