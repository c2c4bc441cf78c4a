//! Which plan a scope's search gets and why, with PostgreSQL's own `EXPLAIN` of the
//! statement run under the same settings (`vectorgate plan`).

use std::fmt;

use pgvector::Vector;
use sqlx::Row;
use vectorgate_domain::{GatewayError, SearchScope};

use crate::schema;
use crate::search::bind_search;
use crate::store::PgVectorStore;

/// How a scope is searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPlan {
    /// Searched exactly (the scope's rows read and sorted by distance; recall 1) rather
    /// than through the vector index.
    pub exact: bool,
    /// The scope's rows, counted up to `exact_search_max_rows + 1`.
    pub rows_counted: u64,
    pub exact_search_max_rows: u32,
    /// The vector index the plan scans, if any.
    pub vector_index: Option<String>,
    /// The plan PostgreSQL runs, from `EXPLAIN`, one node per line, the query vector
    /// shortened to `[...]`.
    pub explain: Vec<String>,
}

impl SearchPlan {
    /// Why this plan, in one sentence.
    pub fn reason(&self) -> String {
        let max = self.exact_search_max_rows;
        if max == 0 {
            "PGVECTOR_EXACT_SEARCH_MAX_ROWS is 0: every scope uses the vector index".to_string()
        } else if self.exact {
            format!(
                "the scope holds {} rows, at most PGVECTOR_EXACT_SEARCH_MAX_ROWS = {max}: \
                 reading and sorting them is exact and cheap",
                self.rows_counted
            )
        } else {
            format!(
                "the scope holds more than PGVECTOR_EXACT_SEARCH_MAX_ROWS = {max} rows: \
                 the vector index with an iterative scan is forced"
            )
        }
    }
}

impl fmt::Display for SearchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.exact {
            "exact scan"
        } else {
            "vector index"
        };
        writeln!(f, "{kind}: {}", self.reason())?;
        for line in &self.explain {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl PgVectorStore {
    /// The plan a top-`k` search of `scope` gets now. The scope is counted afresh (the
    /// search path reuses a verdict for up to 30 s).
    pub async fn search_plan(
        &self,
        scope: &SearchScope,
        k: u32,
    ) -> Result<SearchPlan, GatewayError> {
        let op = "plan";
        let config = &self.inner.config;
        let mut conn = self.acquire(op).await?;
        let (exact, rows_counted) = self.choose_exact(&mut conn, scope).await?;
        let explain_sql = format!("EXPLAIN {}", self.search_sql(exact, scope));
        // EXPLAIN does not run the search; any vector of the right dimension plans alike.
        let probe = Vector::from(vec![1.0; config.dimension.get() as usize]);
        let query = bind_search(&explain_sql, probe, scope, k);
        let rows = self.run_planned(op, &mut conn, exact, k, query).await?;
        let explain: Vec<String> = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0).map(|l| shorten_vectors(&l)))
            .collect::<Result<_, _>>()
            .map_err(self.err(op))?;
        let mut indexes: Vec<String> = schema::inspect(&mut conn, &config.table)
            .await
            .map_err(self.err(op))?
            .vector_indexes
            .into_iter()
            .map(|index| index.name)
            .collect();
        // A partitioned table's search scans its partition's index, a child of the table's.
        indexes.extend(
            schema::partition_indexes(&mut conn, &indexes)
                .await
                .map_err(self.err(op))?,
        );
        let vector_index = indexes
            .into_iter()
            .find(|name| explain.iter().any(|l| scans(l, name)));
        Ok(SearchPlan {
            exact,
            rows_counted,
            exact_search_max_rows: config.exact_search_max_rows,
            vector_index,
            explain,
        })
    }
}

/// Whether an `EXPLAIN` line scans the index `name`.
fn scans(line: &str, name: &str) -> bool {
    line.split("Scan using ")
        .skip(1)
        .any(|rest| rest.split_whitespace().next() == Some(name))
}

/// `line` with each vector literal (`'[0.1,0.2,...]'`) shortened to `'[...]'`.
fn shorten_vectors(line: &str) -> String {
    let mut out = String::with_capacity(line.len().min(256));
    let mut rest = line;
    while let Some(start) = rest.find("'[") {
        let Some(len) = rest[start..].find("]'") else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str("'[...]'");
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_literals_are_shortened_and_index_scans_found() {
        let line = "Index Scan using t_embedding_idx on t  (cost=1..2) Order By: (embedding <#> '[1,2,3]'::vector) x '[4]'::halfvec(3)";
        assert_eq!(
            shorten_vectors(line),
            "Index Scan using t_embedding_idx on t  (cost=1..2) Order By: (embedding <#> '[...]'::vector) x '[...]'::halfvec(3)"
        );
        assert!(scans(line, "t_embedding_idx"));
        assert!(!scans(line, "t_embedding"));
        assert!(!scans(
            "Index Scan using t_tenant_project_idx on t",
            "t_embedding_idx"
        ));
        assert!(scans("Index Only Scan using i on t", "i"));
    }
}
