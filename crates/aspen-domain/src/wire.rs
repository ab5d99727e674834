//! A transaction as an AIS page writes it (OBTransaction5), straight into
//! bytes, and the form a transaction is stored in ready to be written.
//!
//! Through serde_json each of a page's ~2,000 keys went through the string
//! escaper and each date and amount through `core::fmt`: a third of a
//! page's instructions (issue 15, ninth pass). Here the keys and
//! punctuation are constants, a value is copied as it is unless a scan
//! finds something to escape, and digits are written by hand. The fields
//! and their order are the schema's; the tests pin the bytes to what
//! serde_json writes.
//!
//! Reading a transaction's thirteen columns and writing them out was still
//! most of a page's server CPU (issue 15, twenty-first pass). So a
//! transaction is also kept rendered ([`stored`]): the Detail form with
//! the card as it came, and where to cut it for a Basic page (AIS-20), to
//! mask the card number (AIS-21), and to put the running balance, which is
//! the one field a later entry's booking does not decide and the only one
//! that is left out. [`write_stored`] gives the same bytes as
//! [`transaction`] for every form.

use serde_json::Value;

use crate::{DetailPart, TransactionView};

/// Whether `s` has a byte JSON must escape: `"`, `\\` or a control
/// character (RFC 8259 §7). Eight bytes a step, with the usual SWAR tests
/// for a zero byte and for a byte below 0x20, and the last eight bytes
/// read as one more (overlapping) word; a page's strings are short, and
/// byte by byte this was most of writing them (issue 15, thirteenth pass).
pub fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte of `x` is below `n` (n ≤ 0x80) where `x - n` borrows into its
    // high bit and the byte's own high bit is clear; the test is exact for
    // "any byte", though a borrow may mark bytes above the first.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let test = |w: &[u8; 8]| {
        let w = u64::from_ne_bytes(*w);
        below(w, 0x20)
            | below(w ^ u64::from_ne_bytes([b'"'; 8]), 1)
            | below(w ^ u64::from_ne_bytes([b'\\'; 8]), 1)
    };
    match s.last_chunk::<8>() {
        Some(last) => {
            s.as_chunks::<8>()
                .0
                .iter()
                .fold(test(last), |acc, w| acc | test(w))
                != 0
        }
        None => s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\'),
    }
}

/// A JSON string literal. Text without anything to escape, which is
/// nearly all of it, is copied whole. Escapes are serde_json's (short
/// forms, else `\u00XX`), so the bytes do not depend on the path taken.
pub fn string(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    if !needs_escape(s.as_bytes()) {
        b.extend_from_slice(s.as_bytes());
    } else {
        for &c in s.as_bytes() {
            match c {
                b'"' => b.extend_from_slice(b"\\\""),
                b'\\' => b.extend_from_slice(b"\\\\"),
                b'\n' => b.extend_from_slice(b"\\n"),
                b'\r' => b.extend_from_slice(b"\\r"),
                b'\t' => b.extend_from_slice(b"\\t"),
                0x08 => b.extend_from_slice(b"\\b"),
                0x0c => b.extend_from_slice(b"\\f"),
                c if c < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    b.extend_from_slice(b"\\u00");
                    b.push(HEX[usize::from(c >> 4)]);
                    b.push(HEX[usize::from(c & 0xf)]);
                }
                c => b.push(c),
            }
        }
    }
    b.push(b'"');
}

fn two(b: &mut Vec<u8>, n: u32) {
    b.push(b'0' + (n / 10 % 10) as u8);
    b.push(b'0' + (n % 10) as u8);
}

/// An OB amount string from minor units (`"12.30"`), as [`crate::Minor`]
/// displays it.
pub fn amount(b: &mut Vec<u8>, minor: i64) {
    b.push(b'"');
    if minor < 0 {
        b.push(b'-');
    }
    let m = minor.unsigned_abs();
    b.extend_from_slice(itoa::Buffer::new().format(m / 100).as_bytes());
    b.push(b'.');
    two(b, (m % 100) as u32);
    b.push(b'"');
}

const DAY_MS: i64 = 86_400_000;

/// The last date written: a page's entries come in booking order, many on
/// one day, so each day's calendar date is worked out once, not per entry
/// (it was half of writing a date-time).
#[derive(Default)]
pub struct Dates {
    day: Option<i64>,
    /// `YYYY-MM-DD` of `day`.
    text: [u8; 10],
}

/// An ISO date-time at whole seconds in UTC (`2025-11-24T16:00:00Z`), as
/// the API writes every date-time; nothing for milliseconds no calendar
/// date has.
pub fn date_time_text(ms: i64) -> String {
    use chrono::{DateTime, SecondsFormat};
    DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A date-time string, as [`date_time_text`] writes it.
pub fn date_time(b: &mut Vec<u8>, ms: i64, dates: &mut Dates) {
    use chrono::{DateTime, Datelike};
    let day = ms.div_euclid(DAY_MS);
    if dates.day != Some(day) {
        match DateTime::from_timestamp_millis(ms) {
            Some(d) if (0..=9999).contains(&d.year()) => {
                let (y, m, dd) = (d.year() as u32, d.month(), d.day());
                let digit = |n: u32| b'0' + (n % 10) as u8;
                dates.text = [
                    digit(y / 1000),
                    digit(y / 100),
                    digit(y / 10),
                    digit(y),
                    b'-',
                    digit(m / 10),
                    digit(m),
                    b'-',
                    digit(dd / 10),
                    digit(dd),
                ];
                dates.day = Some(day);
            }
            _ => return string(b, &date_time_text(ms)),
        }
    }
    // `"YYYY-MM-DDThh:mm:ssZ"` on the stack, then one copy: a push at a
    // time checked the vector's capacity 16 times a date-time.
    let secs = (ms.rem_euclid(DAY_MS) / 1000) as u32;
    let digit = |n: u32| b'0' + (n % 10) as u8;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = *b"\"YYYY-MM-DDT00:00:00Z\"";
    out[1..11].copy_from_slice(&dates.text);
    out[12..14].copy_from_slice(&[digit(h / 10), digit(h)]);
    out[15..17].copy_from_slice(&[digit(m / 10), digit(m)]);
    out[18..20].copy_from_slice(&[digit(s / 10), digit(s)]);
    b.extend_from_slice(&out);
}

/// A card number with all but its last four characters masked (AIS-21).
pub fn mask_pan(pan: &str) -> String {
    let n = pan.chars().count();
    if n <= 4 {
        return pan.to_string();
    }
    let mut out = "*".repeat(n - 4);
    out.extend(pan.chars().skip(n - 4));
    out
}

/// Where a transaction's written form is cut, as byte offsets into it.
/// An absent part is an empty range where it would be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cuts {
    /// `,"TransactionInformation":…` (Detail only, AIS-20).
    info: (u32, u32),
    /// Where `,"Balance":…` goes, and where the run of Detail-only
    /// counterparties that follows it starts.
    balance: u32,
    /// Where that run ends: `CardInstrument` or the closing brace.
    run_end: u32,
    /// The amount's currency, as its JSON literal.
    currency: (u32, u32),
    /// The card's value, after its key.
    card: (u32, u32),
    /// The card's `Identification` literal, when masking it is replacing
    /// those bytes; otherwise empty, and the card is masked as
    /// [`card_instrument`] does it.
    card_id: (u32, u32),
}

/// One OBTransaction5: the fields in the schema's order, the Detail-only
/// ones (AIS-20) and the PAN mask (AIS-21) decided here.
pub fn transaction(
    b: &mut Vec<u8>,
    t: &TransactionView<'_>,
    detail: bool,
    pan: bool,
    dates: &mut Dates,
) {
    write(b, t, detail, pan, dates);
}

fn write(
    b: &mut Vec<u8>,
    t: &TransactionView<'_>,
    detail: bool,
    pan: bool,
    dates: &mut Dates,
) -> Cuts {
    let base = b.len();
    let at = |b: &Vec<u8>| (b.len() - base) as u32;
    let mut cuts = Cuts::default();
    // The detail's parts were found when it was read (`TxDetail`).
    let raw = |b: &mut Vec<u8>, key: &[u8], part: DetailPart| {
        if let Some(v) = t.detail.part(part) {
            b.extend_from_slice(key);
            b.extend_from_slice(v.as_bytes());
        }
    };
    b.extend_from_slice(b"{\"AccountId\":");
    string(b, t.account_id);
    b.extend_from_slice(b",\"TransactionId\":");
    string(b, t.transaction_id);
    if let Some(r) = t.reference {
        b.extend_from_slice(b",\"TransactionReference\":");
        string(b, r);
    }
    // One of two fixed words: nothing to escape.
    b.extend_from_slice(b",\"CreditDebitIndicator\":\"");
    b.extend_from_slice(t.credit_debit.as_str().as_bytes());
    b.push(b'"');
    b.extend_from_slice(b",\"Status\":");
    string(b, t.status);
    b.extend_from_slice(b",\"BookingDateTime\":");
    date_time(b, t.booking_ms, dates);
    if let Some(v) = t.value_ms {
        b.extend_from_slice(b",\"ValueDateTime\":");
        date_time(b, v, dates);
    }
    if let Some(i) = t.information.filter(|_| detail) {
        let start = at(b);
        b.extend_from_slice(b",\"TransactionInformation\":");
        string(b, i);
        cuts.info = (start, at(b));
    }
    b.extend_from_slice(b",\"Amount\":{\"Amount\":");
    amount(b, t.amount_minor);
    b.extend_from_slice(b",\"Currency\":");
    let start = at(b);
    string(b, t.currency);
    cuts.currency = (start, at(b));
    b.push(b'}');
    raw(
        b,
        b",\"BankTransactionCode\":",
        DetailPart::BankTransactionCode,
    );
    raw(
        b,
        b",\"ProprietaryBankTransactionCode\":",
        DetailPart::ProprietaryBankTransactionCode,
    );
    cuts.balance = at(b);
    if let Some(bal) = t.balance_minor.filter(|_| detail) {
        let (s, e) = cuts.currency;
        let currency = base + s as usize..base + e as usize;
        balance(b, bal, |b| b.extend_from_within(currency));
    }
    if detail {
        raw(b, b",\"MerchantDetails\":", DetailPart::MerchantDetails);
        raw(b, b",\"CreditorAgent\":", DetailPart::CreditorAgent);
        raw(b, b",\"CreditorAccount\":", DetailPart::CreditorAccount);
        raw(b, b",\"DebtorAgent\":", DetailPart::DebtorAgent);
        raw(b, b",\"DebtorAccount\":", DetailPart::DebtorAccount);
    }
    cuts.run_end = at(b);
    if let Some(card) = t.detail.part(DetailPart::CardInstrument) {
        b.extend_from_slice(b",\"CardInstrument\":");
        let start = at(b);
        card_instrument(b, card, pan);
        cuts.card = (start, at(b));
    } else {
        cuts.card = (at(b), at(b));
    }
    b.push(b'}');
    cuts
}

/// `,"Balance":…`: the running balance after the entry, with the
/// currency's literal written by `currency`.
fn balance(b: &mut Vec<u8>, bal: i64, currency: impl FnOnce(&mut Vec<u8>)) {
    b.extend_from_slice(b",\"Balance\":{\"Amount\":{\"Amount\":");
    amount(b, bal.abs());
    b.extend_from_slice(b",\"Currency\":");
    currency(b);
    b.extend_from_slice(if bal < 0 {
        b"},\"CreditDebitIndicator\":\"Debit\""
    } else {
        b"},\"CreditDebitIndicator\":\"Credit\""
    });
    b.extend_from_slice(b",\"Type\":\"InterimBooked\"}");
}

/// A card as stored, or with its PAN masked unless the consent has
/// `ReadPAN` (AIS-21).
fn card_instrument(b: &mut Vec<u8>, raw: &str, pan: bool) {
    if !pan {
        let mut card: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        if let Some(masked) = card["Identification"].as_str().map(mask_pan) {
            card["Identification"] = Value::String(masked);
            b.extend_from_slice(card.to_string().as_bytes());
            return;
        }
    }
    b.extend_from_slice(raw.as_bytes());
}

/// Where a card's `Identification` literal sits in `raw`, when masking it
/// the way [`card_instrument`] does changes nothing else: `raw` must be
/// what serde_json writes for it (its keys in order, no spaces), and the
/// number must have nothing to escape (so neither has its mask).
fn card_id_span(raw: &str) -> Option<(usize, usize)> {
    let mut card: Value = serde_json::from_str(raw).ok()?;
    let id = card.get("Identification")?.as_str()?.to_string();
    if needs_escape(id.as_bytes()) {
        return None;
    }
    // What card_instrument writes, with a marker where the mask goes.
    card["Identification"] = Value::String("\u{1}".into());
    let marked = card.to_string();
    const MARK: &str = "\"\\u0001\"";
    let at = marked.find(MARK)?;
    let end = at + id.len() + 2;
    let same = raw.get(..at) == Some(&marked[..at])
        && raw.get(at..end) == Some(&format!("\"{id}\"")[..])
        && raw.get(end..) == Some(&marked[at + MARK.len()..]);
    same.then_some((at, end))
}

/// The stored form of a transaction: the Detail form with the card as it
/// came and without the running balance, after a header saying where it is
/// cut (ten offsets of five digits each, then the JSON:
/// `0005200088…{"AccountId":…`). [`write_stored`] reads it back. `None`
/// for a transaction whose form is longer than five digits can say: its
/// pages are written from its columns.
pub fn stored(t: &TransactionView<'_>) -> Option<String> {
    let mut t = *t;
    t.balance_minor = None;
    let mut b = Vec::with_capacity(512);
    let mut cuts = write(&mut b, &t, true, true, &mut Dates::default());
    if b.len() > MAX_STORED {
        return None;
    }
    if cuts.card.1 > cuts.card.0 {
        let (s, e) = (cuts.card.0 as usize, cuts.card.1 as usize);
        // The card was copied as it is: `b` holds it whole.
        if let Some((i, j)) = std::str::from_utf8(&b[s..e]).ok().and_then(card_id_span) {
            cuts.card_id = ((s + i) as u32, (s + j) as u32);
        }
    }
    let mut out = String::with_capacity(HEADER + b.len());
    for n in cuts.numbers() {
        let digits = [10_000, 1_000, 100, 10, 1].map(|p| char::from(b'0' + (n / p % 10) as u8));
        out.extend(digits);
    }
    // Every part written is valid UTF-8: copied strs and ASCII.
    out.push_str(std::str::from_utf8(&b).ok()?);
    Some(out)
}

/// The stored form's header: ten offsets of five digits.
const HEADER: usize = 50;
/// The longest transaction five-digit offsets can cut.
const MAX_STORED: usize = 99_999;

impl Cuts {
    fn numbers(&self) -> [u32; 10] {
        [
            self.info.0,
            self.info.1,
            self.balance,
            self.run_end,
            self.currency.0,
            self.currency.1,
            self.card.0,
            self.card.1,
            self.card_id.0,
            self.card_id.1,
        ]
    }
}

/// A stored transaction ([`stored`]) read back.
///
/// Its bytes are not checked as UTF-8 here (as they are not parsed as
/// JSON): the form is aspen's own, written by [`stored`] from valid
/// strings, and the page copies it as it is. What is checked is what
/// cutting it relies on, so that no form, however corrupt, panics or is cut
/// inside a character: the header, the offsets' order and places, and the
/// card, the one part read as text (checked as UTF-8 when it is there).
/// Validating every form was 2% of an AIS page's server CPU (issue 15,
/// twenty-fifth pass).
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    json: &'a [u8],
    /// The card's value (`cuts.card`), as text.
    card: &'a str,
    cuts: Cuts,
}

impl<'a> Stored<'a> {
    /// The header read and checked against the JSON after it: `None` for
    /// text that is not a stored transaction (then the transaction is read
    /// from its columns).
    pub fn parse(text: &'a [u8]) -> Option<Self> {
        let head = text.first_chunk::<HEADER>()?;
        if !all_digits(head) {
            return None;
        }
        let n = offsets(head);
        let json = &text[HEADER..];
        let cuts = Cuts {
            info: (n[0], n[1]),
            balance: n[2],
            run_end: n[3],
            currency: (n[4], n[5]),
            card: (n[6], n[7]),
            card_id: (n[8], n[9]),
        };
        let in_order = |xs: &[u32]| xs.windows(2).all(|w| w[0] <= w[1]);
        let (info, card, id) = (cuts.info, cuts.card, cuts.card_id);
        // As `str::is_char_boundary`: not inside a character's bytes.
        let boundary = |i: u32| {
            json.get(i as usize)
                .map_or(i as usize == json.len(), |&c| (c as i8) >= -0x40)
        };
        let fits = in_order(&[info.0, info.1, cuts.balance, cuts.run_end, card.0, card.1])
            && (info.0 == info.1 || info.0 > 0)
            && cuts.currency.0 < cuts.currency.1
            && cuts.currency.1 <= cuts.balance
            && (id == (0, 0)
                || (card.0 <= id.0
                    && id.0 + 2 <= id.1
                    && id.1 <= card.1
                    && json.get(id.0 as usize) == Some(&b'"')
                    && json.get(id.1 as usize - 1) == Some(&b'"')))
            && (card.1 as usize) < json.len()
            && json.first() == Some(&b'{')
            && json.last() == Some(&b'}')
            && n.iter().all(|&i| boundary(i));
        if !fits {
            return None;
        }
        let card = std::str::from_utf8(&json[card.0 as usize..card.1 as usize]).ok()?;
        Some(Self { json, card, cuts })
    }
}

/// The header's ten five-digit offsets, each from one eight-byte word (the
/// digits checked already): its five digits moved behind three zero
/// digits, then the usual SWAR sum of eight digits (pairs, then fours,
/// then the eight). With the checks, the header takes 383 instructions a
/// row this way and took 456 digit by digit (callgrind; issue 15,
/// twenty-fifth pass).
fn offsets(head: &[u8; HEADER]) -> [u32; 10] {
    const ZEROS: u64 = u64::from_le_bytes([b'0'; 8]);
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&head[i..i + 8]);
        // No byte borrows: each is a digit.
        u64::from_le_bytes(w) - ZEROS
    };
    std::array::from_fn(|i| {
        // The first byte is the most significant digit: five digits are
        // the word's top five bytes, after three zero digits.
        let v = if i < 9 {
            word(i * 5) << 24
        } else {
            // The last five bytes: a word ending at the header's end.
            word(HEADER - 8) & !0xFF_FFFF
        };
        // Pairs: each pair's value in its lower byte.
        let v = v * 10 + (v >> 8);
        // Then the four pairs into the high half, carries past the word's
        // end dropped (Lemire's eight-digit parse).
        let mask = 0x0000_00FF_0000_00FF;
        let hi = (v & mask).wrapping_mul(100 + (1_000_000 << 32));
        let lo = ((v >> 16) & mask).wrapping_mul(1 + (10_000 << 32));
        (hi.wrapping_add(lo) >> 32) as u32
    })
}

/// Whether every byte of the header is an ASCII digit, eight at a time:
/// a digit's high nibble is 3 and its low one at most 9, so adding 6 to
/// the low nibble never carries. A byte-wise test compiled into fifty
/// loads and ANDs, 3% of a page's server CPU (issue 15, twenty-third pass).
fn all_digits(head: &[u8; HEADER]) -> bool {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    // Six words and one more that overlaps the sixth, to reach the end.
    let bad = [0, 8, 16, 24, 32, 40, HEADER - 8]
        .iter()
        .fold(0, |bad, &i| {
            let x = word(i);
            bad | ((x & HIGH) ^ 0x3030_3030_3030_3030)
                | (((x & !HIGH) + 0x0606_0606_0606_0606) & HIGH)
        });
    bad == 0
}

/// A stored transaction ([`Stored`]) as [`transaction`] writes it, with
/// its running balance from its column.
pub fn write_stored(
    b: &mut Vec<u8>,
    s: &Stored<'_>,
    balance_minor: Option<i64>,
    detail: bool,
    pan: bool,
) {
    let t = s.json;
    let c = &s.cuts;
    let at = |i: u32| i as usize;
    if detail {
        b.extend_from_slice(&t[..at(c.balance)]);
        if let Some(bal) = balance_minor {
            let currency = &t[at(c.currency.0)..at(c.currency.1)];
            balance(b, bal, |b| b.extend_from_slice(currency));
        }
        b.extend_from_slice(&t[at(c.balance)..at(c.card.0)]);
    } else {
        b.extend_from_slice(&t[..at(c.info.0)]);
        b.extend_from_slice(&t[at(c.info.1)..at(c.balance)]);
        b.extend_from_slice(&t[at(c.run_end)..at(c.card.0)]);
    }
    let card = s.card;
    if pan || card.is_empty() {
        b.extend_from_slice(card.as_bytes());
    } else if c.card_id.1 > c.card_id.0 {
        // Inside the card, between its quotes (checked by `parse`).
        let (i, j) = (at(c.card_id.0 - c.card.0), at(c.card_id.1 - c.card.0));
        b.extend_from_slice(&card.as_bytes()[..i]);
        b.push(b'"');
        b.extend_from_slice(mask_pan(&card[i + 1..j - 1]).as_bytes());
        b.push(b'"');
        b.extend_from_slice(&card.as_bytes()[j..]);
    } else {
        card_instrument(b, card, false);
    }
    b.extend_from_slice(&t[at(c.card.1)..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CreditDebit, Transaction, TxDetail};

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    /// Every byte that needs escaping, and one that does not, at every
    /// place in an eight-byte word and in the tail, among neighbours of
    /// every kind (a word's borrow must not spill into the next byte's test).
    #[test]
    fn each_byte_is_tested_wherever_it_sits() {
        let specials: Vec<u8> = (0u8..0x20).chain([b'"', b'\\']).collect();
        let ordinary = [b' ', b'!', b'#', b'[', b']', b'~', 0x7f, b'a'];
        for len in 1..=19 {
            for at in 0..len {
                for &fill in &ordinary {
                    let mut v = vec![fill; len];
                    assert!(!needs_escape(&v), "{v:?}");
                    for &c in &specials {
                        v[at] = c;
                        assert!(needs_escape(&v), "{v:?}");
                    }
                    for &c in ordinary.iter().chain(&[0x80, 0xc3, 0xff, 0x21, 0x5d]) {
                        v[at] = c;
                        assert!(!needs_escape(&v), "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é€😀\u{2028}");
        for s in ["", "plain", "a\"b", "back\\slash", "tab\tnl\ncr\r", &all] {
            assert_eq!(
                text(|b| string(b, s)),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }

    fn tx(
        detail: &str,
        reference: Option<&str>,
        info: Option<&str>,
        balance: Option<i64>,
    ) -> Transaction {
        Transaction {
            transaction_id: "tx-1".into(),
            account_id: "acc \"1\"".into(),
            booking_ms: 1_764_000_000_000,
            value_ms: reference.map(|_| 1_764_086_400_000),
            amount_minor: 1_250,
            currency: if balance.is_some_and(|b| b % 2 == 0) {
                "G\tB"
            } else {
                "GBP"
            }
            .into(),
            credit_debit: if info.is_some() {
                CreditDebit::Debit
            } else {
                CreditDebit::Credit
            },
            status: "Booked".into(),
            reference: reference.map(str::to_string),
            information: info.map(str::to_string),
            balance_minor: balance,
            detail: TxDetail::from_text(detail.into()).unwrap(),
        }
    }

    /// AIS-20, AIS-21: a stored transaction is written, in each of the
    /// four forms (Detail or Basic, card number clear or masked), as the
    /// same bytes as from its columns, whatever its parts and its card.
    #[test]
    fn a_stored_transaction_is_written_as_from_its_columns() {
        let parts = concat!(
            r#""BankTransactionCode":{"Code":"ReceivedCreditTransfer","SubCode":"DomesticCreditTransfer"},"#,
            r#""ProprietaryBankTransactionCode":{"Code":"DD"},"MerchantDetails":{"MerchantName":"Café"},"#,
            r#""CreditorAgent":{"Identification":"X"},"CreditorAccount":{"Identification":"08080021325698"},"#,
            r#""DebtorAgent":{"Identification":"BARCGB22"},"DebtorAccount":{"Name":"A"}"#
        );
        let cards = [
            None,
            Some(r#"{"CardSchemeName":"VISA","Identification":"4111111111111111"}"#),
            Some(
                r#"{"AuthorisationType":"PIN","CardSchemeName":"VISA","Identification":"4111111111111111","Name":"A B"}"#,
            ),
            // Not as serde_json writes it: masked through a tree.
            Some(r#"{ "Identification": "4111111111111111", "CardSchemeName": "VISA" }"#),
            Some(r#"{"CardSchemeName":"VISA","Identification":"4111\"111\n1111"}"#),
            Some(r#"{"CardSchemeName":"VISA","Identification":"123"}"#),
            Some(r#"{"CardSchemeName":"VISA","Identification":"4111é11😀1111"}"#),
            Some(r#"{"CardSchemeName":"VISA"}"#),
            Some(r#"{"CardSchemeName":"\u0001","Identification":"4111111111111111"}"#),
            Some(r#"{"Identification":1234567890}"#),
            Some(r#""4111111111111111""#),
            Some(
                r#"{"CardSchemeName":"VISA","Identification":"1","Identification":"4111111111111111"}"#,
            ),
        ];
        let mut seen = 0;
        for card in cards {
            for with_parts in [false, true] {
                let mut body: Vec<String> = Vec::new();
                if with_parts {
                    body.push(parts.into());
                }
                if let Some(c) = card {
                    body.push(format!(r#""CardInstrument":{c}"#));
                }
                let detail = format!("{{{}}}", body.join(","));
                for reference in [None, Some("ref")] {
                    for info in [None, Some(""), Some("Coffee\nshop")] {
                        for balance in [None, Some(0), Some(-9_999), Some(5), Some(12_345)] {
                            let t = tx(&detail, reference, info, balance);
                            let form = stored(&t.view()).unwrap();
                            let s =
                                Stored::parse(form.as_bytes()).unwrap_or_else(|| panic!("{form}"));
                            for detail in [true, false] {
                                for pan in [true, false] {
                                    let want = text(|b| {
                                        transaction(
                                            b,
                                            &t.view(),
                                            detail,
                                            pan,
                                            &mut Dates::default(),
                                        )
                                    });
                                    let got = text(|b| write_stored(b, &s, balance, detail, pan));
                                    assert_eq!(got, want, "{form} detail={detail} pan={pan}");
                                    serde_json::from_str::<Value>(&got).unwrap();
                                    seen += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(seen, 12 * 2 * 2 * 3 * 5 * 4);
        // The card as serde_json writes it is masked in place; one that is
        // not keeps no cut and is masked through a tree.
        for (card, cut) in [(cards[1], Some("\"4111111111111111\"")), (cards[3], None)] {
            let detail = format!("{{\"CardInstrument\":{}}}", card.unwrap());
            let form = stored(&tx(&detail, None, None, None).view()).unwrap();
            let s = Stored::parse(form.as_bytes()).unwrap();
            let (i, j) = s.cuts.card_id;
            assert!(cut.is_some() || (i, j) == (0, 0), "{form}");
            assert_eq!(
                (j > i).then(|| &s.json[i as usize..j as usize]),
                cut.map(str::as_bytes),
                "{form}"
            );
        }
    }

    /// Every byte that is not a digit, at every place in the header (the
    /// last word overlaps the one before it), is seen.
    #[test]
    fn a_header_is_all_digits_or_refused() {
        let mut head = [b'0'; HEADER];
        for (i, c) in head.iter_mut().enumerate() {
            *c = b'0' + (i % 10) as u8;
        }
        assert!(all_digits(&head));
        for at in 0..HEADER {
            for c in 0..=255u8 {
                let mut h = head;
                h[at] = c;
                assert_eq!(all_digits(&h), c.is_ascii_digit(), "{c} at {at}");
            }
        }
    }

    /// Each offset is read as its five digits say, at every place in the
    /// header (the last from a word that overlaps the one before it), for
    /// every digit in every position and the extremes.
    #[test]
    fn offsets_are_read_as_their_digits_say() {
        let by_digits = |head: &[u8; HEADER]| -> [u32; 10] {
            std::array::from_fn(|i| {
                std::str::from_utf8(&head[i * 5..i * 5 + 5])
                    .unwrap()
                    .parse()
                    .unwrap()
            })
        };
        let header = |n: [u32; 10]| -> [u8; HEADER] {
            let text: String = n.iter().map(|n| format!("{n:05}")).collect();
            text.as_bytes().try_into().unwrap()
        };
        let mut cases = vec![[0; 10], [99_999; 10]];
        for i in 0..10 {
            for d in 0..5 {
                for v in 1..10 {
                    let mut n = [12_345; 10];
                    n[i] = v * 10u32.pow(d);
                    cases.push(n);
                    n[i] = 99_999 - n[i];
                    cases.push(n);
                }
            }
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2_000 {
            cases.push(std::array::from_fn(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 100_000) as u32
            }));
        }
        for n in cases {
            let head = header(n);
            assert_eq!(by_digits(&head), n);
            assert_eq!(offsets(&head), n, "{}", String::from_utf8_lossy(&head));
        }
    }

    /// A form is copied as its bytes; only its card, which masking reads
    /// as text, must be UTF-8.
    #[test]
    fn a_form_is_copied_as_bytes_and_only_its_card_read_as_text() {
        let t = tx(
            r#"{"CardInstrument":{"CardSchemeName":"VISA","Identification":"4111111111111111"}}"#,
            None,
            Some("Coffee"),
            Some(1),
        );
        let good = stored(&t.view()).unwrap().into_bytes();
        // The form with a byte that is not UTF-8 where `part` starts.
        let spoiled = |part: &[u8]| {
            let mut form = good.clone();
            let at = good[HEADER..]
                .windows(part.len())
                .position(|w| w == part)
                .unwrap();
            form[HEADER + at] = 0xff;
            form
        };
        let odd = spoiled(b"Coffee");
        let s = Stored::parse(&odd).unwrap();
        let mut b = Vec::new();
        write_stored(&mut b, &s, Some(1), true, false);
        assert!(b.contains(&0xff));
        assert!(b.windows(16).any(|w| w == b"************1111"));
        assert!(Stored::parse(&spoiled(b"VISA")).is_none());
    }

    /// A header that does not fit its JSON is not a stored transaction:
    /// the page then reads the columns (it must never cut at random).
    #[test]
    fn a_stored_form_that_does_not_fit_is_refused() {
        let t = tx(
            r#"{"MerchantDetails":{"MerchantName":"Café"},"CardInstrument":{"CardSchemeName":"VISA","Identification":"4111111111111111"}}"#,
            Some("r"),
            Some("i"),
            Some(1),
        );
        let good = stored(&t.view()).unwrap();
        let (head, json) = good.split_at(HEADER);
        let n: Vec<u32> = (0..10)
            .map(|i| head[i * 5..i * 5 + 5].parse().unwrap())
            .collect();
        assert!(Stored::parse(good.as_bytes()).is_some());
        let with = |n: &[u32], json: &str| {
            let head: String = n.iter().map(|n| format!("{n:05}")).collect();
            format!("{head}{json}")
        };
        assert_eq!(with(&n, json), good);
        let mut bad: Vec<String> = vec![
            String::new(),
            json.to_string(),
            head.to_string(),
            format!("1,2{json}"),
            format!("{head}1{json}"),
            format!("{}{json}", &head[1..]),
            format!("{}-{json}", &head[1..]),
            format!("{}x{}", &head[..7], &good[8..]),
            format!("{}{json}", head.replacen('0', "/", 1)),
            with(&n, &json[..json.len() - 1]),
            with(&n, &json[1..]),
        ];
        for i in 0..10 {
            for v in [
                0,
                1,
                n[i].wrapping_sub(1),
                n[i] + 1,
                json.len() as u32,
                4_000_000,
            ] {
                let mut m = n.clone();
                if m[i] == v {
                    continue;
                }
                m[i] = v;
                let form = with(&m, json);
                // Some changes still fit (an empty range moved, say): those
                // must still write JSON, never panic.
                if let Some(s) = Stored::parse(form.as_bytes()) {
                    for (d, p) in [(true, true), (true, false), (false, true), (false, false)] {
                        text(|b| write_stored(b, &s, Some(1), d, p));
                    }
                } else {
                    bad.push(form);
                }
            }
        }
        // Too long for five-digit offsets: not stored, read from columns.
        let long = "x".repeat(MAX_STORED);
        let t = tx("{}", None, Some(&long), None);
        assert!(stored(&t.view()).is_none());
        let t = tx("{}", None, Some(&long[..MAX_STORED - 400]), None);
        assert!(Stored::parse(stored(&t.view()).unwrap().as_bytes()).is_some());
        // Inside "Café": not a character boundary.
        let cafe = json.find("é").unwrap() as u32 + 1;
        let mut m = n.clone();
        m[3] = cafe;
        m[2] = m[2].min(cafe);
        bad.push(with(&m, json));
        for b in &bad {
            assert!(Stored::parse(b.as_bytes()).is_none(), "{b}");
        }
    }
}
