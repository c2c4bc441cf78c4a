//! Where the Milvus server is and how the connection is secured: `MILVUS_URI` parsing and the
//! TLS files. Reading and checking the files happens here, before any connection, so that
//! a wrong path is a configuration error naming its variable rather than a connect failure.

use std::fmt;
use std::path::{Path, PathBuf};

use vectorgate_domain::GatewayError;

/// `http://host:port` or `https://host:port`: the one way to name the server in full
/// (`MILVUS_HOST`/`MILVUS_PORT` are the plain-text shorthand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilvusUri {
    /// `https://`: the connection is TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 in brackets).
    pub host: String,
    pub port: u16,
}

impl MilvusUri {
    pub const ACCEPTED: &'static str =
        "http://host:port or https://host[:port] (443 if omitted); no path, user or query";

    /// Parses a URI; every refusal is a configuration error naming `MILVUS_URI`.
    pub fn parse(raw: &str) -> Result<Self, GatewayError> {
        let raw = raw.trim();
        // A URI with credentials in it is shown without them.
        let shown = match raw.rsplit_once('@') {
            Some((_, rest)) => format!("***@{rest}"),
            None => raw.to_string(),
        };
        let refuse = |why: &str| {
            GatewayError::configuration(
                "MILVUS_URI",
                shown.as_str(),
                format!("{} ({why})", Self::ACCEPTED),
            )
        };
        let url = url::Url::parse(raw).map_err(|e| refuse(&e.to_string()))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(refuse(&format!("unknown scheme {other:?}"))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            // Credentials belong in MILVUS_TOKEN, which is never printed; a URI is.
            return Err(refuse("credentials go in MILVUS_TOKEN, not in the URI"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("a path, query or fragment is not used by gRPC"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| refuse("no host"))?
            .to_string();
        // `Url::port` is None for the scheme's default port. https without a port means 443
        // (managed services listen there); plain Milvus has no usual port 80, so an http URI
        // must say its port (a written `:80` is the only way `Url` reports none for it).
        let port = match (url.port(), tls) {
            (Some(port), _) => port,
            (None, true) => 443,
            (None, false) if raw.trim_end_matches('/').ends_with(":80") => 80,
            (None, false) => return Err(refuse("no port")),
        };
        Ok(Self { tls, host, port })
    }
}

impl fmt::Display for MilvusUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// TLS options of the connection; used only with an `https://` URI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MilvusTls {
    /// PEM file of the CA(s) to trust instead of the system roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Name checked against the server's certificate instead of the URI's host.
    pub server_name: Option<String>,
    /// PEM certificate and key presented to the server (mutual TLS); both or neither.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// The TLS files' contents, read and checked.
#[derive(Clone)]
pub(crate) struct TlsMaterial {
    pub ca_pem: Option<Vec<u8>>,
    /// (certificate, key) PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

// The key is a secret: only say what is there.
impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity.is_some())
            .finish()
    }
}

impl MilvusTls {
    /// Reads and checks the files: each readable PEM, the client certificate and key
    /// together, and none of them without TLS. Errors name the variable to change.
    pub(crate) fn load(&self, tls: bool) -> Result<TlsMaterial, GatewayError> {
        if !tls {
            let given = [
                ("MILVUS_TLS_CA_FILE", self.ca_file.is_some()),
                ("MILVUS_TLS_SERVER_NAME", self.server_name.is_some()),
                (
                    "MILVUS_TLS_CLIENT_CERT_FILE",
                    self.client_cert_file.is_some(),
                ),
                ("MILVUS_TLS_CLIENT_KEY_FILE", self.client_key_file.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
                return Err(GatewayError::configuration(
                    *name,
                    "(set)",
                    "unset, or an https:// MILVUS_URI (TLS settings need a TLS connection)",
                ));
            }
        }
        if let Some(name) = &self.server_name {
            if name.trim().is_empty() || name.contains(['/', ' ', ':']) {
                return Err(GatewayError::configuration(
                    "MILVUS_TLS_SERVER_NAME",
                    name,
                    "a DNS name (or IP address) the server's certificate holds",
                ));
            }
        }
        let ca_pem = self
            .ca_file
            .as_deref()
            .map(|path| read_pem("MILVUS_TLS_CA_FILE", path, "CERTIFICATE"))
            .transpose()?;
        let identity = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some((
                read_pem("MILVUS_TLS_CLIENT_CERT_FILE", cert, "CERTIFICATE")?,
                read_pem("MILVUS_TLS_CLIENT_KEY_FILE", key, "PRIVATE KEY")?,
            )),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(GatewayError::configuration(
                    "MILVUS_TLS_CLIENT_CERT_FILE/MILVUS_TLS_CLIENT_KEY_FILE",
                    "(only one set)",
                    "both a client certificate and its key, or neither",
                ))
            }
        };
        Ok(TlsMaterial { ca_pem, identity })
    }
}

/// A PEM file holding a block of `kind` (e.g. `CERTIFICATE`, or `PRIVATE KEY` which also
/// matches `RSA PRIVATE KEY`/`EC PRIVATE KEY`). The key's contents never reach an error.
fn read_pem(variable: &str, path: &Path, kind: &str) -> Result<Vec<u8>, GatewayError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        GatewayError::configuration(variable, &shown, format!("a readable PEM file ({e})"))
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(kind));
    if !has_block {
        return Err(GatewayError::configuration(
            variable,
            &shown,
            format!("a PEM file holding a {kind} block"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_with_http_or_https_and_a_port_parse() {
        let uri = MilvusUri::parse("https://milvus.example.com:19530").unwrap();
        assert_eq!(
            uri,
            MilvusUri {
                tls: true,
                host: "milvus.example.com".into(),
                port: 19530
            }
        );
        assert_eq!(uri.to_string(), "https://milvus.example.com:19530");
        let uri = MilvusUri::parse(" http://127.0.0.1:19530/ ").unwrap();
        assert!(!uri.tls);
        assert_eq!(uri.to_string(), "http://127.0.0.1:19530");
        assert_eq!(MilvusUri::parse("https://h:443").unwrap().port, 443);
        assert_eq!(MilvusUri::parse("https://h").unwrap().port, 443);
        assert_eq!(MilvusUri::parse("http://h:80").unwrap().port, 80);
        assert_eq!(MilvusUri::parse("http://[::1]:1").unwrap().host, "[::1]");
    }

    #[test]
    fn bad_uris_are_configuration_errors_naming_milvus_uri() {
        for (raw, why) in [
            ("grpc://h:19530", "unknown scheme"),
            ("tcp://h:1", "unknown scheme"),
            ("h:19530", "unknown scheme"),
            ("http://h", "no port"),
            ("https://h:1/db", "path"),
            ("https://user:pw@h:1", "MILVUS_TOKEN"),
            ("", "MILVUS_URI"),
        ] {
            let err = MilvusUri::parse(raw).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, GatewayError::Configuration { variable, .. } if variable == "MILVUS_URI"),
                "{raw}: {err:?}"
            );
            assert!(text.contains(why), "{raw}: {text}");
        }
        let err = MilvusUri::parse("https://user:s3cret@h:1").unwrap_err();
        assert!(err.to_string().contains("MILVUS_TOKEN"));
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn tls_files_are_checked_before_any_connection() {
        let dir = std::env::temp_dir().join(format!("vg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = dir.join("notes.txt");
        std::fs::write(&not_pem, "hello").unwrap();

        let mut tls = MilvusTls {
            ca_file: Some(ca.clone()),
            ..MilvusTls::default()
        };
        assert!(tls.load(true).unwrap().ca_pem.is_some());
        let err = tls.load(false).unwrap_err().to_string();
        assert!(
            err.contains("MILVUS_TLS_CA_FILE") && err.contains("https://"),
            "{err}"
        );

        tls.ca_file = Some(dir.join("missing.pem"));
        let err = tls.load(true).unwrap_err();
        assert!(
            matches!(&err, GatewayError::Configuration { variable, .. } if variable == "MILVUS_TLS_CA_FILE"),
            "{err:?}"
        );
        tls.ca_file = Some(not_pem);
        assert!(tls.load(true).unwrap_err().to_string().contains("PEM"));

        let tls = MilvusTls {
            client_cert_file: Some(ca),
            ..MilvusTls::default()
        };
        let err = tls.load(true).unwrap_err().to_string();
        assert!(err.contains("MILVUS_TLS_CLIENT_KEY_FILE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
