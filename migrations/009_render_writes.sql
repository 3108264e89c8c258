-- The per-row work of recording rendered messages, found with pg_stat_statements on the
-- 100 000-recipient benchmark (make bench: campaign.e2e_100k.seconds).

-- 1. The foreign key of rendered_messages.campaign_id ran its check once per inserted row: 100 000
-- statements `SELECT 1 FROM campaigns WHERE id = $1 FOR KEY SHARE` per campaign, every one of them
-- on the same row, which the batches' counter updates write meanwhile (multixacts). The same rule
-- is kept once per statement: an insert (a render batch's COPY) checks and KEY SHARE-locks the
-- campaigns its rows name, which stops a concurrent delete until it commits, as the foreign key
-- did; no update moves a message to another campaign; deleting a campaign deletes its messages
-- (the ON DELETE CASCADE it replaces).
ALTER TABLE rendered_messages DROP CONSTRAINT rendered_messages_campaign_id_fkey;

CREATE FUNCTION rendered_messages_campaign_exists() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    found  bigint;
BEGIN
    SELECT count(DISTINCT campaign_id) INTO wanted FROM new_rows;
    SELECT count(*) INTO found FROM (
        SELECT 1 FROM campaigns c WHERE c.id IN (SELECT campaign_id FROM new_rows) FOR KEY SHARE OF c
    ) locked;
    IF found < wanted THEN
        RAISE foreign_key_violation USING
            MESSAGE = 'insert or update on table "rendered_messages" violates its campaign reference',
            DETAIL = 'a rendered message names a campaign that does not exist';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER rendered_messages_campaign_insert AFTER INSERT ON rendered_messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION rendered_messages_campaign_exists();
CREATE FUNCTION rendered_messages_campaign_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE foreign_key_violation USING
        MESSAGE = 'a rendered message cannot move to another campaign (rendered_messages.campaign_id)';
END $$;

-- Only a statement that sets campaign_id considers this one (the claims and acks do not).
CREATE TRIGGER rendered_messages_campaign_update BEFORE UPDATE OF campaign_id ON rendered_messages
    FOR EACH ROW WHEN (OLD.campaign_id IS DISTINCT FROM NEW.campaign_id)
    EXECUTE FUNCTION rendered_messages_campaign_fixed();

CREATE FUNCTION campaigns_delete_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM rendered_messages m USING old_rows o WHERE m.campaign_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER campaigns_delete_messages AFTER DELETE ON campaigns
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION campaigns_delete_messages();

-- 2. The body hash trigger ran its PL/pgSQL function for every row, also for the rows that bring
-- their hash (the render jobs compute it); a WHEN clause is evaluated without calling it.
DROP TRIGGER rendered_messages_body_sha256 ON rendered_messages;
CREATE TRIGGER rendered_messages_body_sha256 BEFORE INSERT ON rendered_messages
    FOR EACH ROW WHEN (NEW.body_sha256 IS NULL AND NEW.status = 'rendered')
    EXECUTE FUNCTION rendered_messages_body_sha256();
