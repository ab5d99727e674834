//! The sandbox bank's data model: pure types, no IO. Money is kept in minor
//! units (all seeded currencies have two decimals) and formatted with a
//! decimal point on the wire (COMMON-61).

pub mod payments;

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
    pub detail: RawJson,
}

/// A JSON value kept as its text, so what storage or a connector holds
/// reaches a response without being built into a tree and taken apart
/// again (on an AIS page, a hundred transactions' details).
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Checks that `text` is JSON (one scan, no tree).
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value as a tree.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl From<Value> for RawJson {
    fn from(v: Value) -> Self {
        // A Value's keys are strings, so it always serialises.
        Self(serde_json::value::to_raw_value(&v).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }
}

/// Equal as JSON values, whatever the spacing of the text.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Through a tree: a raw value can only be read by serde_json's own
/// parser, and a connector's transaction arrives inside a flattened entry
/// (buffered by serde first).
impl<'de> Deserialize<'de> for RawJson {
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
