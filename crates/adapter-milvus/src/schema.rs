//! The collection's schema, index, load state and partitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use vectorgate_domain::{
    CollectionStatus, Dimension, GatewayError, Metric, ProjectId, StoreKind, TenantId,
};

use crate::client::{
    CollectionDescription, FieldKind, FieldSpec, IndexSpec, LoadStatus, MilvusApi,
};
use crate::config::{Consistency, MilvusConfig, PartitionKey};
use crate::layout::CollectionLayout;
use crate::probe;
use crate::queries;

pub const FIELD_CHUNK_ID: &str = "chunk_id";
pub const FIELD_TENANT_ID: &str = "tenant_id";
pub const FIELD_PROJECT_ID: &str = "project_id";
pub const FIELD_EMBEDDING: &str = "embedding";
/// The index is named after its field: milvus-lite only finds an index named so, and one
/// name per field keeps describe/drop unambiguous.
pub const INDEX_NAME: &str = FIELD_EMBEDDING;
pub const INDEX_TYPE: &str = "IVF_FLAT";

const STORE: StoreKind = StoreKind::Milvus;

/// The fields the adapter stores, in order, `tenant_id` marked as the partition key when
/// the layout has one.
pub fn expected_fields(dimension: Dimension, partition_key: PartitionKey) -> Vec<FieldSpec> {
    let int = |name: &str, primary: bool| FieldSpec {
        name: name.to_string(),
        kind: FieldKind::Int64,
        primary,
        auto_id: false,
        partition_key: name == FIELD_TENANT_ID && partition_key == PartitionKey::Tenant,
    };
    vec![
        int(FIELD_CHUNK_ID, true),
        int(FIELD_TENANT_ID, false),
        int(FIELD_PROJECT_ID, false),
        FieldSpec {
            name: FIELD_EMBEDDING.to_string(),
            kind: FieldKind::FloatVector {
                dim: dimension.get(),
            },
            primary: false,
            auto_id: false,
            partition_key: false,
        },
    ]
}

/// The index the adapter creates: IVF_FLAT on `embedding`, the configured metric and nlist.
pub fn expected_index(config: &MilvusConfig) -> IndexSpec {
    IndexSpec {
        index_name: INDEX_NAME.to_string(),
        field_name: FIELD_EMBEDDING.to_string(),
        index_type: INDEX_TYPE.to_string(),
        metric_type: config.metric.as_str().to_string(),
        params: BTreeMap::from([("nlist".to_string(), config.effective_nlist().to_string())]),
        finished: false,
    }
}

/// What a collection name must look like.
pub const COLLECTION_ACCEPTED: &str = "a name matching ^[A-Za-z_][A-Za-z0-9_]{0,254}$";

/// Milvus collection names: a letter or `_` first, then letters, digits, `_`; at most 255.
pub fn validate_collection_name(name: &str) -> Result<(), GatewayError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || !rest_ok || name.len() > 255 {
        return Err(GatewayError::configuration(
            "MILVUS_COLLECTION",
            name,
            COLLECTION_ACCEPTED,
        ));
    }
    Ok(())
}

/// Creates, verifies, recreates and drops the collection, its index and partitions.
#[derive(Clone)]
pub struct MilvusSchemaManager {
    api: Arc<dyn MilvusApi>,
    config: Arc<MilvusConfig>,
}

impl std::fmt::Debug for MilvusSchemaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MilvusSchemaManager")
            .field("collection", &self.config.collection)
            .finish()
    }
}

impl MilvusSchemaManager {
    /// Made by the store, which shares its client with it.
    pub(crate) fn new(api: Arc<dyn MilvusApi>, config: Arc<MilvusConfig>) -> Self {
        Self { api, config }
    }

    pub fn collection(&self) -> &str {
        &self.config.collection
    }

    /// Makes the collection ready: creates it (fields, IVF_FLAT index, load) when missing,
    /// keeping a partition-key collection only once it passes the probe
    /// ([`Self::verify_key_routing`]); when present, verifies fields and index metric and
    /// refuses with `SchemaMismatch` (changing nothing) when they differ; creates a missing
    /// index; loads it if needed.
    pub async fn ensure_collection(&self) -> Result<(), GatewayError> {
        if self.api.has_collection(self.collection()).await? {
            return self.index_and_load(false).await;
        }
        let version = self.api.server_version().await?;
        let layout = CollectionLayout::for_new_collection(&self.config, &version);
        self.refuse(layout.server_problem(&version))?;
        let created = self.create(layout, &version).await?;
        self.index_and_load(created).await?;
        if !created || layout.partition_key == PartitionKey::None {
            return Ok(());
        }
        let Err(err) = self.verify_key_routing().await else {
            return Ok(());
        };
        // Rows astray would be missed by every tenant-filtered read: the keyed collection
        // this call made does not stay. Asked for explicitly, the key is refused; unset,
        // the collection is made again without one.
        self.api.drop_collection(self.collection()).await?;
        if self.config.partition_key.is_some() {
            return Err(err);
        }
        tracing::warn!(collection = self.collection(), error = %err, "partition key probe failed; creating the collection without a key");
        let created = self
            .create(CollectionLayout::without_key(), &version)
            .await?;
        self.index_and_load(created).await
    }

    /// Creates the collection keyed by tenant (`MILVUS_NUM_PARTITIONS` partitions), indexes
    /// and loads it, whatever the server's version and without the probe: for loads by
    /// `insert` only, which Milvus 2.3 routes by the key (its upsert does not). The benchmark
    /// measures with it what the key does for search on a server this adapter does not key;
    /// the gateway itself refuses to serve such a collection there.
    pub async fn create_keyed_for_inserts(&self) -> Result<(), GatewayError> {
        let version = self.api.server_version().await?;
        let layout = CollectionLayout::with_key(PartitionKey::Tenant, &self.config);
        let created = self.create(layout, &version).await?;
        self.index_and_load(created).await
    }

    /// Checks that this collection keeps rows where tenant-filtered reads look for them:
    /// probe rows (negative ids and tenants, which no chunk or tenant has) are written, moved
    /// and counted by tenant (reading this client's own writes), then deleted.
    /// `SchemaMismatch` when a row went astray. Run on every partition-key collection this
    /// adapter creates.
    pub async fn verify_key_routing(&self) -> Result<(), GatewayError> {
        probe::verify_key_routing(&*self.api, self.collection(), self.config.dimension).await
    }

    /// Creates the collection with `layout`; `false` when another process created it first
    /// (processes starting together race: the loser verifies it like any existing one).
    async fn create(&self, layout: CollectionLayout, server: &str) -> Result<bool, GatewayError> {
        let name = self.collection();
        tracing::info!(
            collection = name,
            dimension = self.config.dimension.get(),
            metric = %self.config.metric,
            nlist = self.config.effective_nlist(),
            %layout,
            server,
            layout_configured = self.config.partition_key.is_some(),
            "creating collection"
        );
        let fields = expected_fields(self.config.dimension, layout.partition_key);
        match self
            .api
            .create_collection(name, &fields, layout.num_partitions)
            .await
        {
            Ok(()) => Ok(true),
            Err(err) if self.api.has_collection(name).await? => {
                tracing::debug!(collection = name, error = %err, "created meanwhile by another process");
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Verifies an existing collection (not one this call created), creates a missing
    /// index and loads the collection.
    async fn index_and_load(&self, created: bool) -> Result<(), GatewayError> {
        let name = self.collection();
        let needs_index = created || {
            let indexes = self.verify_existing().await?;
            indexes == 0
        };
        if needs_index {
            tracing::info!(collection = name, "creating the index");
            if let Err(err) = self
                .api
                .create_index(name, &expected_index(&self.config))
                .await
            {
                // Another process may have created it meanwhile: then verify its metric.
                if self.verify_existing().await? == 0 {
                    return Err(err);
                }
            }
        }
        if self.api.load_status(name).await? != LoadStatus::Loaded {
            self.api.load_collection(name).await?;
        }
        Ok(())
    }

    /// Compares an existing collection's fields, layout and index metric with the
    /// configuration; `SchemaMismatch` naming both sides when they differ (nothing is
    /// changed). Returns how many indexes the vector field has.
    async fn verify_existing(&self) -> Result<usize, GatewayError> {
        let name = self.collection();
        let found = self.api.describe_collection(name).await?;
        let mut differences = self.differences(&found);
        let layout = CollectionLayout::of(&found);
        tracing::info!(collection = name, %layout, "collection layout");
        if differences.is_empty() {
            self.check_server_keeps(layout).await?;
        }
        let indexes = self.api.describe_index(name, FIELD_EMBEDDING).await?;
        if let Some(index) = indexes.first() {
            if !index
                .metric_type
                .eq_ignore_ascii_case(self.config.metric.as_str())
            {
                differences.push(format!(
                    "index metric: expected {}, found {}",
                    self.config.metric, index.metric_type
                ));
            }
        }
        if differences.is_empty() {
            return Ok(indexes.len());
        }
        Err(GatewayError::schema_mismatch(
            STORE,
            name,
            format!(
                "{}; nothing was changed (recreate the collection explicitly to replace it, \
                 which deletes its data)",
                differences.join("; ")
            ),
        ))
    }

    /// Drops the collection (and its data) if it exists, then creates it afresh. Only ever
    /// called explicitly (CLI `recreate`, tests, benchmark).
    pub async fn recreate(&self) -> Result<(), GatewayError> {
        self.drop_collection().await?;
        self.ensure_collection().await
    }

    /// Drops the collection if it exists; returns whether it existed.
    pub async fn drop_collection(&self) -> Result<bool, GatewayError> {
        let name = self.collection();
        if !self.api.has_collection(name).await? {
            return Ok(false);
        }
        self.api.drop_collection(name).await?;
        Ok(true)
    }

    /// `tenant_{id}_project_{id}`.
    pub fn partition_name(tenant_id: TenantId, project_id: ProjectId) -> String {
        format!("tenant_{}_project_{}", tenant_id.get(), project_id.get())
    }

    /// Creates the partition of a tenant's project when missing; returns its name. Milvus
    /// has no named partitions beside a partition key, so a keyed collection is refused.
    pub async fn ensure_partition(
        &self,
        tenant_id: TenantId,
        project_id: ProjectId,
    ) -> Result<String, GatewayError> {
        let layout = CollectionLayout::of(&self.api.describe_collection(self.collection()).await?);
        if layout.partition_key != PartitionKey::None {
            return Err(GatewayError::schema_mismatch(
                STORE,
                self.collection(),
                format!(
                    "named partitions need a collection without a partition key, found \
                     {layout} (MILVUS_PARTITION_KEY=none, then `vectorgate collection recreate \
                     --yes` and `vectorgate backfill`)"
                ),
            ));
        }
        let partition = Self::partition_name(tenant_id, project_id);
        if !self
            .api
            .has_partition(self.collection(), &partition)
            .await?
        {
            self.api
                .create_partition(self.collection(), &partition)
                .await?;
        }
        Ok(partition)
    }

    /// Releases (Milvus refuses to drop a loaded partition) and drops the partition and its
    /// rows; returns whether it existed.
    pub async fn drop_partition(
        &self,
        tenant_id: TenantId,
        project_id: ProjectId,
    ) -> Result<bool, GatewayError> {
        let partition = Self::partition_name(tenant_id, project_id);
        if !self
            .api
            .has_partition(self.collection(), &partition)
            .await?
        {
            return Ok(false);
        }
        self.api
            .release_partition(self.collection(), &partition)
            .await?;
        self.api
            .drop_partition(self.collection(), &partition)
            .await?;
        Ok(true)
    }

    /// Every partition of the collection, including Milvus's `_default`.
    pub async fn list_partitions(&self) -> Result<Vec<String>, GatewayError> {
        self.api.list_partitions(self.collection()).await
    }

    /// The collection's state for `health()`. Row count by `count(*)` at Strong
    /// consistency when loaded (exact), none otherwise.
    pub async fn status(&self) -> Result<CollectionStatus, GatewayError> {
        let name = self.collection();
        let mut status = CollectionStatus {
            name: name.to_string(),
            ..CollectionStatus::default()
        };
        if !self.api.has_collection(name).await? {
            return Ok(status);
        }
        status.exists = true;
        let described = self.api.describe_collection(name).await?;
        status.layout = Some(CollectionLayout::of(&described).to_string());
        status.dimension = described.fields.iter().find_map(|f| match f.kind {
            FieldKind::FloatVector { dim } if f.name == FIELD_EMBEDDING => Some(dim),
            _ => None,
        });
        if let Some(index) = self
            .api
            .describe_index(name, FIELD_EMBEDDING)
            .await?
            .into_iter()
            .next()
        {
            status.metric = index.metric_type.parse::<Metric>().ok();
            status.index_type = Some(index.index_type);
            status.index_params = index.params;
            status.index_params.insert(
                "nprobe".to_string(),
                self.config.effective_nprobe().to_string(),
            );
        }
        let loaded = self.api.load_status(name).await? == LoadStatus::Loaded;
        status.loaded = Some(loaded);
        if loaded {
            status.row_count = Some(
                self.api
                    .count(name, &queries::every_row(), Consistency::Strong)
                    .await?,
            );
        }
        Ok(status)
    }

    /// Describes what differs between the configuration and an existing collection, or a
    /// layout the server cannot keep; `None` when it matches (or does not exist).
    pub async fn mismatch(&self) -> Result<Option<String>, GatewayError> {
        let name = self.collection();
        if !self.api.has_collection(name).await? {
            return Ok(None);
        }
        let found = self.api.describe_collection(name).await?;
        let mut differences = self.differences(&found);
        if differences.is_empty() {
            differences.extend(self.server_problem(CollectionLayout::of(&found)).await?);
        }
        Ok((!differences.is_empty()).then(|| differences.join("; ")))
    }

    /// Why the server cannot keep this layout's rows, if it cannot; asks the server's version
    /// only for a partition key.
    async fn server_problem(
        &self,
        layout: CollectionLayout,
    ) -> Result<Option<String>, GatewayError> {
        if layout.partition_key == PartitionKey::None {
            return Ok(None);
        }
        Ok(layout.server_problem(&self.api.server_version().await?))
    }

    /// Refuses a partition key the server cannot keep, changing nothing.
    async fn check_server_keeps(&self, layout: CollectionLayout) -> Result<(), GatewayError> {
        self.refuse(self.server_problem(layout).await?)
    }

    /// `SchemaMismatch` for a layout problem, if there is one.
    fn refuse(&self, problem: Option<String>) -> Result<(), GatewayError> {
        match problem {
            None => Ok(()),
            Some(problem) => Err(GatewayError::schema_mismatch(
                STORE,
                self.collection(),
                format!("{problem}; nothing was changed"),
            )),
        }
    }

    /// Fields (the partition-key flag aside) and the layout the settings name explicitly.
    fn differences(&self, found: &CollectionDescription) -> Vec<String> {
        let layout = CollectionLayout::of(found);
        let expected = expected_fields(self.config.dimension, layout.partition_key);
        let mut differences = field_differences(&expected, &found.fields);
        differences.extend(layout.difference(&self.config));
        differences
    }
}

/// Human-readable differences between the expected and found fields.
pub fn field_differences(expected: &[FieldSpec], found: &[FieldSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for want in expected {
        match found.iter().find(|f| f.name == want.name) {
            None => out.push(format!(
                "field {}: expected {}, missing",
                want.name, want.kind
            )),
            Some(got) => {
                if got.kind != want.kind {
                    out.push(format!(
                        "field {}: expected {}, found {}",
                        want.name, want.kind, got.kind
                    ));
                }
                if got.primary != want.primary {
                    out.push(format!(
                        "field {}: expected primary key {}, found {}",
                        want.name, want.primary, got.primary
                    ));
                }
                if got.auto_id != want.auto_id {
                    out.push(format!(
                        "field {}: expected auto_id {}, found {}",
                        want.name, want.auto_id, got.auto_id
                    ));
                }
            }
        }
    }
    for got in found {
        if !expected.iter().any(|w| w.name == got.name) {
            out.push(format!(
                "field {}: unexpected extra field {}",
                got.name, got.kind
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::MockMilvusApi;
    use mockall::Sequence;
    use vectorgate_testkit::{project, tenant};

    fn config() -> Arc<MilvusConfig> {
        let mut config = MilvusConfig::new("h", 1, Dimension::new(4).unwrap());
        config.expected_rows = 20_000;
        Arc::new(config)
    }

    #[tokio::test]
    async fn a_missing_collection_is_created_indexed_and_loaded() {
        let mut api = MockMilvusApi::new();
        let mut seq = Sequence::new();
        api.expect_has_collection()
            .withf(|name| name == "knowledge_chunks")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(false));
        // Unset, the layout follows the server: none on one whose upsert misroutes keyed rows.
        api.expect_server_version()
            .returning(|| Ok("v2.3.5".to_string()));
        api.expect_create_collection()
            .withf(|name, fields, partitions| {
                name == "knowledge_chunks"
                    && fields == expected_fields(Dimension::new(4).unwrap(), PartitionKey::None)
                    && !fields.iter().any(|f| f.partition_key)
                    && *partitions == 0
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(()));
        api.expect_create_index()
            .withf(|name, index| {
                name == "knowledge_chunks"
                    && index.index_name == "embedding"
                    && index.field_name == "embedding"
                    && index.index_type == "IVF_FLAT"
                    && index.metric_type == "IP"
                    && index.params.get("nlist").map(String::as_str) == Some("566")
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(()));
        api.expect_load_status()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(LoadStatus::NotLoaded));
        api.expect_load_collection()
            .withf(|name| name == "knowledge_chunks")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(()));
        let manager = MilvusSchemaManager::new(Arc::new(api), config());
        manager.ensure_collection().await.unwrap();
    }

    #[tokio::test]
    async fn a_mismatched_collection_is_refused_and_not_touched() {
        let mut api = MockMilvusApi::new();
        api.expect_has_collection().returning(|_| Ok(true));
        api.expect_describe_collection().returning(|_| {
            let mut fields = expected_fields(Dimension::new(8).unwrap(), PartitionKey::None);
            fields.retain(|f| f.name != FIELD_PROJECT_ID);
            Ok(CollectionDescription {
                fields,
                num_partitions: 0,
            })
        });
        api.expect_describe_index().returning(|_, _| {
            Ok(vec![IndexSpec {
                metric_type: "L2".into(),
                ..expected_index(&config())
            }])
        });
        // No create/drop/load expectations: calling any of them fails the test.
        let mut keyed = (*config()).clone();
        keyed.partition_key = Some(PartitionKey::Tenant);
        let manager = MilvusSchemaManager::new(Arc::new(api), Arc::new(keyed));
        let err = manager.ensure_collection().await.unwrap_err();
        match err {
            GatewayError::SchemaMismatch {
                object, details, ..
            } => {
                assert_eq!(object, "knowledge_chunks");
                assert!(
                    details.contains(
                        "field embedding: expected FloatVector(dim=4), found FloatVector(dim=8)"
                    ),
                    "{details}"
                );
                assert!(
                    details.contains("field project_id: expected Int64, missing"),
                    "{details}"
                );
                assert!(
                    details.contains("index metric: expected IP, found L2"),
                    "{details}"
                );
                assert!(
                    details.contains(
                        "layout: expected partition key tenant_id, 64 partitions, \
                         found no partition key"
                    ),
                    "{details}"
                );
            }
            other => panic!("expected SchemaMismatch, got {other:?}"),
        }
    }

    /// With `MILVUS_PARTITION_KEY` unset, a collection made before partition keys (or by
    /// another tool) is served as it is.
    #[tokio::test]
    async fn a_matching_loaded_collection_needs_no_change_whatever_its_layout() {
        for key in [PartitionKey::Tenant, PartitionKey::None] {
            let mut api = MockMilvusApi::new();
            api.expect_has_collection().returning(|_| Ok(true));
            api.expect_describe_collection().returning(move |_| {
                Ok(CollectionDescription {
                    fields: expected_fields(Dimension::new(4).unwrap(), key),
                    num_partitions: if key == PartitionKey::Tenant { 16 } else { 0 },
                })
            });
            api.expect_describe_index()
                .withf(|name, field| name == "knowledge_chunks" && field == "embedding")
                .returning(|_, _| Ok(vec![expected_index(&config())]));
            api.expect_load_status()
                .returning(|_| Ok(LoadStatus::Loaded));
            api.expect_server_version()
                .returning(|| Ok("v2.4.0".to_string()));
            let manager = MilvusSchemaManager::new(Arc::new(api), config());
            manager.ensure_collection().await.unwrap();
        }
    }

    /// `health` names a keyed collection on a server whose upsert misroutes its rows, even
    /// with the layout setting unset.
    #[tokio::test]
    async fn a_keyed_collection_on_a_server_that_misroutes_its_rows_is_reported() {
        let mut api = MockMilvusApi::new();
        api.expect_has_collection().returning(|_| Ok(true));
        api.expect_describe_collection().returning(|_| {
            Ok(CollectionDescription {
                fields: expected_fields(Dimension::new(4).unwrap(), PartitionKey::Tenant),
                num_partitions: 64,
            })
        });
        api.expect_server_version()
            .returning(|| Ok("v2.3.5".to_string()));
        let manager = MilvusSchemaManager::new(Arc::new(api), config());
        let problem = manager.mismatch().await.unwrap().unwrap();
        assert!(
            problem.contains("wrong partition") && problem.contains("v2.3.5"),
            "{problem}"
        );
    }

    /// A server that says it keeps keyed rows (2.4.5) with no collection yet: a keyed one
    /// is created with `partitions`, then the probe's rows are written twice, counted
    /// (`found` each time) and deleted. A failed probe drops the keyed collection, and with
    /// the key unset the collection is created again without one.
    fn newer_server(partitions: u32, found: u64, key_configured: bool) -> MockMilvusApi {
        let mut newer = MockMilvusApi::new();
        let mut seq = Sequence::new();
        newer.expect_has_collection().returning(|_| Ok(false));
        newer
            .expect_server_version()
            .returning(|| Ok("v2.4.5".to_string()));
        newer
            .expect_create_collection()
            .withf(move |_, fields, count| {
                fields.iter().filter(|f| f.partition_key).count() == 1
                    && fields
                        .iter()
                        .any(|f| f.name == "tenant_id" && f.partition_key)
                    && *count == partitions
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(()));
        newer.expect_create_index().returning(|_, _| Ok(()));
        newer
            .expect_load_status()
            .returning(|_| Ok(LoadStatus::Loaded));
        newer
            .expect_upsert()
            .withf(|_, batch| batch.chunk_ids.iter().all(|&id| id < 0))
            .times(2)
            .returning(|_, batch| Ok(batch.row_count() as u64));
        newer
            .expect_count()
            .times(24)
            .returning(move |_, _, _| Ok(found));
        newer
            .expect_delete()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(8));
        if found != 1 {
            newer
                .expect_drop_collection()
                .times(1)
                .in_sequence(&mut seq)
                .returning(|_| Ok(()));
            if !key_configured {
                newer
                    .expect_create_collection()
                    .withf(|_, fields, count| {
                        !fields.iter().any(|f| f.partition_key) && *count == 0
                    })
                    .times(1)
                    .in_sequence(&mut seq)
                    .returning(|_, _, _| Ok(()));
            }
        }
        newer
    }

    /// Unset, a new collection is keyed by tenant on a server that keeps keyed rows, once
    /// the probe finds its rows under their tenants; on a server that fails the probe the
    /// keyed collection is dropped and made again without a key.
    #[tokio::test]
    async fn unset_a_new_collection_is_keyed_where_the_probe_finds_rows_under_their_tenant() {
        MilvusSchemaManager::new(Arc::new(newer_server(64, 1, false)), config())
            .ensure_collection()
            .await
            .unwrap();
        MilvusSchemaManager::new(Arc::new(newer_server(64, 0, false)), config())
            .ensure_collection()
            .await
            .unwrap();
    }

    /// Asked for explicitly, a key the server fails to keep is refused, and the keyed
    /// collection made for it is dropped.
    #[tokio::test]
    async fn an_explicit_key_that_fails_the_probe_is_refused_and_dropped() {
        let mut keyed = (*config()).clone();
        keyed.partition_key = Some(PartitionKey::Tenant);
        let err = MilvusSchemaManager::new(Arc::new(newer_server(64, 0, true)), Arc::new(keyed))
            .ensure_collection()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("8 were not found under their tenant")
                    && details.contains("MILVUS_PARTITION_KEY=none")),
            "{err}"
        );
    }

    /// A partition key is declared only where the server keeps keyed rows where a filtered
    /// read looks for them; elsewhere nothing is created.
    #[tokio::test]
    async fn a_tenant_key_is_created_on_a_server_that_routes_by_it_and_refused_elsewhere() {
        let mut keyed = (*config()).clone();
        keyed.partition_key = Some(PartitionKey::Tenant);
        keyed.num_partitions = 16;
        let keyed = Arc::new(keyed);

        let mut old = MockMilvusApi::new();
        old.expect_has_collection().returning(|_| Ok(false));
        old.expect_server_version()
            .returning(|| Ok("v2.3.5".to_string()));
        // No create expectation: creating anything fails the test.
        let err = MilvusSchemaManager::new(Arc::new(old), keyed.clone())
            .ensure_collection()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("v2.3.5") && details.contains("MILVUS_PARTITION_KEY=none")),
            "{err}"
        );

        MilvusSchemaManager::new(Arc::new(newer_server(16, 1, true)), keyed)
            .ensure_collection()
            .await
            .unwrap();
    }

    /// The benchmark's keyed collection is made on any server (2.3.5 here), and nothing is
    /// written to it: no probe rows, which an insert-only load must not meet.
    #[tokio::test]
    async fn a_keyed_collection_for_inserts_is_made_on_any_server_without_the_probe() {
        let mut config = (*config()).clone();
        config.num_partitions = 16;
        let mut api = MockMilvusApi::new();
        let mut seq = Sequence::new();
        api.expect_server_version()
            .returning(|| Ok("v2.3.5".to_string()));
        api.expect_create_collection()
            .withf(|_, fields, count| {
                fields
                    .iter()
                    .any(|f| f.name == "tenant_id" && f.partition_key)
                    && *count == 16
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(()));
        api.expect_create_index()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(()));
        api.expect_load_status()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(LoadStatus::NotLoaded));
        api.expect_load_collection()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(()));
        // No upsert, count or delete expectations: a probe fails the test.
        MilvusSchemaManager::new(Arc::new(api), Arc::new(config))
            .create_keyed_for_inserts()
            .await
            .unwrap();
    }

    /// Milvus has no named partitions beside a partition key: the helper says so instead of
    /// passing Milvus's refusal on.
    #[tokio::test]
    async fn named_partitions_are_refused_on_a_keyed_collection() {
        let mut api = MockMilvusApi::new();
        api.expect_describe_collection().returning(|_| {
            Ok(CollectionDescription {
                fields: expected_fields(Dimension::new(4).unwrap(), PartitionKey::Tenant),
                num_partitions: 64,
            })
        });
        // No partition expectations: creating one fails the test.
        let manager = MilvusSchemaManager::new(Arc::new(api), config());
        let err = manager
            .ensure_partition(tenant(7), project(3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, GatewayError::SchemaMismatch { details, .. }
                if details.contains("named partitions need a collection without a partition key")
                    && details.contains("MILVUS_PARTITION_KEY=none")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn partitions_are_released_before_they_are_dropped() {
        let mut api = MockMilvusApi::new();
        let mut seq = Sequence::new();
        api.expect_has_partition()
            .withf(|c, p| c == "knowledge_chunks" && p == "tenant_7_project_3")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(true));
        api.expect_release_partition()
            .withf(|_, p| p == "tenant_7_project_3")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(()));
        api.expect_drop_partition()
            .withf(|_, p| p == "tenant_7_project_3")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(()));
        let manager = MilvusSchemaManager::new(Arc::new(api), config());
        assert!(manager.drop_partition(tenant(7), project(3)).await.unwrap());
    }

    #[test]
    fn collection_names_are_validated() {
        for ok in ["knowledge_chunks", "_x", "A1_b"] {
            assert!(validate_collection_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "a-b", "a b", "x;drop", &"a".repeat(256)] {
            assert!(validate_collection_name(bad).is_err(), "{bad}");
        }
    }
}
