//! A transactions page's body (OBReadTransaction6), written straight into
//! its bytes. Through serde_json each of a page's ~2,000 keys went through
//! the string escaper and each date and amount through `core::fmt`: a
//! third of a page's instructions (issue 15, ninth pass). Here the keys and
//! punctuation are constants, a value is copied as it is unless a scan
//! finds something to escape, and digits are written by hand. The fields
//! and their order are the schema's, as before; the tests pin the bytes to
//! what serde_json writes.

use aspen_domain::{DetailPart, Transaction, TransactionView, TxSink};
use serde_json::Value;

/// Room for a page's body (about 490 bytes a transaction, 48.6 kB for a
/// sandbox page of 100), reserved before it is written.
pub fn capacity(entries: usize) -> usize {
    2048 + 512 * entries
}

/// Whether `s` has a byte JSON must escape: `"`, `\\` or a control
/// character (RFC 8259 §7). Eight bytes a step, with the usual SWAR tests
/// for a zero byte and for a byte below 0x20, and the last eight bytes
/// read as one more (overlapping) word; a page's strings are short, and
/// byte by byte this was most of writing them (issue 15, thirteenth pass).
fn needs_escape(s: &[u8]) -> bool {
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

fn int(b: &mut Vec<u8>, n: i64) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn two(b: &mut Vec<u8>, n: u32) {
    b.push(b'0' + (n / 10 % 10) as u8);
    b.push(b'0' + (n % 10) as u8);
}

/// An OB amount string from minor units (`"12.30"`), as
/// [`aspen_domain::Minor`] displays it.
fn amount(b: &mut Vec<u8>, minor: i64) {
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
struct Dates {
    day: Option<i64>,
    /// `YYYY-MM-DD` of `day`.
    text: [u8; 10],
}

/// A date-time string, as [`crate::common::MsDateTime`] displays it.
fn date_time(b: &mut Vec<u8>, ms: i64, dates: &mut Dates) {
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
            _ => return string(b, &crate::common::MsDateTime(ms).to_string()),
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

/// One OBTransaction5: the fields in the schema's order, the Detail-only
/// ones (AIS-20) and the PAN mask (AIS-21) decided here.
fn transaction(
    b: &mut Vec<u8>,
    t: &TransactionView<'_>,
    detail: bool,
    pan: bool,
    dates: &mut Dates,
) {
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
        b.extend_from_slice(b",\"TransactionInformation\":");
        string(b, i);
    }
    b.extend_from_slice(b",\"Amount\":{\"Amount\":");
    amount(b, t.amount_minor);
    b.extend_from_slice(b",\"Currency\":");
    string(b, t.currency);
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
    if let Some(bal) = t.balance_minor.filter(|_| detail) {
        b.extend_from_slice(b",\"Balance\":{\"Amount\":{\"Amount\":");
        amount(b, bal.abs());
        b.extend_from_slice(b",\"Currency\":");
        string(b, t.currency);
        b.extend_from_slice(if bal < 0 {
            b"},\"CreditDebitIndicator\":\"Debit\""
        } else {
            b"},\"CreditDebitIndicator\":\"Credit\""
        });
        b.extend_from_slice(b",\"Type\":\"InterimBooked\"}");
    }
    if detail {
        raw(b, b",\"MerchantDetails\":", DetailPart::MerchantDetails);
        raw(b, b",\"CreditorAgent\":", DetailPart::CreditorAgent);
        raw(b, b",\"CreditorAccount\":", DetailPart::CreditorAccount);
        raw(b, b",\"DebtorAgent\":", DetailPart::DebtorAgent);
        raw(b, b",\"DebtorAccount\":", DetailPart::DebtorAccount);
    }
    if let Some(card) = t.detail.part(DetailPart::CardInstrument) {
        b.extend_from_slice(b",\"CardInstrument\":");
        card_instrument(b, card, pan);
    }
    b.push(b'}');
}

/// A card as stored, or with its PAN masked unless the consent has
/// `ReadPAN` (AIS-21).
fn card_instrument(b: &mut Vec<u8>, raw: &str, pan: bool) {
    if !pan {
        let mut card: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
        if let Some(masked) = card["Identification"].as_str().map(crate::ais::mask_pan) {
            card["Identification"] = Value::String(masked);
            b.extend_from_slice(card.to_string().as_bytes());
            return;
        }
    }
    b.extend_from_slice(raw.as_bytes());
}

/// The links of a transactions page (COMMON-45..48).
pub struct PageLinks {
    pub self_link: String,
    pub first: String,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub last: Option<String>,
}

/// What a page's `Meta` says (AIS-32).
pub struct PageMeta {
    pub total_pages: i64,
    pub first_available: Option<String>,
    pub last_available: Option<String>,
}

/// A page's body as its transactions come (a [`TxSink`]): each written
/// as it arrives, from wherever it was read, then `Links` and `Meta`.
pub struct PageWriter {
    b: Vec<u8>,
    detail: bool,
    pan: bool,
    dates: Dates,
    /// Where each transaction starts, to put a page that came last first
    /// in order.
    starts: Vec<usize>,
}

const HEAD: &[u8] = b"{\"Data\":{\"Transaction\":[";

impl PageWriter {
    /// For up to `entries` transactions, with the Detail-only fields when
    /// `detail` (AIS-20) and card numbers unmasked when `pan` (AIS-21).
    pub fn new(entries: usize, detail: bool, pan: bool) -> Self {
        let mut b = Vec::with_capacity(capacity(entries));
        b.extend_from_slice(HEAD);
        Self {
            b,
            detail,
            pan,
            dates: Dates::default(),
            starts: Vec::with_capacity(entries),
        }
    }

    /// The whole body: `Data.Transaction` in page order (the entries
    /// reversed when they came last first), `Links`, `Meta`.
    pub fn finish(self, descending: bool, links: &PageLinks, meta: &PageMeta) -> Vec<u8> {
        let mut b = if descending && self.starts.len() > 1 {
            let mut ordered = Vec::with_capacity(self.b.len() + 1024);
            ordered.extend_from_slice(HEAD);
            let mut end = self.b.len();
            for &start in self.starts.iter().rev() {
                if end < self.b.len() {
                    ordered.push(b',');
                }
                ordered.extend_from_slice(&self.b[start..end]);
                // The one before ends at the comma before this one.
                end = start - 1;
            }
            ordered
        } else {
            self.b
        };
        b.extend_from_slice(b"]},\"Links\":{\"Self\":");
        string(&mut b, &links.self_link);
        b.extend_from_slice(b",\"First\":");
        string(&mut b, &links.first);
        for (key, v) in [
            (&b",\"Prev\":"[..], &links.prev),
            (b",\"Next\":", &links.next),
            (b",\"Last\":", &links.last),
        ] {
            if let Some(v) = v {
                b.extend_from_slice(key);
                string(&mut b, v);
            }
        }
        b.extend_from_slice(b"},\"Meta\":{\"TotalPages\":");
        int(&mut b, meta.total_pages);
        if let Some(v) = &meta.first_available {
            b.extend_from_slice(b",\"FirstAvailableDateTime\":");
            string(&mut b, v);
        }
        if let Some(v) = &meta.last_available {
            b.extend_from_slice(b",\"LastAvailableDateTime\":");
            string(&mut b, v);
        }
        b.extend_from_slice(b"}}");
        b
    }
}

impl TxSink for PageWriter {
    fn entry(&mut self, t: &TransactionView<'_>) {
        if !self.starts.is_empty() {
            self.b.push(b',');
        }
        self.starts.push(self.b.len());
        transaction(&mut self.b, t, self.detail, self.pan, &mut self.dates);
    }

    fn restart(&mut self) {
        self.b.truncate(HEAD.len());
        self.starts.clear();
    }
}

/// The whole body of owned transactions, in their order.
pub fn page<'a>(
    entries: impl ExactSizeIterator<Item = &'a Transaction>,
    detail: bool,
    pan: bool,
    links: &PageLinks,
    meta: &PageMeta,
) -> Vec<u8> {
    let mut w = PageWriter::new(entries.len(), detail, pan);
    for t in entries {
        w.entry(&t.view());
    }
    w.finish(false, links, meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aspen_domain::{CreditDebit, Minor, TxDetail};
    use serde_json::json;

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

    #[test]
    fn amounts_and_dates_match_their_display() {
        for m in [0, 1, 9, 10, 99, 100, 12_345, -1, -250, i64::MAX, i64::MIN] {
            assert_eq!(text(|b| amount(b, m)), format!("\"{}\"", Minor(m)), "{m}");
        }
        // Each alone, and all through one `Dates` (a day written before,
        // then others, then it again).
        let mut dates = Dates::default();
        for ms in [
            0,
            1_764_000_000_000,
            1_764_000_000_999,
            -1,
            -62_167_219_200_000, // 0000-01-01
            253_402_300_799_000, // 9999-12-31T23:59:59
            253_402_300_800_000, // 10000-01-01: the other path
            -62_167_219_200_001, // year -1
            i64::MAX,
            86_399_999,        // day 0's last second
            1_764_050_000_000, // a day seen before, later in it
            0,
        ] {
            let want = crate::common::MsDateTime(ms).to_string();
            let want = serde_json::to_string(&want).unwrap();
            assert_eq!(
                text(|b| date_time(b, ms, &mut Dates::default())),
                want,
                "{ms}"
            );
            assert_eq!(
                text(|b| date_time(b, ms, &mut dates)),
                want,
                "{ms} after others"
            );
        }
    }

    fn tx(detail: Value, reference: Option<&str>, balance: Option<i64>) -> Transaction {
        Transaction {
            transaction_id: "tx-1".into(),
            account_id: "acc \"1\"".into(),
            booking_ms: 1_764_000_000_000,
            value_ms: Some(1_764_086_400_000),
            amount_minor: 1_250,
            currency: "GBP".into(),
            credit_debit: CreditDebit::Debit,
            status: "Booked".into(),
            reference: reference.map(str::to_string),
            information: Some("Coffee\nshop".into()),
            balance_minor: balance,
            detail: TxDetail::from(detail),
        }
    }

    #[test]
    fn a_transaction_is_the_schema_s_fields_in_order() {
        let detail = json!({
            "BankTransactionCode": {"Code": "ReceivedCreditTransfer", "SubCode": "DomesticCreditTransfer"},
            "ProprietaryBankTransactionCode": {"Code": "DD"},
            "MerchantDetails": {"MerchantName": "Café"},
            "CreditorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "08080021325698"},
            "DebtorAgent": {"SchemeName": "UK.OBIE.BICFI", "Identification": "BARCGB22"},
            "CardInstrument": {"CardSchemeName": "VISA", "Identification": "4111111111111111"},
            "Other": [1, 2, {"x": null}]
        });
        let t = tx(detail, Some("ref"), Some(-9_999));
        let full = text(|b| transaction(b, &t.view(), true, true, &mut Dates::default()));
        assert_eq!(
            full,
            concat!(
                r#"{"AccountId":"acc \"1\"","TransactionId":"tx-1","TransactionReference":"ref","#,
                r#""CreditDebitIndicator":"Debit","Status":"Booked","BookingDateTime":"2025-11-24T16:00:00Z","#,
                r#""ValueDateTime":"2025-11-25T16:00:00Z","TransactionInformation":"Coffee\nshop","#,
                r#""Amount":{"Amount":"12.50","Currency":"GBP"},"#,
                r#""BankTransactionCode":{"Code":"ReceivedCreditTransfer","SubCode":"DomesticCreditTransfer"},"#,
                r#""ProprietaryBankTransactionCode":{"Code":"DD"},"#,
                r#""Balance":{"Amount":{"Amount":"99.99","Currency":"GBP"},"CreditDebitIndicator":"Debit","Type":"InterimBooked"},"#,
                r#""MerchantDetails":{"MerchantName":"Café"},"#,
                r#""CreditorAccount":{"Identification":"08080021325698","SchemeName":"UK.OBIE.SortCodeAccountNumber"},"#,
                r#""DebtorAgent":{"Identification":"BARCGB22","SchemeName":"UK.OBIE.BICFI"},"#,
                r#""CardInstrument":{"CardSchemeName":"VISA","Identification":"4111111111111111"}}"#
            )
        );
        // AIS-20: Basic drops the Detail-only fields; AIS-21: the PAN is masked.
        let basic: Value = serde_json::from_str(&text(|b| {
            transaction(b, &t.view(), false, false, &mut Dates::default())
        }))
        .unwrap();
        for gone in [
            "TransactionInformation",
            "Balance",
            "MerchantDetails",
            "CreditorAccount",
            "DebtorAgent",
        ] {
            assert!(basic.get(gone).is_none(), "{gone} in a Basic page");
        }
        assert_eq!(
            basic["BankTransactionCode"]["Code"],
            "ReceivedCreditTransfer"
        );
        assert_eq!(
            basic["CardInstrument"]["Identification"],
            "************1111"
        );
        assert_eq!(basic["CardInstrument"]["CardSchemeName"], "VISA");
        // A credit balance, no reference, a detail that is not an object.
        let t = tx(json!("not an object"), None, Some(5));
        let v: Value = serde_json::from_str(&text(|b| {
            transaction(b, &t.view(), true, true, &mut Dates::default())
        }))
        .unwrap();
        assert!(v.get("TransactionReference").is_none());
        assert!(v.get("BankTransactionCode").is_none());
        assert_eq!(v["Balance"]["CreditDebitIndicator"], "Credit");
        assert_eq!(v["Balance"]["Amount"]["Amount"], "0.05");
    }

    #[test]
    fn a_page_is_one_json_document() {
        let a = tx(json!({}), None, None);
        let b = tx(json!({}), Some("r"), Some(1));
        let links = PageLinks {
            self_link: "https://x/t".into(),
            first: "https://x/t?page=a".into(),
            prev: None,
            next: Some("https://x/t?page=b".into()),
            last: Some("https://x/t?page=c".into()),
        };
        let meta = PageMeta {
            total_pages: 7,
            first_available: Some("2025-01-01T00:00:00Z".into()),
            last_available: None,
        };
        let v: Value =
            serde_json::from_slice(&page([&a, &b].into_iter(), true, false, &links, &meta))
                .unwrap();
        assert_eq!(v["Data"]["Transaction"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["Links"],
            json!({"Self": "https://x/t", "First": "https://x/t?page=a",
                   "Next": "https://x/t?page=b", "Last": "https://x/t?page=c"})
        );
        assert_eq!(
            v["Meta"],
            json!({"TotalPages": 7, "FirstAvailableDateTime": "2025-01-01T00:00:00Z"})
        );
        let empty: Value =
            serde_json::from_slice(&page(std::iter::empty(), true, false, &links, &meta)).unwrap();
        assert_eq!(empty["Data"]["Transaction"], json!([]));
    }

    /// A page read backwards comes last first and is written in page
    /// order; a page read again after a busy first try keeps only the
    /// second reading.
    #[test]
    fn a_page_that_came_last_first_or_twice_is_written_once_in_order() {
        let entries: Vec<Transaction> = (0..4)
            .map(|i| {
                let mut t = tx(
                    json!({"MerchantDetails": {"MerchantName": i}}),
                    None,
                    Some(i),
                );
                t.transaction_id = format!("tx-{i}");
                t.booking_ms += i * 1_000;
                t
            })
            .collect();
        let links = PageLinks {
            self_link: "https://x/t".into(),
            first: "https://x/t?page=a".into(),
            prev: None,
            next: None,
            last: None,
        };
        let meta = PageMeta {
            total_pages: 1,
            first_available: None,
            last_available: None,
        };
        let want = page(entries.iter(), true, false, &links, &meta);
        for n in [1, 2, 4] {
            let mut w = PageWriter::new(n, true, false);
            // A first reading, given up half-way.
            for t in entries.iter().take(3) {
                w.entry(&t.view());
            }
            w.restart();
            for t in entries[..n].iter().rev() {
                w.entry(&t.view());
            }
            let got = w.finish(true, &links, &meta);
            let want = page(entries[..n].iter(), true, false, &links, &meta);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap(),
                "{n}"
            );
        }
        // In order, as the entries came.
        let mut w = PageWriter::new(4, true, false);
        entries.iter().for_each(|t| w.entry(&t.view()));
        assert_eq!(w.finish(false, &links, &meta), want);
        let v: Value = serde_json::from_slice(&want).unwrap();
        let ids: Vec<_> = v["Data"]["Transaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["TransactionId"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["tx-0", "tx-1", "tx-2", "tx-3"]);
    }
}
