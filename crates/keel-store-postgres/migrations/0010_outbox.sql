-- The application's own transaction: functions in Keel's schema that an
-- application sharing the database calls inside its transactions
-- (`SELECT keel.publish(...)`, `SELECT keel.enqueue(...)` when Keel's schema
-- is `keel`). They write what the API would write and send the same wake-up
-- (a NOTIFY, delivered only if and when the transaction commits): roll back,
-- and nothing was published or enqueued. `SET search_path FROM CURRENT`
-- binds them to Keel's tables whatever the caller's search path.

-- A UUIDv7: 48 bits of Unix milliseconds, then random bits (PostgreSQL 15
-- has no uuidv7()).
CREATE FUNCTION keel_uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE FUNCTION keel_check_name(kind text, name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9._-]{1,128}$' THEN
        RAISE EXCEPTION 'keel: % name % must be 1 to 128 characters of a-z, A-Z, 0-9, ''-'', ''_'' or ''.''',
            kind, quote_literal(coalesce(name, 'null')) USING ERRCODE = '22023';
    END IF;
END
$$;

-- Publishes one event; returns its seq (the first event's, for an id
-- already published within the topic's dedup window, storing nothing).
CREATE FUNCTION publish(p_namespace text, p_topic text, p_key text, p_type text, p_data jsonb,
                        p_id text DEFAULT NULL, p_source text DEFAULT '',
                        p_headers jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    v_now  bigint := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    v_topic       record;
    v_earlier bigint;
    v_seq   bigint;
    v_data    text := coalesce(p_data, 'null'::jsonb)::text;
    v_id    text := coalesce(p_id, keel_uuid_v7()::text);
BEGIN
    PERFORM keel_check_name('namespace', p_namespace);
    PERFORM keel_check_name('topic', p_topic);
    IF p_key = '' OR length(p_key) > 256 OR length(v_id) > 256 OR length(coalesce(p_type, '')) > 256 THEN
        RAISE EXCEPTION 'keel: key, id and type are at most 256 bytes (a key at least 1)'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO keel_topics (namespace, name, retention_ms, dedup_window_ms, max_event_bytes,
                             head_seq, events, created_at)
    VALUES (p_namespace, p_topic, 604800000, 86400000, 1048576, 0, 0, v_now)
    ON CONFLICT (namespace, name) DO NOTHING;
    -- Held to the caller's commit: publishers of one topic commit in seq order.
    SELECT * INTO v_topic FROM keel_topics WHERE namespace = p_namespace AND name = p_topic FOR UPDATE;
    IF octet_length(v_data) > v_topic.max_event_bytes THEN
        RAISE EXCEPTION 'keel: the event has % bytes of data, over the topic''s max_event_bytes of %',
            octet_length(v_data), v_topic.max_event_bytes USING ERRCODE = '22023';
    END IF;
    SELECT max(e.seq) INTO v_earlier FROM keel_events e
    WHERE e.namespace = p_namespace AND e.topic = p_topic AND e.id = v_id
      AND e.published_at >= v_now - v_topic.dedup_window_ms;
    IF v_earlier IS NOT NULL THEN
        RETURN v_earlier;
    END IF;
    v_seq := v_topic.head_seq + 1;
    UPDATE keel_topics SET head_seq = v_seq, events = events + 1
    WHERE namespace = p_namespace AND name = p_topic;
    INSERT INTO keel_events (namespace, topic, seq, id, type, source, key, time, data, headers,
                             published_at)
    VALUES (p_namespace, p_topic, v_seq, v_id, coalesce(p_type, ''), coalesce(p_source, ''), p_key,
            v_now, v_data, p_headers::text, v_now);
    PERFORM pg_notify('keel_ready.' || current_schema(), 'outbox:#' || p_namespace || '/' || p_topic);
    RETURN v_seq;
END
$$;

-- Enqueues one job with the queue's policy for what is not given; returns
-- its id. A delayed job is scheduled; a keyed one waits behind its key.
CREATE FUNCTION enqueue(p_namespace text, p_queue text, p_payload jsonb,
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
                           idempotency_key, ordering_key, tags, owner, runnable)
    VALUES (v_job_id, p_namespace, p_queue,
            CASE WHEN v_run_at > v_now THEN 'scheduled' ELSE 'ready' END,
            coalesce(p_payload, 'null'::jsonb)::text, p_priority, 0, v_attempts, v_run_at, v_now, v_now, 0,
            coalesce((v_policy ->> 'lease_ms')::bigint, 30000),
            coalesce(v_policy -> 'backoff', '{"base_ms":1000,"max_ms":3600000,"factor":2.0,"jitter":true}'::jsonb)::text,
            NULL, p_ordering_key, p_tags, NULL, v_runnable);
    IF v_run_at > v_now THEN
        PERFORM pg_notify('keel_ready.' || current_schema(), 'outbox:@' || v_run_at);
    ELSE
        PERFORM pg_notify('keel_ready.' || current_schema(), 'outbox:1:' || p_namespace || '/' || p_queue);
    END IF;
    RETURN v_job_id;
END
$$;
