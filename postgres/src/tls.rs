//! Whether a connection may go without TLS: only to loopback addresses and
//! Unix sockets, unless the builder's danger setting says otherwise; and
//! how the URL is shown (never its password).

use std::fmt;
use std::net::IpAddr;

use tokio_postgres::config::{Config, Host, SslMode};

use sturdy_acme::StoreError;

/// `Ok` when every connection `config` can make either requires TLS
/// (`sslmode=require`: TLS or no connection, the server's certificate
/// verified against the configured roots) or stays on this machine
/// (loopback, Unix socket). Otherwise a [`StoreError::PlaintextConnection`]
/// naming the first remote host, unless `accept_plaintext` (the danger
/// setting) is set.
pub(super) fn check_transport(config: &Config, accept_plaintext: bool) -> Result<(), StoreError> {
    let sslmode = match config.get_ssl_mode() {
        SslMode::Require => return Ok(()),
        SslMode::Prefer => "prefer",
        SslMode::Disable => "disable",
        // A mode added later: judged like one that may fall back.
        _ => "not require",
    };
    let Some(host) = remote_host(config) else {
        return Ok(());
    };
    if accept_plaintext {
        tracing::warn!(%host, sslmode, "PostgreSQL store on a remote host without required TLS (danger_accept_plaintext): the connection may run in plain text");
        return Ok(());
    }
    Err(StoreError::PlaintextConnection { host, sslmode })
}

/// The first host (or host address) of `config` that is neither loopback
/// nor a Unix socket.
fn remote_host(config: &Config) -> Option<String> {
    let names = config.get_hosts().iter().filter_map(|h| match h {
        Host::Tcp(name) => (!is_loopback_name(name)).then(|| name.clone()),
        #[cfg(unix)]
        Host::Unix(_) => None,
    });
    let addrs = config
        .get_hostaddrs()
        .iter()
        .filter(|a| !a.is_loopback())
        .map(IpAddr::to_string);
    names.chain(addrs).next()
}

/// `localhost` (any case, with or without the final dot) or a loopback
/// address (127.0.0.0/8, `::1`, with or without brackets).
fn is_loopback_name(name: &str) -> bool {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.trim_end_matches('.').eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A PostgreSQL URL (or `key=value` connection string) as logs and `Debug`
/// may show it: user, hosts, ports, database and `sslmode`, and whether a
/// password is set, never the password.
pub(super) struct Redacted<'a>(pub(super) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(config) = self.0.parse::<Config>() else {
            return f.write_str("<a connection string that does not parse>");
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        f.debug_struct("PostgresUrl")
            .field("user", &config.get_user())
            .field("hosts", &hosts)
            .field("ports", &config.get_ports())
            .field("dbname", &config.get_dbname())
            .field("sslmode", &config.get_ssl_mode())
            .field("password", &config.get_password().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(url: &str, danger: bool) -> Result<(), StoreError> {
        check_transport(&url.parse::<Config>().unwrap(), danger)
    }

    /// Issue 27, defect 6: TLS is required for anything but loopback and
    /// Unix sockets; a remote host that disables or merely prefers TLS is
    /// a typed error, unless the danger setting is given.
    #[test]
    fn tls_is_required_off_this_machine() {
        for host in ["127.0.0.1", "127.0.0.2", "[::1]", "localhost", "LOCALHOST."] {
            for mode in ["disable", "prefer", "require"] {
                let url = format!("postgres://acme@{host}:5432/acme?sslmode={mode}");
                assert!(decide(&url, false).is_ok(), "{url}");
            }
            assert!(decide(&format!("postgres://acme@{host}/acme"), false).is_ok());
        }
        for url in [
            "postgres://acme@%2Fvar%2Frun%2Fpostgresql/acme?sslmode=disable",
            "host=/var/run/postgresql user=acme dbname=acme sslmode=prefer",
            "host=/var/run/postgresql user=acme dbname=acme",
        ] {
            assert!(decide(url, false).is_ok(), "{url}");
        }
        for (url, mode) in [
            (
                "postgres://acme@db.example.com/acme?sslmode=disable",
                "disable",
            ),
            (
                "postgres://acme@db.example.com/acme?sslmode=prefer",
                "prefer",
            ),
            ("postgres://acme@db.example.com/acme", "prefer"),
            ("postgres://acme@10.0.0.5:5432/acme", "prefer"),
            ("host=db.example.com user=acme sslmode=disable", "disable"),
            // One remote host among local ones is enough.
            ("postgres://acme@localhost,db.example.com/acme", "prefer"),
            // A loopback name connected to a remote address.
            (
                "host=localhost hostaddr=10.0.0.5 user=acme sslmode=prefer",
                "prefer",
            ),
        ] {
            match decide(url, false) {
                Err(StoreError::PlaintextConnection { host, sslmode }) => {
                    assert_eq!(sslmode, mode, "{url}");
                    assert!(
                        host == "db.example.com" || host == "10.0.0.5",
                        "{url}: {host}"
                    );
                }
                other => panic!("{url}: {other:?}"),
            }
            assert!(decide(url, true).is_ok(), "{url} with the danger setting");
        }
        for url in [
            "postgres://acme@db.example.com/acme?sslmode=require",
            "host=db.example.com hostaddr=10.0.0.5 user=acme sslmode=require",
        ] {
            assert!(decide(url, false).is_ok(), "{url}");
        }
        let err = decide("postgres://a:pw@db.example.com/acme", false).unwrap_err();
        assert!(err.to_string().contains("sslmode=require"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    /// Issue 27, defect 3: the URL's password never shows.
    #[test]
    fn the_url_is_shown_without_its_password() {
        for url in [
            "postgres://acme:hunter2-secret@db.example.com:5432/acme?sslmode=require",
            "postgres://acme@db.example.com/acme?password=hunter2-secret",
            "host=db.example.com user=acme password=hunter2-secret dbname=acme",
            "host=db.example.com user=acme password='hunter2-secret' dbname=acme",
        ] {
            let shown = format!("{:?}", Redacted(url));
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("db.example.com"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let shown = format!(
            "{:?}",
            Redacted("postgres://acme:hunter2@db/x?sslmode=bogus")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        // The builder's Debug, and a URL that does not parse at open.
        let builder =
            crate::PostgresStore::builder("postgres://acme:hunter2-secret@db.example.com/acme");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.example.com"), "{shown}");
    }

    #[tokio::test]
    async fn an_unparsable_url_is_refused_without_its_password() {
        for url in [
            "postgres://acme:hunter2@db.example.com/acme?sslmode=bogus",
            "postgres://acme:hunter2@db.example.com:notaport/acme",
            "host=db.example.com password='hunter2",
        ] {
            let err = crate::PostgresStore::builder(url).open().await.unwrap_err();
            let (display, debug) = (err.to_string(), format!("{err:?}"));
            assert!(
                !display.contains("hunter2") && !debug.contains("hunter2"),
                "{display}"
            );
        }
        let err = crate::PostgresStore::builder("postgres://acme:hunter2@db.example.com/acme")
            .open()
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::PlaintextConnection { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
