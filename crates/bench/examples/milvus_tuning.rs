//! Measures upsert throughput (gateway vs raw SDK, by concurrency) and filtered recall@10
//! by nprobe on the benchmark's data, against a real Milvus. Used to choose the defaults.
//!
//! `cargo run --release -p vectorgate-bench --example milvus_tuning`

use std::time::{Duration, Instant};

use vectorgate_adapter_milvus::{MilvusConfig, MilvusStore};
use vectorgate_bench::baseline;
use vectorgate_domain::{Dimension, SearchRequest, SearchScope, TopK, VectorStoreGateway};
use vectorgate_testkit::{
    exact_top_k, generate_queries, generate_records, project, recall, tenant, unique_name,
    DataShape, ServicesEnv,
};

#[tokio::main]
async fn main() {
    let shape = DataShape::default();
    let env = ServicesEnv::load();
    let mut config = MilvusConfig::new(
        env.milvus_host(),
        env.milvus_port(),
        Dimension::new(shape.dim as u32).unwrap(),
    );
    config.collection = unique_name("vg_tuning");
    config.expected_rows = shape.rows as u64;
    if let Ok(nlist) = std::env::var("NLIST") {
        config.index_nlist = Some(nlist.parse().unwrap());
    }
    let records = generate_records(shape, 1);
    let store = MilvusStore::new(config.clone()).unwrap();

    let rates: Vec<usize> = std::env::var("CONCURRENCY")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    for &c in &rates {
        store.schema().recreate().await.unwrap();
        let elapsed = baseline::sdk_upsert(&config, &records, 1000, c)
            .await
            .unwrap();
        println!("sdk      c={c}: {:.0} rows/s", rate(records.len(), elapsed));
        store.schema().recreate().await.unwrap();
        let mut cfg = config.clone();
        cfg.upsert_concurrency = c;
        let s = MilvusStore::new(cfg).unwrap();
        let started = Instant::now();
        s.upsert_vectors(&records).await.unwrap();
        println!(
            "gateway  c={c}: {:.0} rows/s",
            rate(records.len(), started.elapsed())
        );
    }

    let flush = std::env::var("FLUSH").map(|v| v == "1").unwrap_or(true);
    if flush {
        store.flush().await.unwrap();
    }
    let started = Instant::now();
    loop {
        let (indexed, total) = store.index_coverage().await.unwrap();
        println!(
            "index coverage {indexed}/{total} after {:?}",
            started.elapsed()
        );
        if !flush
            || (indexed == total && total as usize == records.len())
            || started.elapsed() > Duration::from_secs(300)
        {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let queries = generate_queries(100, shape.dim, shape.seed);
    let scopes: Vec<SearchScope> = (0..queries.len())
        .map(|i| {
            let g = i as i64 % (shape.tenants * shape.projects_per_tenant);
            SearchScope::projects(
                tenant(1 + g / shape.projects_per_tenant),
                [project(1 + g % shape.projects_per_tenant)],
            )
            .unwrap()
        })
        .collect();
    let exact: Vec<_> = queries
        .iter()
        .zip(&scopes)
        .map(|(q, s)| exact_top_k(&records, s, q.as_slice(), 10, config.metric))
        .collect();
    let nlist = config.effective_nlist();
    let probes: Vec<u32> = std::env::var("NPROBES")
        .unwrap_or_else(|_| "16,32,64,128,192,283,400,566".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .filter(|&p| p <= nlist)
        .collect();
    for nprobe in probes {
        let mut cfg = config.clone();
        cfg.search_nprobe = Some(nprobe);
        let s = MilvusStore::new(cfg).unwrap();
        let mut total = 0.0;
        let started = Instant::now();
        for ((q, scope), want) in queries.iter().zip(&scopes).zip(&exact) {
            let hits = s
                .search(&SearchRequest::new(
                    scope.clone(),
                    q.clone(),
                    TopK::new(10).unwrap(),
                ))
                .await
                .unwrap();
            total += recall(&hits, want);
        }
        let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "nlist={nlist} nprobe={nprobe}: recall@10={:.3} sequential {:.0} q/s",
            total / queries.len() as f64,
            qps
        );
    }
    store.schema().drop_collection().await.unwrap();
}

fn rate(rows: usize, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}
