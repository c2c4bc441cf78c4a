//! Every validation rule of the port's value types, each bad input named in the assertion.

use vectorgate_domain::{
    validate_records, ChunkId, DeleteRequest, Dimension, Embedding, GatewayError, Metric,
    ProjectFilter, ProjectId, ScanFilter, SearchRequest, SearchScope, TenantId, TopK, VectorRecord,
};

fn invalid_message(err: GatewayError) -> String {
    match err {
        GatewayError::InvalidInput(message) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

fn record(id: i64, values: Vec<f32>) -> VectorRecord {
    VectorRecord::new(
        ChunkId::new(id).unwrap(),
        TenantId::new(1).unwrap(),
        ProjectId::new(1).unwrap(),
        Embedding::new(values).unwrap(),
    )
}

#[test]
fn negative_ids_are_rejected_and_named() {
    assert!(
        invalid_message(ChunkId::new(-1).unwrap_err()).contains("chunk_id must be >= 0, got -1")
    );
    assert!(
        invalid_message(TenantId::new(-5).unwrap_err()).contains("tenant_id must be >= 0, got -5")
    );
    assert!(invalid_message(ProjectId::new(-9).unwrap_err())
        .contains("project_id must be >= 0, got -9"));
    assert_eq!(ChunkId::new(0).unwrap().get(), 0);
    assert_eq!(TenantId::try_from(i64::MAX).unwrap().get(), i64::MAX);
}

#[test]
fn empty_embedding_is_rejected() {
    assert_eq!(
        invalid_message(Embedding::new(vec![]).unwrap_err()),
        "embedding is empty"
    );
}

#[test]
fn nan_and_infinite_components_are_rejected_with_their_position() {
    let nan = invalid_message(Embedding::new(vec![0.1, f32::NAN]).unwrap_err());
    assert!(nan.contains("component 1 is NaN"), "{nan}");
    let inf = invalid_message(Embedding::new(vec![f32::INFINITY]).unwrap_err());
    assert!(inf.contains("component 0 is infinite"), "{inf}");
    let neg_inf = invalid_message(Embedding::new(vec![1.0, 2.0, f32::NEG_INFINITY]).unwrap_err());
    assert!(neg_inf.contains("component 2 is infinite"), "{neg_inf}");
}

#[test]
fn serde_applies_the_same_validation() {
    let err = serde_json::from_str::<Embedding>("[]").unwrap_err();
    assert!(err.to_string().contains("embedding is empty"), "{err}");
    let err = serde_json::from_str::<ChunkId>("-3").unwrap_err();
    assert!(err.to_string().contains("chunk_id must be >= 0"), "{err}");
    let ok: Embedding = serde_json::from_str("[0.5, 0.25]").unwrap();
    assert_eq!(ok.as_slice(), &[0.5, 0.25]);
}

#[test]
fn dimension_bounds() {
    assert!(invalid_message(Dimension::new(0).unwrap_err()).contains("got 0"));
    assert!(invalid_message(Dimension::new(16_001).unwrap_err()).contains("got 16001"));
    assert_eq!(Dimension::new(768).unwrap().get(), 768);
}

#[test]
fn dimension_mismatch_names_expected_and_got() {
    let dim = Dimension::new(3).unwrap();
    let err = dim
        .check(&Embedding::new(vec![1.0, 2.0]).unwrap())
        .unwrap_err();
    assert_eq!(
        err,
        GatewayError::DimensionMismatch {
            expected: 3,
            got: 2
        }
    );
    assert_eq!(err.to_string(), "dimension mismatch: expected 3, got 2");
}

#[test]
fn top_k_bounds() {
    assert!(
        invalid_message(TopK::new(0).unwrap_err()).contains("top_k must be in 1..=16384, got 0")
    );
    assert!(invalid_message(TopK::new(16_385).unwrap_err()).contains("got 16385"));
    assert_eq!(TopK::new(16_384).unwrap().get(), 16_384);
}

#[test]
fn empty_project_set_is_rejected_and_names_the_tenant() {
    let tenant = TenantId::new(7).unwrap();
    let msg = invalid_message(SearchScope::projects(tenant, []).unwrap_err());
    assert!(msg.contains("project set for tenant 7 is empty"), "{msg}");
    let msg = invalid_message(
        DeleteRequest::chunks_in_projects(tenant, [], [ChunkId::new(1).unwrap()]).unwrap_err(),
    );
    assert!(msg.contains("project set for tenant 7 is empty"), "{msg}");
    let hand_built = DeleteRequest::Chunks {
        tenant_id: tenant,
        projects: ProjectFilter::Only(Default::default()),
        chunk_ids: vec![],
    };
    assert!(invalid_message(hand_built.validate().unwrap_err()).contains("tenant 7"));
}

#[test]
fn scope_contains_only_its_tenant_and_projects() {
    let t = TenantId::new(1).unwrap();
    let other = TenantId::new(2).unwrap();
    let p1 = ProjectId::new(1).unwrap();
    let p2 = ProjectId::new(2).unwrap();
    let scope = SearchScope::projects(t, [p1]).unwrap();
    assert!(scope.contains(t, p1));
    assert!(!scope.contains(t, p2));
    assert!(!scope.contains(other, p1));
    let whole = SearchScope::tenant(t);
    assert!(whole.contains(t, p2));
    assert!(!whole.contains(other, p2));
}

#[test]
fn batch_with_duplicate_ids_is_rejected_naming_the_id() {
    let dim = Dimension::new(2).unwrap();
    let batch = vec![
        record(10, vec![1.0, 0.0]),
        record(11, vec![0.0, 1.0]),
        record(10, vec![0.5, 0.5]),
    ];
    let msg = invalid_message(validate_records(&batch, dim, Metric::Ip).unwrap_err());
    assert!(msg.contains("duplicate chunk_id 10"), "{msg}");
}

#[test]
fn batch_with_one_wrong_dimension_is_rejected() {
    let dim = Dimension::new(2).unwrap();
    let batch = vec![record(1, vec![1.0, 0.0]), record(2, vec![1.0, 0.0, 0.0])];
    assert_eq!(
        validate_records(&batch, dim, Metric::Ip).unwrap_err(),
        GatewayError::DimensionMismatch {
            expected: 2,
            got: 3
        }
    );
}

#[test]
fn empty_batch_is_valid() {
    assert!(validate_records(&[], Dimension::new(2).unwrap(), Metric::Cosine).is_ok());
}

#[test]
fn search_request_checks_dimension_and_min_score() {
    let dim = Dimension::new(2).unwrap();
    let scope = SearchScope::tenant(TenantId::new(1).unwrap());
    let wrong = SearchRequest::new(
        scope.clone(),
        Embedding::new(vec![1.0]).unwrap(),
        TopK::new(5).unwrap(),
    );
    assert_eq!(
        wrong.validate(dim, Metric::Ip).unwrap_err(),
        GatewayError::DimensionMismatch {
            expected: 2,
            got: 1
        }
    );
    let nan_min = SearchRequest::new(
        scope,
        Embedding::new(vec![1.0, 0.0]).unwrap(),
        TopK::new(5).unwrap(),
    )
    .with_min_score(f32::NAN);
    assert!(
        invalid_message(nan_min.validate(dim, Metric::Ip).unwrap_err())
            .contains("min_score must be finite")
    );
}

#[test]
fn metric_parsing_accepts_the_three_names_and_rejects_others() {
    assert_eq!("ip".parse::<Metric>().unwrap(), Metric::Ip);
    assert_eq!("COSINE".parse::<Metric>().unwrap(), Metric::Cosine);
    assert_eq!(" l2 ".parse::<Metric>().unwrap(), Metric::L2);
    assert_eq!(Metric::default(), Metric::Ip);
    let msg = invalid_message("hamming".parse::<Metric>().unwrap_err());
    assert!(
        msg.contains("\"hamming\"") && msg.contains("IP, COSINE or L2"),
        "{msg}"
    );
}

#[test]
fn scores_follow_the_port_convention() {
    let a = [1.0, 0.0];
    let b = [0.6, 0.8];
    assert!((Metric::Ip.score(&a, &b) - 0.6).abs() < 1e-6);
    assert!((Metric::Cosine.score(&[2.0, 0.0], &b) - 0.6).abs() < 1e-6);
    // L2 is the NEGATIVE Euclidean distance: closer is higher.
    let d = ((0.4f32).powi(2) + (0.8f32).powi(2)).sqrt();
    assert!((Metric::L2.score(&a, &b) + d).abs() < 1e-6);
    assert!(Metric::L2.score(&a, &a) > Metric::L2.score(&a, &b));
}

#[test]
fn scan_filter_refuses_a_project_without_a_tenant() {
    let msg = invalid_message(ScanFilter::new(None, Some(ProjectId::new(1).unwrap())).unwrap_err());
    assert!(msg.contains("project filter needs a tenant"), "{msg}");
    let f = ScanFilter::new(Some(TenantId::new(1).unwrap()), None).unwrap();
    assert!(f.matches(&record(1, vec![1.0])));
}

#[test]
fn error_messages_name_their_subject() {
    use vectorgate_domain::StoreKind;
    assert_eq!(
        GatewayError::unavailable(
            StoreKind::Milvus,
            "cannot reach 127.0.0.1:19530: connection refused"
        )
        .to_string(),
        "milvus unavailable: cannot reach 127.0.0.1:19530: connection refused"
    );
    assert_eq!(
        GatewayError::configuration("VECTOR_STORE_MODE", "pg", "pgvector, milvus or dual").to_string(),
        "configuration error: VECTOR_STORE_MODE=\"pg\" is not accepted; expected pgvector, milvus or dual"
    );
    assert_eq!(
        GatewayError::schema_mismatch(
            StoreKind::Pgvector,
            "knowledge_chunks",
            "dimension: expected 768, found 384"
        )
        .to_string(),
        "schema mismatch in pgvector knowledge_chunks: dimension: expected 768, found 384"
    );
    assert_eq!(
        GatewayError::backend(StoreKind::Pgvector, "upsert", "deadlock detected").to_string(),
        "pgvector upsert failed: deadlock detected"
    );
}

#[test]
fn a_search_request_is_built_in_one_expression_and_validated_once() {
    let request = SearchRequest::builder(7, vec![0.5, 0.5])
        .projects([2, 1])
        .top_k(3)
        .min_score(0.1)
        .build()
        .unwrap();
    assert_eq!(request.scope.tenant_id().get(), 7);
    assert_eq!(
        request
            .scope
            .project_ids()
            .unwrap()
            .iter()
            .map(|p| p.get())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(request.top_k.get(), 3);
    assert_eq!(request.min_score, Some(0.1));
    let defaults = SearchRequest::builder(1, vec![1.0]).build().unwrap();
    assert_eq!(defaults.top_k.get(), 10);
    assert!(defaults.scope.project_ids().is_none());

    for (builder, needle) in [
        (
            SearchRequest::builder(-1, vec![1.0]),
            "tenant_id must be >= 0",
        ),
        (
            SearchRequest::builder(1, vec![1.0]).projects([3, -2]),
            "project_id must be >= 0",
        ),
        (
            SearchRequest::builder(1, vec![1.0]).projects([]),
            "project set for tenant 1 is empty",
        ),
        (SearchRequest::builder(1, vec![]), "embedding is empty"),
        (
            SearchRequest::builder(1, vec![1.0]).top_k(0),
            "top_k must be in 1..=",
        ),
        (
            SearchRequest::builder(1, vec![1.0]).min_score(f32::NAN),
            "min_score must be finite",
        ),
    ] {
        let message = invalid_message(builder.build().unwrap_err());
        assert!(message.contains(needle), "{message} lacks {needle}");
    }
}

#[test]
fn records_from_plain_values_check_every_part() {
    let record = VectorRecord::from_parts(5, 1, 2, vec![0.5]).unwrap();
    assert_eq!(record.chunk_id.get(), 5);
    assert!(
        invalid_message(VectorRecord::from_parts(5, -1, 2, vec![0.5]).unwrap_err())
            .contains("tenant_id")
    );
    assert!(
        invalid_message(VectorRecord::from_parts(5, 1, 2, vec![f32::NAN]).unwrap_err())
            .contains("NaN")
    );
}

#[test]
fn zero_vectors_are_refused_under_cosine_only() {
    let dim = Dimension::new(2).unwrap();
    let batch = vec![record(1, vec![1.0, 0.0]), record(7, vec![0.0, 0.0])];
    let msg = invalid_message(validate_records(&batch, dim, Metric::Cosine).unwrap_err());
    assert!(
        msg.contains("record 1 (chunk_id 7)") && msg.contains("all zeros"),
        "{msg}"
    );
    for metric in [Metric::Ip, Metric::L2] {
        assert!(validate_records(&batch, dim, metric).is_ok(), "{metric}");
    }
    let query = SearchRequest::new(
        SearchScope::tenant(TenantId::new(1).unwrap()),
        Embedding::new(vec![0.0, -0.0]).unwrap(),
        TopK::new(5).unwrap(),
    );
    let msg = invalid_message(query.validate(dim, Metric::Cosine).unwrap_err());
    assert!(
        msg.contains("search query") && msg.contains("all zeros"),
        "{msg}"
    );
    assert!(query.validate(dim, Metric::Ip).is_ok());
}
