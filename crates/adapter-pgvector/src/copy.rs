//! PostgreSQL's binary `COPY` format for our four columns
//! (`chunk_id bigint, tenant_id bigint, project_id bigint, embedding vector`).
//!
//! Written by hand because it is small and fixed: a header, per row a field count and
//! length-prefixed big-endian fields, and a trailer. `vector`'s binary form is pgvector's
//! `vector_send`: u16 dimension, u16 unused (0), then the f32 components.

use vectorgate_domain::VectorRecord;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Bytes appended before the first row: signature, flags (0), header extension length (0).
pub(crate) fn header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(SIGNATURE);
    buf.extend_from_slice(&0_i32.to_be_bytes());
    buf.extend_from_slice(&0_i32.to_be_bytes());
}

/// One row in binary COPY form.
pub(crate) fn row(buf: &mut Vec<u8>, record: &VectorRecord) {
    let values = record.embedding.as_slice();
    buf.reserve(2 + 3 * 12 + 4 + 4 + values.len() * 4);
    buf.extend_from_slice(&4_i16.to_be_bytes());
    for id in [
        record.chunk_id.get(),
        record.tenant_id.get(),
        record.project_id.get(),
    ] {
        buf.extend_from_slice(&8_i32.to_be_bytes());
        buf.extend_from_slice(&id.to_be_bytes());
    }
    // Dimensions are at most 16,000 (Dimension::MAX), so both casts are lossless.
    let byte_len = 4 + 4 * values.len() as i32;
    buf.extend_from_slice(&byte_len.to_be_bytes());
    buf.extend_from_slice(&(values.len() as u16).to_be_bytes());
    buf.extend_from_slice(&0_u16.to_be_bytes());
    for v in values {
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// One row of the chunk-id registry (`chunk_id bigint, tenant_id bigint`).
pub(crate) fn registry_row(buf: &mut Vec<u8>, record: &VectorRecord) {
    buf.extend_from_slice(&2_i16.to_be_bytes());
    for id in [record.chunk_id.get(), record.tenant_id.get()] {
        buf.extend_from_slice(&8_i32.to_be_bytes());
        buf.extend_from_slice(&id.to_be_bytes());
    }
}

/// The end-of-data marker.
pub(crate) fn trailer(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1_i16).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorgate_domain::{ChunkId, Embedding, ProjectId, TenantId};

    #[test]
    fn encodes_one_row_as_postgres_expects() {
        let record = VectorRecord::new(
            ChunkId::new(7).unwrap(),
            TenantId::new(1).unwrap(),
            ProjectId::new(2).unwrap(),
            Embedding::new(vec![1.0, -2.0]).unwrap(),
        );
        let mut buf = Vec::new();
        header(&mut buf);
        row(&mut buf, &record);
        trailer(&mut buf);

        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend([0, 4]);
        for id in [7_i64, 1, 2] {
            expected.extend([0, 0, 0, 8]);
            expected.extend(id.to_be_bytes());
        }
        expected.extend([0, 0, 0, 12, 0, 2, 0, 0]);
        expected.extend(1.0_f32.to_be_bytes());
        expected.extend((-2.0_f32).to_be_bytes());
        expected.extend([0xff, 0xff]);
        assert_eq!(buf, expected);
    }
}
