-- Every commit that changes what a replica may keep counts itself here, in its own transaction,
-- so a replica that reads the sum every quarter second learns of any commit within that bound,
-- whatever became of the commit's NOTIFY (src/db/changes.rs). One row a server process
-- (`pg_backend_pid()`): a process runs one transaction at a time, so no two commits wait for one
-- row. Row 0 keeps the counts of processes gone; the sum only ever grows.
CREATE TABLE commit_counts (
    backend  INTEGER PRIMARY KEY NOT NULL,
    commits  BIGINT NOT NULL
);

-- Counts the transaction once, however many statements and tables it writes: the mark is a
-- transaction-local setting, gone at its end. The row is updated, and made only the first time:
-- an upsert each time cost 1-4% more of a create's throughput.
CREATE FUNCTION count_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('idgate.commit_counted', true) IS DISTINCT FROM 'yes' THEN
        UPDATE commit_counts SET commits = commits + 1 WHERE backend = pg_backend_pid();
        IF NOT FOUND THEN
            INSERT INTO commit_counts (backend, commits) VALUES (pg_backend_pid(), 1)
            ON CONFLICT (backend) DO UPDATE SET commits = commit_counts.commits + 1;
        END IF;
        PERFORM set_config('idgate.commit_counted', 'yes', true);
    END IF;
    RETURN NULL;
END
$$;

-- Every table but the replicas' heartbeat, which no memo reads (src/replicas.rs), and the
-- counter itself. A table made later gets the trigger in its own migration (a test checks).
DO $$
DECLARE
    counted RECORD;
BEGIN
    FOR counted IN
        SELECT tablename FROM pg_tables
        WHERE schemaname = current_schema()
          AND tablename NOT IN ('replicas', 'commit_counts', '__diesel_schema_migrations')
    LOOP
        EXECUTE format(
            'CREATE TRIGGER count_commits AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION count_commit()',
            counted.tablename);
    END LOOP;
END
$$;
