//! A transactions page's body (OBReadTransaction6), written straight into
//! its bytes: each transaction as [`aspen_domain::wire`] writes it, from
//! its columns or from its stored form, then `Links` and `Meta`.

use aspen_domain::wire::{self, Dates, string};
use aspen_domain::{StoredTx, Transaction, TransactionView, TxSink};

/// Room for a page's body (about 490 bytes a transaction, 48.6 kB for a
/// sandbox page of 100), reserved before it is written.
pub fn capacity(entries: usize) -> usize {
    2048 + 512 * entries
}

fn int(b: &mut Vec<u8>, n: i64) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
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

impl PageWriter {
    /// Where the next transaction starts, after the comma before it.
    fn next(&mut self) {
        if !self.starts.is_empty() {
            self.b.push(b',');
        }
        self.starts.push(self.b.len());
    }
}

impl TxSink for PageWriter {
    fn entry(&mut self, t: &TransactionView<'_>) {
        self.next();
        wire::transaction(&mut self.b, t, self.detail, self.pan, &mut self.dates);
    }

    fn takes_stored(&self) -> bool {
        true
    }

    fn stored(&mut self, t: &StoredTx<'_>) {
        self.next();
        wire::write_stored(&mut self.b, &t.wire, t.balance_minor, self.detail, self.pan);
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
    use serde_json::{Value, json};

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn amounts_and_dates_match_their_display() {
        for m in [0, 1, 9, 10, 99, 100, 12_345, -1, -250, i64::MAX, i64::MIN] {
            assert_eq!(
                text(|b| wire::amount(b, m)),
                format!("\"{}\"", Minor(m)),
                "{m}"
            );
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
                text(|b| wire::date_time(b, ms, &mut Dates::default())),
                want,
                "{ms}"
            );
            assert_eq!(
                text(|b| wire::date_time(b, ms, &mut dates)),
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
        let full = text(|b| wire::transaction(b, &t.view(), true, true, &mut Dates::default()));
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
            wire::transaction(b, &t.view(), false, false, &mut Dates::default())
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
            wire::transaction(b, &t.view(), true, true, &mut Dates::default())
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
