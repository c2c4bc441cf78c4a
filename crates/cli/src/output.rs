//! Tables and JSON on stdout.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

/// A plain table with a header row; numeric-looking columns are right-aligned.
pub fn table<I, R, S>(headers: &[&str], rows: I) -> String
where
    I: IntoIterator<Item = R>,
    R: IntoIterator<Item = S>,
    S: ToString,
{
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(headers.to_vec());
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.into_iter().map(|cell| cell.to_string()).collect())
        .collect();
    for row in &rows {
        table.add_row(row.clone());
    }
    for (index, column) in table.column_iter_mut().enumerate() {
        let numeric = !rows.is_empty()
            && rows.iter().all(|row| {
                row.get(index)
                    .is_some_and(|c| c.is_empty() || c.parse::<f64>().is_ok())
            });
        if numeric {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}

pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// At most `limit` ids, then "... (N more)".
pub fn id_list<T: ToString>(ids: &[T], limit: usize) -> String {
    vectorgate_domain::id_list(ids, limit, ", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_headers_and_cells() {
        let text = table(&["tenant", "rows"], vec![vec!["1", "10"], vec!["2", "200"]]);
        assert!(text.contains("tenant"));
        assert!(text.contains("200"));
    }
}
