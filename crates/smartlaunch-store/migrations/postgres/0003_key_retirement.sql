-- Review (issue 10): a signing key removed from the table (`smartlaunch keys retire`, for a
-- compromised key) is announced, with its id, so that every node reloads its keys and stops
-- verifying tokens signed with it at once, not at its next restart.  Migration 0002 announces
-- inserts and updates only.

CREATE FUNCTION smartlaunch_key_retired() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('smartlaunch_changes', json_build_object('change', 'key_retired', 'kid', OLD.kid)::text);
    RETURN NULL;
END $$;
CREATE TRIGGER signing_keys_retired_feed AFTER DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION smartlaunch_key_retired();
