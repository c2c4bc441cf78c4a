//! A collection keyed by tenant is checked when this adapter creates it: a few rows are
//! written by upsert, counted under their tenant, moved to another tenant by upsert and
//! counted again. A server whose upsert routes rows by anything but the key (Milvus 2.3
//! routes by primary key) would hide them from every tenant-filtered read, and one that left
//! a moved row behind would serve it twice, so such a collection must not serve.

use vectorgate_domain::{Dimension, GatewayError, StoreKind};

use crate::client::{ColumnBatch, MilvusApi};
use crate::config::Consistency;
use crate::queries;

/// Rows of the probe. A server routing by primary key puts each outside its tenant's
/// partition unless the two hash alike, so eight rows leave no doubt.
const PROBE_ROWS: i64 = 8;

/// Writes the probe rows, checks where they are found (Session: after its own writes),
/// and always deletes them.
/// Ids and tenants are negative, which no chunk and no tenant has: no tenant's read, scan
/// (`chunk_id >= 0`) or delete ever meets a probe row, and probes of processes starting
/// together (random ids) do not meet each other's.
pub(crate) async fn verify_key_routing(
    api: &dyn MilvusApi,
    collection: &str,
    dimension: Dimension,
) -> Result<(), GatewayError> {
    let base = i64::from(rand::random::<u32>().max(1)) * 16;
    let ids: Vec<i64> = (1..=PROBE_ROWS).map(|i| -(base + i)).collect();
    let outcome = probe(api, collection, dimension, &ids).await;
    if let Err(err) = api.delete(collection, &queries::probe_rows(&ids)).await {
        tracing::warn!(collection, error = %err, "could not delete the partition-key probe's rows (negative ids and tenants, never served)");
    }
    let (missed, left_behind) = outcome?;
    if missed == 0 && left_behind == 0 {
        tracing::info!(
            collection,
            "partition key verified: rows written or moved by upsert are found under their tenant"
        );
        return Ok(());
    }
    Err(GatewayError::schema_mismatch(
        StoreKind::Milvus,
        collection,
        format!(
            "of {PROBE_ROWS} rows written by upsert, {missed} were not found under their tenant \
             and {left_behind} moved to another tenant were also left where they were: this \
             server does not keep rows where a partition-key collection's reads look for them \
             (set MILVUS_PARTITION_KEY=none)"
        ),
    ))
}

/// The probe's writes and counts: how many rows were missed under their tenant (first
/// written or moved), and how many moved rows were found more than once.
async fn probe(
    api: &dyn MilvusApi,
    collection: &str,
    dimension: Dimension,
    ids: &[i64],
) -> Result<(usize, usize), GatewayError> {
    let batch = |tenants: &[i64]| ColumnBatch {
        chunk_ids: ids.to_vec(),
        tenant_ids: tenants.to_vec(),
        project_ids: vec![0; ids.len()],
        dim: dimension.get(),
        embeddings: vec![1.0; ids.len() * dimension.as_usize()],
    };
    let found = |tenant: i64, id: i64| async move {
        api.count(
            collection,
            &queries::probe_row(tenant, id),
            Consistency::Session,
        )
        .await
    };
    let first: Vec<i64> = (1..=PROBE_ROWS).map(|t| -t).collect();
    let moved: Vec<i64> = (1..=PROBE_ROWS).map(|t| -(t + PROBE_ROWS)).collect();
    api.upsert(collection, batch(&first)).await?;
    let mut astray = vec![false; ids.len()];
    for (i, (&id, &tenant)) in ids.iter().zip(&first).enumerate() {
        astray[i] |= found(tenant, id).await? != 1;
    }
    api.upsert(collection, batch(&moved)).await?;
    let mut left_behind = 0;
    for (i, (&id, &tenant)) in ids.iter().zip(&moved).enumerate() {
        astray[i] |= found(tenant, id).await? != 1;
        let everywhere = queries::probe_rows(&[id]);
        if api
            .count(collection, &everywhere, Consistency::Session)
            .await?
            > 1
        {
            left_behind += 1;
        }
    }
    Ok((astray.iter().filter(|&&a| a).count(), left_behind))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::client::MockMilvusApi;

    /// A server whose counts `answer` gives (the expression, and the tenant the row was
    /// last written under); the probe's ids are checked on the way.
    fn api(answer: fn(&str, i64) -> u64) -> MockMilvusApi {
        let tenant = Arc::new(Mutex::new(0));
        let mut api = MockMilvusApi::new();
        let written = Arc::clone(&tenant);
        api.expect_upsert()
            .withf(|collection, batch| {
                collection == "c"
                    && batch.chunk_ids.len() == 8
                    && batch.chunk_ids.iter().all(|&id| id < 0)
                    && batch.tenant_ids.iter().all(|&t| t < 0)
                    && batch.embeddings.len() == 8 * 4
            })
            .times(2)
            .returning(move |_, batch| {
                *written.lock().unwrap() = batch.tenant_ids[0];
                Ok(8)
            });
        api.expect_count()
            .withf(|_, _, consistency| *consistency == Consistency::Session)
            .times(8 + 16)
            .returning(move |_, expr, _| Ok(answer(expr, *tenant.lock().unwrap())));
        api.expect_delete()
            .withf(|_, expr| expr.starts_with("chunk_id in [-") && expr.matches(", ").count() == 7)
            .times(1)
            .returning(|_, _| Ok(8));
        api
    }

    fn verify(api: MockMilvusApi) -> Result<(), GatewayError> {
        futures::executor::block_on(verify_key_routing(&api, "c", Dimension::new(4).unwrap()))
    }

    #[test]
    fn a_server_that_keeps_keyed_rows_passes() {
        verify(api(|_, _| 1)).unwrap();
    }

    /// Rows routed by primary key are found under their tenant only when the id hashes like
    /// the tenant.
    #[test]
    fn a_server_that_misroutes_keyed_rows_is_refused() {
        let err = verify(api(|expr, _| u64::from(!expr.starts_with("tenant_id")))).unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("8 were not found under their tenant and 0 moved")
                    && details.contains("MILVUS_PARTITION_KEY=none")),
            "{err}"
        );
    }

    /// A moved row left in its old partition is found twice by id.
    #[test]
    fn a_server_that_leaves_moved_rows_behind_is_refused() {
        let err = verify(api(|expr, last| {
            if expr.starts_with("chunk_id") && last < -8 {
                2
            } else {
                1
            }
        }))
        .unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("0 were not found under their tenant and 8 moved")),
            "{err}"
        );
    }

    /// The rows are deleted even when the probe fails part-way.
    #[test]
    fn the_rows_are_deleted_when_a_count_fails() {
        let mut api = MockMilvusApi::new();
        api.expect_upsert().times(1).returning(|_, _| Ok(8));
        api.expect_count()
            .times(1)
            .returning(|_, _, _| Err(GatewayError::unavailable(StoreKind::Milvus, "gone")));
        api.expect_delete().times(1).returning(|_, _| Ok(8));
        assert!(verify(api).unwrap_err().is_unavailable());
    }
}
