//! The lazily made connection: nothing touches the network until the first call, then one
//! gRPC client (milvus-sdk-rust's generated `MilvusService` client) is shared by every call
//! (tonic multiplexes them over one channel), sending the credential and database headers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use milvus::proto::milvus::milvus_service_client::MilvusServiceClient;
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use vectorgate_domain::GatewayError;

use super::error::{error_chain, tls_hint};
use super::STORE;
use crate::config::MilvusConfig;

type ConnectFuture<T> = Pin<Box<dyn Future<Output = Result<T, GatewayError>> + Send>>;
type Connector<T> = Box<dyn Fn() -> ConnectFuture<T> + Send + Sync>;

/// A connection made on first use and then shared. Concurrent first uses wait for one
/// attempt; a failed attempt is not cached, so the next call tries again.
pub struct LazyConnection<T> {
    cell: OnceCell<T>,
    connector: Connector<T>,
    attempts: AtomicUsize,
}

impl<T> fmt::Debug for LazyConnection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyConnection")
            .field("connected", &self.cell.initialized())
            .field("attempts", &self.attempts.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T: Send + Sync> LazyConnection<T> {
    pub fn new<F, Fut>(connector: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, GatewayError>> + Send + 'static,
    {
        Self {
            cell: OnceCell::new(),
            connector: Box::new(move || Box::pin(connector())),
            attempts: AtomicUsize::new(0),
        }
    }

    /// The connection, connecting first if needed.
    pub async fn get(&self) -> Result<&T, GatewayError> {
        self.cell
            .get_or_try_init(|| {
                self.attempts.fetch_add(1, Ordering::Relaxed);
                (self.connector)()
            })
            .await
    }

    /// Whether a connection was made (the tests' view: construction must do no I/O).
    #[cfg(test)]
    pub fn is_connected(&self) -> bool {
        self.cell.initialized()
    }

    /// How many connection attempts were made (the tests' view; `Debug` shows it too).
    #[cfg(test)]
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::Relaxed)
    }
}

/// The gRPC client, connected lazily: nothing touches the network until the first call,
/// then one connection is made and shared (tonic multiplexes calls over it).
#[derive(Debug)]
pub struct LazyClient {
    endpoint: String,
    connection: LazyConnection<MilvusClient>,
}

/// The generated gRPC client, with the headers every call carries.
pub(super) type MilvusClient = MilvusServiceClient<InterceptedService<Channel, Headers>>;

impl LazyClient {
    pub fn new(config: &MilvusConfig) -> Self {
        let config = config.clone();
        Self {
            endpoint: config.endpoint(),
            connection: LazyConnection::new(move || {
                let config = config.clone();
                async move { connect(&config).await }
            }),
        }
    }

    /// The connected client (connecting on first use); only `SdkMilvusApi` calls it.
    pub(super) async fn client(&self) -> Result<MilvusClient, GatewayError> {
        self.connection.get().await.cloned()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    #[cfg(test)]
    pub fn is_connected(&self) -> bool {
        self.connection.is_connected()
    }
}

/// Connects at once (the TLS handshake included), so that an unreachable or misconfigured
/// server shows on the first call with its cause.
async fn connect(config: &MilvusConfig) -> Result<MilvusClient, GatewayError> {
    let uri = config.endpoint();
    let headers = Headers::new(config)?;
    let endpoint = endpoint(config)?
        .timeout(config.call_timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let channel = match tokio::time::timeout(config.connect_timeout, endpoint.connect()).await {
        Err(_) => {
            return Err(GatewayError::unavailable(
                STORE,
                format!(
                    "cannot reach {uri}: no connection within {:?}",
                    config.connect_timeout
                ),
            ))
        }
        Ok(Err(err)) => {
            let cause = error_chain(&err);
            return Err(GatewayError::unavailable(
                STORE,
                format!("cannot reach {uri}: {cause}{}", tls_hint(&uri, &cause)),
            )
            .with_source(err));
        }
        Ok(Ok(channel)) => channel,
    };
    tracing::info!(endpoint = %uri, "connected to Milvus");
    Ok(MilvusServiceClient::with_interceptor(channel, headers))
}

/// What every call carries: the credential as `authorization` (base64, as Milvus and its
/// SDKs expect it), and the database as `dbname`. The credential is marked sensitive (never
/// logged by tonic).
#[derive(Clone)]
pub(super) struct Headers {
    authorization: Option<MetadataValue<Ascii>>,
    database: Option<MetadataValue<Ascii>>,
}

impl Headers {
    fn new(config: &MilvusConfig) -> Result<Self, GatewayError> {
        let authorization = match credential(config)? {
            Some(credential) => {
                let token = base64::engine::general_purpose::STANDARD.encode(credential);
                let mut value = MetadataValue::try_from(token).map_err(|_| {
                    GatewayError::configuration("MILVUS_TOKEN", "<redacted>", "ASCII credentials")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let database = match &config.database {
            Some(name) => Some(MetadataValue::try_from(name.as_str()).map_err(|_| {
                GatewayError::configuration("MILVUS_DATABASE", name, "an ASCII database name")
            })?),
            None => None,
        };
        Ok(Self {
            authorization,
            database,
        })
    }
}

impl Interceptor for Headers {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        if let Some(value) = &self.database {
            request.metadata_mut().insert("dbname", value.clone());
        }
        Ok(request)
    }
}

/// The gRPC endpoint the SDK's client connects through: plain for `http://`; for
/// `https://` TLS with the system roots, or only the CA of `MILVUS_TLS_CA_FILE`, the name
/// checked overridden by `MILVUS_TLS_SERVER_NAME`, and a client identity for mutual TLS.
fn endpoint(config: &MilvusConfig) -> Result<Endpoint, GatewayError> {
    let uri = config.uri();
    let endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(|e| GatewayError::configuration("MILVUS_URI", uri.to_string(), error_chain(&e)))?
        .connect_timeout(config.connect_timeout);
    if !uri.tls {
        return Ok(endpoint);
    }
    let material = config.tls.load(true)?;
    let mut tls = ClientTlsConfig::new();
    tls = match material.ca_pem {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls.with_native_roots(),
    };
    if let Some(name) = &config.tls.server_name {
        tls = tls.domain_name(name.clone());
    }
    if let Some((cert, key)) = material.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    endpoint.tls_config(tls).map_err(|e| {
        GatewayError::configuration(
            "MILVUS_TLS_CA_FILE/MILVUS_TLS_CLIENT_CERT_FILE/MILVUS_TLS_CLIENT_KEY_FILE",
            "(set)",
            format!("PEM files rustls accepts ({})", error_chain(&e)),
        )
    })
}

/// The credential Milvus authenticates: `MILVUS_TOKEN` as given (an API key, as Zilliz
/// Cloud issues them, or `user:password`), else `MILVUS_USERNAME:MILVUS_PASSWORD`.
fn credential(config: &MilvusConfig) -> Result<Option<String>, GatewayError> {
    if let Some(token) = &config.token {
        return Ok(Some(token.expose_secret().to_string()));
    }
    match (&config.username, &config.password) {
        (Some(user), Some(password)) => Ok(Some(format!("{user}:{}", password.expose_secret()))),
        (None, None) => Ok(None),
        _ => Err(GatewayError::configuration(
            "MILVUS_USERNAME/MILVUS_PASSWORD",
            "<only one set>",
            "both a username and a password, or neither",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use vectorgate_domain::Dimension;

    use super::*;

    #[tokio::test]
    async fn lazy_connection_connects_once_for_many_concurrent_callers() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = connects.clone();
        let lazy = Arc::new(LazyConnection::new(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, GatewayError>(42u32)
            }
        }));
        assert!(!lazy.is_connected(), "nothing connects before first use");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let lazy = lazy.clone();
                tokio::spawn(async move { *lazy.get().await.unwrap() })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 42);
        }
        assert_eq!(*lazy.get().await.unwrap(), 42);
        assert_eq!(connects.load(Ordering::SeqCst), 1);
        assert_eq!(lazy.attempts(), 1);
    }

    #[tokio::test]
    async fn lazy_connection_retries_after_a_failed_attempt() {
        let connects = Arc::new(AtomicUsize::new(0));
        let counter = connects.clone();
        let lazy = LazyConnection::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(GatewayError::unavailable(
                        STORE,
                        "cannot reach h:1: refused",
                    ))
                } else {
                    Ok(7u8)
                }
            }
        });
        assert!(lazy.get().await.unwrap_err().is_unavailable());
        assert_eq!(*lazy.get().await.unwrap(), 7);
        assert_eq!(*lazy.get().await.unwrap(), 7);
        assert_eq!(connects.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn https_endpoints_carry_the_tls_files() {
        let dir = std::env::temp_dir().join(format!("vg-endpoint-{}", std::process::id()));
        let pki = vectorgate_testkit::TestPki::generate(&dir, "endpoint");
        let mut config = MilvusConfig::new("127.0.0.1", 1, Dimension::new(4).unwrap());
        assert!(endpoint(&config).is_ok(), "plain text needs no TLS files");
        config.use_tls = true;
        config.tls.ca_file = Some(pki.ca_pem.clone());
        config.tls.server_name = Some("localhost".into());
        config.tls.client_cert_file = Some(pki.client_pem.clone());
        config.tls.client_key_file = Some(pki.client_key.clone());
        let built = endpoint(&config).unwrap();
        assert!(built.uri().to_string().starts_with("https://127.0.0.1:1"));
        std::fs::remove_dir_all(&dir).ok();
    }

    fn sent_credential(config: &MilvusConfig) -> Option<String> {
        let request = Headers::new(config)
            .unwrap()
            .call(tonic::Request::new(()))
            .unwrap();
        request.metadata().get("authorization").map(|value| {
            assert!(value.is_sensitive(), "tonic must never log the credential");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.to_str().unwrap())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
    }

    #[test]
    fn tokens_are_sent_as_given_api_keys_included() {
        let mut config = MilvusConfig::new("h", 1, Dimension::new(4).unwrap());
        assert_eq!(sent_credential(&config), None);
        config.token = Some("root:Milvus".to_string().into());
        assert_eq!(sent_credential(&config).as_deref(), Some("root:Milvus"));
        // An API key (Zilliz Cloud) has no colon; Milvus and pymilvus send it as is.
        config.token = Some("db-1f3c9a8e0b7d4c26".to_string().into());
        assert_eq!(
            sent_credential(&config).as_deref(),
            Some("db-1f3c9a8e0b7d4c26")
        );
        config.token = None;
        config.username = Some("u".into());
        config.password = Some("p:w".to_string().into());
        assert_eq!(sent_credential(&config).as_deref(), Some("u:p:w"));
        config.password = None;
        let Err(err) = Headers::new(&config) else {
            panic!("a username without a password is refused")
        };
        assert!(err.to_string().contains("MILVUS_USERNAME"), "{err}");
    }
}
