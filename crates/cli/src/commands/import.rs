//! `vectorgate import`: loads a JSON-lines file through the gateway of the configured
//! mode (or with pgvector's COPY for `--bulk`).

use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context as _};
use vectorgate_composition::VectorStoreMode;
use vectorgate_domain::{VectorRecord, VectorStoreGateway};

use crate::args::ImportArgs;
use crate::context::Ctx;
use crate::progress::{rate, Progress};
use crate::Outcome;

pub async fn run(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<Outcome> {
    let total = count_lines(&args.file)?;
    if args.bulk {
        return bulk(ctx, &args, total).await;
    }
    let gateway = ctx.gateway().await?;
    let mut progress = Progress::new("import", Some(total), 0);
    let batch = args.batch as usize;
    let mut imported = 0u64;
    let mut pending = Vec::with_capacity(batch);
    for record in records(&args.file)? {
        pending.push(record?);
        if pending.len() == batch {
            imported += gateway.upsert_vectors(&pending).await?;
            metrics::counter!("vectorgate_import_rows_total").increment(pending.len() as u64);
            progress.batch(pending.len() as u64, "");
            pending.clear();
        }
    }
    if !pending.is_empty() {
        imported += gateway.upsert_vectors(&pending).await?;
        metrics::counter!("vectorgate_import_rows_total").increment(pending.len() as u64);
        progress.batch(pending.len() as u64, "");
    }
    progress.finish();
    gateway.close().await.ok();
    if ctx.mode().uses_milvus() {
        super::indexing::flush_and_wait_indexed(&ctx.milvus()?, "import").await;
    }
    println!(
        "imported {imported} records from {} in mode {} in {:.1} s, {}",
        args.file.display(),
        ctx.mode(),
        progress.elapsed().as_secs_f64(),
        rate(imported, progress.elapsed())
    );
    Ok(Outcome::Ok)
}

/// The whole file in one COPY transaction (all or nothing), optionally rebuilding the
/// vector index afterwards (much faster than maintaining it row by row).
async fn bulk(ctx: &Ctx, args: &ImportArgs, total: u64) -> anyhow::Result<Outcome> {
    if ctx.mode() != VectorStoreMode::Pgvector {
        bail!(
            "--bulk loads pgvector alone with COPY and needs VECTOR_STORE_MODE=pgvector \
             (got {}); without --bulk the records go through the {} gateway",
            ctx.mode(),
            ctx.mode()
        );
    }
    let store = ctx.pgvector()?;
    store.bootstrap().await?;
    let records = records(&args.file)?.collect::<anyhow::Result<Vec<_>>>()?;
    let started = std::time::Instant::now();
    let report = store.bulk_load_timed(&records, args.build_index).await?;
    metrics::counter!("vectorgate_import_rows_total").increment(report.rows);
    store.close().await.ok();
    println!(
        "bulk-loaded {} of {total} records from {} into pgvector table {} in {:.1} s{}",
        report.rows,
        args.file.display(),
        store.config().table,
        started.elapsed().as_secs_f64(),
        report.index_build.map_or_else(String::new, |d| format!(
            " (index build {:.1} s)",
            d.as_secs_f64()
        ))
    );
    Ok(Outcome::Ok)
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut n = 0;
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if !line.trim().is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

/// The file's records in order; a bad line is an error naming the file and line number.
fn records(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<VectorRecord>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let display = path.display().to_string();
    Ok(BufReader::new(file)
        .lines()
        .enumerate()
        .filter_map(move |(index, line)| {
            let line = match line {
                Ok(line) => line,
                Err(err) => return Some(Err(anyhow::anyhow!("cannot read {display}: {err}"))),
            };
            if line.trim().is_empty() {
                return None;
            }
            Some(serde_json::from_str::<VectorRecord>(&line).map_err(|err| {
                anyhow::anyhow!(
                    "{display} line {}: {err} (expected {{\"chunk_id\":..,\"tenant_id\":..,\
                     \"project_id\":..,\"embedding\":[..]}})",
                    index + 1
                )
            }))
        }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_parse_into_records_and_bad_lines_are_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            r#"{{"chunk_id":1,"tenant_id":2,"project_id":3,"embedding":[0.5,0.25]}}"#
        )
        .unwrap();
        writeln!(file).unwrap();
        writeln!(
            file,
            r#"{{"chunk_id":-1,"tenant_id":2,"project_id":3,"embedding":[0.5]}}"#
        )
        .unwrap();
        let parsed: Vec<_> = records(file.path()).unwrap().collect();
        assert_eq!(parsed.len(), 2);
        let first = parsed[0].as_ref().unwrap();
        assert_eq!(first.chunk_id.get(), 1);
        assert_eq!(first.embedding.as_slice(), &[0.5, 0.25]);
        let err = parsed[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("chunk_id must be >= 0"), "{err}");
        assert_eq!(count_lines(file.path()).unwrap(), 2);
    }
}
