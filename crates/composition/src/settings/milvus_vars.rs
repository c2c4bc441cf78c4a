//! The Milvus variables (connection, TLS, credentials, collection, index, partitions),
//! declared like the rest in `table.rs`, which lists them all in the README's order.

use std::time::Duration;

use secrecy::SecretString;
use vectorgate_adapter_milvus::{Consistency, MilvusUri, PartitionKey};

use super::kind::Kind;
use super::table::{
    any_text, collection_name, file_path, host_name, milvus_token, path_text, MILLIS,
};
use super::var::{DefaultDoc, Var};

pub static MILVUS_URI: Var<MilvusUri> = Var::new(
    "MILVUS_URI",
    Kind::Parsed {
        accepted: MilvusUri::ACCEPTED,
    },
    "Milvus server; https:// connects with TLS",
    |s| Some(s.milvus.uri()),
    |s, v| s.milvus.set_uri(v),
)
.conflicts(&["MILVUS_HOST", "MILVUS_PORT"]);

pub static MILVUS_HOST: Var<String> = Var::new(
    "MILVUS_HOST",
    Kind::Text {
        accepted: "a host name or IP address without scheme or port (set MILVUS_PORT)",
        check: host_name,
    },
    "Milvus host (plain-text shorthand of MILVUS_URI)",
    |s| Some(s.milvus.host.clone()),
    |s, v| s.milvus.host = v,
);

pub static MILVUS_PORT: Var<u16> = Var::new(
    "MILVUS_PORT",
    Kind::int(1, 65_535),
    "Milvus gRPC port (shorthand of MILVUS_URI)",
    |s| Some(s.milvus.port),
    |s, v| s.milvus.port = v,
);

pub static MILVUS_TLS_CA_FILE: Var<String> = Var::new(
    "MILVUS_TLS_CA_FILE",
    Kind::Text {
        accepted: "path of a PEM file of the CA(s) to trust (https:// only)",
        check: file_path,
    },
    "private CA of the server's certificate, trusted instead of the system roots",
    |s| path_text(&s.milvus.tls.ca_file),
    |s, v| s.milvus.tls.ca_file = Some(v.into()),
)
.default_doc(DefaultDoc::Text("(system roots)"));

pub static MILVUS_TLS_SERVER_NAME: Var<String> = Var::new(
    "MILVUS_TLS_SERVER_NAME",
    Kind::Text {
        accepted: "a DNS name or IP address the server's certificate holds (https:// only)",
        check: host_name,
    },
    "name checked against the server's certificate",
    |s| s.milvus.tls.server_name.clone(),
    |s, v| s.milvus.tls.server_name = Some(v),
)
.default_doc(DefaultDoc::Text("(the URI's host)"));

pub static MILVUS_TLS_CLIENT_CERT_FILE: Var<String> = Var::new(
    "MILVUS_TLS_CLIENT_CERT_FILE",
    Kind::Text {
        accepted: "path of a PEM certificate (with MILVUS_TLS_CLIENT_KEY_FILE; https:// only)",
        check: file_path,
    },
    "client certificate for mutual TLS",
    |s| path_text(&s.milvus.tls.client_cert_file),
    |s, v| s.milvus.tls.client_cert_file = Some(v.into()),
);

pub static MILVUS_TLS_CLIENT_KEY_FILE: Var<String> = Var::new(
    "MILVUS_TLS_CLIENT_KEY_FILE",
    Kind::Text {
        accepted: "path of the PEM private key of MILVUS_TLS_CLIENT_CERT_FILE",
        check: file_path,
    },
    "client key for mutual TLS",
    |s| path_text(&s.milvus.tls.client_key_file),
    |s, v| s.milvus.tls.client_key_file = Some(v.into()),
);

pub static MILVUS_USERNAME: Var<String> = Var::new(
    "MILVUS_USERNAME",
    Kind::Text {
        accepted: "a user name",
        check: any_text,
    },
    "Milvus user",
    |s| s.milvus.username.clone(),
    |s, v| s.milvus.username = Some(v),
);

pub static MILVUS_PASSWORD: Var<SecretString> = Var::new(
    "MILVUS_PASSWORD",
    Kind::Text {
        accepted: "a password",
        check: any_text,
    },
    "Milvus password",
    |s| s.milvus.password.clone(),
    |s, v| s.milvus.password = Some(v),
)
.secret();

pub static MILVUS_TOKEN: Var<SecretString> = Var::new(
    "MILVUS_TOKEN",
    Kind::Text {
        accepted: "one line: an API key (as Zilliz Cloud issues them) or user:password",
        check: milvus_token,
    },
    "Milvus token",
    |s| s.milvus.token.clone(),
    |s, v| s.milvus.token = Some(v),
)
.secret();

pub static MILVUS_DATABASE: Var<String> = Var::new(
    "MILVUS_DATABASE",
    Kind::Text {
        accepted: "a database name",
        check: any_text,
    },
    "Milvus database",
    |s| s.milvus.database.clone(),
    |s, v| s.milvus.database = Some(v),
)
.default_doc(DefaultDoc::Text("(server default)"));

pub static MILVUS_COLLECTION: Var<String> = Var::new(
    "MILVUS_COLLECTION",
    Kind::Text {
        accepted: vectorgate_adapter_milvus::COLLECTION_ACCEPTED,
        check: collection_name,
    },
    "collection holding the embeddings",
    |s| Some(s.milvus.collection.clone()),
    |s, v| s.milvus.collection = v,
);

pub static MILVUS_INDEX_NLIST: Var<u32> = Var::new(
    "MILVUS_INDEX_NLIST",
    Kind::int(1, vectorgate_adapter_milvus::MAX_NLIST as u64),
    "IVF_FLAT lists",
    |s| s.milvus.index_nlist,
    |s, v| s.milvus.index_nlist = Some(v),
)
.default_doc(DefaultDoc::Text("4*sqrt(MILVUS_EXPECTED_ROWS)"));

pub static MILVUS_SEARCH_NPROBE: Var<u32> = Var::new(
    "MILVUS_SEARCH_NPROBE",
    Kind::int(1, vectorgate_adapter_milvus::MAX_NLIST as u64),
    "lists probed per search",
    |s| s.milvus.search_nprobe,
    |s, v| s.milvus.search_nprobe = Some(v),
)
.note("and <= MILVUS_INDEX_NLIST")
.default_doc(DefaultDoc::Text(
    "enough lists to compare ~16,384 vectors (16 to nlist)",
));

pub static MILVUS_EXPECTED_ROWS: Var<u64> = Var::new(
    "MILVUS_EXPECTED_ROWS",
    Kind::int(1, i64::MAX as u64),
    "expected collection size (derives nlist)",
    |s| Some(s.milvus.expected_rows),
    |s, v| s.milvus.expected_rows = v,
);

pub static MILVUS_CONSISTENCY: Var<Consistency> = Var::new(
    "MILVUS_CONSISTENCY",
    Kind::Choice {
        accepted: Consistency::ACCEPTED,
    },
    "read consistency level",
    |s| Some(s.milvus.consistency),
    |s, v| s.milvus.consistency = v,
);

pub static MILVUS_CONNECT_TIMEOUT_MS: Var<Duration> = Var::new(
    "MILVUS_CONNECT_TIMEOUT_MS",
    MILLIS,
    "connect timeout",
    |s| Some(s.milvus.connect_timeout),
    |s, v| s.milvus.connect_timeout = v,
);

pub static MILVUS_CALL_TIMEOUT_MS: Var<Duration> = Var::new(
    "MILVUS_CALL_TIMEOUT_MS",
    MILLIS,
    "per-call deadline",
    |s| Some(s.milvus.call_timeout),
    |s, v| s.milvus.call_timeout = v,
);

pub static MILVUS_UPSERT_CONCURRENCY: Var<usize> = Var::new(
    "MILVUS_UPSERT_CONCURRENCY",
    Kind::int(1, 64),
    "upsert batches of one call in flight",
    |s| Some(s.milvus.upsert_concurrency),
    |s, v| s.milvus.upsert_concurrency = v,
);

pub static MILVUS_PARTITION_KEY: Var<PartitionKey> = Var::new(
    "MILVUS_PARTITION_KEY",
    Kind::Choice {
        accepted: PartitionKey::ACCEPTED,
    },
    "partition key of a new collection (tenant: a search reads only its tenant's \
     partition, checked by a probe when the collection is created; refused on Milvus before \
     2.4, whose upsert misroutes keyed rows); when set, an existing collection with another \
     layout is refused",
    |s| s.milvus.partition_key,
    |s, v| s.milvus.partition_key = Some(v),
)
.default_doc(DefaultDoc::Text(
    "a new collection: tenant on Milvus 2.4 and later, none before; an existing one keeps \
     its layout",
));

pub static MILVUS_NUM_PARTITIONS: Var<u32> = Var::new(
    "MILVUS_NUM_PARTITIONS",
    Kind::int(1, vectorgate_adapter_milvus::MAX_NUM_PARTITIONS as u64),
    "partitions the tenants are hashed into (partition key tenant only)",
    |s| Some(s.milvus.num_partitions),
    |s, v| s.milvus.num_partitions = v,
);
