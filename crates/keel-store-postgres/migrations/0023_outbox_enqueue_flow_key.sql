-- The outbox's enqueue() was written before flow keys (0015) and trace
-- contexts (0022): a job it enqueued on a queue whose policy has a `key` got
-- no flow key, and the keyed lease never saw it. Re-created with the columns
-- the API's insert writes (queries/jobs/insert_job.sql); a test compares the
-- two column lists, so the next column cannot be forgotten here again.
CREATE OR REPLACE FUNCTION enqueue(p_namespace text, p_queue text, p_payload jsonb,
                        p_priority integer DEFAULT 0, p_delay_ms bigint DEFAULT 0,
                        p_ordering_key text DEFAULT NULL, p_max_attempts integer DEFAULT NULL,
                        p_tags jsonb DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now   bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    v_policy   jsonb;
    v_job_id   uuid := keel_uuid_v7();
    v_run_at bigint;
    v_runnable boolean := true;
    v_attempts integer;
BEGIN
    PERFORM keel_check_name('namespace', p_namespace);
    PERFORM keel_check_name('queue', p_queue);
    IF p_priority NOT BETWEEN -100 AND 100 THEN
        RAISE EXCEPTION 'keel: priority must be between -100 and 100' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_delay_ms, 0) < 0 OR p_ordering_key = '' OR length(p_ordering_key) > 256 THEN
        RAISE EXCEPTION 'keel: delay_ms is never negative; an ordering key is 1 to 256 bytes'
            USING ERRCODE = '22023';
    END IF;
    SELECT q.policy INTO v_policy FROM keel_queues q
    WHERE q.namespace = p_namespace AND q.queue = p_queue;
    v_attempts := coalesce(p_max_attempts, (v_policy ->> 'max_attempts')::integer, 20);
    IF v_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'keel: max_attempts must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    v_run_at := v_now + coalesce(p_delay_ms, 0);
    IF p_ordering_key IS NOT NULL THEN
        -- The key's lock, as every enqueue and finish takes it (lock_keys.sql).
        PERFORM pg_advisory_xact_lock(hashtextextended(p_namespace || '/' || p_queue || '/' || p_ordering_key, 1));
        v_runnable := NOT EXISTS (SELECT 1 FROM keel_jobs o
                                WHERE o.namespace = p_namespace AND o.queue = p_queue
                                  AND o.ordering_key = p_ordering_key AND o.finished_at IS NULL);
    END IF;
    INSERT INTO keel_jobs (id, namespace, queue, state, payload, priority, attempt, max_attempts,
                           run_at, created_at, updated_at, lease_seq, lease_ms, backoff,
                           idempotency_key, ordering_key, tags, owner, runnable, flow_key, traceparent)
    VALUES (v_job_id, p_namespace, p_queue,
            CASE WHEN v_run_at > v_now THEN 'scheduled' ELSE 'ready' END,
            coalesce(p_payload, 'null'::jsonb)::text, p_priority, 0, v_attempts, v_run_at, v_now, v_now, 0,
            coalesce((v_policy ->> 'lease_ms')::bigint, 30000),
            coalesce(v_policy -> 'backoff', '{"base_ms":1000,"max_ms":3600000,"factor":2.0,"jitter":true}'::jsonb)::text,
            NULL, p_ordering_key, p_tags, NULL, v_runnable,
            keel_flow_key(v_policy, p_tags, p_ordering_key), NULL);
    IF v_run_at > v_now THEN
        PERFORM pg_notify('keel_ready.' || current_schema(), 'outbox:@' || v_run_at);
    ELSE
        PERFORM pg_notify('keel_ready.' || current_schema(), 'outbox:1:' || p_namespace || '/' || p_queue);
    END IF;
    RETURN v_job_id;
END
$$;
