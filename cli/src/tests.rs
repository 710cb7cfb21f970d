//! The tool's own types tested directly: no secret in the arguments'
//! `Debug`, and the output set never mixed whenever its write stops. (The
//! binary as a person runs it: `cli/tests/acme/`.)

use std::path::Path;

use clap::Parser;
use sturdy_acme_test_support::temp_dir;
use sturdy_acme_test_support::verify::{assert_pairs, key_and_cert, key_spki};

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
        let cli = crate::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
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

/// The tool's output set for a key and a certificate.
fn output_set<'a>(key: &'a str, cert: &'a str, label: &'a str) -> crate::outputs::OutputSet<'a> {
    crate::outputs::OutputSet {
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
    use crate::outputs::{Stage, write_set, write_set_with};
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
