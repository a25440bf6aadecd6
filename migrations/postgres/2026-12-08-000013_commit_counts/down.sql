DO $$
DECLARE
    counted RECORD;
BEGIN
    FOR counted IN
        SELECT DISTINCT event_object_table AS tablename FROM information_schema.triggers
        WHERE trigger_schema = current_schema() AND trigger_name = 'count_commits'
    LOOP
        EXECUTE format('DROP TRIGGER count_commits ON %I', counted.tablename);
    END LOOP;
END
$$;
DROP FUNCTION count_commit();
DROP TABLE commit_counts;
