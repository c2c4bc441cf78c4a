//! Bulk load: rows streamed with `COPY ... FORMAT binary` in one transaction, the vector
//! index optionally dropped first and rebuilt after.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use vectorgate_domain::{validate_records, GatewayError, VectorRecord};

use crate::bootstrap::execute_ddl;
use crate::copy;
use crate::layout::BulkRegistry;
use crate::schema;
use crate::store::PgVectorStore;

/// Size of one CopyData message: large enough to amortise the per-message cost, small
/// enough to keep memory flat whatever the number of rows.
const COPY_CHUNK_BYTES: usize = 4 << 20;

/// What `bulk_load_timed` did and how long each part took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkLoadReport {
    pub rows: u64,
    /// Streaming the rows with COPY (including dropping the vector index first when it is
    /// rebuilt afterwards).
    pub load: Duration,
    /// Building the vector index after the load, when asked for.
    pub index_build: Option<Duration>,
}

impl PgVectorStore {
    /// Streams the records with `COPY ... FORMAT binary` in one transaction (all or
    /// nothing). With `build_index_after`, the table's vector index is dropped first and
    /// rebuilt after the load, which is far faster than maintaining it row by row; readers
    /// of the table wait until the transaction commits. A chunk id that already exists
    /// fails the whole load (COPY does not upsert; use `upsert_vectors` for that). In a table
    /// partitioned by tenant, other writers wait until the load commits.
    pub async fn bulk_load(
        &self,
        records: &[VectorRecord],
        build_index_after: bool,
    ) -> Result<u64, GatewayError> {
        Ok(self.bulk_load_timed(records, build_index_after).await?.rows)
    }

    /// `bulk_load`, also reporting how long the load and the index build took.
    pub async fn bulk_load_timed(
        &self,
        records: &[VectorRecord],
        build_index_after: bool,
    ) -> Result<BulkLoadReport, GatewayError> {
        let config = &self.inner.config;
        validate_records(records, config.dimension, config.metric)?;
        if records.is_empty() {
            return Ok(BulkLoadReport {
                rows: 0,
                load: Duration::ZERO,
                index_build: None,
            });
        }
        let op = "bulk_load";
        let partitioned = self.partitioned(op).await?;
        let started = Instant::now();
        let mut conn = self.acquire(op).await?;
        let mut tx = conn.begin().await.map_err(self.err_long(op))?;
        self.extend_deadline(&mut tx, op).await?;
        let mut rebuild = Vec::new();
        if build_index_after {
            let info = schema::inspect(&mut tx, &config.table)
                .await
                .map_err(self.err_long(op))?;
            if !info.exists {
                return Err(self.missing_table());
            }
            for index in &info.vector_indexes {
                let drop = format!("DROP INDEX {}", schema::quote_ident(&index.name));
                execute_ddl(&mut tx, &drop)
                    .await
                    .map_err(self.err_long(op))?;
                // The server's own definition rebuilds exactly what was there; a partitioned
                // table's reads `ON ONLY`, which would leave its partitions without one.
                rebuild.push(index.definition.replacen(" ON ONLY ", " ON ", 1));
            }
            if rebuild.is_empty() {
                rebuild.push(schema::create_vector_index_sql(config));
            }
        }
        let registry = partitioned.then(|| BulkRegistry::new(&config.table));
        if let Some(registry) = &registry {
            execute_ddl(&mut tx, &registry.disable_trigger)
                .await
                .map_err(self.err_long(op))?;
        }
        let rows = self
            .copy_records(&mut tx, &self.inner.sql.copy_in, records, copy::row)
            .await?;
        if let Some(registry) = &registry {
            // A chunk id another tenant holds fails here, on the registry's key, and the
            // whole load with it.
            self.copy_records(&mut tx, &registry.copy_in, records, copy::registry_row)
                .await?;
            execute_ddl(&mut tx, &registry.enable_trigger)
                .await
                .map_err(self.err_long(op))?;
        }
        let load = started.elapsed();
        let mut index_build = None;
        if build_index_after {
            let build_started = Instant::now();
            // The build covers the whole table, not only this load.
            let table_rows: i64 = sqlx::query_scalar(&self.inner.sql.count_all)
                .fetch_one(&mut *tx)
                .await
                .map_err(self.map_table_error(op))?;
            let memory_mb = config.index_build_memory_mb_for(table_rows.max(0) as u64);
            // Only an integer computed from the validated settings goes into this SET:
            // SET cannot take bind parameters.
            let memory = format!("SET LOCAL maintenance_work_mem = '{memory_mb}MB'");
            execute_ddl(&mut tx, &memory)
                .await
                .map_err(self.err_long(op))?;
            tracing::info!(
                table_rows,
                maintenance_work_mem_mb = memory_mb,
                "building the vector index"
            );
            for definition in &rebuild {
                execute_ddl(&mut tx, definition)
                    .await
                    .map_err(self.err_long(op))?;
            }
            index_build = Some(build_started.elapsed());
        }
        tx.commit().await.map_err(self.err_long(op))?;
        tracing::debug!(rows, ?load, ?index_build, "bulk load done");
        Ok(BulkLoadReport {
            rows,
            load,
            index_build,
        })
    }
}

impl PgVectorStore {
    /// Streams `records`, each encoded by `encode`, into `COPY ... FROM STDIN` `statement`;
    /// the rows copied.
    async fn copy_records(
        &self,
        tx: &mut PgConnection,
        statement: &str,
        records: &[VectorRecord],
        encode: fn(&mut Vec<u8>, &VectorRecord),
    ) -> Result<u64, GatewayError> {
        let op = "bulk_load";
        let mut copy_in = tx
            .copy_in_raw(statement)
            .await
            .map_err(self.map_table_error(op))?;
        let mut buf = Vec::with_capacity(COPY_CHUNK_BYTES + 64 * 1024);
        copy::header(&mut buf);
        for record in records {
            encode(&mut buf, record);
            if buf.len() >= COPY_CHUNK_BYTES {
                copy_in
                    .send(buf.as_slice())
                    .await
                    .map_err(self.err_long(op))?;
                buf.clear();
            }
        }
        copy::trailer(&mut buf);
        copy_in
            .send(buf.as_slice())
            .await
            .map_err(self.err_long(op))?;
        copy_in.finish().await.map_err(self.err_long(op))
    }
}
