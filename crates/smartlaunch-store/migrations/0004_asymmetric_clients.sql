-- Issue 8: asymmetric clients and backend services.

-- RFC 7592: the hash of the registration access token a client manages its registration with.
ALTER TABLE clients ADD COLUMN registration_token_hash TEXT;

-- private_key_jwt replay store: each (client, jti) is accepted once while its assertion is
-- valid; rows go when the assertion expires.  Shared by every node on this database.
CREATE TABLE client_assertion_jtis (
    client_id   TEXT NOT NULL,
    jti_hash    TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti_hash)
) WITHOUT ROWID;
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at);
