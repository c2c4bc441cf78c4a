//! The comparison of the two stores, kept free of I/O so that it can be tested on hand-made
//! pages: one page of pgvector rows against the Milvus rows of the same chunk-id range.
//! `vectorgate reconcile` and the relay's periodic reconcile both use it.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use vectorgate_domain::{ChunkId, ProjectId, TenantId, VectorRecord};

/// Largest absolute difference between two vectors' components; `None` when their lengths
/// differ (which is always drift).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max),
    )
}

/// Why a chunk present in both stores is reported as differing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Difference {
    /// Same tenant and project, vectors differ by more than the tolerance.
    Vector { max_abs_diff: f32 },
    /// The vectors have different lengths.
    Dimension { pgvector: usize, milvus: usize },
    /// Milvus holds the chunk under another tenant or project.
    Owner {
        milvus_tenant_id: TenantId,
        milvus_project_id: ProjectId,
    },
}

/// Drift of one tenant/project group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupDrift {
    pub pgvector_rows: u64,
    pub milvus_rows: u64,
    /// In pgvector, not in Milvus.
    pub missing_in_milvus: Vec<ChunkId>,
    /// In Milvus (under this group), not in pgvector.
    pub only_in_milvus: Vec<ChunkId>,
    /// In both, but not equal.
    pub differing: Vec<(ChunkId, Difference)>,
}

impl GroupDrift {
    pub fn is_equal(&self) -> bool {
        self.missing_in_milvus.is_empty()
            && self.only_in_milvus.is_empty()
            && self.differing.is_empty()
            && self.pgvector_rows == self.milvus_rows
    }
}

/// The whole comparison, grouped by (tenant, project) in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftReport {
    pub groups: BTreeMap<(TenantId, ProjectId), GroupDrift>,
}

impl DriftReport {
    pub fn is_equal(&self) -> bool {
        self.groups.values().all(GroupDrift::is_equal)
    }

    fn group(&mut self, tenant: TenantId, project: ProjectId) -> &mut GroupDrift {
        self.groups.entry((tenant, project)).or_default()
    }

    /// Compares pgvector's rows of one chunk-id range with Milvus's rows of the same range.
    /// Both slices may come in any order; every id of the range must be in one of them.
    pub fn compare_range(
        &mut self,
        pgvector: &[VectorRecord],
        milvus: &[VectorRecord],
        tolerance: f32,
    ) {
        let milvus_by_id: HashMap<ChunkId, &VectorRecord> =
            milvus.iter().map(|r| (r.chunk_id, r)).collect();
        for pg in pgvector {
            let group = self.group(pg.tenant_id, pg.project_id);
            group.pgvector_rows += 1;
            let Some(mv) = milvus_by_id.get(&pg.chunk_id) else {
                group.missing_in_milvus.push(pg.chunk_id);
                continue;
            };
            if (mv.tenant_id, mv.project_id) != (pg.tenant_id, pg.project_id) {
                group.differing.push((
                    pg.chunk_id,
                    Difference::Owner {
                        milvus_tenant_id: mv.tenant_id,
                        milvus_project_id: mv.project_id,
                    },
                ));
                // The Milvus row counts towards the group Milvus files it under.
                self.group(mv.tenant_id, mv.project_id).milvus_rows += 1;
                continue;
            }
            group.milvus_rows += 1;
            let (a, b) = (pg.embedding.as_slice(), mv.embedding.as_slice());
            match max_abs_diff(a, b) {
                None => group.differing.push((
                    pg.chunk_id,
                    Difference::Dimension {
                        pgvector: a.len(),
                        milvus: b.len(),
                    },
                )),
                Some(diff) if diff > tolerance => group
                    .differing
                    .push((pg.chunk_id, Difference::Vector { max_abs_diff: diff })),
                Some(_) => {}
            }
        }
        let pg_ids: std::collections::HashSet<ChunkId> =
            pgvector.iter().map(|r| r.chunk_id).collect();
        for mv in milvus {
            if !pg_ids.contains(&mv.chunk_id) {
                let group = self.group(mv.tenant_id, mv.project_id);
                group.milvus_rows += 1;
                group.only_in_milvus.push(mv.chunk_id);
            }
        }
    }

    /// Every differing id, counted once.
    pub fn drift_rows(&self) -> u64 {
        self.ids_to_replay().len() as u64
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for g in self.groups.values() {
            t.pgvector_rows += g.pgvector_rows;
            t.milvus_rows += g.milvus_rows;
            t.missing_in_milvus += g.missing_in_milvus.len() as u64;
            t.only_in_milvus += g.only_in_milvus.len() as u64;
            t.differing += g.differing.len() as u64;
        }
        t
    }

    /// Every id whose Milvus copy must be made equal to pgvector's row (or removed when
    /// pgvector has none): missing, differing and Milvus-only ids, ascending.
    pub fn ids_to_replay(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self
            .groups
            .values()
            .flat_map(|g| {
                g.missing_in_milvus
                    .iter()
                    .chain(&g.only_in_milvus)
                    .copied()
                    .chain(g.differing.iter().map(|(id, _)| *id))
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub pgvector_rows: u64,
    pub milvus_rows: u64,
    pub missing_in_milvus: u64,
    pub only_in_milvus: u64,
    pub differing: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorgate_domain::Embedding;

    fn rec(id: i64, tenant: i64, project: i64, v: &[f32]) -> VectorRecord {
        VectorRecord::new(
            ChunkId::new(id).unwrap(),
            TenantId::new(tenant).unwrap(),
            ProjectId::new(project).unwrap(),
            Embedding::new(v.to_vec()).unwrap(),
        )
    }

    fn key(t: i64, p: i64) -> (TenantId, ProjectId) {
        (TenantId::new(t).unwrap(), ProjectId::new(p).unwrap())
    }

    #[test]
    fn equal_pages_report_no_drift() {
        let rows = vec![rec(1, 1, 1, &[0.5, 0.5]), rec(2, 1, 2, &[0.1, 0.2])];
        let mut report = DriftReport::default();
        report.compare_range(&rows, &rows, 1e-5);
        assert!(report.is_equal());
        assert_eq!(report.totals().pgvector_rows, 2);
        assert_eq!(report.totals().milvus_rows, 2);
    }

    #[test]
    fn each_kind_of_drift_is_reported_under_its_group() {
        let pg = vec![
            rec(1, 1, 1, &[0.5, 0.5]),
            rec(2, 1, 1, &[0.1, 0.2]),
            rec(3, 1, 2, &[0.3, 0.3]),
            rec(4, 2, 1, &[0.3, 0.3]),
        ];
        let mv = vec![
            rec(1, 1, 1, &[0.5, 0.5 + 1e-7]), // within tolerance
            rec(3, 1, 2, &[0.3, 0.4]),        // vector changed
            rec(4, 2, 2, &[0.3, 0.3]),        // other project
            rec(9, 3, 1, &[0.0, 1.0]),        // only in Milvus
        ];
        let mut report = DriftReport::default();
        report.compare_range(&pg, &mv, 1e-5);
        assert!(!report.is_equal());
        assert_eq!(
            report.groups[&key(1, 1)].missing_in_milvus,
            vec![ChunkId::new(2).unwrap()]
        );
        let (id, diff) = report.groups[&key(1, 2)].differing[0];
        assert_eq!(id.get(), 3);
        assert!(
            matches!(diff, Difference::Vector { max_abs_diff } if (max_abs_diff - 0.1).abs() < 1e-6)
        );
        assert!(matches!(
            report.groups[&key(2, 1)].differing[0].1,
            Difference::Owner { .. }
        ));
        assert_eq!(report.groups[&key(2, 2)].milvus_rows, 1);
        assert_eq!(
            report.groups[&key(3, 1)].only_in_milvus,
            vec![ChunkId::new(9).unwrap()]
        );
        let totals = report.totals();
        assert_eq!((totals.pgvector_rows, totals.milvus_rows), (4, 4));
        assert_eq!(
            (
                totals.missing_in_milvus,
                totals.only_in_milvus,
                totals.differing
            ),
            (1, 1, 2)
        );
        let ids: Vec<i64> = report.ids_to_replay().iter().map(|c| c.get()).collect();
        assert_eq!(ids, vec![2, 3, 4, 9]);
    }

    #[test]
    fn a_count_difference_alone_is_drift() {
        let mut report = DriftReport::default();
        report.group(key(1, 1).0, key(1, 1).1).pgvector_rows = 1;
        assert!(!report.is_equal());
    }

    #[test]
    fn max_abs_diff_flags_length_mismatch() {
        assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(max_abs_diff(&[1.0, -2.0], &[1.5, -2.0]), Some(0.5));
    }
}
