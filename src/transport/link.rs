//! `Link` header parsing (RFC 8288), enough for ACME's `rel` links.

use http::HeaderMap;

/// The targets of every link with relation `rel` in `headers`, in order.
pub(crate) fn links(headers: &HeaderMap, rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for (target, rels) in parse(value) {
            if rels.iter().any(|r| r.eq_ignore_ascii_case(rel)) {
                out.push(target);
            }
        }
    }
    out
}

/// Parses one header value into (target, rel values).
fn parse(value: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        let target = rest[start + 1..start + len].trim().to_owned();
        rest = &rest[start + len + 1..];
        // Parameters run until the next link (a ',' outside quotes).
        let mut end = rest.len();
        let mut quoted = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let params = &rest[..end];
        rest = &rest[end..];
        let mut rels = Vec::new();
        for param in split_outside_quotes(params, ';') {
            let Some((name, val)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("rel") {
                let val = val.trim().trim_matches('"');
                rels.extend(val.split_whitespace().map(str::to_owned));
            }
        }
        out.push((target, rels));
    }
    out
}

/// `s` split at every `sep` that is not inside a quoted string (RFC 8288
/// parameters may quote `;`).
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiple_links_and_headers() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::LINK,
            r#"<https://ca/cert/1/1>;rel="alternate", <https://ca/dir>;rel="index""#
                .parse()
                .unwrap(),
        );
        h.append(
            http::header::LINK,
            "<https://ca/cert/1/2>; rel=alternate".parse().unwrap(),
        );
        h.append(
            http::header::LINK,
            r#"<https://ca/a,b>; title="x, y"; rel="up""#.parse().unwrap(),
        );
        assert_eq!(
            links(&h, "alternate"),
            ["https://ca/cert/1/1", "https://ca/cert/1/2"]
        );
        assert_eq!(links(&h, "index"), ["https://ca/dir"]);
        assert_eq!(links(&h, "up"), ["https://ca/a,b"]);
        assert!(links(&h, "terms-of-service").is_empty());
        // Garbage yields nothing, never a panic.
        assert!(parse("<<<>").iter().all(|(_, r)| r.is_empty()));
        assert!(parse("<unterminated").is_empty());
    }

    /// A `;` inside a quoted parameter is not a separator (found by the
    /// hostile-input campaign).
    #[test]
    fn quoted_semicolons_do_not_split_parameters() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::LINK,
            r#"<https://ca/x> ;rel=up ; title="x; rel=alternate""#
                .parse()
                .unwrap(),
        );
        assert!(links(&h, "alternate").is_empty());
        assert_eq!(links(&h, "up"), ["https://ca/x"]);
    }
}
