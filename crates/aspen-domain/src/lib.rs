//! The sandbox bank's data model: pure types, no IO. Money is kept in minor
//! units (all seeded currencies have two decimals) and formatted with a
//! decimal point on the wire (COMMON-61).

pub mod payments;
pub mod wire;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Psu {
    pub id: String,
    pub username: String,
    /// argon2id PHC string; never the password.
    pub password_hash: String,
    pub name: String,
    pub email: String,
    /// OBParty2 of the PSU (`/party`).
    pub party: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountIdentification {
    pub scheme_name: String,
    pub identification: String,
    pub name: Option<String>,
    pub secondary_identification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub account_id: String,
    pub psu_id: String,
    pub currency: String,
    /// `Personal` / `Business`.
    pub account_type: String,
    /// `CurrentAccount`, `Savings`, `EMoney`, …
    pub account_sub_type: String,
    pub description: String,
    pub nickname: Option<String>,
    /// Unix milliseconds.
    pub opening_date: i64,
    pub identifications: Vec<AccountIdentification>,
    /// OBBranchAndFinancialInstitutionIdentification5 of the servicer.
    pub servicer: Option<Value>,
    /// Sum of booked transactions (signed), in minor units.
    pub booked_minor: i64,
    /// Pending debits not yet booked, in minor units (positive).
    pub pending_debits_minor: i64,
    /// Pending credits not yet booked, in minor units (positive).
    pub pending_credits_minor: i64,
}

impl Account {
    /// `InterimAvailable`: booked money less what pending debits have
    /// already reserved; pending credits are not spendable yet.
    pub fn available_minor(&self) -> i64 {
        self.booked_minor - self.pending_debits_minor
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreditDebit {
    Credit,
    Debit,
}

impl CreditDebit {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditDebit::Credit => "Credit",
            CreditDebit::Debit => "Debit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: String,
    pub account_id: String,
    /// Unix milliseconds; the pagination key with `transaction_id`.
    pub booking_ms: i64,
    pub value_ms: Option<i64>,
    /// Positive amount in minor units.
    pub amount_minor: i64,
    pub currency: String,
    pub credit_debit: CreditDebit,
    /// `Booked` / `Pending`.
    pub status: String,
    pub reference: Option<String>,
    pub information: Option<String>,
    /// Running booked balance after this entry (booked entries only).
    pub balance_minor: Option<i64>,
    /// The rest of OBTransaction5: codes, merchant, card, counterparties.
    pub detail: TxDetail,
}

/// The parts of an OBTransaction5 that a transaction keeps as JSON
/// (`TxDetail`): codes, merchant, counterparties, card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailPart {
    BankTransactionCode,
    ProprietaryBankTransactionCode,
    MerchantDetails,
    CreditorAgent,
    CreditorAccount,
    DebtorAgent,
    DebtorAccount,
    CardInstrument,
}

/// Each [`DetailPart`]'s key in a detail, in the enum's order.
const PART_NAMES: [&str; 8] = [
    "BankTransactionCode",
    "ProprietaryBankTransactionCode",
    "MerchantDetails",
    "CreditorAgent",
    "CreditorAccount",
    "DebtorAgent",
    "DebtorAccount",
    "CardInstrument",
];

/// A transaction's detail: a JSON value kept as its text, so what storage
/// or a connector holds reaches a response without being built into a
/// tree and taken apart again (on an AIS page, a hundred transactions'
/// details), with where each [`DetailPart`] sits in it. One parse both
/// checks the text and finds the parts: checking it and then parsing it
/// for the parts cost a second scan of every detail on a page (issue 15,
/// twelfth pass).
#[derive(Debug, Clone)]
pub struct TxDetail {
    text: Box<str>,
    /// Byte ranges in `text`, by `DetailPart as usize`; `(0, 0)` when
    /// absent or `null`.
    parts: [(u32, u32); 8],
}

/// The parts as they sit in the text, borrowed from it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Parts<'a> {
    #[serde(borrow)]
    bank_transaction_code: Option<&'a RawValue>,
    #[serde(borrow)]
    proprietary_bank_transaction_code: Option<&'a RawValue>,
    #[serde(borrow)]
    merchant_details: Option<&'a RawValue>,
    #[serde(borrow)]
    creditor_agent: Option<&'a RawValue>,
    #[serde(borrow)]
    creditor_account: Option<&'a RawValue>,
    #[serde(borrow)]
    debtor_agent: Option<&'a RawValue>,
    #[serde(borrow)]
    debtor_account: Option<&'a RawValue>,
    #[serde(borrow)]
    card_instrument: Option<&'a RawValue>,
}

impl TxDetail {
    /// Checks that `text` is JSON and finds its parts, in one scan and
    /// without a tree. JSON that is not an object (or whose parts do not
    /// fit, such as a key given twice) is kept with no parts.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        let parts = find_parts(&text)?;
        Ok(Self {
            text: text.into_boxed_str(),
            parts,
        })
    }

    /// Where the parts sit, to be stored beside the text and given back to
    /// [`TxDetail::from_stored`]: the text's length, then each part's
    /// number, start and end (`355,0,23,56,7,71,182`).
    pub fn index(&self) -> String {
        use std::fmt::Write;
        let mut s = self.text.len().to_string();
        for (p, &(start, end)) in self.parts.iter().enumerate() {
            if end > start {
                let _ = write!(s, ",{p},{start},{end}");
            }
        }
        s
    }

    /// A detail read back with its [`TxDetail::index`]: the parts are
    /// taken from the index, not found by parsing the text again (a
    /// hundred parses were an eighth of an AIS page's instructions; issue
    /// 15, thirteenth pass). The text was checked when the index was made
    /// from it, in the statement that wrote both. An index that does not
    /// fit the text (a text edited without it, or none stored) is ignored
    /// and the text parsed as by [`TxDetail::from_text`]: the lengths must
    /// agree, and each part must sit as serde_json writes an object's
    /// value, right after its own quoted key and `:`, and before a `,` or
    /// the closing `}`.
    pub fn from_stored(text: String, index: Option<&str>) -> Result<Self, serde_json::Error> {
        let parts = stored_parts(&text, index)?;
        Ok(Self {
            text: text.into_boxed_str(),
            parts,
        })
    }

    pub fn get(&self) -> &str {
        &self.text
    }

    /// One part's JSON text, if the detail has it (and it is not `null`).
    pub fn part(&self, p: DetailPart) -> Option<&str> {
        self.view().part(p)
    }

    /// The detail borrowed, as a page writes it.
    pub fn view(&self) -> DetailView<'_> {
        DetailView {
            text: &self.text,
            parts: self.parts,
        }
    }

    /// The value as a tree.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A detail's parts found in its text (see [`TxDetail::from_text`]).
fn find_parts(text: &str) -> Result<[(u32, u32); 8], serde_json::Error> {
    let mut parts = [(0, 0); 8];
    match serde_json::from_str::<Parts>(text) {
        Ok(p) => {
            let found = [
                p.bank_transaction_code,
                p.proprietary_bank_transaction_code,
                p.merchant_details,
                p.creditor_agent,
                p.creditor_account,
                p.debtor_agent,
                p.debtor_account,
                p.card_instrument,
            ];
            let base = text.as_ptr() as usize;
            for (slot, v) in parts.iter_mut().zip(found) {
                // A borrowed raw value is a slice of `text`; anything
                // else (or a text past 4 GB) is left absent.
                let span = v.and_then(|v| {
                    let start = (v.get().as_ptr() as usize).checked_sub(base)?;
                    let end = start.checked_add(v.get().len())?;
                    (end <= text.len())
                        .then_some((u32::try_from(start).ok()?, u32::try_from(end).ok()?))
                });
                *slot = span.unwrap_or((0, 0));
            }
        }
        Err(e) if e.is_data() => {
            serde_json::from_str::<&RawValue>(text)?;
        }
        Err(e) => return Err(e),
    }
    Ok(parts)
}

/// The parts from a stored index that fits `text`, else found by parsing it
/// (see [`TxDetail::from_stored`]).
fn stored_parts(text: &str, index: Option<&str>) -> Result<[(u32, u32); 8], serde_json::Error> {
    match index.and_then(|i| parts_from_index(text, i)) {
        Some(parts) => Ok(parts),
        None => find_parts(text),
    }
}

fn parts_from_index(text: &str, index: &str) -> Option<[(u32, u32); 8]> {
    let t = text.as_bytes();
    if t.first() != Some(&b'{') || t.last() != Some(&b'}') {
        return None;
    }
    // Bytes, not `str::split` and `parse`: those cost more than the
    // parse of the detail they replace.
    let mut numbers = index.as_bytes().split(|&c| c == b',').map(|digits| {
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        digits.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    });
    if numbers.next()?? as usize != t.len() {
        return None;
    }
    let mut parts = [(0, 0); 8];
    while let Some(p) = numbers.next() {
        let (p, start, end) = (p? as usize, numbers.next()??, numbers.next()??);
        let (s, e) = (start as usize, end as usize);
        // The part's own key, quoted, then `:`, then the value.
        let after_key = |name: &str| {
            let k = s.checked_sub(name.len() + 3).and_then(|at| t.get(at..s));
            k.is_some_and(|k| {
                k.starts_with(b"\"") && k[1..].starts_with(name.as_bytes()) && k.ends_with(b"\":")
            })
        };
        let fits = p < parts.len()
            && s < e
            && after_key(PART_NAMES[p])
            && matches!(t.get(e), Some(b',' | b'}'))
            && matches!(t[s], b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f');
        if !fits {
            return None;
        }
        parts[p] = (start, end);
    }
    Some(parts)
}

impl From<Value> for TxDetail {
    fn from(v: Value) -> Self {
        // A Value's keys are strings, so it always serialises, and what
        // serde_json writes it reads.
        Self::from_text(v.to_string()).unwrap_or_else(|_| Self {
            text: "null".into(),
            parts: [(0, 0); 8],
        })
    }
}

/// Equal as JSON values, whatever the spacing of the text.
impl PartialEq for TxDetail {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl Serialize for TxDetail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The text was checked when it was made; reading it as a raw value
        // again only borrows it.
        serde_json::from_str::<&RawValue>(&self.text)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// Through a tree: a raw value can only be read by serde_json's own
/// parser, and a connector's transaction arrives inside a flattened entry
/// (buffered by serde first).
impl<'de> Deserialize<'de> for TxDetail {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::from)
    }
}

impl Transaction {
    pub fn signed_minor(&self) -> i64 {
        match self.credit_debit {
            CreditDebit::Credit => self.amount_minor,
            CreditDebit::Debit => -self.amount_minor,
        }
    }

    /// The transaction borrowed, as a page writes it.
    pub fn view(&self) -> TransactionView<'_> {
        TransactionView {
            transaction_id: &self.transaction_id,
            account_id: &self.account_id,
            booking_ms: self.booking_ms,
            value_ms: self.value_ms,
            amount_minor: self.amount_minor,
            currency: &self.currency,
            credit_debit: self.credit_debit,
            status: &self.status,
            reference: self.reference.as_deref(),
            information: self.information.as_deref(),
            balance_minor: self.balance_minor,
            detail: self.detail.view(),
        }
    }
}

impl TransactionView<'_> {
    /// The transaction owned.
    pub fn to_transaction(&self) -> Transaction {
        Transaction {
            transaction_id: self.transaction_id.to_string(),
            account_id: self.account_id.to_string(),
            booking_ms: self.booking_ms,
            value_ms: self.value_ms,
            amount_minor: self.amount_minor,
            currency: self.currency.to_string(),
            credit_debit: self.credit_debit,
            status: self.status.to_string(),
            reference: self.reference.map(str::to_string),
            information: self.information.map(str::to_string),
            balance_minor: self.balance_minor,
            detail: TxDetail {
                text: self.detail.text.into(),
                parts: self.detail.parts,
            },
        }
    }
}

/// A [`TxDetail`] borrowed from where it was read.
#[derive(Debug, Clone, Copy)]
pub struct DetailView<'a> {
    text: &'a str,
    parts: [(u32, u32); 8],
}

impl<'a> DetailView<'a> {
    /// As [`TxDetail::from_stored`], borrowing the text.
    pub fn from_stored(text: &'a str, index: Option<&str>) -> Result<Self, serde_json::Error> {
        Ok(Self {
            text,
            parts: stored_parts(text, index)?,
        })
    }

    /// One part's JSON text, if the detail has it (and it is not `null`).
    pub fn part(&self, p: DetailPart) -> Option<&'a str> {
        let (start, end) = self.parts[p as usize];
        self.text
            .get(start as usize..end as usize)
            .filter(|v| !v.is_empty())
    }
}

/// A [`Transaction`] borrowed from where it was read (a database row), so
/// that a page of them is written out with no transaction copied into
/// owned strings first: those copies (about 800 allocations a page) were a
/// fifth of an AIS page's server CPU (issue 15, twentieth pass).
#[derive(Debug, Clone, Copy)]
pub struct TransactionView<'a> {
    pub transaction_id: &'a str,
    pub account_id: &'a str,
    pub booking_ms: i64,
    pub value_ms: Option<i64>,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub credit_debit: CreditDebit,
    pub status: &'a str,
    pub reference: Option<&'a str>,
    pub information: Option<&'a str>,
    pub balance_minor: Option<i64>,
    pub detail: DetailView<'a>,
}

/// A transaction read in its stored form ([`wire::stored`]), with what
/// its page needs from its columns besides (its position is the store's,
/// read only where the page's links start).
#[derive(Debug, Clone, Copy)]
pub struct StoredTx<'a> {
    /// Running booked balance after the entry (see [`Transaction`]).
    pub balance_minor: Option<i64>,
    pub wire: wire::Stored<'a>,
}

/// Where a page's transactions go as they are read.
pub trait TxSink: Send {
    /// The next transaction, in the order it was read.
    fn entry(&mut self, t: &TransactionView<'_>);
    /// Whether the sink takes transactions in their stored form
    /// ([`TxSink::stored`]); a store that keeps them so then reads that,
    /// and gives [`TxSink::entry`] only what it has not kept.
    fn takes_stored(&self) -> bool;
    /// The next transaction in its stored form, when [`TxSink::takes_stored`].
    fn stored(&mut self, t: &StoredTx<'_>);
    /// Forgets the entries given so far: the page is being read again
    /// (another way, after the first was busy).
    fn restart(&mut self);
}

/// Per-account resources served as OB JSON (beneficiaries, direct debits,
/// standing orders, scheduled payments, statements, product, offers,
/// parties). `sort_key` orders them on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountResource {
    pub account_id: String,
    pub kind: ResourceKind,
    pub resource_id: String,
    pub sort_key: String,
    pub body: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceKind {
    Beneficiary,
    DirectDebit,
    StandingOrder,
    ScheduledPayment,
    Statement,
    Product,
    Offer,
    Party,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Beneficiary => "beneficiary",
            ResourceKind::DirectDebit => "direct-debit",
            ResourceKind::StandingOrder => "standing-order",
            ResourceKind::ScheduledPayment => "scheduled-payment",
            ResourceKind::Statement => "statement",
            ResourceKind::Product => "product",
            ResourceKind::Offer => "offer",
            ResourceKind::Party => "party",
        }
    }
}

/// Everything the sandbox seeds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct World {
    pub seed: u64,
    /// The day the history ends (`YYYY-MM-DD`); kept so a restart on
    /// another day does not change the bank.
    pub anchor: String,
    pub psus: Vec<Psu>,
    pub accounts: Vec<Account>,
    pub transactions: Vec<Transaction>,
    pub resources: Vec<AccountResource>,
}

/// `123.45` from 12345 (COMMON-61: always with a decimal point).
pub fn format_minor(minor: i64) -> String {
    Minor(minor).to_string()
}

/// An amount in minor units, written as [`format_minor`] writes it
/// (straight into a response body when serialised, no string between).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minor(pub i64);

impl std::fmt::Display for Minor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let m = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", m / 100, m % 100)
    }
}

impl Serialize for Minor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses an OB amount (`^\d{1,13}\.\d{1,5}$`) into minor units of a
/// two-decimal currency; `None` if malformed or finer than a penny.
pub fn parse_minor(amount: &str) -> Option<i64> {
    let (int, frac) = amount.split_once('.')?;
    if int.is_empty() || int.len() > 13 || frac.is_empty() || frac.len() > 5 {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (cents, rest) = if frac.len() >= 2 {
        frac.split_at(2)
    } else {
        (frac, "")
    };
    if rest.bytes().any(|b| b != b'0') {
        return None;
    }
    let cents: i64 = format!("{cents:0<2}").parse().ok()?;
    int.parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(format_minor(12345), "123.45");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(-250), "-2.50");
        assert_eq!(parse_minor("10.00"), Some(1000));
        assert_eq!(parse_minor("10.5"), Some(1050));
        assert_eq!(parse_minor("10.50000"), Some(1050));
        assert_eq!(parse_minor("10.001"), None);
        assert_eq!(parse_minor("10"), None);
        assert_eq!(parse_minor("-1.00"), None);
        assert_eq!(parse_minor("1e3.00"), None);
    }
}

#[cfg(test)]
mod detail_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_detail_s_parts_are_found_in_its_text() {
        let text = r#"{"Extra":{"A":["}",1]},"MerchantDetails":{"MerchantName":"Caf\u00e9 \"1\""},
            "CardInstrument" : {"CardSchemeName":"Visa"},"DebtorAgent":null}"#;
        let d = TxDetail::from_text(text.into()).unwrap();
        assert_eq!(d.get(), text);
        assert_eq!(
            d.part(DetailPart::MerchantDetails),
            Some(r#"{"MerchantName":"Caf\u00e9 \"1\""}"#)
        );
        assert_eq!(
            d.part(DetailPart::CardInstrument),
            Some(r#"{"CardSchemeName":"Visa"}"#)
        );
        assert_eq!(d.part(DetailPart::DebtorAgent), None, "null is absent");
        assert_eq!(d.part(DetailPart::BankTransactionCode), None);
    }

    #[test]
    fn any_json_is_kept_and_only_json() {
        for text in [
            "[1,2]",
            "\"x\"",
            "null",
            r#"{"DebtorAccount":1,"DebtorAccount":2}"#,
        ] {
            let d = TxDetail::from_text(text.into()).unwrap();
            assert_eq!(d.get(), text);
            assert_eq!(d.part(DetailPart::DebtorAccount), None, "{text}");
        }
        for text in [
            "",
            "{",
            r#"{"A":1,}"#,
            r#"{"MerchantDetails":{"x":tru}}"#,
            "{} {}",
            r#""\q""#,
        ] {
            assert!(TxDetail::from_text(text.into()).is_err(), "{text}");
        }
    }

    #[test]
    fn a_detail_serialises_as_its_json() {
        let d = TxDetail::from(json!({"CreditorAccount": {"Identification": "1"}}));
        assert_eq!(
            d.part(DetailPart::CreditorAccount),
            Some(r#"{"Identification":"1"}"#)
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"CreditorAccount": {"Identification": "1"}})
        );
        let back: TxDetail = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    const ALL: [DetailPart; 8] = [
        DetailPart::BankTransactionCode,
        DetailPart::ProprietaryBankTransactionCode,
        DetailPart::MerchantDetails,
        DetailPart::CreditorAgent,
        DetailPart::CreditorAccount,
        DetailPart::DebtorAgent,
        DetailPart::DebtorAccount,
        DetailPart::CardInstrument,
    ];

    fn same_parts(a: &TxDetail, b: &TxDetail) -> bool {
        a.get() == b.get() && ALL.iter().all(|&p| a.part(p) == b.part(p))
    }

    #[test]
    fn a_stored_index_gives_the_parts_a_parse_finds() {
        for v in [
            json!({}),
            json!({"BankTransactionCode": {"Code": "PMNT", "SubCode": "CCRD"},
                   "CardInstrument": {"CardSchemeName": "VISA", "Identification": "4983467223860497"},
                   "MerchantDetails": {"MerchantName": "Caf\u{e9} \"}\" , :"},
                   "Extra": [1, {"DebtorAccount": 2}], "DebtorAgent": null,
                   "CreditorAccount": "x", "DebtorAccount": -1.5, "CreditorAgent": true}),
            json!([1, 2]),
            json!("text"),
            json!(null),
        ] {
            let parsed = TxDetail::from(v);
            let index = parsed.index();
            let stored = TxDetail::from_stored(parsed.get().to_string(), Some(&index)).unwrap();
            assert!(same_parts(&stored, &parsed), "{index} {}", parsed.get());
            // An object's own index is taken, not refused for the parse (a
            // part name that disagreed with serde's would refuse it).
            assert_eq!(
                parts_from_index(parsed.get(), &index).is_some(),
                parsed.get().starts_with('{'),
                "{index} {}",
                parsed.get()
            );
            let none = TxDetail::from_stored(parsed.get().to_string(), None).unwrap();
            assert!(same_parts(&none, &parsed));
        }
        // Only the parts are listed: a first-page detail's index is short.
        let d = TxDetail::from(json!({"MerchantDetails": {"MerchantName": "A"}, "Other": 1}));
        assert_eq!(d.index(), format!("{},2,19,39", d.get().len()));
        assert_eq!(
            d.part(DetailPart::MerchantDetails),
            Some(r#"{"MerchantName":"A"}"#)
        );
    }

    /// An index that does not fit its text is not believed: the text is
    /// parsed, so a detail edited without its index still reads right (one
    /// edited to the same length, with every part still after its own key
    /// and ending where it did, is taken at its index's word; the store
    /// writes the two in one statement).
    #[test]
    fn an_index_that_does_not_fit_is_ignored() {
        let d = TxDetail::from(
            json!({"DebtorAccount": {"Name": "A"}, "MerchantDetails": {"MerchantName": "B"}}),
        );
        let index = d.index();
        let edited = d.get().replace("\"A\"", "\"Anne\"");
        for (text, index) in [
            // Edited text, stale index: lengths differ.
            (edited.clone(), index.clone()),
            // Ranges that do not sit on a value.
            (d.get().to_string(), format!("{},2,3,10", d.get().len())),
            (d.get().to_string(), format!("{},2,0,10", d.get().len())),
            // A value that fits, but under another part's key.
            (d.get().to_string(), format!("{},2,17,29", d.get().len())),
            // Past the end, reversed, a part that does not exist.
            (d.get().to_string(), format!("{},2,18,999", d.get().len())),
            (d.get().to_string(), format!("{},2,30,18", d.get().len())),
            (d.get().to_string(), format!("{},9,17,29", d.get().len())),
            // Not an index at all, or cut short.
            (d.get().to_string(), "x".into()),
            (d.get().to_string(), String::new()),
            (d.get().to_string(), format!("{},2,17", d.get().len())),
            (d.get().to_string(), format!("{},-1,17,29", d.get().len())),
            (d.get().to_string(), format!("{},2,17,29,", d.get().len())),
            (
                d.get().to_string(),
                format!("{},2,17,4294967313", d.get().len()),
            ),
            (d.get().to_string(), format!("{},,2,17,29", d.get().len())),
        ] {
            let stored = TxDetail::from_stored(text.clone(), Some(&index)).unwrap();
            let parsed = TxDetail::from_text(text).unwrap();
            assert!(same_parts(&stored, &parsed), "{index}");
        }
        let edited = TxDetail::from_stored(edited, Some(&index)).unwrap();
        assert_eq!(
            edited.part(DetailPart::DebtorAccount),
            Some(r#"{"Name":"Anne"}"#)
        );
        // Text that is not JSON, without an index that fits it, is refused.
        let broken = "{\"DebtorAccount\":{]}".to_string();
        assert!(TxDetail::from_stored(broken.clone(), None).is_err());
        let index = format!("{},6,17,18", broken.len());
        assert!(TxDetail::from_stored(broken, Some(&index)).is_err());
    }
}
