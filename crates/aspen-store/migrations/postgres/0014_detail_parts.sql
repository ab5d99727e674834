-- Issue 15: where each transaction detail's parts sit in its text
-- (`TxDetail::index`), written with the text, so an AIS page takes the
-- parts from it instead of parsing a hundred details. Rows written before
-- this have none; their details are parsed as before.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS detail_parts TEXT;
