//! Throwaway certificates for tests of TLS connections: a CA of the test's own and a
//! server certificate it signs, written as PEM files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The PEM files of one throwaway CA and the server certificate it issued.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate: what a client trusts (`sslrootcert=`).
    pub ca: PathBuf,
    /// The server certificate (`ssl_cert_file`).
    pub cert: PathBuf,
    /// The server's private key, mode 0600 (`ssl_key_file`; PostgreSQL refuses a key
    /// others can read).
    pub key: PathBuf,
}

/// Generates a CA named `ca_name` and a server certificate for `server_names` (DNS names
/// or IP addresses, as subject alternative names) into `dir`.
pub fn throwaway_ca(dir: &Path, ca_name: &str, server_names: &[&str]) -> TlsFiles {
    fs::create_dir_all(dir).expect("create the certificate directory");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let names: Vec<String> = server_names.iter().map(|n| n.to_string()).collect();
    let mut server_params = CertificateParams::new(names).unwrap();
    server_params.distinguished_name.push(
        DnType::CommonName,
        server_names.first().copied().unwrap_or("server"),
    );
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    fs::write(&files.ca, ca_cert.pem()).unwrap();
    fs::write(&files.cert, server_cert.pem()).unwrap();
    fs::write(&files.key, server_key.serialize_pem()).unwrap();
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600)).unwrap();
    files
}
