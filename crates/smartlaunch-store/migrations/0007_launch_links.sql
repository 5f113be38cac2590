-- Issue 9: the developer launcher's permanent launch links.  Opening one creates a fresh
-- single-use launch from the saved launcher form.  The link's id (256 random bits) is kept only
-- as a hash; `form` is the saved form, URL-encoded (never a token: the launcher drops the admin
-- and registration tokens before saving).
CREATE TABLE launch_links (
    id_hash     TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    form        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX launch_links_created_at ON launch_links (created_at);
