-- The settle worker deletes gateway calls settled long ago (Forward:RetainSettledCallsDays, docs/gateway.md,
-- "Retention"): posted or released, without an anomaly. This finds the oldest of them without reading the rest of the
-- table; refused and flagged calls, which finance follows up, are not in it and stay.
CREATE INDEX forward_calls_settled ON forward_calls (updated_at)
    WHERE state IN ('posted', 'released') AND anomaly IS NULL;
