//! A collection keyed by tenant is checked once, when this adapter creates it: a few rows are
//! written by upsert and each is counted under its tenant. A server whose upsert routes rows
//! by anything but the key (Milvus 2.3 routes by primary key) would hide them from every
//! tenant-filtered read, so such a collection must not serve.

use vectorgate_domain::{Dimension, GatewayError, StoreKind};

use crate::client::{ColumnBatch, MilvusApi};
use crate::config::Consistency;
use crate::queries;

/// Rows of the probe: tenants 1..=8 under ids -1..=-8. A server routing by primary key
/// would put most of them outside their tenant's partition.
const PROBE_ROWS: i64 = 8;

/// Writes the probe rows, counts each under its tenant (Strong), and deletes them. The ids
/// are negative, which no chunk has and no scan reads (`chunk_id >= 0`), so rows a crash
/// leaves behind are never served.
pub(crate) async fn verify_key_routing(
    api: &dyn MilvusApi,
    collection: &str,
    dimension: Dimension,
) -> Result<(), GatewayError> {
    let ids: Vec<i64> = (1..=PROBE_ROWS).map(|i| -i).collect();
    let tenants: Vec<i64> = (1..=PROBE_ROWS).collect();
    let rows = ids.len();
    let batch = ColumnBatch {
        chunk_ids: ids.clone(),
        tenant_ids: tenants.clone(),
        project_ids: vec![0; rows],
        dim: dimension.get(),
        embeddings: vec![1.0; rows * dimension.as_usize()],
    };
    api.upsert(collection, batch).await?;
    let mut missed = 0;
    for (&id, &tenant) in ids.iter().zip(&tenants) {
        let expr = queries::probe_row(tenant, id);
        if api.count(collection, &expr, Consistency::Strong).await? != 1 {
            missed += 1;
        }
    }
    if let Err(err) = api.delete(collection, &queries::probe_rows(&ids)).await {
        tracing::warn!(collection, error = %err, "could not delete the layout probe's rows (negative ids, never served)");
    }
    if missed == 0 {
        tracing::info!(
            collection,
            "partition key verified: rows written by upsert are found under their tenant"
        );
        return Ok(());
    }
    Err(GatewayError::schema_mismatch(
        StoreKind::Milvus,
        collection,
        format!(
            "{missed} of {PROBE_ROWS} rows written by upsert were not found under their \
             tenant: this server does not keep rows where a partition-key collection's reads \
             look for them; set MILVUS_PARTITION_KEY=none, then `vectorgate collection \
             recreate --yes` and `vectorgate backfill`"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::MockMilvusApi;

    fn api(found_under_tenant: fn(&str) -> bool) -> MockMilvusApi {
        let mut api = MockMilvusApi::new();
        api.expect_upsert()
            .withf(|collection, batch| {
                collection == "c"
                    && batch.chunk_ids == (1..=8).map(|i| -i).collect::<Vec<_>>()
                    && batch.tenant_ids == (1..=8).collect::<Vec<_>>()
                    && batch.embeddings.len() == 8 * 4
            })
            .times(1)
            .returning(|_, _| Ok(8));
        api.expect_count()
            .withf(|_, _, consistency| *consistency == Consistency::Strong)
            .times(8)
            .returning(move |_, expr, _| Ok(u64::from(found_under_tenant(expr))));
        api.expect_delete()
            .withf(|_, expr| expr == "chunk_id in [-1, -2, -3, -4, -5, -6, -7, -8]")
            .times(1)
            .returning(|_, _| Ok(8));
        api
    }

    #[tokio::test]
    async fn a_server_that_keeps_keyed_rows_passes() {
        let api = api(|_| true);
        verify_key_routing(&api, "c", Dimension::new(4).unwrap())
            .await
            .unwrap();
    }

    /// Rows routed by primary key are found under their tenant only when the id hashes like
    /// the tenant: the probe names how many were missed, and the way out.
    #[tokio::test]
    async fn a_server_that_misroutes_keyed_rows_is_refused() {
        let api = api(|expr| expr == "tenant_id == 2 && chunk_id == -2");
        let err = verify_key_routing(&api, "c", Dimension::new(4).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.starts_with("7 of 8 rows written by upsert were not found")
                    && details.contains("MILVUS_PARTITION_KEY=none")),
            "{err}"
        );
    }
}
