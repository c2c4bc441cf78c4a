//! Named partitions: created, checked, released, dropped and listed.

use milvus::proto::common::{MsgBase, MsgType};
use milvus::proto::milvus::{
    CreatePartitionRequest, DropPartitionRequest, HasPartitionRequest, ReleasePartitionsRequest,
    ShowPartitionsRequest,
};
use vectorgate_domain::GatewayError;

use super::SdkMilvusApi;

impl SdkMilvusApi {
    pub(super) async fn create_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        let mut client = self.client().await?;
        self.call(
            "create partition",
            client.create_partition(CreatePartitionRequest {
                base: Some(MsgBase::new(MsgType::CreatePartition)),
                collection_name: collection.to_string(),
                partition_name: partition.to_string(),
                ..Default::default()
            }),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn has_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<bool, GatewayError> {
        let mut client = self.client().await?;
        let reply = self
            .call(
                "has partition",
                client.has_partition(HasPartitionRequest {
                    base: Some(MsgBase::new(MsgType::HasPartition)),
                    collection_name: collection.to_string(),
                    partition_name: partition.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(reply.value)
    }

    pub(super) async fn release_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        let mut client = self.client().await?;
        self.call(
            "release partition",
            client.release_partitions(ReleasePartitionsRequest {
                base: Some(MsgBase::new(MsgType::ReleasePartitions)),
                collection_name: collection.to_string(),
                partition_names: vec![partition.to_string()],
                ..Default::default()
            }),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn drop_partition(
        &self,
        collection: &str,
        partition: &str,
    ) -> Result<(), GatewayError> {
        let mut client = self.client().await?;
        self.call(
            "drop partition",
            client.drop_partition(DropPartitionRequest {
                base: Some(MsgBase::new(MsgType::DropPartition)),
                collection_name: collection.to_string(),
                partition_name: partition.to_string(),
                ..Default::default()
            }),
        )
        .await?;
        Ok(())
    }

    pub(super) async fn list_partitions(
        &self,
        collection: &str,
    ) -> Result<Vec<String>, GatewayError> {
        let mut client = self.client().await?;
        let reply = self
            .call(
                "list partitions",
                client.show_partitions(ShowPartitionsRequest {
                    base: Some(MsgBase::new(MsgType::ShowPartitions)),
                    collection_name: collection.to_string(),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(reply.partition_names)
    }
}
