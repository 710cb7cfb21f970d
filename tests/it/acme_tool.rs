//! Issue 27, the command-line tool `acme` (examples/acme): no secret in
//! its `Debug` or on any error path, the output files swapped in as one
//! set, ignored flag combinations refused. (`renew`, `list`, `revoke` and
//! the hints: `acme_manage.rs`.)
//!
//! The tool's own modules are compiled in here too, so its argument types
//! and its output writer are tested directly; the rest runs the built
//! example as a person runs it.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use clap::Parser;
use sturdy_acme::CertificateKey;

use crate::examples::{example, temp_dir};

#[path = "../../examples/acme/main.rs"]
#[allow(dead_code)] // the tool's `main` and what only it calls
mod tool;

/// stdout and stderr of a finished run, together.
pub(crate) fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The SubjectPublicKeyInfo (DER) of the first certificate in `pem`.
fn cert_spki(pem: &str) -> Vec<u8> {
    let block = pem::parse_many(pem)
        .unwrap()
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .expect("a certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).unwrap();
    cert.tbs_certificate.subject_pki.raw.to_vec()
}

/// The SubjectPublicKeyInfo (DER) of a PKCS#8 key.
fn key_spki(pem: &str) -> Vec<u8> {
    CertificateKey::from_pkcs8_pem(pem)
        .unwrap()
        .public_key_der()
}

/// Panics unless `out/key.pem` belongs to `out/cert.pem` and to the leaf of
/// `out/fullchain.pem` (read through the paths a server is given); returns
/// the key's SubjectPublicKeyInfo.
fn assert_pairs(out: &Path) -> Vec<u8> {
    let key = key_spki(&std::fs::read_to_string(out.join("key.pem")).unwrap());
    for name in ["cert.pem", "fullchain.pem"] {
        let cert = cert_spki(&std::fs::read_to_string(out.join(name)).unwrap());
        assert_eq!(
            key,
            cert,
            "key.pem does not belong to {name} in {}",
            out.display()
        );
    }
    key
}

// ---- Defect 3: no secret in Debug or on an error path ----

const EAB_SECRET: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
const TSIG_SECRET: &str = "c2VjcmV0LXRzaWctc2VjcmV0LXRzaWc=";
const DB_PASSWORD: &str = "hunter2-db-password";

/// The derived `Debug` of every subcommand's arguments shows no secret
/// given on the command line: the EAB HMAC key, the TSIG key, the
/// database URL's password.
#[test]
fn the_arguments_debug_shows_no_secret() {
    let store = format!("postgres://acme:{DB_PASSWORD}@127.0.0.1:5432/acme");
    let tsig = format!("key.example:hmac-sha256:{TSIG_SECRET}");
    let common = [
        "--directory",
        "embedded",
        "--eab-kid",
        "kid-1",
        "--eab-hmac-key",
        EAB_SECRET,
    ];
    let commands: Vec<Vec<&str>> = vec![
        [&["acme", "issue"][..], &common, &["--domain", "a.example"]].concat(),
        [
            &["acme", "issue"][..],
            &common,
            &["--domain", "a.example", "--store", &store],
            &["--challenge", "dns-01", "--rfc2136", "127.0.0.1:53"],
            &["--tsig-key", &tsig],
        ]
        .concat(),
        [&["acme", "list"][..], &common, &["--store", &store]].concat(),
        [
            &["acme", "renew"][..],
            &common,
            &["--store", &store, "--challenge", "dns-01"],
            &["--rfc2136", "127.0.0.1:53", "--tsig-key", &tsig],
        ]
        .concat(),
        [
            &["acme", "revoke"][..],
            &common,
            &["--store", &store, "--domain", "a.example"],
        ]
        .concat(),
        [
            &["acme", "account"][..],
            &common,
            &["--store", &store, "show"],
        ]
        .concat(),
    ];
    for args in commands {
        let cli = tool::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let shown = format!("{cli:?}");
        for secret in [EAB_SECRET, TSIG_SECRET, DB_PASSWORD] {
            assert!(!shown.contains(secret), "{args:?} shows a secret: {shown}");
        }
        // What is not secret still shows.
        assert!(shown.contains("kid-1"), "{shown}");
        if args.contains(&store.as_str()) {
            assert!(
                shown.contains("postgres://acme:***@127.0.0.1:5432/acme"),
                "{shown}"
            );
        }
    }
}

/// Runs the tool with `args` (and `env`), at `-vv` so the arguments and
/// every log line are printed too; returns the exit code and stdout+stderr.
fn run_tool(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(example(name));
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

// ---- Defect 10: the output files are one set ----

/// A key and its self-signed certificate, as PEM.
fn key_and_cert(name: &str) -> (String, String) {
    let key = CertificateKey::generate(Default::default()).unwrap();
    let key_pem = key.to_pkcs8_pem().to_string();
    let pair = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    (key_pem.to_string(), cert.pem())
}

/// The tool's output set for a key and a certificate.
fn output_set<'a>(key: &'a str, cert: &'a str, label: &'a str) -> tool::outputs::OutputSet<'a> {
    tool::outputs::OutputSet {
        key_pem: key.as_bytes(),
        cert_pem: cert.as_bytes(),
        chain_pem: b"",
        fullchain_pem: cert.as_bytes(),
        label,
    }
}

/// The files an older version wrote: plain files, each on its own.
fn write_plain(out: &Path, key: &str, cert: &str) {
    std::fs::create_dir_all(out).unwrap();
    for (name, data) in [
        ("key.pem", key),
        ("cert.pem", cert),
        ("chain.pem", ""),
        ("fullchain.pem", cert),
    ] {
        std::fs::write(out.join(name), data).unwrap();
    }
}

/// A new set replacing an old one, stopped (as by a crash) after each of
/// its steps in turn, from the tool's own layout and from an older
/// version's plain files: the files shown are always the old set or the
/// new one, whole, never a key beside another certificate. Then a write
/// that runs to the end shows the new set, the key 0600, and keeps no
/// more than the current and the previous set.
#[test]
fn the_output_set_is_never_mixed_whenever_the_write_stops() {
    use tool::outputs::{Stage, write_set, write_set_with};
    let (old_key, old_cert) = key_and_cert("old.example");
    let (new_key, new_cert) = key_and_cert("new.example");
    let old = key_spki(&old_key);
    let new = key_spki(&new_key);
    let base = temp_dir("acme-output-set");
    for plain in [false, true] {
        let mut stopped_at = 0;
        loop {
            let out = base.join(format!("plain-{plain}-{stopped_at}"));
            if plain {
                write_plain(&out, &old_key, &old_cert);
            } else {
                write_set(&out, &output_set(&old_key, &old_cert, "01")).unwrap();
            }
            assert_eq!(assert_pairs(&out), old);
            let mut steps = 0;
            let mut seen = Vec::new();
            let result = write_set_with(
                &out,
                &output_set(&new_key, &new_cert, "02"),
                &mut |stage: Stage| {
                    seen.push(stage);
                    steps += 1;
                    if steps > stopped_at {
                        Err(std::io::Error::other("crash"))
                    } else {
                        Ok(())
                    }
                },
            );
            let shown = assert_pairs(&out);
            match result {
                Err(_) => {
                    assert!(shown == old || shown == new, "after {seen:?}");
                    // Before the flip the old set shows; after it the new.
                    let flipped = seen.contains(&Stage::Flipped);
                    assert_eq!(shown == new, flipped, "after {seen:?}");
                    // The next write, to the end, shows the new set.
                    write_set(&out, &output_set(&new_key, &new_cert, "03")).unwrap();
                    assert_eq!(assert_pairs(&out), new);
                    stopped_at += 1;
                }
                Ok(_) => {
                    assert_eq!(shown, new);
                    // Every step was stopped at once before this run.
                    assert!(stopped_at >= 4 + 1 + 1 + 4, "{seen:?}");
                    #[cfg(unix)]
                    {
                        use std::os::unix::fs::PermissionsExt;
                        let mode = std::fs::metadata(out.join("key.pem"))
                            .unwrap()
                            .permissions()
                            .mode();
                        assert_eq!(mode & 0o777, 0o600);
                        let sets = std::fs::read_dir(out.join("sets")).unwrap().count();
                        assert!(sets <= 2, "{sets} sets kept");
                    }
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// `issue --out` twice into one directory: each time the key belongs to
/// the certificate (a new pair the second time). Then a re-issue whose
/// write fails (a directory is in the way of `cert.pem`) leaves the
/// previous pair whole, where the tool used to have replaced `key.pem`
/// already. Exit 7, the output named.
#[test]
fn issue_out_writes_the_key_and_certificate_as_one_set() {
    let out = temp_dir("acme-out-set");
    let issue = |out: &Path| {
        let output = Command::new(example("issue"))
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
        let output = Command::new(example("acme"))
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
