-- The idgate processes serving this database, each seen within the last seconds: a rate limit is
-- one allowance for the whole service, so each process counts the others (src/replicas.rs).
CREATE TABLE replicas (
    id       TEXT PRIMARY KEY NOT NULL,
    seen_at  TIMESTAMP NOT NULL
);
