//! The demo's generated corpus: deterministic clustered vectors (a few topics per tenant),
//! the query vectors, and the JSON lines the CLI imports.

use std::collections::HashMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::{CHUNKS, DIM, DUAL_WRITES, PROJECTS, SEED, TENANTS, TOPICS, TOP_K};

/// The generated corpus, deterministic for a seed.
pub(super) struct Corpus {
    /// (chunk_id, tenant, project, unit vector)
    pub(super) records: Vec<(i64, i64, i64, Vec<f32>)>,
    pub(super) owner: HashMap<i64, (i64, i64)>,
    pub(super) topics: Vec<Vec<f32>>,
}

impl Corpus {
    /// Chunk `i` (1-based) belongs to group `(i-1) % 6` (tenant 1 projects 1-3, then
    /// tenant 2); its vector is a noisy copy of one of its group's topics.
    pub(super) fn generate() -> Self {
        let mut rng = SplitMix64(SEED);
        let groups = (TENANTS * PROJECTS) as usize;
        let topics: Vec<Vec<f32>> = (0..groups * TOPICS)
            .map(|_| normalize((0..DIM).map(|_| rng.symmetric()).collect()))
            .collect();
        let mut records = Vec::with_capacity(CHUNKS as usize);
        let mut owner = HashMap::new();
        for id in 1..=CHUNKS {
            let g = ((id - 1) as usize) % groups;
            let (tenant, project) = (1 + g as i64 / PROJECTS, 1 + g as i64 % PROJECTS);
            let topic = &topics[g * TOPICS + (rng.next() as usize % TOPICS)];
            let vector = normalize(topic.iter().map(|t| t + 0.08 * rng.symmetric()).collect());
            owner.insert(id, (tenant, project));
            records.push((id, tenant, project, vector));
        }
        Self {
            records,
            owner,
            topics,
        }
    }

    pub(super) fn write(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_jsonl(&dir.join("corpus.jsonl"), &self.records)
    }

    /// Updates written in dual mode: chunks 1..=60 get a new vector (another topic of the
    /// same tenant/project).
    pub(super) fn write_dual_writes(&self, path: &Path) -> Result<()> {
        let mut rng = SplitMix64(SEED ^ 0xd0a1);
        let groups = (TENANTS * PROJECTS) as usize;
        let records: Vec<_> = (1..=DUAL_WRITES)
            .map(|id| {
                let g = ((id - 1) as usize) % groups;
                let topic = &self.topics[g * TOPICS + (rng.next() as usize % TOPICS)];
                let v = normalize(topic.iter().map(|t| t + 0.08 * rng.symmetric()).collect());
                (id, 1 + g as i64 / PROJECTS, 1 + g as i64 % PROJECTS, v)
            })
            .collect();
        write_jsonl(path, &records)
    }

    /// A query near one topic of group `index`.
    pub(super) fn query(&self, index: usize) -> Vec<f32> {
        let mut rng = SplitMix64(SEED ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9));
        let topic = &self.topics[index * TOPICS + index % TOPICS];
        normalize(topic.iter().map(|t| t + 0.1 * rng.symmetric()).collect())
    }

    /// Exact top-k by inner product within one tenant/project (ties by chunk id).
    pub(super) fn exact_top_k(&self, query: &[f32], tenant: i64, project: i64) -> Vec<i64> {
        let mut scored: Vec<(f64, i64)> = self
            .records
            .iter()
            .filter(|r| r.1 == tenant && r.2 == project)
            .map(|r| {
                let dot: f64 =
                    r.3.iter()
                        .zip(query)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                (dot, r.0)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(TOP_K).map(|(_, id)| id).collect()
    }
}

fn write_jsonl(path: &Path, records: &[(i64, i64, i64, Vec<f32>)]) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for (chunk_id, tenant_id, project_id, embedding) in records {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "chunk_id": chunk_id,
                "tenant_id": tenant_id,
                "project_id": project_id,
                "embedding": embedding,
            }),
        )?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A tiny deterministic generator (SplitMix64): the corpus must be the same on every
/// machine, and xtask stays free of the rand crates.
struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub(super) fn symmetric(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}
