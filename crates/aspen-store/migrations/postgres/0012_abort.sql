-- Issue 15: lets one autocommit statement undo itself. A payment's single
-- statement claims its idempotency key before it moves the consent; when the
-- consent had already moved (another order consumed it), the statement calls
-- this, and the error rolls back the key it claimed. SQLSTATE ASP01 is ours
-- (no standard class starts with "AS"), so the caller tells it from any
-- other failure.
CREATE OR REPLACE FUNCTION aspen_abort(reason TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'ASP01', MESSAGE = reason;
END
$$;
