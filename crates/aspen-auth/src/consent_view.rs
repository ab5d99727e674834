//! How a consent is described to its PSU, by kind: what the TPP asks for
//! in plain language, and which accounts it may use. The consent
//! resources themselves belong to their APIs; the journey only needs this
//! view and the status rules below.

use serde_json::Value;

/// The consent kinds and the OAuth scope each belongs to (AUTH-13, AUTH-30).
pub fn scope_of_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "account-access" => Some("accounts"),
        "domestic-payment" | "international-payment" => Some("payments"),
        "funds-confirmation" => Some("fundsconfirmations"),
        _ => None,
    }
}

/// Long-lived consents can be re-authorised and get refresh tokens
/// (AUTH-33, AUTH-54).
pub fn is_long_lived(kind: &str) -> bool {
    matches!(kind, "account-access" | "funds-confirmation")
}

pub struct Group {
    pub title: String,
    pub items: Vec<String>,
}

/// AIS permission codes grouped and explained (AIS permissions).
const PERMISSIONS: &[(&str, &str, &str)] = &[
    (
        "Your accounts",
        "ReadAccountsBasic",
        "account names, types and currencies",
    ),
    (
        "Your accounts",
        "ReadAccountsDetail",
        "account numbers and sort codes",
    ),
    ("Your balances", "ReadBalances", "account balances"),
    (
        "Your transactions",
        "ReadTransactionsBasic",
        "transaction amounts, dates and types",
    ),
    (
        "Your transactions",
        "ReadTransactionsDetail",
        "transaction descriptions, merchants and counterparties",
    ),
    (
        "Your transactions",
        "ReadTransactionsCredits",
        "money coming in",
    ),
    (
        "Your transactions",
        "ReadTransactionsDebits",
        "money going out",
    ),
    (
        "Your regular payments",
        "ReadBeneficiariesBasic",
        "people and businesses you pay",
    ),
    (
        "Your regular payments",
        "ReadBeneficiariesDetail",
        "account details of people and businesses you pay",
    ),
    ("Your regular payments", "ReadDirectDebits", "direct debits"),
    (
        "Your regular payments",
        "ReadStandingOrdersBasic",
        "standing orders",
    ),
    (
        "Your regular payments",
        "ReadStandingOrdersDetail",
        "standing orders including payee account details",
    ),
    (
        "Your regular payments",
        "ReadScheduledPaymentsBasic",
        "scheduled payments",
    ),
    (
        "Your regular payments",
        "ReadScheduledPaymentsDetail",
        "scheduled payments including payee account details",
    ),
    (
        "Your statements",
        "ReadStatementsBasic",
        "statement dates and totals",
    ),
    ("Your statements", "ReadStatementsDetail", "full statements"),
    ("About you", "ReadPartyPSU", "your name and contact details"),
    ("About you", "ReadParty", "details of the account holders"),
    (
        "Products and offers",
        "ReadProducts",
        "the products your accounts are",
    ),
    (
        "Products and offers",
        "ReadOffers",
        "offers on your accounts",
    ),
    (
        "Card numbers",
        "ReadPAN",
        "full card numbers (otherwise masked)",
    ),
];

pub fn permission_groups(permissions: &[String]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (title, code, text) in PERMISSIONS {
        if permissions.iter().any(|p| p == code) {
            match groups.iter_mut().find(|g| g.title == *title) {
                Some(g) => g.items.push((*text).to_string()),
                None => groups.push(Group {
                    title: (*title).to_string(),
                    items: vec![(*text).to_string()],
                }),
            }
        }
    }
    groups
}

pub fn headline(kind: &str) -> &'static str {
    match kind {
        "account-access" => "access to your account information",
        "domestic-payment" => "your approval of a payment",
        "international-payment" => "your approval of an international payment",
        "funds-confirmation" => "permission to confirm funds are available",
        _ => "your permission",
    }
}

/// Key facts shown next to the groups: dates and payment details.
pub fn details(kind: &str, data: &Value) -> Vec<(String, String)> {
    let d = &data["Data"];
    let mut out = Vec::new();
    let s = |v: &Value| v.as_str().map(str::to_string);
    match kind {
        "account-access" => {
            out.push((
                "Access until".into(),
                s(&d["ExpirationDateTime"]).unwrap_or_else(|| "you withdraw it".into()),
            ));
            if let Some(f) = s(&d["TransactionFromDateTime"]) {
                out.push(("Transactions from".into(), f));
            }
            if let Some(t) = s(&d["TransactionToDateTime"]) {
                out.push(("Transactions to".into(), t));
            }
        }
        "domestic-payment" | "international-payment" => {
            let i = &d["Initiation"];
            if let (Some(a), Some(c)) = (
                s(&i["InstructedAmount"]["Amount"]),
                s(&i["InstructedAmount"]["Currency"]),
            ) {
                out.push(("Amount".into(), format!("{a} {c}")));
            }
            if let Some(n) = s(&i["CreditorAccount"]["Name"]) {
                out.push(("To".into(), n));
            }
            if let Some(id) = s(&i["CreditorAccount"]["Identification"]) {
                out.push(("Payee account".into(), id));
            }
            if let Some(r) = s(&i["RemittanceInformation"]["Reference"]) {
                out.push(("Reference".into(), r));
            }
            if let Some(c) = s(&i["CurrencyOfTransfer"]) {
                out.push(("Currency of transfer".into(), c));
            }
        }
        "funds-confirmation" => {
            out.push((
                "Access until".into(),
                s(&d["ExpirationDateTime"]).unwrap_or_else(|| "you withdraw it".into()),
            ));
        }
        _ => {}
    }
    out
}

pub fn permissions(data: &Value) -> Vec<String> {
    data["Data"]["Permissions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The debtor account a consent names: the one a payment consent may fix,
/// the one a funds-confirmation consent always names (COF-4).
pub fn fixed_debtor(data: &Value) -> Option<String> {
    let d = &data["Data"];
    d["Initiation"]["DebtorAccount"]["Identification"]
        .as_str()
        .or_else(|| d["DebtorAccount"]["Identification"].as_str())
        .map(str::to_string)
}

/// The currency a payment debits, for choosing accounts that can pay it.
pub fn payment_currency(kind: &str, data: &Value) -> Option<String> {
    let i = &data["Data"]["Initiation"];
    match kind {
        "domestic-payment" => i["InstructedAmount"]["Currency"]
            .as_str()
            .map(str::to_string),
        _ => None,
    }
}
