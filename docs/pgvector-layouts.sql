-- The layout experiment of docs/pgvector-search.md: one table vs partitioned by tenant.
-- Run with psql against a PostgreSQL with pgvector 0.8 (e.g. cargo xtask services up):
--   psql "$DATABASE_URL" -f docs/pgvector-layouts.sql
-- then: SELECT * FROM exp_measure('exp_single', 100, true);  -- table, ef_search, project scopes?
-- and drop the exp_* tables and exp_measure() afterwards.
\timing on
SET maintenance_work_mem = '2GB';
DROP TABLE IF EXISTS exp_centres, exp_src, exp_single, exp_part, exp_queries, exp_exact CASCADE;
CREATE TABLE exp_centres AS
  SELECT c AS id, l2_normalize((SELECT array_agg(random_normal(0, 1))::real[] FROM generate_series(1, 768) WHERE c > 0)::vector(768)) AS v
  FROM generate_series(1, 400) c;
CREATE TABLE exp_src AS
  SELECT i::bigint AS chunk_id, (1 + (i % 4))::bigint AS tenant_id, (1 + ((i / 4) % 3))::bigint AS project_id,
         l2_normalize(c.v + (SELECT array_agg(random_normal(0, 0.018))::real[] FROM generate_series(1, 768) WHERE i >= 0)::vector(768)) AS embedding
  FROM generate_series(0, 239999) i
  JOIN exp_centres c ON c.id = 1 + (hashint4(i) & 2147483647) % 400;
CREATE TABLE exp_queries AS
  SELECT q AS qid, s.tenant_id, CASE WHEN q % 2 = 0 THEN 1 + (q / 2) % 3 END::bigint AS project_id,
         l2_normalize(s.embedding + (SELECT array_agg(random_normal(0, 0.0072))::real[] FROM generate_series(1, 768) WHERE q >= 0)::vector(768)) AS v
  FROM generate_series(0, 199) q
  JOIN exp_src s ON s.chunk_id = (hashint4(q + 7) & 2147483647) % 240000;
-- exact answers
SET enable_indexscan = off;
CREATE TABLE exp_exact AS
  SELECT q.qid, array(SELECT s.chunk_id FROM exp_src s WHERE s.tenant_id = q.tenant_id
                        AND (q.project_id IS NULL OR s.project_id = q.project_id)
                        ORDER BY s.embedding <#> q.v LIMIT 10) AS ids
  FROM exp_queries q;
RESET enable_indexscan;
CREATE TABLE exp_single (chunk_id bigint PRIMARY KEY, tenant_id bigint NOT NULL, project_id bigint NOT NULL, embedding vector(768) NOT NULL);
INSERT INTO exp_single SELECT * FROM exp_src;
CREATE INDEX ON exp_single (tenant_id, project_id);
CREATE INDEX exp_single_embedding_idx ON exp_single USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64);
CREATE TABLE exp_part (chunk_id bigint NOT NULL, tenant_id bigint NOT NULL, project_id bigint NOT NULL, embedding vector(768) NOT NULL, PRIMARY KEY (tenant_id, chunk_id)) PARTITION BY LIST (tenant_id);
CREATE TABLE exp_part_1 PARTITION OF exp_part FOR VALUES IN (1);
CREATE TABLE exp_part_2 PARTITION OF exp_part FOR VALUES IN (2);
CREATE TABLE exp_part_3 PARTITION OF exp_part FOR VALUES IN (3);
CREATE TABLE exp_part_4 PARTITION OF exp_part FOR VALUES IN (4);
INSERT INTO exp_part SELECT * FROM exp_src;
CREATE INDEX ON exp_part (tenant_id, project_id);
CREATE INDEX exp_part_embedding_idx ON exp_part USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64);
ANALYZE exp_single; ANALYZE exp_part;

CREATE OR REPLACE FUNCTION exp_measure(tbl text, ef int, projects bool, OUT recall float8, OUT p50_ms float8, OUT mean_ms float8, OUT n int)
LANGUAGE plpgsql AS $$
DECLARE q record; t0 timestamptz; got bigint[]; times float8[] := '{}'; rsum float8 := 0; cnt int := 0;
BEGIN
  PERFORM set_config('hnsw.ef_search', ef::text, true);
  PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
  PERFORM set_config('hnsw.max_scan_tuples', '20000', true);
  PERFORM set_config('enable_sort', 'off', true);
  PERFORM set_config('enable_bitmapscan', 'off', true);
  PERFORM set_config('enable_seqscan', 'off', true);
  FOR q IN SELECT eq.*, e.ids FROM exp_queries eq JOIN exp_exact e USING (qid) WHERE (eq.project_id IS NOT NULL) = projects ORDER BY qid LOOP
    t0 := clock_timestamp();
    IF q.project_id IS NULL THEN
      EXECUTE format('SELECT array_agg(chunk_id) FROM (SELECT chunk_id FROM %I WHERE tenant_id = $1 ORDER BY embedding <#> $2 LIMIT 10) s', tbl) INTO got USING q.tenant_id, q.v;
    ELSE
      EXECUTE format('SELECT array_agg(chunk_id) FROM (SELECT chunk_id FROM %I WHERE tenant_id = $1 AND project_id = ANY($3) ORDER BY embedding <#> $2 LIMIT 10) s', tbl) INTO got USING q.tenant_id, q.v, ARRAY[q.project_id];
    END IF;
    times := times || extract(epoch FROM clock_timestamp() - t0) * 1000;
    rsum := rsum + (SELECT count(*) FROM unnest(got) g WHERE g = ANY(q.ids))::float8 / 10;
    cnt := cnt + 1;
  END LOOP;
  recall := rsum / cnt; n := cnt;
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x), avg(x) INTO p50_ms, mean_ms FROM unnest(times) x;
END $$;
