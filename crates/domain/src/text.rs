//! How lists of ids are written for people: in messages, tables and logs.

/// At most `limit` items joined by `separator`, then how many were left out, so that a
/// batch of thousands does not become a line of thousands.
pub fn id_list<T: ToString>(ids: &[T], limit: usize, separator: &str) -> String {
    let mut out: Vec<String> = ids.iter().take(limit).map(ToString::to_string).collect();
    if ids.len() > limit {
        out.push(format!("... ({} more)", ids.len() - limit));
    }
    out.join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_id_lists_are_cut() {
        assert_eq!(id_list(&[1, 2, 3], 2, ", "), "1, 2, ... (1 more)");
        assert_eq!(id_list(&[1, 2], 2, ","), "1,2");
        assert_eq!(id_list(&[1], 2, ", "), "1");
        assert_eq!(id_list::<i64>(&[], 2, ", "), "");
    }
}
