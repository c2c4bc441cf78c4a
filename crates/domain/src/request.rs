use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::{ChunkId, Dimension, Embedding, GatewayError, Metric, ProjectId, TenantId, TopK};

/// One embedding to store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    pub chunk_id: ChunkId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    pub embedding: Embedding,
}

impl VectorRecord {
    /// A record from plain values, each checked (ids >= 0, a non-empty finite embedding).
    pub fn from_parts(
        chunk_id: i64,
        tenant_id: i64,
        project_id: i64,
        embedding: impl Into<Vec<f32>>,
    ) -> Result<Self, GatewayError> {
        Ok(Self::new(
            ChunkId::new(chunk_id)?,
            TenantId::new(tenant_id)?,
            ProjectId::new(project_id)?,
            Embedding::new(embedding.into())?,
        ))
    }

    pub fn new(
        chunk_id: ChunkId,
        tenant_id: TenantId,
        project_id: ProjectId,
        embedding: Embedding,
    ) -> Self {
        Self {
            chunk_id,
            tenant_id,
            project_id,
            embedding,
        }
    }
}

/// Checks a whole upsert batch before anything is written: every embedding has the
/// store's dimension, scores under the store's metric (no zero vector under COSINE) and no
/// chunk id appears twice. An empty batch is valid (a no-op).
pub fn validate_records(
    records: &[VectorRecord],
    dimension: Dimension,
    metric: Metric,
) -> Result<(), GatewayError> {
    let mut seen = HashSet::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        dimension.check(&record.embedding)?;
        check_direction(&record.embedding, metric).map_err(|reason| {
            GatewayError::invalid(format!(
                "record {index} (chunk_id {}): {reason}",
                record.chunk_id
            ))
        })?;
        if !seen.insert(record.chunk_id) {
            return Err(GatewayError::invalid(format!(
                "duplicate chunk_id {} in one upsert batch (record {index}); \
                 each chunk may appear once per call",
                record.chunk_id
            )));
        }
    }
    Ok(())
}

/// A zero vector has no direction: COSINE divides by its length, so the stores score it
/// NaN (which sorts first and passes any `min_score`). Other metrics score it 0.
fn check_direction(embedding: &Embedding, metric: Metric) -> Result<(), String> {
    if metric == Metric::Cosine && embedding.as_slice().iter().all(|v| *v == 0.0) {
        return Err(format!(
            "the embedding is all zeros, which has no direction under metric {metric}; \
             send a non-zero vector"
        ));
    }
    Ok(())
}

/// Which projects of a tenant a search or delete covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectFilter {
    /// Every project of the tenant.
    All,
    /// Only these projects; never empty.
    Only(BTreeSet<ProjectId>),
}

/// A tenant plus the projects a search covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchScope {
    tenant_id: TenantId,
    projects: ProjectFilter,
}

impl SearchScope {
    /// Every project of the tenant.
    pub fn tenant(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            projects: ProjectFilter::All,
        }
    }

    /// Only the given projects; an empty set is rejected (it would match nothing, which is
    /// almost always a caller bug rather than an intent).
    pub fn projects(
        tenant_id: TenantId,
        projects: impl IntoIterator<Item = ProjectId>,
    ) -> Result<Self, GatewayError> {
        let set: BTreeSet<ProjectId> = projects.into_iter().collect();
        if set.is_empty() {
            return Err(GatewayError::invalid(format!(
                "project set for tenant {tenant_id} is empty; pass at least one project_id \
                 or search the whole tenant"
            )));
        }
        Ok(Self {
            tenant_id,
            projects: ProjectFilter::Only(set),
        })
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    pub fn project_filter(&self) -> &ProjectFilter {
        &self.projects
    }

    /// The project ids when restricted, `None` for the whole tenant.
    pub fn project_ids(&self) -> Option<&BTreeSet<ProjectId>> {
        match &self.projects {
            ProjectFilter::All => None,
            ProjectFilter::Only(set) => Some(set),
        }
    }

    /// Whether a row of (tenant, project) is inside this scope.
    pub fn contains(&self, tenant_id: TenantId, project_id: ProjectId) -> bool {
        tenant_id == self.tenant_id
            && match &self.projects {
                ProjectFilter::All => true,
                ProjectFilter::Only(set) => set.contains(&project_id),
            }
    }
}

/// A k-nearest-neighbour search within a scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub scope: SearchScope,
    pub embedding: Embedding,
    pub top_k: TopK,
    /// Hits scoring below this (in the port's convention) are dropped.
    pub min_score: Option<f32>,
}

impl SearchRequest {
    pub fn new(scope: SearchScope, embedding: Embedding, top_k: TopK) -> Self {
        Self {
            scope,
            embedding,
            top_k,
            min_score: None,
        }
    }

    /// A search of `tenant_id` for `embedding` built in one expression and validated once by
    /// [`SearchRequestBuilder::build`]: every project of the tenant and 10 hits unless said.
    ///
    /// ```
    /// # use vectorgate_domain::SearchRequest;
    /// let request = SearchRequest::builder(7, vec![0.1, 0.2])
    ///     .projects([1, 2])
    ///     .top_k(5)
    ///     .min_score(0.3)
    ///     .build()?;
    /// assert_eq!(request.top_k.get(), 5);
    /// # Ok::<(), vectorgate_domain::GatewayError>(())
    /// ```
    pub fn builder(tenant_id: i64, embedding: impl Into<Vec<f32>>) -> SearchRequestBuilder {
        SearchRequestBuilder {
            tenant_id,
            projects: None,
            embedding: embedding.into(),
            top_k: SearchRequestBuilder::DEFAULT_TOP_K,
            min_score: None,
        }
    }

    pub fn with_min_score(mut self, min_score: f32) -> Self {
        self.min_score = Some(min_score);
        self
    }

    /// Checks the request against a store's dimension and metric (no zero query vector
    /// under COSINE) and that `min_score` is a number.
    pub fn validate(&self, dimension: Dimension, metric: Metric) -> Result<(), GatewayError> {
        dimension.check(&self.embedding)?;
        check_direction(&self.embedding, metric)
            .map_err(|reason| GatewayError::invalid(format!("search query: {reason}")))?;
        check_min_score(self.min_score)
    }
}

fn check_min_score(min_score: Option<f32>) -> Result<(), GatewayError> {
    match min_score {
        Some(min) if !min.is_finite() => Err(GatewayError::invalid(format!(
            "min_score must be finite, got {min}"
        ))),
        _ => Ok(()),
    }
}

/// Builds a [`SearchRequest`] from plain values; see [`SearchRequest::builder`].
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequestBuilder {
    tenant_id: i64,
    projects: Option<Vec<i64>>,
    embedding: Vec<f32>,
    top_k: u32,
    min_score: Option<f32>,
}

impl SearchRequestBuilder {
    pub const DEFAULT_TOP_K: u32 = 10;

    /// Only these projects of the tenant (an empty list is refused by `build`).
    pub fn projects(mut self, projects: impl IntoIterator<Item = i64>) -> Self {
        self.projects = Some(projects.into_iter().collect());
        self
    }

    pub fn top_k(mut self, top_k: u32) -> Self {
        self.top_k = top_k;
        self
    }

    pub fn min_score(mut self, min_score: f32) -> Self {
        self.min_score = Some(min_score);
        self
    }

    /// Checks every value (ids, embedding, k, min_score) and returns the request, or the
    /// first `InvalidInput` naming the bad value. The dimension is checked by the store.
    pub fn build(self) -> Result<SearchRequest, GatewayError> {
        let tenant = TenantId::new(self.tenant_id)?;
        let scope = match self.projects {
            None => SearchScope::tenant(tenant),
            Some(ids) => SearchScope::projects(
                tenant,
                ids.into_iter()
                    .map(ProjectId::new)
                    .collect::<Result<Vec<_>, _>>()?,
            )?,
        };
        check_min_score(self.min_score)?;
        Ok(SearchRequest {
            scope,
            embedding: Embedding::new(self.embedding)?,
            top_k: TopK::new(self.top_k)?,
            min_score: self.min_score,
        })
    }
}

/// One search result. Results are ordered best first (highest score).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub chunk_id: ChunkId,
    pub project_id: ProjectId,
    /// Similarity in the port's convention: higher is more similar.
    pub score: f32,
}

impl SearchHit {
    /// The port's result order: best score first, ties by ascending chunk id, so that every
    /// store returns equal hits in the same order.
    pub fn rank(hits: &mut [SearchHit]) {
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_id.cmp(&b.chunk_id))
        });
    }

    /// Recall of `found` against the exact answer: the share of `exact`'s chunks it holds
    /// (1 when there is nothing to find).
    pub fn recall(found: &[SearchHit], exact: &[SearchHit]) -> f64 {
        if exact.is_empty() {
            return 1.0;
        }
        let hit = exact
            .iter()
            .filter(|e| found.iter().any(|f| f.chunk_id == e.chunk_id))
            .count();
        hit as f64 / exact.len() as f64
    }
}

/// What to delete. Every variant is bounded by a tenant: an id that belongs to another
/// tenant is never removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteRequest {
    /// These chunks of the tenant (and, when `projects` is restricted, of those projects).
    Chunks {
        tenant_id: TenantId,
        projects: ProjectFilter,
        chunk_ids: Vec<ChunkId>,
    },
    /// Every chunk of one project.
    Project {
        tenant_id: TenantId,
        project_id: ProjectId,
    },
    /// Every chunk of the tenant.
    Tenant { tenant_id: TenantId },
}

impl DeleteRequest {
    /// Chunks by id within a tenant, any project.
    pub fn chunks(tenant_id: TenantId, chunk_ids: impl IntoIterator<Item = ChunkId>) -> Self {
        DeleteRequest::Chunks {
            tenant_id,
            projects: ProjectFilter::All,
            chunk_ids: chunk_ids.into_iter().collect(),
        }
    }

    /// Chunks by id within a tenant, restricted to the given (non-empty) projects.
    pub fn chunks_in_projects(
        tenant_id: TenantId,
        projects: impl IntoIterator<Item = ProjectId>,
        chunk_ids: impl IntoIterator<Item = ChunkId>,
    ) -> Result<Self, GatewayError> {
        let scope = SearchScope::projects(tenant_id, projects)?;
        Ok(DeleteRequest::Chunks {
            tenant_id,
            projects: scope.projects,
            chunk_ids: chunk_ids.into_iter().collect(),
        })
    }

    pub fn project(tenant_id: TenantId, project_id: ProjectId) -> Self {
        DeleteRequest::Project {
            tenant_id,
            project_id,
        }
    }

    pub fn tenant(tenant_id: TenantId) -> Self {
        DeleteRequest::Tenant { tenant_id }
    }

    pub fn tenant_id(&self) -> TenantId {
        match self {
            DeleteRequest::Chunks { tenant_id, .. }
            | DeleteRequest::Project { tenant_id, .. }
            | DeleteRequest::Tenant { tenant_id } => *tenant_id,
        }
    }

    /// Rejects a restricted-but-empty project set (it can only be built by hand).
    pub fn validate(&self) -> Result<(), GatewayError> {
        if let DeleteRequest::Chunks {
            projects: ProjectFilter::Only(set),
            tenant_id,
            ..
        } = self
        {
            if set.is_empty() {
                return Err(GatewayError::invalid(format!(
                    "project set for tenant {tenant_id} is empty"
                )));
            }
        }
        Ok(())
    }
}

/// Which rows a scan (backfill, reconcile, paging) covers: optionally one tenant,
/// optionally one project of it. Not part of the port itself; adapters offer scans on
/// their concrete types for the operator tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScanFilter {
    pub tenant_id: Option<TenantId>,
    pub project_id: Option<ProjectId>,
}

impl ScanFilter {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn tenant(tenant_id: TenantId) -> Self {
        Self {
            tenant_id: Some(tenant_id),
            project_id: None,
        }
    }

    /// A project alone is refused: projects are only meaningful within a tenant.
    pub fn new(
        tenant_id: Option<TenantId>,
        project_id: Option<ProjectId>,
    ) -> Result<Self, GatewayError> {
        if tenant_id.is_none() && project_id.is_some() {
            return Err(GatewayError::invalid(
                "a project filter needs a tenant: pass the tenant_id too",
            ));
        }
        Ok(Self {
            tenant_id,
            project_id,
        })
    }

    pub fn matches(&self, record: &VectorRecord) -> bool {
        self.tenant_id.is_none_or(|t| t == record.tenant_id)
            && self.project_id.is_none_or(|p| p == record.project_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_is_the_share_of_the_exact_hits_found() {
        let hit = |id: i64| SearchHit {
            chunk_id: ChunkId::new(id).unwrap(),
            project_id: ProjectId::new(1).unwrap(),
            score: 0.0,
        };
        let exact = [hit(1), hit(2), hit(3), hit(4)];
        assert_eq!(SearchHit::recall(&[hit(4), hit(9), hit(2)], &exact), 0.5);
        assert_eq!(SearchHit::recall(&[], &exact), 0.0);
        assert_eq!(SearchHit::recall(&[hit(5)], &[]), 1.0, "nothing to find");
    }
}
