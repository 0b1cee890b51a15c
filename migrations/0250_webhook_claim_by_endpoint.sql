-- The webhook claim takes turns across endpoints (docs/webhooks.md, "Delivery"): it walks the endpoints that have
-- pending deliveries, one index probe each, and reads each endpoint's oldest due deliveries and its live leases by
-- endpoint. The index by due time alone served the claim that read the oldest due deliveries of all endpoints
-- together, which one endpoint's backlog could fill; nothing else reads it.

CREATE INDEX webhook_deliveries_due_by_endpoint ON webhook_deliveries (merchant_id, webhook_id, next_attempt_at, delivery_id)
    WHERE status = 'pending';

-- Leased rows only: a lease is cleared when its attempt is recorded or given back, so this holds the deliveries in
-- flight (and leases of instances that died, until they are claimed again), however long the endpoint's backlog.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (merchant_id, webhook_id)
    WHERE status = 'pending' AND lease_until IS NOT NULL;

DROP INDEX webhook_deliveries_due;
