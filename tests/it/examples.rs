//! The library's examples (`examples/`), built once per test run and run as
//! a person runs them, by the tests that drive them (the renewer node, the
//! fleet on PostgreSQL).

use std::path::PathBuf;
use std::process::Command;

/// The path of a built example, built (once per test run, with the
/// features this test build has, so nothing is compiled twice) to be sure
/// it is the current source's.
pub(crate) fn example(name: &str) -> PathBuf {
    built(&["--example", name], &format!("examples/{name}"))
}

/// Runs `cargo build ARGS` once per test run and returns
/// `target/debug/RELATIVE`.
fn built(args: &[&str], relative: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(relative);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !built.iter().any(|b| b == relative) {
        let mut cargo = Command::new(env!("CARGO"));
        // Without the variables `cargo test` sets for this process: build
        // scripts that watch them would otherwise rebuild (ring does).
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
                || key == "OUT_DIR"
            {
                cargo.env_remove(key);
            }
        }
        let status = cargo
            .arg("build")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "cargo build {args:?}");
        built.push(relative.to_owned());
    }
    path
}
