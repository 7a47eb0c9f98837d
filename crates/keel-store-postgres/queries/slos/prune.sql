-- Minutes older than the error budget's period.
DELETE FROM keel_slo_minutes WHERE minute < $1
