DROP FUNCTION idgate_within_budget();
