//! `DATABASE_URL`: parsed by real parsers (the `url` crate, then sqlx's own), printed only
//! with its secrets replaced by `***`.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use url::Url;
use vectorgate_domain::GatewayError;

const VARIABLE: &str = "DATABASE_URL";
const ACCEPTED: &str = "postgres://user[:password]@host[:port]/database[?sslmode=...] \
                        (special characters in the password percent-encoded: / %2F, ? %3F, \
                        # %23, @ %40, : %3A, % %25, space %20)";

/// Query parameters whose values are secrets.
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// A PostgreSQL connection URL. `Debug` and `Display` print [`Self::redacted`]; the secret
/// text is reachable only through [`Self::connect_options`].
#[derive(Clone)]
pub struct DatabaseUrl {
    secret: SecretString,
    redacted: String,
    endpoint: String,
}

impl DatabaseUrl {
    /// Parses and checks the URL; a bad one is a `Configuration` error about
    /// `DATABASE_URL` that shows the URL with its password replaced by `***`.
    pub fn parse(raw: &str) -> Result<Self, GatewayError> {
        let raw = raw.trim();
        let invalid = |why: &str| {
            GatewayError::configuration(VARIABLE, redact_url(raw), format!("{ACCEPTED}; {why}"))
        };
        let url = Url::parse(raw).map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid("the scheme must be postgres:// or postgresql://"));
        }
        // An unencoded `/`, `?` or `#` in the password ends the authority early, so the
        // rest of the password and the real host land in the path, query or fragment.
        let tail = [
            url.path(),
            url.query().unwrap_or(""),
            url.fragment().unwrap_or(""),
        ];
        if tail.iter().any(|part| part.contains('@')) {
            return Err(invalid(
                "an '@' after the host: a special character in the password is probably not \
                 percent-encoded",
            ));
        }
        let options =
            PgConnectOptions::from_str(raw).map_err(|e| invalid(&scrub(&e.to_string(), raw)))?;
        let endpoint = format!("{}:{}", options.get_host(), options.get_port());
        Ok(Self {
            secret: SecretString::from(raw.to_string()),
            redacted: redact_parsed(url),
            endpoint,
        })
    }

    /// `host:port` (never credentials), for messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL with its password and secret parameters replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// sqlx's connection options for this URL.
    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.secret.expose_secret())
            .expect("parsed successfully in DatabaseUrl::parse")
    }

    /// The password, if the URL has one (so that messages can be scrubbed of it).
    pub(crate) fn password(&self) -> Option<String> {
        let url = Url::parse(self.secret.expose_secret()).ok()?;
        let password = url.password()?;
        Some(percent_decode(password).unwrap_or_else(|| password.to_string()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &Self) -> bool {
        self.secret.expose_secret() == other.secret.expose_secret()
    }
}

fn redact_parsed(mut url: Url) -> String {
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // The url crate percent-encodes the `*`s of the query; show them as typed.
    url.to_string().replace("%2A%2A%2A", "***")
}

/// Any connection string with its secrets replaced by `***`. A string that does not parse
/// loses everything between `://` and its last `@` (a password may hold any character,
/// so no part of that span can be shown safely) and the values of secret parameters.
pub fn redact_url(raw: &str) -> String {
    if let Ok(url) = Url::parse(raw) {
        let tail = [
            url.path(),
            url.query().unwrap_or(""),
            url.fragment().unwrap_or(""),
        ];
        if !tail.iter().any(|part| part.contains('@')) {
            return redact_parsed(url);
        }
    }
    let mut out = raw.to_string();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        if let Some(at) = out[start..].rfind('@') {
            out.replace_range(start..start + at, "***");
        }
    }
    redact_params(&out)
}

/// Whether a connection string holds a password (in its user info or as a `password`
/// parameter), whether or not it parses: the CLI warns when one is typed on its command
/// line.
pub fn url_has_password(raw: &str) -> bool {
    let raw = raw.trim();
    let in_userinfo = match raw.find("://").map(|i| i + 3) {
        Some(start) => raw[start..]
            .rfind('@')
            .is_some_and(|at| raw[start..start + at].contains(':')),
        None => false,
    };
    let in_params = raw.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.split_once('=').is_some_and(|(key, value)| {
                key.eq_ignore_ascii_case("password") && !value.is_empty()
            })
        })
    });
    in_userinfo || in_params
}

fn redact_params(text: &str) -> String {
    let Some(query_start) = text.find('?') else {
        return text.to_string();
    };
    let (head, query) = text.split_at(query_start + 1);
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s)) => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", redacted.join("&"))
}

/// `message` with every occurrence of `secret` (as typed, and percent-decoded) replaced by
/// `***`: driver messages sometimes quote the input they could not use.
pub(crate) fn scrub_secret(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        return message.to_string();
    }
    let mut out = message.replace(secret, "***");
    if let Some(decoded) = percent_decode(secret) {
        if !decoded.is_empty() {
            out = out.replace(&decoded, "***");
        }
    }
    out
}

/// A parse error's text without any part of the URL's user info.
fn scrub(message: &str, raw: &str) -> String {
    let mut out = message.to_string();
    if let Some(start) = raw.find("://").map(|i| i + 3) {
        if let Some(at) = raw[start..].rfind('@') {
            let userinfo = &raw[start..start + at];
            out = scrub_secret(&out, userinfo);
            if let Some((_, password)) = userinfo.split_once(':') {
                out = scrub_secret(&out, password);
            }
        }
    }
    out
}

fn percent_decode(text: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cr3t@db.example:5433/vectors?sslmode=require&password=s3cr3t",
        )
        .unwrap();
        for printed in [format!("{url:?}"), url.to_string()] {
            assert!(!printed.contains("s3cr3t"), "{printed}");
            assert_eq!(
                printed,
                "postgres://app:***@db.example:5433/vectors?sslmode=require&password=***"
            );
        }
        assert_eq!(url.endpoint(), "db.example:5433");
        assert_eq!(url.password().as_deref(), Some("s3cr3t"));
    }

    #[test]
    fn urls_without_password_are_shown_as_they_are() {
        let url = "postgres://postgres@127.0.0.1:55432/vectorgate";
        assert_eq!(redact_url(url), url);
        assert_eq!(DatabaseUrl::parse(url).unwrap().redacted(), url);
        assert_eq!(
            DatabaseUrl::parse("postgres://db/x").unwrap().endpoint(),
            "db:5432"
        );
    }

    #[test]
    fn passwords_with_url_special_characters_never_show() {
        for password in [
            "S3cr/etPW",
            "S3cr?etPW",
            "S3cr#etPW",
            "S3cr@etPW",
            "S3cr:etPW",
            "S3cr%etPW",
            "S3cr etPW",
            "S3cr&etPW",
            "S3cr=etPW",
            "1234/etPW",
            "S3cr\\etPW",
            "S3cr'et\"PW",
        ] {
            let raw = format!("postgres://user:{password}@db.internal:5432/vectors");
            let shown = match DatabaseUrl::parse(&raw) {
                Ok(url) => format!("{url} {url:?}"),
                Err(err) => format!("{err} {err:?}"),
            };
            assert!(!shown.contains(password), "{password} leaked: {shown}");
            assert!(
                !shown.contains("etPW"),
                "part of {password} leaked: {shown}"
            );
            assert!(!redact_url(&raw).contains("etPW"), "{}", redact_url(&raw));
        }
    }

    #[test]
    fn passwords_are_found_whether_or_not_the_url_parses() {
        for with in [
            "postgres://u:pw@h/db",
            "postgres://u:S3cr/et?PW@h:5432/db",
            "postgres://u@h/db?sslmode=require&password=x",
            "not a url://u:p@h",
        ] {
            assert!(url_has_password(with), "{with}");
        }
        for without in [
            "postgres://u@h/db",
            "postgres://h:5432/db",
            "postgres://u@h/db?password=",
            "",
        ] {
            assert!(!url_has_password(without), "{without}");
        }
    }

    #[test]
    fn percent_encoded_passwords_work_and_stay_hidden() {
        let url = DatabaseUrl::parse("postgres://user:S3cr%2FetPW@db:5432/v").unwrap();
        assert_eq!(url.password().as_deref(), Some("S3cr/etPW"));
        assert_eq!(url.redacted(), "postgres://user:***@db:5432/v");
        assert_eq!(
            scrub_secret("auth failed for S3cr/etPW and S3cr%2FetPW", "S3cr%2FetPW"),
            "auth failed for *** and ***"
        );
    }

    #[test]
    fn other_schemes_and_garbage_are_configuration_errors() {
        for raw in [
            "mysql://app:s3cr3t-pw@db/x",
            "not a url",
            "postgres://u:p@h:notaport/db",
        ] {
            let err = DatabaseUrl::parse(raw).unwrap_err();
            assert!(
                matches!(&err, GatewayError::Configuration { variable, .. } if variable == "DATABASE_URL"),
                "{err}"
            );
            assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
        }
    }
}
