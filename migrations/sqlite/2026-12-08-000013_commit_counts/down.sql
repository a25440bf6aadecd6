-- Nothing on SQLite: its change watch asks the file's data version, which every commit moves
-- (src/db/changes.rs). PostgreSQL's migration of this name adds a commit counter.
SELECT 1;
