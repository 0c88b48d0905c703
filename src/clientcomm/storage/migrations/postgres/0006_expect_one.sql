-- A version-checked update refuses its transaction on the server when it
-- changed no row (the record was changed concurrently, claimed or is gone), so
-- a transaction's writes and its COMMIT can share one round trip: the error
-- (SQLSTATE 40001, serialization_failure, reported as ConflictError) makes the
-- server skip the COMMIT that follows it in the pipeline.
CREATE OR REPLACE FUNCTION clientcomm_expect_one(n bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF n <> 1 THEN
        RAISE EXCEPTION 'clientcomm: a record was changed concurrently or no longer exists'
            USING ERRCODE = '40001';
    END IF;
    RETURN n;
END
$$;
