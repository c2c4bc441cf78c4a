-- Run once by the postgres image when its data volume is first initialised
-- (docker-compose.yml mounts this folder at /docker-entrypoint-initdb.d).
CREATE EXTENSION IF NOT EXISTS vector;
