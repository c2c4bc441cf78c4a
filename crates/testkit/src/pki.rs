//! A throwaway certificate authority for TLS tests: a CA, a server certificate (for
//! `localhost`/`127.0.0.1` unless other names are given) and a client certificate, written as
//! PEM files into a folder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files of one throwaway CA and the certificates it issued.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_pem: PathBuf,
    pub server_pem: PathBuf,
    pub server_key: PathBuf,
    pub client_pem: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates a CA named `name` and its certificates into `dir` (created if needed).
    pub fn generate(dir: &Path, name: &str) -> Self {
        Self::for_names(dir, name, &["localhost", "127.0.0.1"])
    }

    /// The same with a server certificate for `server_names` only (DNS names or IP
    /// addresses), e.g. to see a client refuse a name the certificate does not hold.
    pub fn for_names(dir: &Path, name: &str, server_names: &[&str]) -> Self {
        Self::build(dir, name, server_names, false)
    }

    /// [`Self::generate`] with a server certificate that expired in 2021 (valid 2020-2021,
    /// issued by a CA that is still valid), to see a client refuse it.
    pub fn expired(dir: &Path, name: &str) -> Self {
        Self::build(dir, name, &["localhost", "127.0.0.1"], true)
    }

    fn build(dir: &Path, name: &str, server_names: &[&str], expired_server: bool) -> Self {
        std::fs::create_dir_all(dir).expect("create the PKI folder");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let issue = |sans: Vec<String>,
                     common_name: &str,
                     usage: ExtendedKeyUsagePurpose,
                     expired: bool| {
            let mut params = CertificateParams::new(sans).unwrap();
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.extended_key_usages = vec![usage];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = issue(
            server_names.iter().map(|n| n.to_string()).collect(),
            server_names.first().copied().unwrap_or("server"),
            ExtendedKeyUsagePurpose::ServerAuth,
            expired_server,
        );
        let (client_cert, client_key) = issue(
            vec!["vectorgate-client".into()],
            "vectorgate-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            false,
        );
        // Mode 0600 for every file: PostgreSQL refuses a key that others can read.
        let write = |file: &str, text: &str| {
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write a PEM file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("restrict a PEM file");
            path
        };
        Self {
            ca_pem: write("ca.pem", &ca.pem()),
            server_pem: write("server.pem", &server_cert),
            server_key: write("server.key", &server_key),
            client_pem: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }
}
