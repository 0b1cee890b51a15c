-- Provider prices per model, versioned like meter prices: a change is a new version, and a gateway call records the
-- version its provider cost was computed with.
--
-- Rows belong to a merchant, and merchant_id = '' holds a default set (list prices, seeded below) that every merchant
-- sees for a model until it prices that model itself; its own rows then win whatever their version. Per merchant,
-- because what a provider charges is not universal: negotiated and committed-use discounts, fine-tuned or
-- self-hosted models, other currencies. Defaults as rows rather than constants, so an operator corrects a list price
-- with a migration and both go through one query. The key still leads with merchant_id; on a sharded cluster the
-- few '' rows are reference data. Prices carry at most 4 decimal places, so a token cost is exact at the ledger's 10.

CREATE TABLE model_prices (
    merchant_id         text          NOT NULL,
    model               text          NOT NULL CHECK (model ~ '^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$'),
    version             integer       NOT NULL CHECK (version >= 1),
    owned_by            text          NOT NULL CHECK (length(owned_by) BETWEEN 1 AND 100),
    input_per_1m        numeric(20,4) NOT NULL CHECK (input_per_1m >= 0),
    cached_input_per_1m numeric(20,4) NOT NULL CHECK (cached_input_per_1m >= 0),
    cache_write_per_1m  numeric(20,4) NOT NULL CHECK (cache_write_per_1m >= 0),
    output_per_1m       numeric(20,4) NOT NULL CHECK (output_per_1m >= 0),
    characters_per_1m   numeric(20,4) NOT NULL DEFAULT 0 CHECK (characters_per_1m >= 0),
    per_minute          numeric(20,4) NOT NULL DEFAULT 0 CHECK (per_minute >= 0),
    created_at          timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, model, version)
);

-- USD list prices per 1M tokens (text, standard tier, short context), per 1M characters (speech) and per minute
-- (transcription). Anthropic bills cache writes (5-minute TTL) at 1.25x input and cache reads at 0.1x; OpenAI and
-- Gemini report no cache writes, so theirs is the input price.
INSERT INTO model_prices (merchant_id, model, owned_by, version, input_per_1m, cached_input_per_1m, cache_write_per_1m,
                          output_per_1m, characters_per_1m, per_minute) VALUES
    ('', 'gpt-4o',                'openai',    1, 2.50,  1.25,   2.50,  10.00, 0,  0),
    ('', 'gpt-4o-mini',           'openai',    1, 0.15,  0.075,  0.15,   0.60, 0,  0),
    ('', 'gpt-4.1',               'openai',    1, 2.00,  0.50,   2.00,   8.00, 0,  0),
    ('', 'gpt-4.1-mini',          'openai',    1, 0.40,  0.10,   0.40,   1.60, 0,  0),
    ('', 'o4-mini',               'openai',    1, 1.10,  0.275,  1.10,   4.40, 0,  0),
    ('', 'gpt-5',                 'openai',    1, 1.25,  0.125,  1.25,  10.00, 0,  0),
    ('', 'gpt-5-mini',            'openai',    1, 0.25,  0.025,  0.25,   2.00, 0,  0),
    ('', 'text-embedding-3-small','openai',    1, 0.02,  0.02,   0.02,   0,    0,  0),
    ('', 'tts-1',                 'openai',    1, 0,     0,      0,      0,   15,  0),
    ('', 'whisper-1',             'openai',    1, 0,     0,      0,      0,    0,  0.006),
    ('', 'claude-sonnet-4-5',     'anthropic', 1, 3.00,  0.30,   3.75,  15.00, 0,  0),
    ('', 'claude-sonnet-4-0',     'anthropic', 1, 3.00,  0.30,   3.75,  15.00, 0,  0),
    ('', 'claude-opus-4-1',       'anthropic', 1, 15.00, 1.50,  18.75,  75.00, 0,  0),
    ('', 'claude-haiku-4-5',      'anthropic', 1, 1.00,  0.10,   1.25,   5.00, 0,  0),
    ('', 'claude-3-5-haiku-latest','anthropic',1, 0.80,  0.08,   1.00,   4.00, 0,  0),
    ('', 'gemini-2.5-pro',        'google',    1, 1.25,  0.31,   1.25,  10.00, 0,  0),
    ('', 'gemini-2.5-flash',      'google',    1, 0.30,  0.075,  0.30,   2.50, 0,  0),
    ('', 'gemini-2.5-flash-lite', 'google',    1, 0.10,  0.025,  0.10,   0.40, 0,  0),
    ('', 'gemini-2.0-flash',      'google',    1, 0.10,  0.025,  0.10,   0.40, 0,  0);
