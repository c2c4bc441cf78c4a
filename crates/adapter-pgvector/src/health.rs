//! `health()`: versions, the table's shape against the settings, its index and size.

use std::collections::BTreeMap;

use vectorgate_domain::{CollectionStatus, GatewayError, ScanFilter, StoreHealth, StoreKind};

use crate::schema;
use crate::store::PgVectorStore;

impl PgVectorStore {
    pub(crate) async fn inspect_health(&self) -> Result<StoreHealth, GatewayError> {
        let op = "health";
        let config = &self.inner.config;
        let mut conn = self.acquire(op).await?;
        let (pg_version, ext_version): (String, Option<String>) = sqlx::query_as(
            "SELECT current_setting('server_version'), \
                    (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(self.err(op))?;
        let server_version = Some(match &ext_version {
            Some(v) => format!("PostgreSQL {pg_version}, pgvector {v}"),
            None => format!("PostgreSQL {pg_version}, pgvector not installed"),
        });
        let info = schema::inspect(&mut conn, &config.table)
            .await
            .map_err(self.err(op))?;
        let mut problems = Vec::new();
        if ext_version.is_none() {
            problems.push("the vector extension is not installed".to_string());
        }
        let mut collection = CollectionStatus {
            name: config.table.clone(),
            exists: info.exists,
            ..CollectionStatus::default()
        };
        if !info.exists {
            problems.push(format!(
                "table {} does not exist ({})",
                config.table,
                schema::CREATE_ADVICE
            ));
        } else {
            problems.extend(schema::mismatches(&info, config));
            collection.layout = Some(info.layout.to_string());
            collection.dimension = info.dimension();
            collection.metric = info.metric();
            match info.vector_indexes.first() {
                Some(index) => {
                    collection.index_type = Some(index.access_method.clone());
                    let mut params: BTreeMap<String, String> =
                        index.options.iter().cloned().collect();
                    params.insert("opclass".into(), index.opclass.clone());
                    params.insert("index_name".into(), index.name.clone());
                    collection.index_params = params;
                }
                None => {
                    problems.push("no vector index: every search scans the whole table".to_string())
                }
            }
            // The planner's estimate, summed over the partitions of a partitioned table
            // (whose parent has none). A relation never analysed has -1: an empty
            // partition stays so (autovacuum skips it), so it counts as empty, and only a
            // table none of whose parts was analysed has no estimate.
            let reltuples: f32 = sqlx::query_scalar(
                "SELECT CASE WHEN bool_or(c.reltuples >= 0) \
                        THEN sum(greatest(c.reltuples, 0)) ELSE -1 END \
                 FROM pg_class p JOIN pg_class c ON c.oid = p.oid AND p.relkind = 'r' \
                   OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = p.oid) \
                 WHERE p.relname = $1 AND p.relnamespace = current_schema()::regnamespace",
            )
            .bind(&config.table)
            .fetch_one(&mut *conn)
            .await
            .map_err(self.err(op))?;
            if reltuples >= 0.0 {
                collection.row_count = Some(reltuples.round() as u64);
                collection.row_count_estimated = true;
            } else {
                // Never analysed: no estimate exists yet, so count (such a table is new
                // and small, or autovacuum would have analysed it).
                drop(conn);
                collection.row_count = Some(self.count(ScanFilter::all()).await?);
                collection.row_count_estimated = false;
            }
        }
        Ok(StoreHealth {
            store: StoreKind::Pgvector,
            reachable: true,
            server_version,
            collection: Some(collection),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }
}
