//! How a collection spreads its rows over partitions: the layout the configuration asks
//! for, the layout a collection has, and whether the two may differ.

use std::fmt;

use crate::client::CollectionDescription;
use crate::config::{MilvusConfig, PartitionKey};
use crate::schema::FIELD_TENANT_ID;

/// A collection's partition layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionLayout {
    pub partition_key: PartitionKey,
    /// Partitions rows are hashed into; 0 without a partition key.
    pub num_partitions: u32,
}

impl CollectionLayout {
    /// The layout a new collection gets on a server: the configured one; when unset, the
    /// tenant key where the server's upsert routes rows by it (2.4 and later), none before.
    pub fn for_new_collection(config: &MilvusConfig, server_version: &str) -> Self {
        let key = config
            .partition_key
            .unwrap_or(if upsert_routes_by_key(server_version) {
                PartitionKey::Tenant
            } else {
                PartitionKey::None
            });
        Self::with_key(key, config)
    }

    /// No partition key.
    pub fn without_key() -> Self {
        Self {
            partition_key: PartitionKey::None,
            num_partitions: 0,
        }
    }

    /// The configured partition count with `partition_key`, or no partitions without it.
    pub(crate) fn with_key(partition_key: PartitionKey, config: &MilvusConfig) -> Self {
        match partition_key {
            PartitionKey::Tenant => Self {
                partition_key,
                num_partitions: config.num_partitions,
            },
            PartitionKey::None => Self::without_key(),
        }
    }

    /// The layout of an existing collection, as described by the server.
    pub fn of(description: &CollectionDescription) -> Self {
        match description.fields.iter().find(|f| f.partition_key) {
            Some(field) if field.name == FIELD_TENANT_ID => Self {
                partition_key: PartitionKey::Tenant,
                num_partitions: description.num_partitions,
            },
            // A key on another field is reported as no tenant key: searches then read
            // every partition, as without one (the field check names any odd field).
            _ => Self::without_key(),
        }
    }

    /// What differs from the layout the configuration names explicitly (the partition
    /// key given, and with it the count); `None` when it matches or the key is unset: an
    /// existing collection keeps its layout.
    pub fn difference(&self, config: &MilvusConfig) -> Option<String> {
        let expected = Self::with_key(config.partition_key?, config);
        (expected != *self).then(|| {
            format!(
                "layout: expected {expected}, found {self} (MILVUS_PARTITION_KEY, \
                 MILVUS_NUM_PARTITIONS; unset MILVUS_PARTITION_KEY to serve the collection \
                 as it is)"
            )
        })
    }
}

impl CollectionLayout {
    /// Why this layout cannot be used on a server, if it cannot. Milvus before 2.4 routes an
    /// upsert's rows by primary key instead of by the partition key (measured on 2.3.5: 40
    /// rows of 4 tenants, 4 partitions, then filtered counts of 4, 5, 1 and 3 instead of 10
    /// each; `insert` routes them right). A tenant-filtered read is pruned to the tenant's
    /// partition, so it would miss most rows, and the adapter writes only by upsert.
    pub fn server_problem(&self, server_version: &str) -> Option<String> {
        if self.partition_key == PartitionKey::None || upsert_routes_by_key(server_version) {
            return None;
        }
        Some(format!(
            "layout {self} on Milvus {server_version}: its upsert puts rows of a partition-key \
             collection in the wrong partition, where tenant-filtered searches miss them; use \
             MILVUS_PARTITION_KEY=none (a collection without key) or Milvus 2.4 or later"
        ))
    }
}

/// Whether a server's upsert hashes rows by the partition key: not before 2.4 (see
/// [`CollectionLayout::server_problem`]). An unreadable version is given the benefit of the
/// doubt: only 2.x below 2.4 is known to misroute.
fn upsert_routes_by_key(server_version: &str) -> bool {
    let mut parts = server_version.trim_start_matches('v').split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    !matches!((major, minor), (Some(2), Some(minor)) if minor < 4)
}

impl fmt::Display for CollectionLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.partition_key {
            PartitionKey::Tenant => write!(
                f,
                "partition key {FIELD_TENANT_ID}, {} partitions",
                self.num_partitions
            ),
            PartitionKey::None => f.write_str("no partition key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use vectorgate_domain::Dimension;

    use super::*;
    use crate::schema::expected_fields;

    fn config(key: Option<PartitionKey>, count: Option<u32>) -> MilvusConfig {
        let mut config = MilvusConfig::new("h", 1, Dimension::new(4).unwrap());
        config.partition_key = key;
        if let Some(count) = count {
            config.num_partitions = count;
        }
        config
    }

    fn described(layout: CollectionLayout) -> CollectionDescription {
        CollectionDescription {
            fields: expected_fields(Dimension::new(4).unwrap(), layout.partition_key),
            num_partitions: layout.num_partitions,
        }
    }

    /// Unset, a new collection is keyed by tenant where the server keeps keyed rows.
    #[test]
    fn new_collections_are_keyed_by_tenant_where_the_server_keeps_it_unless_told_otherwise() {
        for newer in ["v2.4.0", "v2.5.4", "unknown"] {
            let default = CollectionLayout::for_new_collection(&config(None, None), newer);
            assert_eq!(
                default.to_string(),
                "partition key tenant_id, 64 partitions"
            );
            let none = config(Some(PartitionKey::None), None);
            let unkeyed = CollectionLayout::for_new_collection(&none, newer);
            assert_eq!(unkeyed.to_string(), "no partition key");
        }
        let old = CollectionLayout::for_new_collection(&config(None, None), "v2.3.5");
        assert_eq!(old.to_string(), "no partition key");
        let keyed = config(Some(PartitionKey::Tenant), None);
        let keyed = CollectionLayout::for_new_collection(&keyed, "v2.3.5");
        assert_eq!(keyed.to_string(), "partition key tenant_id, 64 partitions");
        let sixteen = config(Some(PartitionKey::Tenant), Some(16));
        let sixteen = CollectionLayout::for_new_collection(&sixteen, "v2.4.0");
        assert_eq!(sixteen.num_partitions, 16);
        assert_eq!(CollectionLayout::of(&described(old)), old);
        assert_eq!(CollectionLayout::of(&described(keyed)), keyed);
    }

    #[test]
    fn a_partition_key_is_refused_on_servers_whose_upsert_misroutes_its_rows() {
        let keyed = config(Some(PartitionKey::Tenant), None);
        let keyed = CollectionLayout::for_new_collection(&keyed, "v2.3.5");
        let unkeyed = CollectionLayout::for_new_collection(&config(None, None), "v2.3.5");
        for old in ["v2.3.5", "2.2.9", "v2.3.17"] {
            let problem = keyed.server_problem(old).unwrap();
            assert!(
                problem.contains(old) && problem.contains("MILVUS_PARTITION_KEY=none"),
                "{problem}"
            );
            assert_eq!(unkeyed.server_problem(old), None);
        }
        for newer in ["v2.4.0", "v2.5.4", "v3.0.0", "unknown"] {
            assert_eq!(keyed.server_problem(newer), None, "{newer}");
        }
    }

    #[test]
    fn an_existing_layout_is_refused_only_when_the_setting_names_another() {
        let keyed = CollectionLayout::of(&described(CollectionLayout {
            partition_key: PartitionKey::Tenant,
            num_partitions: 64,
        }));
        let unkeyed = CollectionLayout::of(&described(CollectionLayout {
            partition_key: PartitionKey::None,
            num_partitions: 0,
        }));
        for found in [keyed, unkeyed] {
            assert_eq!(found.difference(&config(None, None)), None, "{found}");
        }
        let named = unkeyed
            .difference(&config(Some(PartitionKey::Tenant), None))
            .unwrap();
        assert!(
            named.starts_with(
                "layout: expected partition key tenant_id, 64 partitions, found no partition key"
            ) && named.contains("MILVUS_PARTITION_KEY"),
            "{named}"
        );
        assert!(keyed
            .difference(&config(Some(PartitionKey::None), None))
            .unwrap()
            .starts_with(
                "layout: expected no partition key, found partition key tenant_id, 64 partitions"
            ));
        let tenant = Some(PartitionKey::Tenant);
        assert_eq!(keyed.difference(&config(tenant, Some(64))), None);
        assert!(keyed
            .difference(&config(tenant, Some(16)))
            .unwrap()
            .contains("expected partition key tenant_id, 16 partitions"));
        assert_eq!(
            keyed.difference(&config(None, Some(16))),
            None,
            "a count alone does not ask for a layout"
        );
    }
}
