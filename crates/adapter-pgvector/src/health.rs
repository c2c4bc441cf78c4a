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
        let mut warnings = Vec::new();
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
                    warnings.extend(
                        ext_version
                            .as_deref()
                            .and_then(|v| hnsw_version_warning(v, &index.access_method)),
                    );
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
            warnings,
        })
    }
}

/// The first pgvector release without the HNSW races below.
const HNSW_FIXED: (u32, u32, u32) = (0, 8, 4);

/// Why an HNSW index on this pgvector version is at risk, if it is: before 0.8.3 VACUUM
/// can corrupt an HNSW index that takes concurrent inserts, and before 0.8.4 it can fail
/// on one. The local test server runs 0.8.2, and a backend crashed (signal 11) under the
/// project's stress test of concurrent writes and deletes.
pub(crate) fn hnsw_version_warning(version: &str, access_method: &str) -> Option<String> {
    if access_method != "hnsw" {
        return None;
    }
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let parsed = (
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    );
    (parsed < HNSW_FIXED).then(|| {
        format!(
            "pgvector {version} has HNSW bugs under concurrent writes and VACUUM (index \
             corruption fixed in 0.8.3, vacuum failures in 0.8.4); upgrade the extension to \
             0.8.4 or later"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hnsw_indexes_on_pgvector_before_0_8_4_are_warned_about() {
        let warned = |v: &str, method: &str| hnsw_version_warning(v, method).is_some();
        assert!(warned("0.8.2", "hnsw"));
        assert!(warned("0.7.4", "hnsw"));
        assert!(warned("0.8", "hnsw"));
        assert!(!warned("0.8.4", "hnsw"));
        assert!(!warned("0.8.5", "hnsw"));
        assert!(!warned("0.9.0", "hnsw"));
        assert!(!warned("0.8.2", "ivfflat"), "the races are HNSW's");
        assert!(
            !warned("dev", "hnsw"),
            "an unparsable version is not guessed at"
        );
        let text = hnsw_version_warning("0.8.2", "hnsw").unwrap();
        assert!(text.contains("0.8.2") && text.contains("0.8.4"), "{text}");
    }
}
