-- What a posted report stores, each fact once (docs/ledger.md, "What a report stores"). A usage ledger transaction
-- keeps its lineage as a compact JSON array in lineage_compact (its lineage jsonb then stays '{}'); the request's
-- response keeps only what neither the request's columns nor that lineage say, as a JSON array. The service builds the
-- full lineage and the response again from them, exactly as first answered. Rows written before keep the full lineage
-- (lineage_compact null) and the whole response (a JSON object): both forms are read.
ALTER TABLE ledger_transactions ADD COLUMN lineage_compact text;

COMMENT ON COLUMN ledger_transactions.lineage_compact IS
    'A usage transaction''s lineage as [1, mode, quantities, cost, charge, rate_type, tier_type, tier lines]; null: the lineage column holds it whole';
COMMENT ON COLUMN requests.response IS
    'The response as first answered (a JSON object), or [1, balance, source, metadata order]: the parts the columns and the ledger transaction''s lineage_compact do not hold';
