//! pgvector's operators and operator classes for each metric, and its distances in the
//! port's score convention.

use vectorgate_domain::Metric;

/// The distance operator: smaller is more similar, so `ORDER BY` ascending works.
pub(crate) fn operator(metric: Metric) -> &'static str {
    match metric {
        // Negative inner product.
        Metric::Ip => "<#>",
        Metric::Cosine => "<=>",
        Metric::L2 => "<->",
    }
}

/// The operator class of an index on `vector` (single) or `halfvec` (half precision).
pub(crate) fn opclass(metric: Metric, half: bool) -> &'static str {
    match (metric, half) {
        (Metric::Ip, false) => "vector_ip_ops",
        (Metric::Cosine, false) => "vector_cosine_ops",
        (Metric::L2, false) => "vector_l2_ops",
        (Metric::Ip, true) => "halfvec_ip_ops",
        (Metric::Cosine, true) => "halfvec_cosine_ops",
        (Metric::L2, true) => "halfvec_l2_ops",
    }
}

/// The metric an operator class serves, and whether it indexes half precision.
pub(crate) fn metric_of_opclass(opclass: &str) -> Option<(Metric, bool)> {
    let (precision, metric) = opclass.strip_suffix("_ops")?.split_once('_')?;
    let half = match precision {
        "vector" => false,
        "halfvec" => true,
        _ => return None,
    };
    let metric = match metric {
        "ip" => Metric::Ip,
        "cosine" => Metric::Cosine,
        "l2" => Metric::L2,
        _ => return None,
    };
    Some((metric, half))
}

/// Converts pgvector's distance for `metric` into the port's score (higher is more similar).
pub(crate) fn distance_to_score(metric: Metric, distance: f64) -> f32 {
    match metric {
        Metric::Ip => (-distance) as f32,
        Metric::Cosine => (1.0 - distance) as f32,
        Metric::L2 => (-distance) as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_port_convention() {
        assert_eq!(distance_to_score(Metric::Ip, -0.75), 0.75);
        assert_eq!(distance_to_score(Metric::Cosine, 0.25), 0.75);
        assert_eq!(distance_to_score(Metric::L2, 1.5), -1.5);
        for metric in [Metric::Ip, Metric::Cosine, Metric::L2] {
            for half in [false, true] {
                assert_eq!(
                    metric_of_opclass(opclass(metric, half)),
                    Some((metric, half))
                );
            }
        }
        assert_eq!(metric_of_opclass("bit_hamming_ops"), None);
    }
}
