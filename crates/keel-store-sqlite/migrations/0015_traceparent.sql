-- The W3C trace context a job was enqueued in, handed to whoever leases it.
-- Nullable, so adding it rewrites no row and a job without one stores nothing.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
