-- Issue 15: each transaction kept as an AIS page writes it
-- (`aspen_domain::wire::stored`), so a page reads four columns a row
-- instead of thirteen and copies most of its bytes. Rows written before
-- this have none; a page holding one is read from the columns.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS wire TEXT;

-- A change to what the stored form says that does not write the stored
-- form with it (an older release's node during an upgrade, an operator's
-- hand) clears it, so a page never shows what the columns no longer hold.
-- The running balance is not in the stored form.
CREATE OR REPLACE FUNCTION aspen_wire_stale() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.wire IS NOT DISTINCT FROM OLD.wire THEN
    NEW.wire := NULL;
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS transactions_wire_stale ON transactions;
CREATE TRIGGER transactions_wire_stale
BEFORE UPDATE OF transaction_id, account_id, booking_ms, value_ms, amount_minor, currency,
    credit, status, reference, information, detail ON transactions
FOR EACH ROW EXECUTE FUNCTION aspen_wire_stale();
