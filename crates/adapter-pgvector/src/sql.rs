//! The SQL text of every data statement, fixed at construction: the table name is
//! validated once and quoted, then only values are bound.

use crate::config::PgVectorConfig;
use crate::layout::registry_name;
use crate::metric::operator;
use crate::schema::{indexed_expression, quote_ident};

pub(crate) struct Statements {
    /// Inserts or replaces rows; with `allow_tenant_move` off, a stored row of another
    /// tenant is left as it is (and the caller rolls the batch back).
    pub upsert: String,
    /// The same for a table partitioned by tenant: a stored chunk id of another tenant is
    /// an insert whose registry row fails (see `layout.rs`).
    pub upsert_partitioned: String,
    /// Points the registry of a partitioned table at the given (chunk id, tenant) pairs,
    /// locking its rows: writers that move the same chunks then take turns.
    pub claim_chunks: String,
    /// Removes registry rows of the given chunk ids whose table row is gone: rows that left
    /// without firing the triggers (TRUNCATE, a detached partition).
    pub heal_registry: String,
    /// Deletes the stored rows of the given (chunk id, tenant) pairs that are under another
    /// tenant: a move in a partitioned table is a delete and an insert.
    pub move_out: String,
    /// The stored tenant of each given (chunk id, tenant) pair that names another one.
    pub tenant_conflicts: String,
    pub search_tenant: String,
    pub search_projects: String,
    pub exact_tenant: String,
    pub exact_projects: String,
    pub scope_rows_tenant: String,
    pub scope_rows_projects: String,
    pub delete_chunks: ByLayout,
    pub delete_chunks_in_projects: ByLayout,
    pub delete_project: ByLayout,
    pub delete_tenant: ByLayout,
    pub fetch: String,
    pub count_all: String,
    pub copy_in: String,
}

impl Statements {
    pub fn new(config: &PgVectorConfig) -> Self {
        let t = quote_ident(&config.table);
        let op = operator(config.metric);
        let select = format!(
            "SELECT chunk_id, project_id, embedding {op} $1 AS distance FROM {t} WHERE tenant_id = $2"
        );
        // The index search orders by the indexed expression so the planner can use the
        // index; the distance it returns is still computed from the full-precision column.
        let index_order = if config.half_precision_index() {
            format!(
                "{} {op} $1::halfvec({})",
                indexed_expression(config),
                config.dimension.get()
            )
        } else {
            format!("embedding {op} $1")
        };
        // The rows of an upsert batch, bound as four arrays.
        let insert = format!(
            "INSERT INTO {t} (chunk_id, tenant_id, project_id, embedding, updated_at) \
             SELECT u.chunk_id, u.tenant_id, u.project_id, u.embedding, now() \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::vector[]) \
               AS u(chunk_id, tenant_id, project_id, embedding)"
        );
        Self {
            upsert: format!(
                "{insert} ON CONFLICT (chunk_id) DO UPDATE SET \
                   tenant_id = EXCLUDED.tenant_id, project_id = EXCLUDED.project_id, \
                   embedding = EXCLUDED.embedding, updated_at = EXCLUDED.updated_at{guard}",
                // ON CONFLICT's WHERE sees the latest committed row (it locks it first), so
                // no concurrent move can slip between this check and the update.
                guard = if config.allow_tenant_move {
                    String::new()
                } else {
                    format!(" WHERE {t}.tenant_id = EXCLUDED.tenant_id")
                }
            ),
            upsert_partitioned: format!(
                "{insert} ON CONFLICT (chunk_id, tenant_id) DO UPDATE SET \
                   project_id = EXCLUDED.project_id, embedding = EXCLUDED.embedding, \
                   updated_at = EXCLUDED.updated_at"
            ),
            claim_chunks: format!(
                "INSERT INTO {} AS r (chunk_id, tenant_id) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[]) \
                 ON CONFLICT (chunk_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id",
                quote_ident(&registry_name(&config.table))
            ),
            heal_registry: format!(
                "DELETE FROM {} r WHERE r.chunk_id = ANY($1) AND NOT EXISTS \
                 (SELECT 1 FROM {t} s WHERE s.chunk_id = r.chunk_id AND s.tenant_id = r.tenant_id)",
                quote_ident(&registry_name(&config.table))
            ),
            // The mover claimed the registry rows already.
            move_out: ordered_delete(
                &t,
                &format!(
                    "(chunk_id, tenant_id) IN (SELECT s.chunk_id, s.tenant_id \
                       FROM UNNEST($1::bigint[], $2::bigint[]) AS u(chunk_id, tenant_id) \
                       JOIN {t} s ON s.chunk_id = u.chunk_id AND s.tenant_id <> u.tenant_id)"
                ),
                None,
            ),
            tenant_conflicts: format!(
                "SELECT s.chunk_id, s.tenant_id, u.tenant_id \
                 FROM UNNEST($1::bigint[], $2::bigint[]) AS u(chunk_id, tenant_id) \
                 JOIN {t} s ON s.chunk_id = u.chunk_id \
                 WHERE s.tenant_id <> u.tenant_id ORDER BY s.chunk_id"
            ),
            search_tenant: format!("{select} ORDER BY {index_order} LIMIT $3"),
            search_projects: format!(
                "{select} AND project_id = ANY($3) ORDER BY {index_order} LIMIT $4"
            ),
            // The OFFSET 0 fence keeps the planner from pushing the ORDER BY into the
            // subquery, so the vector index cannot serve it: the scope is read (through
            // the tenant/project index or the table), each distance computed once, and
            // the best k kept by a top-k sort. Exact, without a transaction to switch
            // index scans off.
            exact_tenant: format!(
                "SELECT chunk_id, project_id, distance FROM ({select} OFFSET 0) s \
                 ORDER BY distance LIMIT $3"
            ),
            exact_projects: format!(
                "SELECT chunk_id, project_id, distance FROM \
                 ({select} AND project_id = ANY($3) OFFSET 0) s ORDER BY distance LIMIT $4"
            ),
            // Bounded counts: they stop after LIMIT rows of the scope index, so a huge
            // tenant costs no more than a small one.
            scope_rows_tenant: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {t} WHERE tenant_id = $1 LIMIT $2) s"
            ),
            scope_rows_projects: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {t} \
                 WHERE tenant_id = $1 AND project_id = ANY($2) LIMIT $3) s"
            ),
            // Deletes lock their rows in chunk-id order first, as upserts do (their ids
            // are sorted): a scope delete read through the (tenant, project) index would
            // otherwise lock in index order and deadlock with a concurrent upsert.
            delete_chunks: ByLayout::delete(config, "tenant_id = $1 AND chunk_id = ANY($2)"),
            delete_chunks_in_projects: ByLayout::delete(
                config,
                "tenant_id = $1 AND chunk_id = ANY($2) AND project_id = ANY($3)",
            ),
            delete_project: ByLayout::delete(config, "tenant_id = $1 AND project_id = $2"),
            delete_tenant: ByLayout::delete(config, "tenant_id = $1"),
            fetch: format!(
                "SELECT chunk_id, tenant_id, project_id, embedding FROM {t} \
                 WHERE chunk_id = ANY($1) ORDER BY chunk_id"
            ),
            count_all: format!("SELECT count(*) FROM {t}"),
            copy_in: format!(
                "COPY {t} (chunk_id, tenant_id, project_id, embedding) FROM STDIN WITH (FORMAT binary)"
            ),
        }
    }
}

/// A statement written for each layout.
pub(crate) struct ByLayout {
    pub one_table: String,
    pub partitioned: String,
}

impl ByLayout {
    fn delete(config: &PgVectorConfig, condition: &str) -> Self {
        let t = quote_ident(&config.table);
        let registry = quote_ident(&registry_name(&config.table));
        Self {
            one_table: ordered_delete(&t, condition, None),
            partitioned: ordered_delete(&t, condition, Some(&registry)),
        }
    }

    pub fn get(&self, partitioned: bool) -> &str {
        if partitioned {
            &self.partitioned
        } else {
            &self.one_table
        }
    }
}

/// `DELETE` of the rows matching `condition`, locking them in chunk-id order first. Rows
/// are named by (chunk id, tenant), which a partitioned table is keyed by. With a
/// `registry`, its rows are locked first (an InitPlan, run before the table is read):
/// writers that move chunks lock the registry and then the table, so a delete must too.
pub(crate) fn ordered_delete(table: &str, condition: &str, registry: Option<&str>) -> String {
    let registry_first = match registry {
        None => String::new(),
        Some(registry) => format!(
            " AND chunk_id = ANY (ARRAY(SELECT r.chunk_id FROM {registry} r \
               WHERE r.chunk_id IN (SELECT chunk_id FROM {table} WHERE {condition}) \
               ORDER BY r.chunk_id FOR UPDATE OF r))"
        ),
    };
    format!(
        "DELETE FROM {table} WHERE (chunk_id, tenant_id) IN \
         (SELECT chunk_id, tenant_id FROM {table} WHERE {condition}{registry_first} \
          ORDER BY chunk_id FOR UPDATE)"
    )
}
