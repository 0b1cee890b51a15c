-- GET /healthz: Kestrel and routing with no database, the HTTP floor under every other scenario.
wrk.method = "GET"
