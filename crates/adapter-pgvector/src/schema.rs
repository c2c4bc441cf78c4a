//! Reading the embeddings table's shape from the catalog, checking it against the
//! configuration, and the DDL of the idempotent bootstrap.

use sqlx::{PgConnection, Row};
use vectorgate_domain::{GatewayError, Metric, StoreKind};

use crate::config::PgVectorConfig;
use crate::layout::{self, TableLayout};
use crate::metric::{metric_of_opclass, opclass};

/// What to tell an operator whose table (or collection) is missing.
pub(crate) const CREATE_ADVICE: &str =
    "run `vectorgate init` to create it, or start the service once";

/// A column as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnInfo {
    pub name: String,
    /// `format_type` output, e.g. `bigint`, `vector(768)`.
    pub type_name: String,
    /// For `vector` the declared dimension; -1 when none was declared.
    pub typmod: i32,
}

/// An index using pgvector's `hnsw` or `ivfflat` access method.
#[derive(Debug, Clone)]
pub(crate) struct VectorIndexInfo {
    pub name: String,
    pub access_method: String,
    pub opclass: String,
    /// `m=16`, `ef_construction=64`, `lists=100`...
    pub options: Vec<(String, String)>,
    /// The server's own `CREATE INDEX` statement for it (used to rebuild it unchanged).
    pub definition: String,
}

#[derive(Debug, Clone)]
pub(crate) struct TableInfo {
    pub exists: bool,
    pub layout: TableLayout,
    pub columns: Vec<ColumnInfo>,
    pub vector_indexes: Vec<VectorIndexInfo>,
}

impl Default for TableInfo {
    fn default() -> Self {
        Self {
            exists: false,
            layout: TableLayout::OneTable,
            columns: Vec::new(),
            vector_indexes: Vec::new(),
        }
    }
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The declared dimension of `embedding`, when it is a `vector(n)` column.
    pub fn dimension(&self) -> Option<u32> {
        self.column("embedding")
            .filter(|c| c.type_name.starts_with("vector"))
            .and_then(|c| u32::try_from(c.typmod).ok())
    }

    pub fn metric(&self) -> Option<Metric> {
        self.vector_indexes
            .first()
            .and_then(|i| metric_of_opclass(&i.opclass))
            .map(|(metric, _)| metric)
    }
}

/// Reads the table's columns and vector indexes. A missing table gives `exists: false`.
pub(crate) async fn inspect(
    conn: &mut PgConnection,
    table: &str,
) -> Result<TableInfo, sqlx::Error> {
    let found: Option<(Option<String>, i64, bool)> = sqlx::query_as(
        "SELECT pg_get_partkeydef(c.oid), \
                (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid), \
                EXISTS (SELECT 1 FROM pg_class r WHERE r.relname = $2 \
                        AND r.relnamespace = c.relnamespace AND r.relkind = 'r') \
         FROM pg_class c \
         WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace \
         AND c.relkind IN ('r', 'p')",
    )
    .bind(table)
    .bind(layout::registry_name(table))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((partition_key, partitions, registry)) = found else {
        return Ok(TableInfo::default());
    };
    let layout = TableLayout::from_catalog(
        partition_key.as_deref(),
        u32::try_from(partitions).unwrap_or(u32::MAX),
        registry,
    );
    // The relation is looked up in current_schema(), where CREATE TABLE puts it.
    let columns = sqlx::query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypmod \
         FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace \
         AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| ColumnInfo {
        name: row.get(0),
        type_name: row.get(1),
        typmod: row.get(2),
    })
    .collect();
    let vector_indexes = sqlx::query(
        "SELECT i.relname::text, am.amname::text, opc.opcname::text, \
                coalesce(i.reloptions, '{}'::text[]), pg_get_indexdef(i.oid) \
         FROM pg_index x \
         JOIN pg_class t ON t.oid = x.indrelid \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_am am ON am.oid = i.relam \
         JOIN pg_opclass opc ON opc.oid = x.indclass[0] \
         WHERE t.relname = $1 AND t.relnamespace = current_schema()::regnamespace \
         AND am.amname IN ('hnsw', 'ivfflat') ORDER BY i.relname",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|row| {
        let options: Vec<String> = row.get(3);
        VectorIndexInfo {
            name: row.get(0),
            access_method: row.get(1),
            opclass: row.get(2),
            options: options
                .iter()
                .filter_map(|o| o.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            definition: row.get(4),
        }
    })
    .collect();
    Ok(TableInfo {
        exists: true,
        layout,
        columns,
        vector_indexes,
    })
}

/// The partitions' indexes attached to the given indexes of a partitioned table.
pub(crate) async fn partition_indexes(
    conn: &mut PgConnection,
    parents: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits h \
         JOIN pg_class c ON c.oid = h.inhrelid \
         JOIN pg_class p ON p.oid = h.inhparent \
         WHERE p.relname = ANY($1) AND p.relnamespace = current_schema()::regnamespace \
         ORDER BY 1",
    )
    .bind(parents)
    .fetch_all(&mut *conn)
    .await
}

/// Differences between an existing table and what the configuration needs, each naming
/// both sides. Empty when the table fits.
pub(crate) fn mismatches(info: &TableInfo, config: &PgVectorConfig) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(info.layout.problem(config));
    let dim = config.dimension.get();
    let expected = [
        ("chunk_id", "bigint"),
        ("tenant_id", "bigint"),
        ("project_id", "bigint"),
        ("updated_at", "timestamp with time zone"),
    ];
    for (name, type_name) in expected {
        match info.column(name) {
            None => problems.push(format!("column {name} is missing (expected {type_name})")),
            Some(c) if c.type_name != type_name => problems.push(format!(
                "column {name} is {} but {type_name} is expected",
                c.type_name
            )),
            Some(_) => {}
        }
    }
    match info.column("embedding") {
        None => problems.push(format!(
            "column embedding is missing (expected vector({dim}))"
        )),
        Some(c) if !c.type_name.starts_with("vector") => problems.push(format!(
            "column embedding is {} but vector({dim}) is expected",
            c.type_name
        )),
        Some(c) if c.typmod != dim as i32 => problems.push(format!(
            "column embedding is {} (dimension {}) but the configuration expects vector({dim})",
            c.type_name,
            if c.typmod < 0 {
                "undeclared".to_string()
            } else {
                c.typmod.to_string()
            }
        )),
        Some(_) => {}
    }
    // Searches order by the index's own expression (the column, or its halfvec cast), so an
    // index of the other precision would never be used: that is a mismatch too.
    let half = config.half_precision_index();
    let wanted = opclass(config.metric, half);
    for index in &info.vector_indexes {
        if index.opclass != wanted {
            let found = match metric_of_opclass(&index.opclass) {
                Some((m, h)) => format!("metric {m}, {} precision", precision_name(h)),
                None => "an unknown metric".to_string(),
            };
            problems.push(format!(
                "vector index {} uses {} ({found}) but the configured metric {} in {} \
                 precision needs {wanted}",
                index.name,
                index.opclass,
                config.metric,
                precision_name(half)
            ));
        }
    }
    problems
}

fn precision_name(half: bool) -> &'static str {
    if half {
        "half"
    } else {
        "single"
    }
}

pub(crate) fn mismatch_error(table: &str, problems: &[String]) -> GatewayError {
    GatewayError::schema_mismatch(
        StoreKind::Pgvector,
        format!("table {table}"),
        format!(
            "{}; nothing was changed (no ALTER/DROP): migrate the table or configure another one",
            problems.join("; ")
        ),
    )
}

/// Index names derived from the table name, kept within PostgreSQL's 63 bytes. A long
/// table name is shortened with a hash of the full name so two long names that share a
/// prefix do not collide (CREATE INDEX IF NOT EXISTS would silently skip the second).
pub(crate) fn index_name(table: &str, suffix: &str) -> String {
    let full = format!("{table}_{suffix}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across Rust versions (unlike DefaultHasher), which a persisted
    // name needs.
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let keep = 63 - suffix.len() - 10;
    format!("{}_{:08x}_{suffix}", &table[..keep], hash as u32)
}

/// Storage of the embedding column: inline without compression when a row fits a page
/// (random floats do not compress; TOASTing them only costs time on every write and
/// read), out of line without compression otherwise.
pub(crate) fn embedding_storage(dimension: u32) -> &'static str {
    // 8 KiB page: a vector(1900) is 7.6 KB plus about 60 bytes for the other columns and
    // headers, which still fits.
    if dimension <= 1900 {
        "PLAIN"
    } else {
        "EXTERNAL"
    }
}

/// The DDL of a new table in the layout the settings give it.
pub(crate) fn create_table_sql(config: &PgVectorConfig) -> Vec<String> {
    let t = quote_ident(&config.table);
    let mut ddl = match TableLayout::for_new_table(config) {
        TableLayout::TenantHash { partitions } => {
            layout::create_partitioned_sql(config, partitions)
        }
        _ => vec![one_table_sql(config)],
    };
    // On a partitioned table this reaches every partition.
    ddl.push(format!(
        "ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE {}",
        embedding_storage(config.dimension.get())
    ));
    ddl
}

fn one_table_sql(config: &PgVectorConfig) -> String {
    let t = quote_ident(&config.table);
    format!(
        "CREATE TABLE IF NOT EXISTS {t} (\
               chunk_id bigint PRIMARY KEY, \
               tenant_id bigint NOT NULL, \
               project_id bigint NOT NULL, \
               embedding vector({dim}) NOT NULL, \
               updated_at timestamptz NOT NULL DEFAULT now())",
        dim = config.dimension.get()
    )
}

pub(crate) fn create_scope_index_sql(table: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} (tenant_id, project_id)",
        quote_ident(&index_name(table, "tenant_project_idx")),
        quote_ident(table)
    )
}

pub(crate) fn create_vector_index_sql(config: &PgVectorConfig) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {name} ON {table} USING {method} ({expr} {ops}) WITH ({with})",
        name = quote_ident(&index_name(&config.table, "embedding_idx")),
        table = quote_ident(&config.table),
        method = config.index.access_method(),
        expr = indexed_expression(config),
        ops = opclass(config.metric, config.half_precision_index()),
        with = config.vector_index().with_clause(),
    )
}

/// What the vector index is built on, and what an index search must order by to use it:
/// the column itself, or (above pgvector's 2,000-dimension limit for `vector`) its
/// half-precision cast. The dimension is a validated integer.
pub(crate) fn indexed_expression(config: &PgVectorConfig) -> String {
    if config.half_precision_index() {
        format!("(embedding::halfvec({}))", config.dimension.get())
    } else {
        "embedding".to_string()
    }
}

/// Quotes an identifier, so that names PostgreSQL reserves (`user`, `order`) work too.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_table_names_give_distinct_short_index_names() {
        let a = format!("{}a", "t".repeat(62));
        let b = format!("{}b", "t".repeat(62));
        let (ia, ib) = (
            index_name(&a, "embedding_idx"),
            index_name(&b, "embedding_idx"),
        );
        assert!(ia.len() <= 63 && ib.len() <= 63, "{ia} {ib}");
        assert_ne!(ia, ib);
        assert_eq!(
            index_name("chunks", "embedding_idx"),
            "chunks_embedding_idx"
        );
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
