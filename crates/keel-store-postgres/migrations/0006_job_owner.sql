-- The domain object a job works for (keel_store::JobOwner as JSON text): a
-- column of its own, so that nothing inside Keel reads user-visible tags to
-- find it. Read back as text and decoded in Rust; no index yet, since no
-- statement selects by owner.
ALTER TABLE keel_jobs ADD COLUMN owner text;
-- Unfinished step jobs made before this column named their run in tags.
UPDATE keel_jobs SET owner = jsonb_strip_nulls(jsonb_build_object(
        'kind', 'run',
        'run', tags ->> 'keel.run',
        'step', tags ->> 'keel.step',
        'item', (tags ->> 'keel.item')::int))::text
    WHERE finished_at IS NULL AND tags ? 'keel.run';
