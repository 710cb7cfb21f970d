//! Issue 27, the command-line tool `acme` (cli/): no secret in
//! its `Debug` or on any error path, the output files swapped in as one
//! set, ignored flag combinations refused. (`renew`, `list`, `revoke` and
//! the hints: `acme_manage.rs`.)
//!
//! The tool's argument types and its output writer are tested directly in
//! the crate (`cli/src/tests.rs`); here the built binary runs as a person
//! runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::harness::{acme, acme_issue, temp_dir};

use crate::common::verify::{assert_pairs, cert_spki, key_and_cert, key_spki};

/// stdout and stderr of a finished run, together.
pub(crate) fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---- Defect 3: no secret in Debug or on an error path ----

const TSIG_SECRET: &str = "c2VjcmV0LXRzaWctc2VjcmV0LXRzaWc=";
const DB_PASSWORD: &str = "hunter2-db-password";

/// Runs the tool with `args` (and `env`), at `-vv` so the arguments and
/// every log line are printed too; returns the exit code and stdout+stderr.
fn run_tool(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(acme());
    if name == "issue" {
        cmd.arg("issue");
    }
    cmd.args(args)
        .arg("-vv")
        .env_remove("STURDY_ACME_EAB_HMAC_KEY")
        .env_remove("STURDY_ACME_TSIG_KEY")
        .env_remove("STURDY_ACME_KEK")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().unwrap();
    (output.status.code(), both(&output))
}

/// Every error path a malformed or misplaced secret takes prints no part
/// of it: a bad EAB HMAC key (flag, environment, file), a malformed TSIG key
/// (flag and environment, fields in the wrong order, a bad algorithm, bad
/// base64), a database URL with a password that fails (no server; a server
/// without that database). Each run is at `-vv`: the arguments and every
/// log line are printed too.
#[test]
fn no_error_path_prints_a_secret() {
    let out = temp_dir("acme-secrets");
    std::fs::create_dir_all(&out).unwrap();
    let o = out.to_str().unwrap();
    let bad_eab = "not*base64!SECRET-EAB-0123456789";
    let eab_file = out.join("eab.key");
    std::fs::write(&eab_file, bad_eab).unwrap();
    let issue = [
        "issue",
        "--directory",
        "embedded",
        "--domain",
        "s.example",
        "--out",
        o,
    ];
    // (what, arguments, environment, the secret's text)
    type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, String)>, &'a str);
    let mut cases: Vec<Case> = Vec::new();
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    cases.push((
        "a bad --eab-hmac-key",
        strings(&[&issue[..], &["--eab-kid", "k1", "--eab-hmac-key", bad_eab]].concat()),
        vec![],
        "SECRET-EAB-0123456789",
    ));
    cases.push((
        "a bad STURDY_ACME_EAB_HMAC_KEY",
        strings(&[&issue[..], &["--eab-kid", "k1"]].concat()),
        vec![("STURDY_ACME_EAB_HMAC_KEY", bad_eab.to_owned())],
        "SECRET-EAB-0123456789",
    ));
    cases.push((
        "a bad --eab-hmac-key-file",
        strings(
            &[
                &issue[..],
                &[
                    "--eab-kid",
                    "k1",
                    "--eab-hmac-key-file",
                    eab_file.to_str().unwrap(),
                ],
            ]
            .concat(),
        ),
        vec![],
        "SECRET-EAB-0123456789",
    ));
    let dns01 = [
        "--challenge",
        "dns-01",
        "--rfc2136",
        "127.0.0.1:1",
        "--dns-server",
        "127.0.0.1:1",
    ];
    for (what, key, secret) in [
        (
            "TSIG fields in the wrong order",
            format!("{TSIG_SECRET}:hmac-sha256:key.example"),
            TSIG_SECRET,
        ),
        (
            "a TSIG algorithm refused",
            format!("key.example:hmac-md5:{TSIG_SECRET}"),
            TSIG_SECRET,
        ),
        (
            "a TSIG secret that is not base64",
            "key.example:hmac-sha256:SECRET*TSIG*not*base64".to_owned(),
            "SECRET*TSIG",
        ),
    ] {
        cases.push((
            what,
            strings(&[&issue[..], &dns01, &["--tsig-key", &key]].concat()),
            vec![],
            secret,
        ));
        cases.push((
            what,
            strings(&[&issue[..], &dns01].concat()),
            vec![("STURDY_ACME_TSIG_KEY", key.clone())],
            secret,
        ));
    }
    // Key files that do not parse: their contents are never echoed.
    let bad_key = out.join("bad-key.pem");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUS0VZTUFURVJJQUxTRUNSRVQ=\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for flag in ["--cert-key", "--account-key"] {
        cases.push((
            "a key file that does not parse",
            strings(&[&issue[..], &[flag, bad_key.to_str().unwrap()]].concat()),
            vec![],
            "U0VDUkVUS0VZTUFURVJJQUxTRUNSRVQ",
        ));
    }
    for (what, args, env, secret) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = run_tool("acme", &args, &env);
        assert_ne!(code, Some(0), "{what}: {text}");
        assert!(text.contains("error:"), "{what}: {text}");
        assert!(
            !text.contains(secret),
            "{what}: the secret was printed: {text}"
        );
        // Refused before any order: nothing was sent for it.
        assert!(!text.contains("newOrder"), "{what}: {text}");
    }

    // A database URL with a password, against a real PostgreSQL without
    // that database (and with a password it does not need): the store
    // fails, the password is never printed.
    if let Some(pg) = crate::common::postgres::Postgres::start() {
        let url = format!(
            "postgres://sturdy:{DB_PASSWORD}@127.0.0.1:{}/no_such_database",
            pg.port()
        );
        for sub in ["list", "renew", "revoke", "issue"] {
            let mut args = vec![sub, "--directory", "embedded", "--store", &url];
            match sub {
                "revoke" => args.extend(["--domain", "s.example"]),
                "issue" => args.extend(["--domain", "s.example", "--out", o]),
                _ => {}
            }
            let (code, text) = run_tool("acme", &args, &[]);
            assert_eq!(code, Some(7), "{sub}: {text}");
            assert!(
                !text.contains(DB_PASSWORD),
                "{sub}: the password was printed: {text}"
            );
            assert!(text.contains("no_such_database"), "{sub}: {text}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `STURDY_ACME_KEK` given in the wrong order (`BASE64:ID`) is refused
/// without printing the key. The message comes from the library's parser
/// (`KeyEncryptionKey::parse`, src/store/): this fails until that parser
/// names the field instead of echoing it.
#[test]
fn a_kek_in_the_wrong_order_is_not_printed() {
    let kek_secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
    for kek in [
        format!("{kek_secret}:kek-1"),
        format!("kek-1:{kek_secret}x"),
    ] {
        let (code, text) = run_tool(
            "acme",
            &[
                "list",
                "--directory",
                "embedded",
                "--store",
                &format!("postgres://acme:{DB_PASSWORD}@127.0.0.1:1/acme"),
            ],
            &[("STURDY_ACME_KEK", &kek)],
        );
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("STURDY_ACME_KEK"), "{text}");
        for secret in [kek_secret, DB_PASSWORD] {
            assert!(!text.contains(secret), "the secret was printed: {text}");
        }
    }
}

// ---- Defect 10: the output files are one set (the writer itself: cli/src/tests.rs) ----

/// `issue --out` twice into one directory: each time the key belongs to
/// the certificate (a new pair the second time). Then a re-issue whose
/// write fails (a directory is in the way of `cert.pem`) leaves the
/// previous pair whole, where the tool used to have replaced `key.pem`
/// already. Exit 7, the output named.
#[test]
fn issue_out_writes_the_key_and_certificate_as_one_set() {
    let out = temp_dir("acme-out-set");
    let issue = |out: &Path| {
        let output = acme_issue()
            .args([
                "--directory",
                "embedded",
                "--domain",
                "set.example",
                "--out",
            ])
            .arg(out)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (output.status.code(), both(&output))
    };
    let (code, text) = issue(&out);
    assert_eq!(code, Some(0), "{text}");
    let first = assert_pairs(&out);
    let (code, text) = issue(&out);
    assert_eq!(code, Some(0), "{text}");
    let second = assert_pairs(&out);
    assert_ne!(first, second, "a new key each time");

    // The older layout (plain files), then a write that fails half way.
    let plain = temp_dir("acme-out-set-plain");
    let (code, text) = issue(&plain);
    assert_eq!(code, Some(0), "{text}");
    let kept = assert_pairs(&plain);
    for name in ["key.pem", "cert.pem", "chain.pem", "fullchain.pem"] {
        let data = std::fs::read(plain.join(name)).unwrap();
        std::fs::remove_file(plain.join(name)).unwrap();
        std::fs::write(plain.join(name), data).unwrap();
    }
    std::fs::remove_file(plain.join("cert.pem")).unwrap();
    std::fs::create_dir(plain.join("cert.pem")).unwrap();
    std::fs::write(plain.join("cert.pem").join("in-the-way"), "").unwrap();
    let (code, text) = issue(&plain);
    let key = key_spki(&std::fs::read_to_string(plain.join("key.pem")).unwrap());
    let full = cert_spki(&std::fs::read_to_string(plain.join("fullchain.pem")).unwrap());
    assert_eq!(
        key, full,
        "key.pem was replaced beside the old fullchain.pem: {text}"
    );
    assert_eq!(key, kept);
    assert_eq!(code, Some(7), "{text}");
    assert!(
        text.contains("writing the certificate and key into"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&plain);
}

/// A flag the command would ignore is refused before anything is ordered,
/// saying why: `--cert-key` with `--store` (the issuer makes its own keys),
/// `--key-type` with `--cert-key`, `--root-ca` with the embedded CA,
/// `--rfc2136`/`--tsig-key` with http-01, `--http-port` with dns-01,
/// order options with `--check`, `--no-caa-preflight` without `--store`,
/// `--dns-server` where no DNS is asked, `--account-key-type` unlike the
/// existing `--account-key`.
#[test]
fn ignored_flag_combinations_are_refused() {
    let dir = temp_dir("acme-flags");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("cert-key.pem");
    std::fs::write(&key, key_and_cert("k.example").0).unwrap();
    let key = key.to_str().unwrap();
    let store = dir.join("store");
    let store = store.to_str().unwrap();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let account_key = dir.join("account.pem");
    std::fs::write(
        &account_key,
        sturdy_acme::AccountKey::generate(sturdy_acme::KeyAlgorithm::Es256)
            .unwrap()
            .to_pkcs8_pem()
            .as_bytes(),
    )
    .unwrap();
    let account_key = account_key.to_str().unwrap();
    let issue = [
        "issue",
        "--directory",
        "embedded",
        "--domain",
        "f.example",
        "--out",
        out,
    ];
    for (extra, says) in [
        (
            vec!["--store", store, "--cert-key", key],
            "--cert-key cannot be used with --store",
        ),
        (
            vec!["--cert-key", key, "--key-type", "p384"],
            "--key-type cannot be used with --cert-key",
        ),
        (
            vec!["--root-ca", key],
            "--root-ca is for a CA outside this process",
        ),
        (
            vec!["--rfc2136", "127.0.0.1:53"],
            "--rfc2136 applies only to --challenge dns-01",
        ),
        (
            vec!["--challenge", "dns-01", "--http-port", "8080"],
            "--http-port applies only to --challenge http-01",
        ),
        (
            vec!["--check", "--store", store, "--dns-server", "127.0.0.1:53"],
            "--store cannot be used with --check",
        ),
        (
            vec!["--no-caa-preflight"],
            "--no-caa-preflight cannot be used with an issue without --store",
        ),
        (
            vec![
                "--directory",
                "https://127.0.0.1:1/dir",
                "--dns-server",
                "127.0.0.1:53",
            ],
            "--dns-server cannot be used with an issue without --store, --check or --rfc2136",
        ),
        (
            vec!["--account-key", account_key, "--account-key-type", "es384"],
            "--account-key-type ES384 cannot be used with the existing ES256 key",
        ),
    ] {
        // A case naming its own CA replaces the embedded one.
        let base = if extra.contains(&"--directory") {
            &issue[..1]
        } else {
            &issue[..3]
        };
        let args = [base, &issue[3..], &extra].concat();
        let output = Command::new(acme())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = both(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(says), "{args:?}: {text}");
        assert!(
            !text.contains("order "),
            "nothing ordered: {args:?}: {text}"
        );
        assert!(!text.contains("wrote"), "nothing written: {args:?}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
