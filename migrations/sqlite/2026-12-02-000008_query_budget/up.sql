-- Nothing to store on SQLite: each connection registers idgate_within_budget() itself
-- (src/db/budget.rs). PostgreSQL's migration of the same name defines it as a constant.
SELECT 1;
