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

pub(crate) fn opclass(metric: Metric) -> &'static str {
    match metric {
        Metric::Ip => "vector_ip_ops",
        Metric::Cosine => "vector_cosine_ops",
        Metric::L2 => "vector_l2_ops",
    }
}

pub(crate) fn metric_of_opclass(opclass: &str) -> Option<Metric> {
    match opclass {
        "vector_ip_ops" => Some(Metric::Ip),
        "vector_cosine_ops" => Some(Metric::Cosine),
        "vector_l2_ops" => Some(Metric::L2),
        _ => None,
    }
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
            assert_eq!(metric_of_opclass(opclass(metric)), Some(metric));
        }
    }
}
