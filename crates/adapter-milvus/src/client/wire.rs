//! The pieces of requests and replies that every call shares: a reply's status as an
//! error, consistency levels, key-value parameters, and conversions between the adapter's
//! types and the SDK's (fields, columns, values).

use milvus::client::ConsistencyLevel;
use milvus::data::FieldColumn;
use milvus::proto::common::{KeyValuePair, Status};
use milvus::schema::FieldSchema;
use milvus::value::{Value, ValueVec};
use vectorgate_domain::GatewayError;

use super::{Column, FieldKind, FieldSpec, Rows, STORE};
use crate::config::Consistency;

pub(super) type SdkError = milvus::error::Error;

/// A reply that carries a status.
pub(super) trait Replied {
    fn status(&self) -> Option<&Status>;
}

impl Replied for Status {
    fn status(&self) -> Option<&Status> {
        Some(self)
    }
}

macro_rules! replied {
    ($($reply:ty),* $(,)?) => {$(
        impl Replied for $reply {
            fn status(&self) -> Option<&Status> {
                self.status.as_ref()
            }
        }
    )*};
}

replied!(
    milvus::proto::milvus::BoolResponse,
    milvus::proto::milvus::ConnectResponse,
    milvus::proto::milvus::DescribeCollectionResponse,
    milvus::proto::milvus::DescribeIndexResponse,
    milvus::proto::milvus::FlushResponse,
    milvus::proto::milvus::GetLoadStateResponse,
    milvus::proto::milvus::GetLoadingProgressResponse,
    milvus::proto::milvus::GetQuerySegmentInfoResponse,
    milvus::proto::milvus::MutationResult,
    milvus::proto::milvus::QueryResults,
    milvus::proto::milvus::SearchResults,
    milvus::proto::milvus::ShowPartitionsResponse,
);

/// The error a reply's status reports, if any. Milvus 2.3 fills both codes; newer servers
/// and lite only `code`.
#[allow(deprecated)]
pub(super) fn failure(status: Option<&Status>) -> Option<SdkError> {
    match status {
        None => Some(SdkError::Unexpected("a reply without a status".into())),
        Some(s) if s.code != 0 || s.error_code != 0 => Some(s.clone().into()),
        Some(_) => None,
    }
}

pub(super) fn consistency_level(consistency: Consistency) -> i32 {
    let level = match consistency {
        Consistency::Strong => ConsistencyLevel::Strong,
        Consistency::Session => ConsistencyLevel::Session,
        Consistency::Bounded => ConsistencyLevel::Bounded,
        Consistency::Eventually => ConsistencyLevel::Eventually,
    };
    level as i32
}

pub(super) fn sdk_field(spec: &FieldSpec) -> Result<FieldSchema, GatewayError> {
    Ok(match (&spec.kind, spec.primary) {
        (FieldKind::Int64, true) => FieldSchema::new_primary_int64(&spec.name, "", spec.auto_id),
        (FieldKind::Int64, false) => FieldSchema::new_int64(&spec.name, ""),
        (FieldKind::FloatVector { dim }, false) => {
            FieldSchema::new_float_vector(&spec.name, "", i64::from(*dim))
        }
        (kind, primary) => {
            return Err(GatewayError::backend(
                STORE,
                "create collection",
                format!(
                    "unsupported field {} {kind} (primary: {primary})",
                    spec.name
                ),
            ))
        }
    })
}

pub(super) fn int_column(name: &str, values: Vec<i64>) -> FieldColumn {
    FieldColumn::new(&FieldSchema::new_int64(name, ""), ValueVec::Long(values))
}

pub(super) fn kv(key: &str, value: impl Into<String>) -> KeyValuePair {
    KeyValuePair {
        key: key.to_string(),
        value: value.into(),
    }
}

/// A query reply's columns in the adapter's terms; other column types are skipped.
pub(super) fn rows_of(fields: Vec<milvus::proto::schema::FieldData>) -> Rows {
    let mut rows = Rows::default();
    for column in fields.into_iter().map(FieldColumn::from) {
        let value = match column.value {
            ValueVec::Long(values) => Column::Int64(values),
            ValueVec::Int(values) => Column::Int64(values.into_iter().map(i64::from).collect()),
            ValueVec::Float(values) => Column::FloatVector {
                dim: u32::try_from(column.dim).unwrap_or(0),
                values,
            },
            _ => continue,
        };
        rows.columns.insert(column.name, value);
    }
    rows
}

pub(super) fn value_to_i64(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Long(v) => Some(*v),
        Value::Int32(v) => Some(i64::from(*v)),
        _ => None,
    }
}
