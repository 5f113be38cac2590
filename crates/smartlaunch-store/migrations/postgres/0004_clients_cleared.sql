-- Review (issue 10): the sandbox reset empties `clients`, `backend_sessions` and
-- `trace_switches` with TRUNCATE, which fires no row trigger: other nodes kept the removed
-- apps' CORS origins (and cached entries) until they restarted.  A TRUNCATE of any of them
-- now announces `clients_cleared`, once per statement, and every node drops its client cache
-- and reloads the CORS origins.

CREATE FUNCTION smartlaunch_clients_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartlaunch_changes', json_build_object('change', 'clients_cleared')::text);
    RETURN NULL;
END $$;
CREATE TRIGGER clients_cleared_feed AFTER TRUNCATE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION smartlaunch_clients_cleared();
CREATE TRIGGER backend_sessions_cleared_feed AFTER TRUNCATE ON backend_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION smartlaunch_clients_cleared();
CREATE TRIGGER trace_switches_cleared_feed AFTER TRUNCATE ON trace_switches
    FOR EACH STATEMENT EXECUTE FUNCTION smartlaunch_clients_cleared();
