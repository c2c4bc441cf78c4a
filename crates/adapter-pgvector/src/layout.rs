//! The table's layout: one table, or hash partitions by tenant beside a chunk-id registry.
//!
//! A partitioned table's unique indexes must contain the partition key, so its primary key
//! is `(chunk_id, tenant_id)` and cannot by itself keep a chunk id in one tenant. The
//! registry (`chunk_id` primary key, `tenant_id`) does: triggers on the table insert,
//! delete and update its rows in the same transaction as every write, whoever makes it
//! (the gateway's upserts and deletes, COPY, an operator's SQL), so a second tenant's row
//! for a stored chunk id fails on the registry's key. docs/pgvector-search.md has the
//! measurements behind the layout.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

use vectorgate_domain::GatewayError;

use crate::config::PgVectorConfig;
use crate::schema::{self, index_name, quote_ident};
use crate::store::PgVectorStore;

/// Hash partitions by tenant a new table gets when `PGVECTOR_PARTITIONS` is unset.
pub const DEFAULT_TENANT_PARTITIONS: u32 = 16;

/// How the embeddings table is laid out, as `health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableLayout {
    OneTable,
    /// `PARTITION BY HASH (tenant_id)` into this many partitions, with the registry.
    TenantHash {
        partitions: u32,
    },
    /// A partitioning vectorgate did not create (another key or strategy, or no registry):
    /// reported, and refused for writes.
    Other(String),
}

impl TableLayout {
    /// What a new table is created as.
    pub fn for_new_table(config: &PgVectorConfig) -> Self {
        Self::from_partitions(
            config
                .tenant_partitions
                .unwrap_or(DEFAULT_TENANT_PARTITIONS),
        )
    }

    /// What the settings ask an existing table to be; `None` when they do not say.
    pub fn wanted(config: &PgVectorConfig) -> Option<Self> {
        config.tenant_partitions.map(Self::from_partitions)
    }

    /// Why a table of this layout cannot be served with `config`: a layout vectorgate cannot
    /// write, or another than the one `PGVECTOR_PARTITIONS` names. `None` when it can.
    pub(crate) fn problem(&self, config: &PgVectorConfig) -> Option<String> {
        match (self, Self::wanted(config)) {
            (Self::Other(found), _) => Some(format!(
                "layout: {found}, which vectorgate cannot keep a chunk id unique in \
                 (it writes one table or its own hash partitions by tenant_id)"
            )),
            (found, Some(wanted)) if *found != wanted => Some(format!(
                "layout: expected {wanted}, found {found} (PGVECTOR_PARTITIONS; unset it to \
                 serve the table as it is)"
            )),
            _ => None,
        }
    }

    fn from_partitions(partitions: u32) -> Self {
        if partitions == 0 {
            Self::OneTable
        } else {
            Self::TenantHash { partitions }
        }
    }

    /// The layout the catalog describes: the partition key definition
    /// (`pg_get_partkeydef`), the number of partitions and whether the registry exists.
    pub(crate) fn from_catalog(
        partition_key: Option<&str>,
        partitions: u32,
        registry: bool,
    ) -> Self {
        match partition_key {
            None => Self::OneTable,
            Some("HASH (tenant_id)") if registry => Self::TenantHash { partitions },
            Some(key) if registry => {
                Self::Other(format!("partitioned by {key}, {partitions} partitions"))
            }
            Some(key) => Self::Other(format!(
                "partitioned by {key}, {partitions} partitions, without the chunk-id registry"
            )),
        }
    }
}

impl fmt::Display for TableLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OneTable => f.write_str("one table"),
            Self::TenantHash { partitions } => {
                write!(
                    f,
                    "partitioned by HASH (tenant_id), {partitions} partitions"
                )
            }
            Self::Other(text) => f.write_str(text),
        }
    }
}

/// Whether the table is partitioned, once known: 0 unknown, 1 one table, 2 partitioned.
#[derive(Debug, Default)]
pub(crate) struct KnownLayout(AtomicU8);

impl KnownLayout {
    pub fn get(&self) -> Option<bool> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    pub fn set(&self, partitioned: bool) {
        self.0
            .store(if partitioned { 2 } else { 1 }, Ordering::Release);
    }

    pub fn forget(&self) {
        self.0.store(0, Ordering::Release);
    }
}

impl PgVectorStore {
    /// Whether the table is partitioned by tenant, read from the catalog when not known. A
    /// missing table, one in a layout vectorgate cannot write, or one whose layout differs
    /// from the one `PGVECTOR_PARTITIONS` names is an error.
    pub(crate) async fn partitioned(&self, op: &'static str) -> Result<bool, GatewayError> {
        if let Some(known) = self.inner.layout.get() {
            return Ok(known);
        }
        let config = &self.inner.config;
        let mut conn = self.acquire(op).await?;
        let info = schema::inspect(&mut conn, &config.table)
            .await
            .map_err(self.err(op))?;
        if !info.exists {
            return Err(self.missing_table());
        }
        if info.layout.problem(config).is_some() {
            return Err(schema::mismatch_error(
                &config.table,
                &schema::mismatches(&info, config),
            ));
        }
        let partitioned = matches!(info.layout, TableLayout::TenantHash { .. });
        self.inner.layout.set(partitioned);
        Ok(partitioned)
    }

    /// Forgets the layout after a write found the table missing (42P01) or without the key
    /// its statement names (42P10): it was dropped or re-created meanwhile.
    pub(crate) fn forget_layout_on(&self, err: &sqlx::Error) {
        if let sqlx::Error::Database(db) = err {
            if matches!(db.code().as_deref(), Some("42P01") | Some("42P10")) {
                self.inner.layout.forget();
            }
        }
    }
}

const INSERT_TRIGGER: &str = "chunk_ids_insert";

/// The statements a bulk load of a partitioned table runs around its COPY: the registry is
/// filled by a COPY of its own from the same records instead of a trigger call a row (which
/// halved the load's rate), so the insert trigger is off meanwhile. Turning it off locks the
/// table against other writers until the load commits.
pub(crate) struct BulkRegistry {
    pub disable_trigger: String,
    pub copy_in: String,
    pub enable_trigger: String,
}

impl BulkRegistry {
    pub fn new(table: &str) -> Self {
        let t = quote_ident(table);
        let trigger = quote_ident(&index_name(table, INSERT_TRIGGER));
        Self {
            disable_trigger: format!("ALTER TABLE {t} DISABLE TRIGGER {trigger}"),
            copy_in: format!(
                "COPY {} (chunk_id, tenant_id) FROM STDIN WITH (FORMAT binary)",
                quote_ident(&registry_name(table))
            ),
            enable_trigger: format!("ALTER TABLE {t} ENABLE TRIGGER {trigger}"),
        }
    }
}

/// The registry's name, derived from the table's.
pub(crate) fn registry_name(table: &str) -> String {
    index_name(table, "chunk_ids")
}

/// The DDL of a new partitioned table: the parent, its partitions, the registry (an
/// orphan of a dropped table of the same name is replaced: its ids are stale) and the
/// trigger that keeps it.
pub(crate) fn create_partitioned_sql(config: &PgVectorConfig, partitions: u32) -> Vec<String> {
    let table = &config.table;
    let t = quote_ident(table);
    let registry = quote_ident(&registry_name(table));
    let function = quote_ident(&index_name(table, "chunk_ids_sync"));
    let mut ddl = vec![format!(
        "CREATE TABLE {t} (\
           chunk_id bigint NOT NULL, \
           tenant_id bigint NOT NULL, \
           project_id bigint NOT NULL, \
           embedding vector({dim}) NOT NULL, \
           updated_at timestamptz NOT NULL DEFAULT now(), \
           PRIMARY KEY (chunk_id, tenant_id)) PARTITION BY HASH (tenant_id)",
        dim = config.dimension.get()
    )];
    for remainder in 0..partitions {
        ddl.push(format!(
            "CREATE TABLE {} PARTITION OF {t} FOR VALUES WITH (MODULUS {partitions}, REMAINDER {remainder})",
            quote_ident(&index_name(table, &format!("p{remainder}")))
        ));
    }
    ddl.push(format!("DROP TABLE IF EXISTS {registry}"));
    ddl.push(format!(
        "CREATE TABLE {registry} (chunk_id bigint PRIMARY KEY, tenant_id bigint NOT NULL)"
    ));
    // An upsert that names a stored chunk id under another tenant inserts a new row (its
    // conflict target includes the tenant), and this trigger's insert then fails on the
    // registry's key: the statement, and the batch, are rolled back. A row moved between
    // partitions by an UPDATE fires DELETE and INSERT, so only an update within one
    // partition needs the UPDATE branch. The function keeps the creator's search_path, so
    // it finds the registry beside the table whatever the writer's.
    ddl.push(format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
         SET search_path FROM CURRENT AS $$
         BEGIN
           IF TG_OP = 'INSERT' THEN
             -- A write that moves chunks claimed their registry rows first.
             IF NOT EXISTS (SELECT 1 FROM {registry}
                            WHERE chunk_id = NEW.chunk_id AND tenant_id = NEW.tenant_id) THEN
               INSERT INTO {registry} (chunk_id, tenant_id) VALUES (NEW.chunk_id, NEW.tenant_id);
             END IF;
           ELSIF TG_OP = 'DELETE' THEN
             DELETE FROM {registry} WHERE chunk_id = OLD.chunk_id AND tenant_id = OLD.tenant_id;
           ELSE
             UPDATE {registry} SET chunk_id = NEW.chunk_id, tenant_id = NEW.tenant_id
             WHERE chunk_id = OLD.chunk_id;
           END IF;
           RETURN NULL;
         END $$"
    ));
    for (suffix, event, condition) in [
        (INSERT_TRIGGER, "INSERT", ""),
        ("chunk_ids_delete", "DELETE", ""),
        (
            "chunk_ids_update",
            "UPDATE",
            " WHEN (OLD.chunk_id <> NEW.chunk_id OR OLD.tenant_id <> NEW.tenant_id)",
        ),
    ] {
        ddl.push(format!(
            "CREATE TRIGGER {} AFTER {event} ON {t} FOR EACH ROW{condition} \
             EXECUTE FUNCTION {function}()",
            quote_ident(&index_name(table, suffix))
        ));
    }
    ddl
}

/// A chunk id's tenant changed while a write to a partitioned table ran (another writer
/// moved or deleted it between the write and the check): the write is run again.
#[derive(Debug)]
pub(crate) struct TenantRace;

impl fmt::Display for TenantRace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a chunk id's tenant changed while this write ran")
    }
}

impl std::error::Error for TenantRace {}

/// Whether a database error is the registry refusing a chunk id stored under another
/// tenant.
pub(crate) fn is_registry_conflict(err: &sqlx::Error, table: &str) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505")
            && db.table() == Some(registry_name(table).as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_names_the_layouts_it_serves_and_the_ones_it_does_not() {
        assert_eq!(
            TableLayout::from_catalog(None, 0, false),
            TableLayout::OneTable
        );
        assert_eq!(
            TableLayout::from_catalog(Some("HASH (tenant_id)"), 16, true),
            TableLayout::TenantHash { partitions: 16 }
        );
        assert_eq!(
            TableLayout::from_catalog(Some("LIST (tenant_id)"), 4, false).to_string(),
            "partitioned by LIST (tenant_id), 4 partitions, without the chunk-id registry"
        );
    }
}
