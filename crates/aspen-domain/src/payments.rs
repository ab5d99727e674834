//! Payment initiation rules that are ours to decide (PIS-10: "an ASPSP must
//! reject a consent it cannot handle … it documents its limits"): the ASPSP
//! profile, as data an operator can replace; the FX rate table; and the
//! consent/payment match rule (PIS-20). No IO.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which OB error a broken rule maps to (COMMON-52); the API layer turns
/// these into `UK.OBIE.*` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCode {
    FieldMissing,
    FieldInvalid,
    FieldExpected,
    FieldUnexpected,
    UnsupportedCurrency,
    UnsupportedScheme,
    UnsupportedAccountIdentifier,
    UnsupportedLocalInstrument,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub code: RuleCode,
    /// Dotted JSON path from the body root (`Data.Initiation.…`).
    pub path: String,
    pub message: String,
}

fn violation(code: RuleCode, path: &str, message: impl Into<String>) -> Violation {
    Violation {
        code,
        path: path.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentType {
    Domestic,
    International,
}

/// An ASPSP's payment rules. Stripe's published PIS rules are the sandbox
/// default (`profiles/stripe.toml` in the binary); another bank's rules are
/// another file of this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AspspProfile {
    pub name: String,
    pub reference: ReferenceRules,
    pub domestic: TypeRules,
    pub international: TypeRules,
    /// Per creditor scheme: what its `Identification` must look like.
    #[serde(default)]
    pub schemes: BTreeMap<String, SchemeRule>,
    #[serde(default)]
    pub supplementary: SupplementaryRules,
    /// Destination country → fields required under
    /// `SupplementaryData.CreditorAccount` (dotted, e.g.
    /// `BankAccountDetails.RoutingNumber`) for international payments.
    #[serde(default)]
    pub countries: BTreeMap<String, CountryRule>,
    /// The rule for destination countries not listed in `countries`; when
    /// unset and `countries` is not empty, those countries are refused.
    #[serde(default)]
    pub other_countries: Option<CountryRule>,
}

/// What an international payment to one destination country needs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryRule {
    /// Creditor scheme accepted for this country → fields it needs under
    /// `SupplementaryData.CreditorAccount` (e.g.
    /// `BankAccountDetails.SwiftCode`). A scheme not listed is refused.
    pub schemes: BTreeMap<String, Vec<String>>,
    /// `EntityType` → KYC fields it needs under
    /// `SupplementaryData.CreditorAccount` (e.g. `Individual.DateOfBirth`).
    #[serde(default)]
    pub kyc: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceRules {
    pub required: bool,
    /// Characters allowed besides ASCII letters and digits; unset = any
    /// (the OB schema's own 1..35 characters).
    #[serde(default)]
    pub allowed_punctuation: Option<String>,
    /// The reference must contain a run of at least this many ASCII
    /// alphanumerics (0 = no rule).
    pub min_alphanumeric_run: usize,
    /// Refuse a reference whose alphanumerics are all one character.
    pub reject_homogeneous: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRules {
    /// `InstructedAmount.Currency` values accepted; empty = any.
    #[serde(default)]
    pub instructed_currencies: Vec<String>,
    /// `CurrencyOfTransfer` values accepted (international); empty = any.
    #[serde(default)]
    pub transfer_currencies: Vec<String>,
    pub creditor_schemes: Vec<String>,
    /// `LocalInstrument` values accepted; empty = any.
    #[serde(default)]
    pub local_instruments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeRule {
    /// Exactly this many ASCII digits.
    pub digits: Option<usize>,
    /// Starts with this prefix (e.g. a wallet id `acct_`).
    pub prefix: Option<String>,
    /// An IBAN: country, check digits, BBAN, ISO 13616 mod-97.
    #[serde(default)]
    pub iban: bool,
    /// Payments to this scheme need none of the `supplementary` fields.
    #[serde(default)]
    pub supplementary_exempt: bool,
    /// `SupplementaryData.CreditorAccount.Destination`, when sent, starts
    /// with one of these prefixes.
    #[serde(default)]
    pub destination_prefixes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupplementaryRules {
    /// Fields required under `SupplementaryData.CreditorAccount`.
    #[serde(default)]
    pub required: Vec<String>,
    /// Allowed `EntityType` values.
    #[serde(default)]
    pub entity_types: Vec<String>,
    /// `EntityType` value → the object that must accompany it.
    #[serde(default)]
    pub entity_details: BTreeMap<String, String>,
}

const SUPP: &str = "Data.Initiation.SupplementaryData.CreditorAccount";

fn get<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn str_at<'a>(v: &'a Value, dotted: &str) -> Option<&'a str> {
    get(v, dotted).and_then(Value::as_str)
}

impl AspspProfile {
    fn rules(&self, t: PaymentType) -> &TypeRules {
        match t {
            PaymentType::Domestic => &self.domestic,
            PaymentType::International => &self.international,
        }
    }

    /// Every profile rule the initiation breaks, in one pass (COMMON-53).
    pub fn check(&self, t: PaymentType, initiation: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        self.check_reference(initiation, &mut out);
        let rules = self.rules(t);
        let currency = str_at(initiation, "InstructedAmount.Currency").unwrap_or("");
        if !rules.instructed_currencies.is_empty()
            && !rules.instructed_currencies.iter().any(|c| c == currency)
        {
            out.push(violation(
                RuleCode::UnsupportedCurrency,
                "Data.Initiation.InstructedAmount.Currency",
                format!(
                    "{currency} is not supported; use one of {}",
                    rules.instructed_currencies.join(", ")
                ),
            ));
        }
        if t == PaymentType::International {
            let cot = str_at(initiation, "CurrencyOfTransfer").unwrap_or("");
            if !rules.transfer_currencies.is_empty()
                && !rules.transfer_currencies.iter().any(|c| c == cot)
            {
                out.push(violation(
                    RuleCode::UnsupportedCurrency,
                    "Data.Initiation.CurrencyOfTransfer",
                    format!(
                        "{cot} is not supported; use one of {}",
                        rules.transfer_currencies.join(", ")
                    ),
                ));
            }
        }
        if let Some(li) = str_at(initiation, "LocalInstrument")
            && !rules.local_instruments.is_empty()
            && !rules.local_instruments.iter().any(|x| x == li)
        {
            out.push(violation(
                RuleCode::UnsupportedLocalInstrument,
                "Data.Initiation.LocalInstrument",
                format!("{li} is not supported"),
            ));
        }
        let scheme = str_at(initiation, "CreditorAccount.SchemeName")
            .map(namespaced_scheme)
            .unwrap_or_default();
        if !rules.creditor_schemes.contains(&scheme) {
            out.push(violation(
                RuleCode::UnsupportedScheme,
                "Data.Initiation.CreditorAccount.SchemeName",
                format!(
                    "creditor scheme {scheme} is not supported; use one of {}",
                    rules.creditor_schemes.join(", ")
                ),
            ));
            return out;
        }
        let rule = self.schemes.get(&scheme).cloned().unwrap_or_default();
        let ident = str_at(initiation, "CreditorAccount.Identification").unwrap_or("");
        if !rule.accepts(ident) {
            out.push(violation(
                RuleCode::UnsupportedAccountIdentifier,
                "Data.Initiation.CreditorAccount.Identification",
                format!("not a valid {scheme} identification"),
            ));
        }
        let supp = initiation
            .get("SupplementaryData")
            .and_then(|s| s.get("CreditorAccount"))
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(dest) = str_at(&supp, "Destination")
            && !rule.destination_prefixes.is_empty()
            && !rule
                .destination_prefixes
                .iter()
                .any(|p| dest.starts_with(p.as_str()) && dest.len() > p.len())
        {
            out.push(violation(
                RuleCode::FieldInvalid,
                &format!("{SUPP}.Destination"),
                format!(
                    "Destination must be a destination id starting with {}",
                    rule.destination_prefixes.join(" or ")
                ),
            ));
        }
        if rule.supplementary_exempt {
            return out;
        }
        self.check_supplementary(&supp, &mut out);
        if t == PaymentType::International {
            self.check_country(initiation, &scheme, &supp, &mut out);
        }
        out
    }

    fn check_reference(&self, initiation: &Value, out: &mut Vec<Violation>) {
        const PATH: &str = "Data.Initiation.RemittanceInformation.Reference";
        let r = &self.reference;
        let Some(reference) = str_at(initiation, "RemittanceInformation.Reference") else {
            if r.required {
                out.push(violation(
                    RuleCode::FieldMissing,
                    PATH,
                    "RemittanceInformation.Reference is required",
                ));
            }
            return;
        };
        if let Some(allowed) = &r.allowed_punctuation
            && let Some(bad) = reference
                .chars()
                .find(|c| !c.is_ascii_alphanumeric() && !allowed.contains(*c))
        {
            out.push(violation(
                RuleCode::FieldInvalid,
                PATH,
                format!(
                    "the reference may hold letters, digits and {allowed:?} only; {bad:?} is not allowed"
                ),
            ));
            return;
        }
        let longest_run = reference
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(str::len)
            .max()
            .unwrap_or(0);
        if longest_run < r.min_alphanumeric_run {
            out.push(violation(
                RuleCode::FieldInvalid,
                PATH,
                format!(
                    "the reference must contain at least {} letters or digits in a row",
                    r.min_alphanumeric_run
                ),
            ));
            return;
        }
        let mut alnum = reference.chars().filter(char::is_ascii_alphanumeric);
        if r.reject_homogeneous
            && let Some(first) = alnum.next()
            && alnum.all(|c| c.eq_ignore_ascii_case(&first))
        {
            out.push(violation(
                RuleCode::FieldInvalid,
                PATH,
                "the reference must not be one character repeated",
            ));
        }
    }

    /// The destination country's table row: the schemes it takes, their
    /// bank details, and the creditor's KYC fields by `EntityType`.
    fn check_country(
        &self,
        initiation: &Value,
        scheme: &str,
        supp: &Value,
        out: &mut Vec<Violation>,
    ) {
        const DEST: &str = "Data.Initiation.DestinationCountryCode";
        let Some(country) = destination_country(initiation) else {
            if !self.countries.is_empty() || self.other_countries.is_some() {
                out.push(violation(
                    RuleCode::FieldExpected,
                    DEST,
                    "the destination country cannot be told from the creditor: send DestinationCountryCode",
                ));
            }
            return;
        };
        let Some(rule) = self
            .countries
            .get(&country)
            .or(self.other_countries.as_ref())
        else {
            if !self.countries.is_empty() {
                out.push(violation(
                    RuleCode::FieldInvalid,
                    DEST,
                    format!("payments to {country} are not supported"),
                ));
            }
            return;
        };
        match rule.schemes.get(scheme) {
            None => out.push(violation(
                RuleCode::UnsupportedScheme,
                "Data.Initiation.CreditorAccount.SchemeName",
                format!(
                    "payments to {country} take {}",
                    rule.schemes
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
            Some(fields) => require_fields(supp, fields, &country, out),
        }
        if let Some(fields) = str_at(supp, "EntityType").and_then(|et| rule.kyc.get(et)) {
            require_fields(supp, fields, &country, out);
        }
    }

    fn check_supplementary(&self, supp: &Value, out: &mut Vec<Violation>) {
        let s = &self.supplementary;
        for f in &s.required {
            if str_at(supp, f).is_none_or(|v| v.trim().is_empty()) {
                out.push(violation(
                    RuleCode::FieldMissing,
                    &format!("{SUPP}.{f}"),
                    format!("SupplementaryData.CreditorAccount.{f} is required"),
                ));
            }
        }
        if let Some(email) = str_at(supp, "Email")
            && !plausible_email(email)
        {
            out.push(violation(
                RuleCode::FieldInvalid,
                &format!("{SUPP}.Email"),
                "Email must be an email address",
            ));
        }
        if let Some(et) = str_at(supp, "EntityType") {
            if !s.entity_types.is_empty() && !s.entity_types.iter().any(|x| x == et) {
                out.push(violation(
                    RuleCode::FieldInvalid,
                    &format!("{SUPP}.EntityType"),
                    format!("EntityType must be one of {}", s.entity_types.join(", ")),
                ));
            } else if let Some(details) = s.entity_details.get(et)
                && !get(supp, details).is_some_and(Value::is_object)
            {
                out.push(violation(
                    RuleCode::FieldMissing,
                    &format!("{SUPP}.{details}"),
                    format!("{details} is required when EntityType is {et}"),
                ));
            }
        }
    }
}

/// Each field (dotted, under `SupplementaryData.CreditorAccount`) present:
/// a non-empty string or an object.
fn require_fields(supp: &Value, fields: &[String], country: &str, out: &mut Vec<Violation>) {
    for f in fields {
        let present = match get(supp, f) {
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(v) => v.is_object(),
            None => false,
        };
        if !present {
            out.push(violation(
                RuleCode::FieldMissing,
                &format!("{SUPP}.{f}"),
                format!("{f} is required for payments to {country}"),
            ));
        }
    }
}

impl SchemeRule {
    fn accepts(&self, ident: &str) -> bool {
        if let Some(n) = self.digits
            && (ident.len() != n || !ident.bytes().all(|b| b.is_ascii_digit()))
        {
            return false;
        }
        if let Some(p) = &self.prefix
            && (!ident.starts_with(p.as_str()) || ident.len() == p.len())
        {
            return false;
        }
        !self.iban || valid_iban(ident)
    }
}

/// COMMON-60: legacy un-namespaced scheme names are read as the OB value.
pub fn namespaced_scheme(s: &str) -> String {
    if s.contains('.') {
        s.to_string()
    } else {
        format!("UK.OBIE.{s}")
    }
}

fn plausible_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// ISO 13616: two letters, two check digits, up to 30 alphanumerics, and
/// the mod-97 check.
pub fn valid_iban(s: &str) -> bool {
    let b = s.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b[4..]
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Where an international payment lands: `DestinationCountryCode` when
/// sent (v3.1.4's field, accepted as Stripe does), else the creditor's
/// address, else the IBAN's country, else GB for a sort code.
pub fn destination_country(initiation: &Value) -> Option<String> {
    if let Some(c) = str_at(initiation, "DestinationCountryCode") {
        return Some(c.to_string());
    }
    if let Some(c) = str_at(initiation, "Creditor.PostalAddress.Country") {
        return Some(c.to_string());
    }
    let scheme = str_at(initiation, "CreditorAccount.SchemeName").map(namespaced_scheme)?;
    let ident = str_at(initiation, "CreditorAccount.Identification")?;
    match scheme.as_str() {
        // By characters, not bytes: the identification is client input.
        "UK.OBIE.IBAN" => {
            let cc: String = ident.chars().take(2).collect();
            (cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase())).then_some(cc)
        }
        "UK.OBIE.SortCodeAccountNumber" => Some("GB".into()),
        _ => None,
    }
}

/// PIS-20.4: the first place where a payment order's `Initiation` or
/// `Risk` differs from its consent's, compared as JSON values (a field
/// present on one side only is a difference). `None` when equal.
pub fn first_difference(consent: &Value, order: &Value, path: &str) -> Option<String> {
    match (consent, order) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => first_difference(x, y, &format!("{path}.{k}")),
                _ => Some(format!("{path}.{k}")),
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(path.to_string());
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        (a, b) if a == b => None,
        _ => Some(path.to_string()),
    }
}

/// Exchange rates against one base currency: `rates[c]` units of `c` per
/// one unit of `base`, scaled by [`RATE_SCALE`]. Cross rates go through the
/// base.
#[derive(Debug, Clone, PartialEq)]
pub struct RateTable {
    pub base: String,
    pub rates: BTreeMap<String, i128>,
}

pub const RATE_SCALE: i128 = 100_000_000;

/// Parses a decimal rate (`1.1650`) into [`RATE_SCALE`] units.
pub fn parse_rate(s: &str) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || frac.len() > 8
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac_scaled: i128 = format!("{frac:0<8}").parse().ok()?;
    let r = int.parse::<i128>().ok()? * RATE_SCALE + frac_scaled;
    (r > 0).then_some(r)
}

/// A scaled rate as the JSON number OB carries (`ExchangeRate`), to eight
/// decimals at most.
pub fn rate_number(r: i128) -> Value {
    let text = format!("{}.{:08}", r / RATE_SCALE, r % RATE_SCALE);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// From a JSON number sent by a TPP.
pub fn rate_from_number(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => parse_rate(&n.to_string()),
        _ => None,
    }
}

impl RateTable {
    /// Units of `to` per one unit of `from` (PIS-27: "units of
    /// CurrencyOfTransfer per 1 UnitCurrency").
    pub fn rate(&self, from: &str, to: &str) -> Option<i128> {
        if from == to {
            return Some(RATE_SCALE);
        }
        let f = if from == self.base {
            RATE_SCALE
        } else {
            *self.rates.get(from)?
        };
        let t = if to == self.base {
            RATE_SCALE
        } else {
            *self.rates.get(to)?
        };
        Some(t * RATE_SCALE / f)
    }
}

/// What a member pays in their account's currency for `amount_minor` of
/// another currency at `rate` (units of the other currency per one unit of
/// the account's), rounded up to the minor unit: the bank never pays the
/// difference. Both currencies have two decimals (lib.rs).
pub fn debit_for(amount_minor: i64, rate: i128) -> Option<i64> {
    if rate <= 0 {
        return None;
    }
    let num = i128::from(amount_minor) * RATE_SCALE;
    let q = (num + rate - 1) / rate;
    i64::try_from(q).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn stripe_like() -> AspspProfile {
        AspspProfile {
            name: "t".into(),
            reference: ReferenceRules {
                required: true,
                allowed_punctuation: Some(" &-./".into()),
                min_alphanumeric_run: 6,
                reject_homogeneous: true,
            },
            domestic: TypeRules {
                instructed_currencies: vec!["GBP".into()],
                transfer_currencies: vec![],
                creditor_schemes: vec![
                    "UK.OBIE.SortCodeAccountNumber".into(),
                    "UK.OBIE.Wallet".into(),
                ],
                local_instruments: vec![],
            },
            international: TypeRules {
                instructed_currencies: vec![],
                transfer_currencies: vec![],
                creditor_schemes: vec!["UK.OBIE.IBAN".into()],
                local_instruments: vec![],
            },
            schemes: BTreeMap::from([
                (
                    "UK.OBIE.SortCodeAccountNumber".into(),
                    SchemeRule {
                        digits: Some(14),
                        ..Default::default()
                    },
                ),
                (
                    "UK.OBIE.Wallet".into(),
                    SchemeRule {
                        prefix: Some("acct_".into()),
                        supplementary_exempt: true,
                        destination_prefixes: vec!["gbba_".into()],
                        ..Default::default()
                    },
                ),
                (
                    "UK.OBIE.IBAN".into(),
                    SchemeRule {
                        iban: true,
                        ..Default::default()
                    },
                ),
            ]),
            supplementary: SupplementaryRules {
                required: vec!["Email".into(), "EntityType".into()],
                entity_types: vec!["individual".into(), "company".into()],
                entity_details: BTreeMap::from([
                    ("individual".into(), "Individual".into()),
                    ("company".into(), "BusinessDetails".into()),
                ]),
            },
            countries: BTreeMap::from([
                (
                    "GB".into(),
                    CountryRule {
                        schemes: BTreeMap::from([("UK.OBIE.IBAN".into(), vec![])]),
                        kyc: BTreeMap::new(),
                    },
                ),
                (
                    "US".into(),
                    CountryRule {
                        schemes: BTreeMap::from([(
                            "UK.OBIE.IBAN".into(),
                            vec!["BankAccountDetails.RoutingNumber".into()],
                        )]),
                        kyc: BTreeMap::from([
                            ("individual".into(), vec!["Individual.DateOfBirth".into()]),
                            ("company".into(), vec!["BusinessDetails.Address".into()]),
                        ]),
                    },
                ),
            ]),
            other_countries: None,
        }
    }

    fn domestic(reference: &str) -> Value {
        json!({
            "InstructedAmount": {"Amount": "1.00", "Currency": "GBP"},
            "CreditorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "11223344556677", "Name": "A"},
            "RemittanceInformation": {"Reference": reference},
            "SupplementaryData": {"CreditorAccount": {"Email": "a@b.co", "EntityType": "individual", "Individual": {}}},
        })
    }

    #[test]
    fn reference_rules() {
        let p = stripe_like();
        assert!(
            p.check(PaymentType::Domestic, &domestic("INV-123456"))
                .is_empty()
        );
        assert!(
            p.check(PaymentType::Domestic, &domestic("Rent 2026/12 ABC123"))
                .is_empty()
        );
        for bad in [
            "AB-12-CD",
            "INV_123456",
            "aaaaaa",
            "AAA.aaa.aaa",
            "Café123456",
        ] {
            let v = p.check(PaymentType::Domestic, &domestic(bad));
            assert_eq!(v.len(), 1, "{bad}: {v:?}");
            assert_eq!(v[0].path, "Data.Initiation.RemittanceInformation.Reference");
            assert_eq!(v[0].code, RuleCode::FieldInvalid);
        }
        let mut no_ref = domestic("x");
        no_ref
            .as_object_mut()
            .unwrap()
            .remove("RemittanceInformation");
        assert_eq!(
            p.check(PaymentType::Domestic, &no_ref)[0].code,
            RuleCode::FieldMissing
        );
    }

    #[test]
    fn schemes_and_supplementary() {
        let p = stripe_like();
        let mut i = domestic("INV123456");
        i["CreditorAccount"]["Identification"] = json!("1122334455667");
        assert_eq!(
            p.check(PaymentType::Domestic, &i)[0].code,
            RuleCode::UnsupportedAccountIdentifier
        );
        let mut i = domestic("INV123456");
        i["CreditorAccount"]["SchemeName"] = json!("UK.OBIE.IBAN");
        assert_eq!(
            p.check(PaymentType::Domestic, &i)[0].code,
            RuleCode::UnsupportedScheme
        );
        let mut i = domestic("INV123456");
        i["CreditorAccount"] =
            json!({"SchemeName": "UK.OBIE.Wallet", "Identification": "acct_123", "Name": "W"});
        i["SupplementaryData"] = json!({"CreditorAccount": {"Destination": "bad_1"}});
        let v = p.check(PaymentType::Domestic, &i);
        assert_eq!(v.len(), 1);
        assert!(v[0].path.ends_with("Destination"));
        let mut i = domestic("INV123456");
        i["SupplementaryData"]["CreditorAccount"]["EntityType"] = json!("trust");
        assert!(
            p.check(PaymentType::Domestic, &i)[0]
                .path
                .ends_with("EntityType")
        );
        let mut i = domestic("INV123456");
        i["InstructedAmount"]["Currency"] = json!("EUR");
        assert_eq!(
            p.check(PaymentType::Domestic, &i)[0].code,
            RuleCode::UnsupportedCurrency
        );
    }

    #[test]
    fn international_country_table() {
        let p = stripe_like();
        let mut i = domestic("INV123456");
        i["CreditorAccount"] =
            json!({"SchemeName": "IBAN", "Identification": "GB82WEST12345698765432", "Name": "X"});
        assert!(p.check(PaymentType::International, &i).is_empty());
        // Stripe's tables: to the US the bank details need a routing number
        // and an individual creditor a date of birth.
        i["DestinationCountryCode"] = json!("US");
        let paths: Vec<String> = p
            .check(PaymentType::International, &i)
            .into_iter()
            .map(|v| v.path)
            .collect();
        assert_eq!(
            paths,
            [
                "Data.Initiation.SupplementaryData.CreditorAccount.BankAccountDetails.RoutingNumber",
                "Data.Initiation.SupplementaryData.CreditorAccount.Individual.DateOfBirth",
            ]
        );
        i["SupplementaryData"]["CreditorAccount"]["BankAccountDetails"] =
            json!({"RoutingNumber": "110000000"});
        i["SupplementaryData"]["CreditorAccount"]["Individual"] =
            json!({"DateOfBirth": "1990-01-31"});
        assert!(p.check(PaymentType::International, &i).is_empty());
        // A company creditor: the business address instead.
        i["SupplementaryData"]["CreditorAccount"]["EntityType"] = json!("company");
        i["SupplementaryData"]["CreditorAccount"]["BusinessDetails"] = json!({});
        let v = p.check(PaymentType::International, &i);
        assert_eq!(v.len(), 1);
        assert!(v[0].path.ends_with("BusinessDetails.Address"));
        // A scheme the country does not take, and a country not served.
        i["CreditorAccount"]["SchemeName"] = json!("UK.OBIE.SortCodeAccountNumber");
        i["CreditorAccount"]["Identification"] = json!("11223344556677");
        assert_eq!(
            p.check(PaymentType::International, &i)[0].code,
            RuleCode::UnsupportedScheme
        );
        i["CreditorAccount"] = json!({"SchemeName": "UK.OBIE.IBAN", "Identification": "GB82WEST12345698765432", "Name": "X"});
        i["DestinationCountryCode"] = json!("ZZ");
        assert!(
            p.check(PaymentType::International, &i)[0]
                .path
                .ends_with("DestinationCountryCode")
        );
    }

    #[test]
    fn destination_from_a_non_ascii_identification_does_not_panic() {
        // Schemathesis found `ident[..2]` splitting "a®".
        for ident in ["a®", "®", "é1", "GB"] {
            let i =
                json!({"CreditorAccount": {"SchemeName": "UK.OBIE.IBAN", "Identification": ident}});
            let got = destination_country(&i);
            assert_eq!(got.as_deref(), (ident == "GB").then_some("GB"), "{ident}");
        }
    }

    #[test]
    fn iban_checksum() {
        assert!(valid_iban("GB82WEST12345698765432"));
        assert!(valid_iban("DE89370400440532013000"));
        assert!(!valid_iban("GB83WEST12345698765432"));
        assert!(!valid_iban("gb82WEST12345698765432"));
    }

    #[test]
    fn match_rule_names_the_field() {
        let a = json!({"InstructedAmount": {"Amount": "1.00", "Currency": "GBP"}, "X": [1, 2]});
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b, "Data.Initiation"), None);
        b["InstructedAmount"]["Amount"] = json!("1.01");
        assert_eq!(
            first_difference(&a, &b, "Data.Initiation").as_deref(),
            Some("Data.Initiation.InstructedAmount.Amount")
        );
        let mut c = a.clone();
        c["Extra"] = json!(null);
        assert_eq!(
            first_difference(&a, &c, "Data.Initiation").as_deref(),
            Some("Data.Initiation.Extra")
        );
    }

    #[test]
    fn fx() {
        let t = RateTable {
            base: "GBP".into(),
            rates: BTreeMap::from([
                ("EUR".into(), parse_rate("1.16").unwrap()),
                ("USD".into(), parse_rate("1.27").unwrap()),
            ]),
        };
        assert_eq!(t.rate("GBP", "EUR"), parse_rate("1.16"));
        // 100.00 EUR from a GBP account at 1.16 = 86.2069 → 86.21 GBP.
        assert_eq!(
            debit_for(10_000, t.rate("GBP", "EUR").unwrap()),
            Some(8_621)
        );
        assert_eq!(debit_for(10_000, RATE_SCALE), Some(10_000));
        assert_eq!(rate_number(parse_rate("1.1600").unwrap()), json!(1.16));
        assert!(t.rate("GBP", "JPY").is_none());
        assert_eq!(parse_rate("abc"), None);
    }
}
