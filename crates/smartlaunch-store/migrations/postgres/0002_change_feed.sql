-- The change feed between stateless nodes (docs/DESIGN.md "Stateless nodes"): every write that
-- other nodes keep in memory announces itself on the channel `smartlaunch_changes`, from the
-- writing transaction (NOTIFY is delivered when, and only if, it commits), whichever process
-- made it: a node, the command line, a sandbox reset.  The payloads are the JSON of
-- `smartlaunch_auth::changes::Change`.

CREATE FUNCTION smartlaunch_grant_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartlaunch_changes',
        json_build_object('change', 'grant_revoked', 'grant', NEW.grant_id, 'at', NEW.revoked_at)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER revocations_feed AFTER INSERT ON revocations
    FOR EACH ROW EXECUTE FUNCTION smartlaunch_grant_revoked();

CREATE FUNCTION smartlaunch_user_client_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartlaunch_changes',
        json_build_object('change', 'user_client_revoked', 'user', NEW.user_id, 'client', NEW.client_id,
                          'at', NEW.revoked_at)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER access_revocations_feed AFTER INSERT OR UPDATE ON access_revocations
    FOR EACH ROW EXECUTE FUNCTION smartlaunch_user_client_revoked();

-- A client's registration, backend-service session or trace switch: the client cache entry
-- (which holds all three) and the CORS origins of registered clients are stale.
CREATE FUNCTION smartlaunch_client_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    client TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN client := OLD.client_id; ELSE client := NEW.client_id; END IF;
    PERFORM pg_notify('smartlaunch_changes', json_build_object('change', 'client_changed', 'client', client)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER clients_feed AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION smartlaunch_client_changed();
CREATE TRIGGER backend_sessions_feed AFTER INSERT OR UPDATE OR DELETE ON backend_sessions
    FOR EACH ROW EXECUTE FUNCTION smartlaunch_client_changed();
CREATE TRIGGER trace_switches_feed AFTER INSERT OR UPDATE OR DELETE ON trace_switches
    FOR EACH ROW EXECUTE FUNCTION smartlaunch_client_changed();

CREATE FUNCTION smartlaunch_keys_rotated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartlaunch_changes', json_build_object('change', 'keys_rotated')::text);
    RETURN NULL;
END $$;
CREATE TRIGGER signing_keys_feed AFTER INSERT OR UPDATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION smartlaunch_keys_rotated();
