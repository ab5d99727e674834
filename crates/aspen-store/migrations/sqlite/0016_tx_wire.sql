-- Issue 15: each transaction kept as an AIS page writes it
-- (`aspen_domain::wire::stored`), so a page reads four columns a row
-- instead of thirteen and copies most of its bytes. Rows written before
-- this have none; a page holding one is read from the columns.
ALTER TABLE transactions ADD COLUMN wire TEXT;
