//! Operator reads: every row of an id range, records by id, counts; and turning query
//! replies back into rows. Milvus caps a reply at 16,384 rows (and tonic at 4 MB), which
//! is what shapes these calls.

use std::collections::{BTreeMap, HashMap};

use futures::stream::{self, StreamExt, TryStreamExt};

use vectorgate_domain::{
    ChunkId, Embedding, GatewayError, ProjectId, ScanFilter, TenantConflict, TenantId, VectorRecord,
};

use super::{malformed, MilvusStore, IDS_PER_EXPRESSION};
use crate::client::{Column, QueryCall, Rows};
use crate::config::{bytes_per_row, MAX_REPLY_BYTES};
use crate::queries;
use crate::schema::{FIELD_CHUNK_ID, FIELD_EMBEDDING, FIELD_PROJECT_ID, FIELD_TENANT_ID};

/// Milvus's largest query reply (`offset + limit`, `quotaAndLimits...maxQueryResultWindow`).
pub const MAX_QUERY_ROWS: u64 = 16_384;

/// One row read back by an operator scan or fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct MilvusRow {
    pub chunk_id: ChunkId,
    pub tenant_id: TenantId,
    pub project_id: ProjectId,
    /// Present when the scan asked for vectors.
    pub embedding: Option<Embedding>,
}

impl MilvusRow {
    /// The row as a record, when it carries its vector.
    pub fn into_record(self) -> Option<VectorRecord> {
        let embedding = self.embedding?;
        Some(VectorRecord::new(
            self.chunk_id,
            self.tenant_id,
            self.project_id,
            embedding,
        ))
    }
}

impl MilvusStore {
    /// Every row with `from <= chunk_id <= to` matching `filter`, ordered by chunk id.
    ///
    /// Milvus returns at most 16,384 rows per query (and tonic at most 4 MB per reply), so
    /// the range is counted first and halved until each piece fits one reply.
    pub async fn scan_range(
        &self,
        filter: ScanFilter,
        from: ChunkId,
        to: ChunkId,
        with_vectors: bool,
    ) -> Result<Vec<MilvusRow>, GatewayError> {
        self.check_open()?;
        if from > to {
            return Err(GatewayError::invalid(format!(
                "scan range is empty: from {from} > to {to}"
            )));
        }
        let limit = self.rows_per_reply(with_vectors);
        let mut pending = vec![(from.get(), to.get())];
        let mut out = Vec::new();
        while let Some((lo, hi)) = pending.pop() {
            let expr = queries::id_range(filter, ChunkId::new(lo)?, ChunkId::new(hi)?);
            let n = self
                .inner
                .api
                .count(self.collection(), &expr, self.config().consistency)
                .await?;
            if n == 0 {
                continue;
            }
            if n >= limit && lo < hi {
                split(&mut pending, lo, hi);
                continue;
            }
            let rows = self.query_rows(expr, Some(limit), with_vectors).await?;
            if rows.len() as u64 >= limit && lo < hi {
                // Rows arrived between count and query; split and read again.
                split(&mut pending, lo, hi);
                continue;
            }
            out.extend(rows);
        }
        out.sort_by_key(|r| r.chunk_id);
        Ok(out)
    }

    /// The records with these ids, whatever their tenant, ordered by chunk id; missing ids
    /// are absent from the result.
    pub async fn fetch(&self, ids: &[ChunkId]) -> Result<Vec<VectorRecord>, GatewayError> {
        self.check_open()?;
        let per_call = (self.rows_per_reply(true) as usize).min(IDS_PER_EXPRESSION);
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(per_call) {
            let rows = self
                .query_rows(queries::chunk_ids(chunk), None, true)
                .await?;
            out.extend(rows.into_iter().filter_map(MilvusRow::into_record));
        }
        out.sort_by_key(|r| r.chunk_id);
        Ok(out)
    }

    /// The records whose id is stored under another tenant, read at the configured
    /// consistency; none when moves are allowed.
    pub(crate) async fn stored_tenant_conflicts(
        &self,
        records: &[VectorRecord],
    ) -> Result<Vec<TenantConflict>, GatewayError> {
        if self.config().allow_tenant_move || records.is_empty() {
            return Ok(Vec::new());
        }
        let requested: HashMap<ChunkId, TenantId> =
            records.iter().map(|r| (r.chunk_id, r.tenant_id)).collect();
        let mut sorted: Vec<ChunkId> = requested.keys().copied().collect();
        sorted.sort_unstable();
        let (runs, scattered) = dense_runs(&sorted);
        // A dense run is asked for by range: Milvus parses an `in` list at about 5 µs an id,
        // a range in constant time. A run made of long single-tenant stretches asks per
        // stretch for the rows of other tenants only (an empty reply unless there is a
        // conflict); any other run for all its rows, at most a few per id asked.
        let mut exprs: Vec<String> = Vec::new();
        for run in runs {
            let stretches: Vec<&[ChunkId]> =
                run.chunk_by(|a, b| requested[a] == requested[b]).collect();
            if stretches.iter().all(|s| s.len() >= RUN_MIN_IDS) {
                exprs.extend(stretches.iter().map(|s| {
                    queries::held_by_others_in_range(requested[&s[0]], s[0], s[s.len() - 1])
                }));
            } else {
                exprs.push(queries::id_range(
                    ScanFilter::all(),
                    run[0],
                    run[run.len() - 1],
                ));
            }
        }
        let mut by_tenant: BTreeMap<TenantId, Vec<ChunkId>> = BTreeMap::new();
        for id in &scattered {
            by_tenant.entry(requested[id]).or_default().push(*id);
        }
        // Per tenant, a query asks only for ids another tenant holds, so its reply is empty
        // unless there is a conflict; a call spread over more tenants than that saves
        // queries asks for its ids whatever their tenant. The queries run side by side, as
        // many as the upserts that follow: every write waits for the whole check.
        let per_call = (self.rows_per_reply(false) as usize).min(IDS_PER_EXPRESSION);
        if by_tenant.len() <= scattered.len().div_ceil(per_call) {
            exprs.extend(by_tenant.iter().flat_map(|(&tenant, ids)| {
                ids.chunks(per_call)
                    .map(move |chunk| queries::held_by_others(tenant, chunk))
            }));
        } else {
            exprs.extend(scattered.chunks(per_call).map(queries::chunk_ids));
        }
        let replies: Vec<Vec<MilvusRow>> = stream::iter(exprs)
            .map(|expr| self.query_rows(expr, None, false))
            .buffer_unordered(self.config().upsert_concurrency.max(1))
            .try_collect()
            .await?;
        let mut conflicts: Vec<TenantConflict> = replies
            .into_iter()
            .flatten()
            .filter_map(|row| {
                // A range's reply also holds stored ids the call does not name.
                let wanted = *requested.get(&row.chunk_id)?;
                (row.tenant_id != wanted).then_some(TenantConflict {
                    chunk_id: row.chunk_id,
                    owner: row.tenant_id,
                    requested: wanted,
                })
            })
            .collect();
        conflicts.sort_by_key(|c| c.chunk_id);
        Ok(conflicts)
    }

    /// Deletes these ids whatever tenant holds them (the dual-mode relay, which copies
    /// pgvector's state id by id); returns the rows Milvus reports deleted.
    pub async fn delete_ids(&self, ids: &[ChunkId]) -> Result<u64, GatewayError> {
        self.check_open()?;
        let mut deleted = 0;
        for chunk in ids.chunks(IDS_PER_EXPRESSION) {
            deleted += self
                .inner
                .api
                .delete(self.collection(), &queries::chunk_ids(chunk))
                .await?;
        }
        Ok(deleted)
    }

    /// Rows matching the filter (`count(*)` at the configured consistency).
    pub async fn count(&self, filter: ScanFilter) -> Result<u64, GatewayError> {
        self.check_open()?;
        let mut expr = queries::scan_filter(filter);
        if expr.is_empty() {
            expr = queries::every_row();
        }
        self.inner
            .api
            .count(self.collection(), &expr, self.config().consistency)
            .await
    }

    fn rows_per_reply(&self, with_vectors: bool) -> u64 {
        if with_vectors {
            let by_bytes = (MAX_REPLY_BYTES / bytes_per_row(self.config().dimension)) as u64;
            by_bytes.clamp(1, MAX_QUERY_ROWS)
        } else {
            MAX_QUERY_ROWS
        }
    }

    async fn query_rows(
        &self,
        expr: String,
        limit: Option<u64>,
        with_vectors: bool,
    ) -> Result<Vec<MilvusRow>, GatewayError> {
        let mut output_fields = vec![
            FIELD_CHUNK_ID.to_string(),
            FIELD_TENANT_ID.to_string(),
            FIELD_PROJECT_ID.to_string(),
        ];
        if with_vectors {
            output_fields.push(FIELD_EMBEDDING.to_string());
        }
        let rows = self
            .inner
            .api
            .query(&QueryCall {
                collection: self.collection().to_string(),
                expr,
                output_fields,
                limit,
                consistency: self.config().consistency,
            })
            .await?;
        rows_to_milvus_rows(rows, with_vectors)
    }
}

/// Ids closer than this to the previous one continue a run.
const RUN_MAX_GAP: i64 = 8;
/// A run shorter than this is cheaper as part of an `in` list.
const RUN_MIN_IDS: usize = 64;

/// Splits sorted, distinct ids into dense runs and the ids outside them. Within a run
/// consecutive ids are at most [`RUN_MAX_GAP`] apart, so a range query returns at most that
/// many rows per id asked; a run spans fewer than [`MAX_QUERY_ROWS`] ids, so its reply fits
/// in one.
fn dense_runs(sorted: &[ChunkId]) -> (Vec<&[ChunkId]>, Vec<ChunkId>) {
    let mut runs = Vec::new();
    let mut scattered = Vec::new();
    let mut start = 0;
    for end in 1..=sorted.len() {
        let continues = end < sorted.len()
            && sorted[end].get() - sorted[end - 1].get() <= RUN_MAX_GAP
            && sorted[end].get() - sorted[start].get() < MAX_QUERY_ROWS as i64;
        if continues {
            continue;
        }
        let run = &sorted[start..end];
        if run.len() >= RUN_MIN_IDS {
            runs.push(run);
        } else {
            scattered.extend_from_slice(run);
        }
        start = end;
    }
    (runs, scattered)
}

fn split(pending: &mut Vec<(i64, i64)>, lo: i64, hi: i64) {
    let mid = lo + (hi - lo) / 2;
    pending.push((mid + 1, hi));
    pending.push((lo, mid));
}

fn int_column<'a>(rows: &'a Rows, name: &str) -> Result<&'a [i64], GatewayError> {
    match rows.columns.get(name) {
        Some(Column::Int64(values)) => Ok(values),
        _ => Err(malformed("query", format!("no Int64 column {name}"))),
    }
}

fn rows_to_milvus_rows(rows: Rows, with_vectors: bool) -> Result<Vec<MilvusRow>, GatewayError> {
    if rows.columns.is_empty() {
        return Ok(Vec::new());
    }
    let ids = int_column(&rows, FIELD_CHUNK_ID)?;
    let tenants = int_column(&rows, FIELD_TENANT_ID)?;
    let projects = int_column(&rows, FIELD_PROJECT_ID)?;
    if tenants.len() != ids.len() || projects.len() != ids.len() {
        return Err(malformed("query", "columns of different lengths"));
    }
    let vectors = if with_vectors {
        match rows.columns.get(FIELD_EMBEDDING) {
            Some(Column::FloatVector { dim, values })
                if *dim > 0 && values.len() == ids.len() * *dim as usize =>
            {
                Some((*dim as usize, values))
            }
            _ => return Err(malformed("query", "no embedding column of the row count")),
        }
    } else {
        None
    };
    let mut out = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        let embedding = match vectors {
            Some((dim, values)) => Some(
                Embedding::new(values[i * dim..(i + 1) * dim].to_vec())
                    .map_err(|e| malformed("query", e))?,
            ),
            None => None,
        };
        out.push(MilvusRow {
            chunk_id: ChunkId::new(ids[i]).map_err(|e| malformed("query", e))?,
            tenant_id: TenantId::new(tenants[i]).map_err(|e| malformed("query", e))?,
            project_id: ProjectId::new(projects[i]).map_err(|e| malformed("query", e))?,
            embedding,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use vectorgate_domain::VectorStoreGateway;
    use vectorgate_testkit::{chunk, project, tenant};

    use super::super::test_support::{config, emb, store};
    use super::*;
    use crate::client::MockMilvusApi;
    use crate::config::Consistency;

    #[tokio::test]
    async fn configured_consistency_is_sent_with_reads() {
        let mut config = config();
        config.consistency = Consistency::Eventually;
        let mut api = MockMilvusApi::new();
        api.expect_count()
            .withf(|collection, expr, consistency| {
                collection == "knowledge_chunks"
                    && expr == "chunk_id >= 0"
                    && *consistency == Consistency::Eventually
            })
            .times(1)
            .returning(|_, _, _| Ok(5));
        api.expect_count()
            .withf(|_, expr, _| expr == "tenant_id == 3")
            .times(1)
            .returning(|_, _, _| Ok(2));
        let store = store(config, api);
        assert_eq!(store.count(ScanFilter::all()).await.unwrap(), 5);
        assert_eq!(store.count(ScanFilter::tenant(tenant(3))).await.unwrap(), 2);
    }

    fn rows(ids: &[i64]) -> Rows {
        Rows {
            columns: BTreeMap::from([
                (FIELD_CHUNK_ID.to_string(), Column::Int64(ids.to_vec())),
                (
                    FIELD_TENANT_ID.to_string(),
                    Column::Int64(vec![1; ids.len()]),
                ),
                (
                    FIELD_PROJECT_ID.to_string(),
                    Column::Int64(vec![2; ids.len()]),
                ),
                (
                    FIELD_EMBEDDING.to_string(),
                    Column::FloatVector {
                        dim: 4,
                        values: ids
                            .iter()
                            .flat_map(|&id| [id as f32, 0.0, 0.0, 1.0])
                            .collect(),
                    },
                ),
            ]),
        }
    }

    /// A call larger than one expression is checked in several queries (sent side by
    /// side); a conflict in any of them refuses the whole call before anything is written.
    #[tokio::test]
    async fn a_conflict_in_any_query_of_a_large_call_refuses_it_unwritten() {
        let queried = Arc::new(Mutex::new(Vec::<i64>::new()));
        let mut api = MockMilvusApi::new();
        let seen = Arc::clone(&queried);
        api.expect_query()
            .withf(|call| call.output_fields == ["chunk_id", "tenant_id", "project_id"])
            .times(3)
            .returning(move |call| {
                let ids: Vec<i64> = call
                    .expr
                    .trim_start_matches("tenant_id != 2 && chunk_id in [")
                    .trim_end_matches(']')
                    .split(", ")
                    .map(|id| id.parse().unwrap())
                    .collect();
                seen.lock().unwrap().extend(&ids);
                // Chunk 89990 is stored under tenant 1 (the helper's tenant).
                Ok(if ids.contains(&89990) {
                    rows(&[89990])
                } else {
                    Rows::default()
                })
            });
        // No upsert is expected: the mock fails the test if one is sent.
        let store = store(config(), api);
        // Ids 10 apart: too sparse for a range, so they go by `in` list.
        let records: Vec<VectorRecord> = (0..9000)
            .map(|i| VectorRecord::new(chunk(i * 10), tenant(2), project(2), emb(1.0)))
            .collect();
        let err = store.upsert_vectors(&records).await.unwrap_err();
        match err {
            GatewayError::TenantConflict { conflicts } => assert_eq!(
                conflicts,
                vec![TenantConflict {
                    chunk_id: chunk(89990),
                    owner: tenant(1),
                    requested: tenant(2),
                }]
            ),
            other => panic!("expected a tenant conflict, got {other}"),
        }
        let mut queried = queried.lock().unwrap().clone();
        queried.sort_unstable();
        assert_eq!(
            queried,
            (0..9000).map(|i| i * 10).collect::<Vec<_>>(),
            "every id, once"
        );
    }

    /// A call spread over many tenants asks for its ids in one query whatever their tenant,
    /// instead of one query per tenant, and compares the tenants itself.
    #[tokio::test]
    async fn a_call_over_many_tenants_is_checked_by_id_in_few_queries() {
        let mut api = MockMilvusApi::new();
        api.expect_query()
            .withf(|call| {
                call.expr.starts_with("chunk_id in [") && call.expr.matches(", ").count() == 99
            })
            .times(1)
            // Chunk 70 is stored under tenant 1 (the helper's); the call puts it under 8.
            .returning(|_| Ok(rows(&[70])));
        let store = store(config(), api);
        let records: Vec<VectorRecord> = (1..=100)
            .map(|i| VectorRecord::new(chunk(i * 10), tenant(i + 1), project(2), emb(1.0)))
            .collect();
        let conflicts = store.tenant_conflicts(&records).await.unwrap();
        assert_eq!(
            conflicts,
            vec![TenantConflict {
                chunk_id: chunk(70),
                owner: tenant(1),
                requested: tenant(8),
            }]
        );
    }

    /// Dense ids of interleaved tenants are asked for by range, whatever their tenant: the
    /// reply may hold stored ids the call does not name, which are no conflict.
    #[tokio::test]
    async fn dense_ids_are_checked_by_range_and_unnamed_rows_ignored() {
        let mut api = MockMilvusApi::new();
        api.expect_query()
            .withf(|call| call.expr == "chunk_id >= 100 && chunk_id <= 9099")
            .times(1)
            // Under tenant 1 (the helper's): 100 (asked under tenant 2) and 5000 (not asked,
            // a gap of the call).
            .returning(|_| Ok(rows(&[100, 5000])));
        let store = store(config(), api);
        let records: Vec<VectorRecord> = (100..9100)
            .filter(|&id| id != 5000)
            .map(|id| VectorRecord::new(chunk(id), tenant(1 + id % 3), project(2), emb(1.0)))
            .collect();
        let conflicts = store.tenant_conflicts(&records).await.unwrap();
        assert_eq!(
            conflicts,
            vec![TenantConflict {
                chunk_id: chunk(100),
                owner: tenant(1),
                requested: tenant(2),
            }]
        );
    }

    /// A dense run of long single-tenant stretches asks per stretch for other tenants' rows
    /// only; ids too far from any run still go by `in` list.
    #[tokio::test]
    async fn single_tenant_stretches_ask_only_for_other_tenants_rows() {
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = Arc::clone(&asked);
        let mut api = MockMilvusApi::new();
        api.expect_query().times(3).returning(move |call| {
            seen.lock().unwrap().push(call.expr.clone());
            Ok(Rows::default())
        });
        let store = store(config(), api);
        let records: Vec<VectorRecord> = (0..200)
            .map(|id| VectorRecord::new(chunk(id), tenant(2 + id / 100), project(2), emb(1.0)))
            .chain([VectorRecord::new(
                chunk(90_000),
                tenant(2),
                project(2),
                emb(1.0),
            )])
            .collect();
        assert!(store.tenant_conflicts(&records).await.unwrap().is_empty());
        let mut asked = asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(
            asked,
            [
                "tenant_id != 2 && chunk_id >= 0 && chunk_id <= 99",
                "tenant_id != 2 && chunk_id in [90000]",
                "tenant_id != 3 && chunk_id >= 100 && chunk_id <= 199",
            ]
        );
    }

    #[test]
    fn dense_runs_break_at_wide_gaps_and_at_one_reply() {
        let ids = |r: std::ops::Range<i64>| r.map(chunk).collect::<Vec<_>>();
        let bounds = |runs: Vec<&[ChunkId]>| {
            runs.iter()
                .map(|r| (r[0].get(), r[r.len() - 1].get()))
                .collect::<Vec<_>>()
        };
        // A gap of 8 continues a run, a gap of 9 ends it.
        let mut sorted = ids(0..100);
        sorted.extend(ids(107..200));
        sorted.extend(ids(209..300));
        let (runs, scattered) = dense_runs(&sorted);
        assert_eq!(bounds(runs), [(0, 199), (209, 299)]);
        assert!(scattered.is_empty());
        // A run shorter than RUN_MIN_IDS is scattered.
        let mut sorted = ids(0..63);
        sorted.extend(ids(1000..1064));
        let (runs, scattered) = dense_runs(&sorted);
        assert_eq!(bounds(runs), [(1000, 1063)]);
        assert_eq!(scattered, ids(0..63));
        // No run spans a reply's worth of ids or more.
        let sorted = ids(0..40_000);
        let (runs, _) = dense_runs(&sorted);
        assert_eq!(
            bounds(runs),
            [(0, 16_383), (16_384, 32_767), (32_768, 39_999)]
        );
    }

    #[tokio::test]
    async fn scan_range_halves_ranges_that_would_overflow_one_reply() {
        let mut api = MockMilvusApi::new();
        api.expect_count().returning(|_, expr, _| match expr {
            "chunk_id >= 0 && chunk_id <= 3 && tenant_id == 1" => Ok(MAX_QUERY_ROWS),
            "chunk_id >= 0 && chunk_id <= 1 && tenant_id == 1" => Ok(2),
            "chunk_id >= 2 && chunk_id <= 3 && tenant_id == 1" => Ok(1),
            other => panic!("unexpected count {other}"),
        });
        api.expect_query()
            .withf(|call| {
                call.output_fields == ["chunk_id", "tenant_id", "project_id", "embedding"]
                    && call.limit == Some(MAX_QUERY_ROWS)
                    && call.consistency == Consistency::Session
            })
            .times(2)
            .returning(|call| match call.expr.as_str() {
                "chunk_id >= 0 && chunk_id <= 1 && tenant_id == 1" => Ok(rows(&[1, 0])),
                "chunk_id >= 2 && chunk_id <= 3 && tenant_id == 1" => Ok(rows(&[3])),
                other => panic!("unexpected query {other}"),
            });
        let store = store(config(), api);
        let scanned = store
            .scan_range(ScanFilter::tenant(tenant(1)), chunk(0), chunk(3), true)
            .await
            .unwrap();
        let ids: Vec<_> = scanned.iter().map(|r| r.chunk_id.get()).collect();
        assert_eq!(ids, vec![0, 1, 3]);
        assert_eq!(scanned[2].embedding, Some(emb(3.0)));
        assert!(store
            .scan_range(ScanFilter::all(), chunk(5), chunk(4), false)
            .await
            .unwrap_err()
            .is_invalid_input());
    }

    #[tokio::test]
    async fn fetch_queries_ids_of_any_tenant_with_all_fields() {
        let mut api = MockMilvusApi::new();
        api.expect_query()
            .withf(|call| {
                call.collection == "knowledge_chunks"
                    && call.expr == "chunk_id in [5, 3]"
                    && call.output_fields.len() == 4
                    && call.limit.is_none()
            })
            .times(1)
            .returning(|_| Ok(rows(&[5, 3])));
        let store = store(config(), api);
        let records = store.fetch(&[chunk(5), chunk(3)]).await.unwrap();
        assert_eq!(
            records,
            vec![
                VectorRecord::new(chunk(3), tenant(1), project(2), emb(3.0)),
                VectorRecord::new(chunk(5), tenant(1), project(2), emb(5.0)),
            ]
        );
    }
}
