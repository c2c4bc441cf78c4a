//! Boolean expressions sent to Milvus, built only from typed integers.
//!
//! Every function takes validated ids (`TenantId`, `ProjectId`, `ChunkId`, all `i64 >= 0`)
//! and formats them as decimal integers, so no caller-supplied string ever reaches an
//! expression. Field names are the schema's constants.

use std::fmt::Write;

use vectorgate_domain::{ChunkId, ProjectFilter, ProjectId, ScanFilter, SearchScope, TenantId};

use crate::schema::{FIELD_CHUNK_ID, FIELD_PROJECT_ID, FIELD_TENANT_ID};

/// `tenant_id == 7` or `tenant_id == 7 && project_id in [1, 2]`.
pub fn scope_filter(scope: &SearchScope) -> String {
    tenant_projects(scope.tenant_id(), scope.project_filter())
}

/// `tenant_id == 7`, plus ` && project_id in [..]` when the projects are restricted.
pub fn tenant_projects(tenant_id: TenantId, projects: &ProjectFilter) -> String {
    let mut expr = format!("{FIELD_TENANT_ID} == {}", tenant_id.get());
    if let ProjectFilter::Only(set) = projects {
        expr.push_str(" && ");
        push_in_list(&mut expr, FIELD_PROJECT_ID, set.iter().map(|p| p.get()));
    }
    expr
}

/// `tenant_id == 7 && project_id == 3` (delete a whole project).
pub fn project_scope(tenant_id: TenantId, project_id: ProjectId) -> String {
    format!(
        "{FIELD_TENANT_ID} == {} && {FIELD_PROJECT_ID} == {}",
        tenant_id.get(),
        project_id.get()
    )
}

/// `tenant_id == 7` (delete a whole tenant).
pub fn tenant_scope(tenant_id: TenantId) -> String {
    format!("{FIELD_TENANT_ID} == {}", tenant_id.get())
}

/// `tenant_id == 7 [&& project_id in [..]] && chunk_id in [10, 11]`: ids within a tenant,
/// so an id owned by another tenant never matches.
pub fn chunks_in_scope(tenant_id: TenantId, projects: &ProjectFilter, ids: &[ChunkId]) -> String {
    let mut expr = tenant_projects(tenant_id, projects);
    expr.push_str(" && ");
    push_in_list(&mut expr, FIELD_CHUNK_ID, ids.iter().map(|c| c.get()));
    expr
}

/// `chunk_id in [10, 11]` regardless of tenant (operator fetch).
pub fn chunk_ids(ids: &[ChunkId]) -> String {
    let mut expr = String::new();
    push_in_list(&mut expr, FIELD_CHUNK_ID, ids.iter().map(|c| c.get()));
    expr
}

/// `tenant_id != 7 && chunk_id in [10, 11]`: which of these ids another tenant holds (the
/// reply is empty in the common case, whatever the ids' number).
pub fn held_by_others(tenant_id: TenantId, ids: &[ChunkId]) -> String {
    let mut expr = format!("{FIELD_TENANT_ID} != {} && ", tenant_id.get());
    push_in_list(&mut expr, FIELD_CHUNK_ID, ids.iter().map(|c| c.get()));
    expr
}

/// `tenant_id != 7 && chunk_id >= 10 && chunk_id <= 900`: the same question for every id
/// of a range.
pub fn held_by_others_in_range(tenant_id: TenantId, from: ChunkId, to: ChunkId) -> String {
    format!(
        "{FIELD_TENANT_ID} != {} && {FIELD_CHUNK_ID} >= {} && {FIELD_CHUNK_ID} <= {}",
        tenant_id.get(),
        from.get(),
        to.get()
    )
}

/// `tenant_id == 3 && chunk_id == -3`: one row of the layout probe, under its tenant.
pub fn probe_row(tenant_id: i64, chunk_id: i64) -> String {
    format!("{FIELD_TENANT_ID} == {tenant_id} && {FIELD_CHUNK_ID} == {chunk_id}")
}

/// `chunk_id in [-1, -2]`: the layout probe's rows, whatever their tenant.
pub fn probe_rows(chunk_ids: &[i64]) -> String {
    let mut expr = String::new();
    push_in_list(&mut expr, FIELD_CHUNK_ID, chunk_ids.iter().copied());
    expr
}

/// The scan filter alone: `""` (everything: Milvus needs an expression or a limit, the
/// caller adds the id range), `tenant_id == 1` or `tenant_id == 1 && project_id == 2`.
pub fn scan_filter(filter: ScanFilter) -> String {
    match (filter.tenant_id, filter.project_id) {
        (Some(t), Some(p)) => project_scope(t, p),
        (Some(t), None) => tenant_scope(t),
        // `ScanFilter::new` refuses a project without a tenant; a hand-built one would
        // otherwise silently widen to everything, so it is honoured as written.
        (None, Some(p)) => format!("{FIELD_PROJECT_ID} == {}", p.get()),
        (None, None) => String::new(),
    }
}

/// `chunk_id >= 1 && chunk_id <= 9 [&& <scan filter>]`.
pub fn id_range(filter: ScanFilter, from: ChunkId, to: ChunkId) -> String {
    let mut expr = format!(
        "{FIELD_CHUNK_ID} >= {} && {FIELD_CHUNK_ID} <= {}",
        from.get(),
        to.get()
    );
    let rest = scan_filter(filter);
    if !rest.is_empty() {
        expr.push_str(" && ");
        expr.push_str(&rest);
    }
    expr
}

/// `chunk_id >= 0` matches every row: Milvus's count(*) and delete want a non-empty
/// expression in 2.3.
pub fn every_row() -> String {
    format!("{FIELD_CHUNK_ID} >= 0")
}

fn push_in_list(expr: &mut String, field: &str, values: impl Iterator<Item = i64>) {
    let _ = write!(expr, "{field} in [");
    for (i, v) in values.enumerate() {
        if i > 0 {
            expr.push_str(", ");
        }
        let _ = write!(expr, "{v}");
    }
    expr.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorgate_testkit::{chunk, project, tenant};

    #[test]
    fn whole_tenant_scope() {
        assert_eq!(
            scope_filter(&SearchScope::tenant(tenant(7))),
            "tenant_id == 7"
        );
    }

    #[test]
    fn project_scope_is_sorted_and_deduplicated() {
        let scope = SearchScope::projects(tenant(7), [project(2), project(1), project(2)]).unwrap();
        assert_eq!(
            scope_filter(&scope),
            "tenant_id == 7 && project_id in [1, 2]"
        );
    }

    #[test]
    fn ids_within_a_tenant() {
        assert_eq!(
            chunks_in_scope(tenant(3), &ProjectFilter::All, &[chunk(10), chunk(11)]),
            "tenant_id == 3 && chunk_id in [10, 11]"
        );
        let only = ProjectFilter::Only([project(4)].into_iter().collect());
        assert_eq!(
            chunks_in_scope(tenant(3), &only, &[chunk(10)]),
            "tenant_id == 3 && project_id in [4] && chunk_id in [10]"
        );
    }

    #[test]
    fn ids_held_by_other_tenants() {
        assert_eq!(
            held_by_others(tenant(3), &[chunk(10), chunk(11)]),
            "tenant_id != 3 && chunk_id in [10, 11]"
        );
    }

    #[test]
    fn whole_scope_deletes() {
        assert_eq!(tenant_scope(tenant(9)), "tenant_id == 9");
        assert_eq!(
            project_scope(tenant(9), project(0)),
            "tenant_id == 9 && project_id == 0"
        );
    }

    #[test]
    fn fetch_and_scan_expressions() {
        assert_eq!(chunk_ids(&[chunk(1), chunk(2)]), "chunk_id in [1, 2]");
        assert_eq!(
            id_range(ScanFilter::all(), chunk(5), chunk(9)),
            "chunk_id >= 5 && chunk_id <= 9"
        );
        let filter = ScanFilter::new(Some(tenant(1)), Some(project(2))).unwrap();
        assert_eq!(
            id_range(filter, chunk(0), chunk(i64::MAX)),
            "chunk_id >= 0 && chunk_id <= 9223372036854775807 && tenant_id == 1 && project_id == 2"
        );
        assert_eq!(scan_filter(ScanFilter::tenant(tenant(4))), "tenant_id == 4");
        assert_eq!(every_row(), "chunk_id >= 0");
    }
}
