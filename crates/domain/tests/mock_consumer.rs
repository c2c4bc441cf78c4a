//! How a downstream service unit-tests itself against the port with the `mock` feature:
//! the service takes `Arc<dyn VectorStoreGateway>` and never names a concrete store.

use std::sync::Arc;

use vectorgate_domain::{
    ChunkId, Embedding, GatewayError, MockVectorStoreGateway, SearchHit, SearchRequest,
    SearchScope, StoreKind, TenantId, TopK, VectorStoreGateway,
};

/// A consumer's service: related chunks for a tenant, with a score floor.
struct RelatedChunks {
    gateway: Arc<dyn VectorStoreGateway>,
}

impl RelatedChunks {
    async fn related(&self, tenant: i64, query: Vec<f32>) -> Result<Vec<i64>, GatewayError> {
        let request = SearchRequest::new(
            SearchScope::tenant(TenantId::new(tenant)?),
            Embedding::new(query)?,
            TopK::new(3)?,
        )
        .with_min_score(0.5);
        let hits = self.gateway.search(&request).await?;
        Ok(hits.into_iter().map(|h| h.chunk_id.get()).collect())
    }
}

#[tokio::test]
async fn service_passes_its_scope_and_maps_hits() {
    let mut mock = MockVectorStoreGateway::new();
    mock.expect_search()
        .withf(|req: &SearchRequest| {
            req.scope.tenant_id().get() == 42 && req.top_k.get() == 3 && req.min_score == Some(0.5)
        })
        .times(1)
        .returning(|_| {
            Ok(vec![SearchHit {
                chunk_id: ChunkId::new(9).unwrap(),
                project_id: vectorgate_domain::ProjectId::new(1).unwrap(),
                score: 0.9,
            }])
        });
    let service = RelatedChunks {
        gateway: Arc::new(mock),
    };
    assert_eq!(service.related(42, vec![0.1, 0.2]).await.unwrap(), vec![9]);
}

#[tokio::test]
async fn service_surfaces_store_outage_as_typed_error() {
    let mut mock = MockVectorStoreGateway::new();
    mock.expect_search().returning(|_| {
        Err(GatewayError::unavailable(
            StoreKind::Pgvector,
            "cannot reach 127.0.0.1:5432",
        ))
    });
    let service = RelatedChunks {
        gateway: Arc::new(mock),
    };
    let err = service.related(1, vec![0.1]).await.unwrap_err();
    assert!(err.is_unavailable());
}

#[tokio::test]
async fn bad_input_never_reaches_the_store() {
    // No expectation set: a call to the mock would panic the test.
    let service = RelatedChunks {
        gateway: Arc::new(MockVectorStoreGateway::new()),
    };
    let err = service.related(1, vec![f32::NAN]).await.unwrap_err();
    assert!(err.is_invalid_input());
}
