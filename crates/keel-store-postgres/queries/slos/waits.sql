-- A subject's wait histograms since a minute, to be added up.
SELECT histogram FROM keel_slo_minutes
WHERE namespace = $1 AND kind = $2 AND name = $3 AND minute >= $4
