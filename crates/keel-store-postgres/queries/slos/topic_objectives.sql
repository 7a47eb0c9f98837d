-- Topics with objectives.
SELECT namespace, name, slo FROM keel_topics
WHERE slo IS NOT NULL ORDER BY namespace, name
