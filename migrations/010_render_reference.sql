-- The campaign reference of rendered_messages without a per-insert check.
--
-- Migration 009's statement trigger checked each insert's campaigns once per statement through
-- a transition table, and a transition table holds a copy of every inserted row, bodies
-- included (~13 KB per message): on the 100 000-recipient benchmark it cost Postgres about
-- 1.7 of its 10 CPU-seconds (four runs, two with it and two without, against the emulator's
-- CPU as the control). The rule it kept holds without it, by the one writer of messages: a
-- render job records a batch and then, in the same transaction, updates its campaign's row
-- (count-recorded in jobs/queries.sql), which fails when the campaign is gone and otherwise
-- holds the row lock until commit, so a concurrent delete waits and then deletes the batch
-- with the campaign (campaigns_delete_messages). A message therefore never outlives its
-- campaign; what the database no longer refuses is a hand-written INSERT naming a campaign
-- that does not exist. Moving a message to another campaign stays refused.
DROP TRIGGER rendered_messages_campaign_insert ON rendered_messages;
DROP FUNCTION rendered_messages_campaign_exists();
