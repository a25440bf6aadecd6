-- Budgeted queries call idgate_within_budget() on the rows they scan (src/db/budget.rs). SQLite
-- answers it from each connection; here statement_timeout is the budget, so it is a constant the
-- planner folds away.
CREATE FUNCTION idgate_within_budget() RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
