//! How a service consumes the gateway: it takes `Arc<dyn VectorStoreGateway>` in its
//! constructor and never names a concrete store, so the mode (pgvector, milvus, dual) is a
//! deployment setting and unit tests use the port's mockall mock.
//!
//! Run against the configured stores (reads the same variables as the CLI):
//! `EMBEDDING_DIM=4 DATABASE_URL=postgres://... cargo run -p vectorgate-composition --example search_service`
//!
//! Its unit tests run with `cargo test -p vectorgate-composition --example search_service`.

use std::sync::Arc;

use vectorgate_composition::{Settings, VectorStoreFactory};
use vectorgate_domain::{
    ChunkId, DeleteRequest, Embedding, GatewayError, ProjectId, SearchHit, SearchRequest,
    SearchScope, TenantId, TopK, VectorRecord, VectorStoreGateway,
};

/// What the services report to their callers (an HTTP layer would map these to 400/503/500).
#[derive(Debug, PartialEq)]
pub enum ServiceError {
    /// The request is wrong; retrying will not help.
    BadRequest(String),
    /// A store is unreachable; retry later.
    Unavailable(String),
    Internal(String),
}

impl From<GatewayError> for ServiceError {
    fn from(err: GatewayError) -> Self {
        if err.is_invalid_input() {
            ServiceError::BadRequest(err.to_string())
        } else if err.is_unavailable() {
            ServiceError::Unavailable(err.to_string())
        } else {
            ServiceError::Internal(err.to_string())
        }
    }
}

/// One chunk of a processed document with its embedding.
#[derive(Debug, Clone)]
pub struct EmbeddedChunk {
    pub chunk_id: i64,
    pub embedding: Vec<f32>,
}

/// Stores the embeddings of processed documents and removes them again.
#[derive(Clone)]
pub struct DocumentProcessingService {
    vectors: Arc<dyn VectorStoreGateway>,
}

impl DocumentProcessingService {
    pub fn new(vectors: Arc<dyn VectorStoreGateway>) -> Self {
        Self { vectors }
    }

    /// Stores every chunk of one document in one call (all or nothing at the port).
    pub async fn index_document(
        &self,
        tenant_id: i64,
        project_id: i64,
        chunks: &[EmbeddedChunk],
    ) -> Result<u64, ServiceError> {
        if chunks.is_empty() {
            return Ok(0);
        }
        let tenant = TenantId::new(tenant_id)?;
        let project = ProjectId::new(project_id)?;
        let records = chunks
            .iter()
            .map(|c| {
                Ok(VectorRecord::new(
                    ChunkId::new(c.chunk_id)?,
                    tenant,
                    project,
                    Embedding::new(c.embedding.clone())?,
                ))
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        Ok(self.vectors.upsert_vectors(&records).await?)
    }

    /// Removes a document's chunks, within its tenant only.
    pub async fn remove_document(
        &self,
        tenant_id: i64,
        chunk_ids: &[i64],
    ) -> Result<u64, ServiceError> {
        let tenant = TenantId::new(tenant_id)?;
        let ids = chunk_ids
            .iter()
            .map(|id| ChunkId::new(*id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .vectors
            .delete_vectors(&DeleteRequest::chunks(tenant, ids))
            .await?)
    }
}

impl std::fmt::Debug for DocumentProcessingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentProcessingService")
            .field("store", &self.vectors.store_kind())
            .finish()
    }
}

/// Semantic search within a tenant, optionally restricted to projects.
#[derive(Clone)]
pub struct SearchService {
    vectors: Arc<dyn VectorStoreGateway>,
    min_score: Option<f32>,
}

impl std::fmt::Debug for SearchService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchService")
            .field("store", &self.vectors.store_kind())
            .field("min_score", &self.min_score)
            .finish()
    }
}

impl SearchService {
    pub fn new(vectors: Arc<dyn VectorStoreGateway>) -> Self {
        Self {
            vectors,
            min_score: None,
        }
    }

    /// Hits scoring below `min_score` are dropped by the store.
    pub fn with_min_score(mut self, min_score: f32) -> Self {
        self.min_score = Some(min_score);
        self
    }

    pub async fn search(
        &self,
        tenant_id: i64,
        project_ids: &[i64],
        query: Vec<f32>,
        k: u32,
    ) -> Result<Vec<SearchHit>, ServiceError> {
        let tenant = TenantId::new(tenant_id)?;
        let scope = if project_ids.is_empty() {
            SearchScope::tenant(tenant)
        } else {
            let projects = project_ids
                .iter()
                .map(|p| ProjectId::new(*p))
                .collect::<Result<Vec<_>, _>>()?;
            SearchScope::projects(tenant, projects)?
        };
        let mut request = SearchRequest::new(scope, Embedding::new(query)?, TopK::new(k)?);
        if let Some(min) = self.min_score {
            request = request.with_min_score(min);
        }
        Ok(self.vectors.search(&request).await?)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).init();
    let settings = Settings::from_env()?;
    let dim = settings.dimension().as_usize();
    let gateway = VectorStoreFactory::build(&settings).await?;
    let documents = DocumentProcessingService::new(gateway.clone());
    let search = SearchService::new(gateway.clone());

    let chunk = |id: i64, x: f32| EmbeddedChunk {
        chunk_id: id,
        embedding: (0..dim).map(|i| if i == 0 { x } else { 0.1 }).collect(),
    };
    let stored = documents
        .index_document(1, 1, &[chunk(9_000_001, 1.0), chunk(9_000_002, 0.5)])
        .await
        .map_err(|e| format!("{e:?}"))?;
    println!(
        "stored {stored} chunks through the {} gateway",
        gateway.store_kind()
    );
    let query = (0..dim).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    for hit in search
        .search(1, &[], query, 5)
        .await
        .map_err(|e| format!("{e:?}"))?
    {
        println!(
            "  chunk {} project {} score {:.4}",
            hit.chunk_id, hit.project_id, hit.score
        );
    }
    documents
        .remove_document(1, &[9_000_001, 9_000_002])
        .await
        .map_err(|e| format!("{e:?}"))?;
    gateway.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use mockall::predicate::function;
    use vectorgate_domain::{MockVectorStoreGateway, ProjectFilter, StoreKind};

    use super::*;

    fn service_with(mock: MockVectorStoreGateway) -> Arc<dyn VectorStoreGateway> {
        Arc::new(mock)
    }

    #[tokio::test]
    async fn a_document_is_stored_in_one_upsert_with_its_tenant_and_project() {
        let mut mock = MockVectorStoreGateway::new();
        mock.expect_upsert_vectors()
            .with(function(|records: &[VectorRecord]| {
                records.len() == 2
                    && records
                        .iter()
                        .all(|r| r.tenant_id.get() == 7 && r.project_id.get() == 3)
                    && records[0].chunk_id.get() == 11
                    && records[1].embedding.as_slice() == [0.0, 1.0]
            }))
            .times(1)
            .returning(|records| Ok(records.len() as u64));
        let service = DocumentProcessingService::new(service_with(mock));
        let chunks = [
            EmbeddedChunk {
                chunk_id: 11,
                embedding: vec![1.0, 0.0],
            },
            EmbeddedChunk {
                chunk_id: 12,
                embedding: vec![0.0, 1.0],
            },
        ];
        assert_eq!(service.index_document(7, 3, &chunks).await, Ok(2));
    }

    #[tokio::test]
    async fn an_empty_document_or_a_bad_embedding_never_reaches_the_store() {
        // No expectations: any call panics.
        let service = DocumentProcessingService::new(service_with(MockVectorStoreGateway::new()));
        assert_eq!(service.index_document(1, 1, &[]).await, Ok(0));
        let nan = [EmbeddedChunk {
            chunk_id: 1,
            embedding: vec![f32::NAN],
        }];
        assert!(matches!(
            service.index_document(1, 1, &nan).await,
            Err(ServiceError::BadRequest(m)) if m.contains("NaN")
        ));
        assert!(matches!(
            service.index_document(-1, 1, &nan).await,
            Err(ServiceError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn removing_a_document_deletes_its_chunks_within_the_tenant() {
        let mut mock = MockVectorStoreGateway::new();
        mock.expect_delete_vectors()
            .withf(|request| {
                *request
                    == DeleteRequest::Chunks {
                        tenant_id: TenantId::new(4).unwrap(),
                        projects: ProjectFilter::All,
                        chunk_ids: vec![ChunkId::new(1).unwrap(), ChunkId::new(2).unwrap()],
                    }
            })
            .times(1)
            .returning(|_| Ok(2));
        let service = DocumentProcessingService::new(service_with(mock));
        assert_eq!(service.remove_document(4, &[1, 2]).await, Ok(2));
    }

    #[tokio::test]
    async fn search_scopes_by_tenant_and_projects_and_passes_k_and_min_score() {
        let mut mock = MockVectorStoreGateway::new();
        mock.expect_search()
            .withf(|request| {
                request.scope.tenant_id().get() == 5
                    && request
                        .scope
                        .project_ids()
                        .is_some_and(|p| p.iter().map(|p| p.get()).collect::<Vec<_>>() == [1, 2])
                    && request.top_k.get() == 3
                    && request.min_score == Some(0.5)
            })
            .times(1)
            .returning(|_| {
                Ok(vec![SearchHit {
                    chunk_id: ChunkId::new(42).unwrap(),
                    project_id: ProjectId::new(2).unwrap(),
                    score: 0.9,
                }])
            });
        let service = SearchService::new(service_with(mock)).with_min_score(0.5);
        let hits = service.search(5, &[2, 1], vec![1.0, 0.0], 3).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk_id.get(), 42);
    }

    #[tokio::test]
    async fn an_unreachable_store_is_reported_as_retryable() {
        let mut mock = MockVectorStoreGateway::new();
        mock.expect_search().times(1).returning(|_| {
            Err(GatewayError::unavailable(
                StoreKind::Milvus,
                "localhost:19530: connection refused",
            ))
        });
        let service = SearchService::new(service_with(mock));
        assert!(matches!(
            service.search(1, &[], vec![1.0], 10).await,
            Err(ServiceError::Unavailable(m)) if m.contains("localhost:19530")
        ));
        // k out of range is the caller's fault, caught before the store.
        let service = SearchService::new(service_with(MockVectorStoreGateway::new()));
        assert!(matches!(
            service.search(1, &[], vec![1.0], 0).await,
            Err(ServiceError::BadRequest(_))
        ));
    }
}
