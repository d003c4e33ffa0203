//! Hiding credentials in URLs before they reach an error message or a log line.
//!
//! NATS and PostgreSQL URLs carry passwords (`nats://service:pw@host:4222`,
//! `postgres://app:pw@db/app?sslpassword=pw`), and the URLs most worth showing are the broken
//! ones, which no URL parser accepts. So this works on text, not on a parsed URL, and leans
//! towards hiding too much.

/// What replaces a user, a password or a token.
const MASK: &str = "***";

/// Query parameters whose values are secrets (compared in lower case): libpq's `password` and
/// `sslpassword`, and the usual names for tokens.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "sslpassword",
    "pass",
    "passwd",
    "pwd",
    "token",
    "auth_token",
    "secret",
];

/// `url` with its user, password and secret query parameters replaced by `***`, for error
/// messages and logs: `nats://***:***@host:4222`.
///
/// Each comma-separated URL of a NATS server list is treated on its own. A URL without
/// credentials comes back unchanged. Everything up to the last `@` (after the scheme) counts
/// as credentials, so a password with an unescaped `/`, `?`, `#` or `@` is hidden too, even in
/// text no parser accepts; the price is that an `@` in a path or query hides what precedes it.
///
/// ```
/// use courier_config::redact_url;
///
/// assert_eq!(redact_url("nats://service:s3cret@127.0.0.1:4222"), "nats://***:***@127.0.0.1:4222");
/// assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
/// ```
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

/// [`redact_url`] for one URL (no commas).
fn redact_one(url: &str) -> String {
    let (before_host, rest) = match url.rfind('@') {
        Some(at) => {
            let start = userinfo_start(&url[..at]);
            let userinfo = &url[start..at];
            let masked = match (userinfo.is_empty(), userinfo.contains(':')) {
                (true, _) => String::new(),
                (false, true) => format!("{MASK}:{MASK}"),
                (false, false) => MASK.to_owned(),
            };
            (format!("{}{masked}@", &url[..start]), &url[at + 1..])
        }
        None => (String::new(), url),
    };
    before_host + &redact_query(rest)
}

/// Where the user starts in `head` (the text before the last `@`): after the scheme's `://`,
/// or at the very start when there is none.
fn userinfo_start(head: &str) -> usize {
    head.find("://").map_or(0, |i| i + 3)
}

/// `host/path?query` with the values of secret query parameters masked.
fn redact_query(rest: &str) -> String {
    let Some((path, query)) = rest.split_once('?') else {
        return rest.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) => {
                format!("{name}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// `text` with every occurrence of `value` replaced by its redacted form: for messages (such
/// as serde's) that quote a value they were given.
pub(crate) fn redact_value_in(text: &str, value: &str) -> String {
    let redacted = redact_url(value);
    if value.is_empty() || redacted == value {
        return text.to_owned();
    }
    text.replace(value, &redacted)
}

/// `text` with every line passed through [`redact_url`]: for messages that quote a source line
/// (the TOML parser's).
pub(crate) fn redact_lines(text: &str) -> String {
    text.split('\n')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_are_masked() {
        assert_eq!(
            redact_url("nats://service:s3cret@127.0.0.1:4222"),
            "nats://***:***@127.0.0.1:4222"
        );
    }

    #[test]
    fn a_url_without_credentials_is_unchanged() {
        for url in [
            "nats://127.0.0.1:4222",
            "sqlite://data/users.db",
            "postgres://db.internal/app?sslmode=require",
            "http://127.0.0.1:8500",
            "",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn a_token_alone_is_masked_without_a_colon() {
        assert_eq!(
            redact_url("nats://s3cret@host:4222"),
            "nats://***@host:4222"
        );
    }

    #[test]
    fn every_url_of_a_server_list_is_masked() {
        assert_eq!(
            redact_url("nats://a:pw1@n1:4222,nats://n2:4222, tls://b:pw2@n3:4443"),
            "nats://***:***@n1:4222,nats://n2:4222, tls://***:***@n3:4443"
        );
    }

    #[test]
    fn postgres_passwords_in_the_query_are_masked() {
        assert_eq!(
            redact_url("postgres://app:pw@db/app?sslmode=require&password=pw2&PassWord=pw3"),
            "postgres://***:***@db/app?sslmode=require&password=***&PassWord=***"
        );
    }

    #[test]
    fn an_empty_user_part_shows_as_it_was() {
        assert_eq!(redact_url("nats://@host:4222"), "nats://@host:4222");
    }

    #[test]
    fn garbage_leaks_nothing_before_the_last_at() {
        for (garbage, secret) in [
            ("nats://svc:pa/ss@host:4222", "pa/ss"),
            ("nats://svc:p@ss@host", "p@ss"),
            ("nats://svc:pa ss?#@host", "pa ss"),
            ("svc:hunter2@host:4222", "hunter2"),
            ("u:hunter2@x://host", "hunter2"),
            ("://svc:hunter2@", "hunter2"),
            ("nats:/svc:hunter2@host", "hunter2"),
        ] {
            let shown = redact_url(garbage);
            assert!(!shown.contains(secret), "{garbage} -> {shown}");
            assert!(!shown.contains("svc"), "{garbage} -> {shown}");
        }
    }

    #[test]
    fn redacting_twice_changes_nothing_more() {
        let once = redact_url("postgres://app:pw@db/app?password=pw");
        assert_eq!(redact_url(&once), once);
    }

    #[test]
    fn a_quoted_value_is_redacted_inside_a_message() {
        let message = "unknown variant `nats://u:pw@h`, expected `pretty` or `json`";
        assert_eq!(
            redact_value_in(message, "nats://u:pw@h"),
            "unknown variant `nats://***:***@h`, expected `pretty` or `json`"
        );
    }

    #[test]
    fn quoted_source_lines_are_redacted_line_by_line() {
        let message = "TOML parse error at line 2, column 7\n  |\n2 | url = \"nats://u:pw@h\n  |       ^\ninvalid basic string\n";
        let shown = redact_lines(message);
        assert!(!shown.contains("pw"), "{shown}");
        assert!(shown.contains("line 2, column 7"), "{shown}");
        assert!(shown.contains("nats://***:***@h"), "{shown}");
    }
}
