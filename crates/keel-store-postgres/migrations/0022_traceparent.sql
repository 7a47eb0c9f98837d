-- The W3C trace context a job was enqueued in, handed to whoever leases it.
-- Nullable without a default: adding it is a catalog change, no table rewrite.
ALTER TABLE keel_jobs ADD COLUMN traceparent text;
