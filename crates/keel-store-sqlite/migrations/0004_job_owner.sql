-- The domain object a job works for (keel_store::JobOwner as JSON): a column
-- of its own, so that nothing inside Keel reads user-visible tags to find it.
ALTER TABLE jobs ADD COLUMN owner TEXT;
-- Unfinished step jobs made before this column named their run in tags.
UPDATE jobs SET owner = json_object(
        'kind', 'run',
        'run', json_extract(tags, '$."keel.run"'),
        'step', json_extract(tags, '$."keel.step"'),
        'item', CAST(json_extract(tags, '$."keel.item"') AS INTEGER))
    WHERE finished_at IS NULL AND json_extract(tags, '$."keel.run"') IS NOT NULL;
