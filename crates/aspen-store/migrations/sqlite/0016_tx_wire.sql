-- Issue 15: each transaction kept as an AIS page writes it
-- (`aspen_domain::wire::stored`), so a page reads four columns a row
-- instead of thirteen and copies most of its bytes. Rows written before
-- this have none; a page holding one is read from the columns.
ALTER TABLE transactions ADD COLUMN wire TEXT;

-- A change to what the stored form says that does not write the stored
-- form with it (an older release's node during an upgrade, an operator's
-- hand) clears it, so a page never shows what the columns no longer hold.
-- The running balance is not in the stored form.
CREATE TRIGGER transactions_wire_stale
AFTER UPDATE OF transaction_id, account_id, booking_ms, value_ms, amount_minor, currency,
    credit, status, reference, information, detail ON transactions
WHEN NEW.wire IS NOT NULL AND NEW.wire IS OLD.wire
BEGIN
    UPDATE transactions SET wire = NULL WHERE transaction_id = NEW.transaction_id;
END;
