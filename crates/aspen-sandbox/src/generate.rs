//! Deterministic generation of the sandbox bank from a seed.

use aspen_domain::{
    Account, AccountIdentification, AccountResource, CreditDebit, Psu, ResourceKind, Transaction,
    World, format_minor,
};
use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

const BANK: &str = "Aspen Sandbox Bank";
const BIC: &str = "ASPNGB2LXXX";
const SORT_CODE: &str = "040004";
/// Days of history before the anchor date (over six months).
const HISTORY_DAYS: i64 = 200;

struct PsuSpec {
    username: &'static str,
    password: &'static str,
    name: &'static str,
    email: &'static str,
    second_currency: &'static str,
    savings: bool,
    /// Has a TOTP authenticator (issue 14); one PSU has none, so the
    /// `access_denied` path of a request that needs SCA can be tried.
    second_factor: bool,
}

const PSUS: &[PsuSpec] = &[
    PsuSpec {
        username: "rora",
        password: "rora.",
        name: "Rora Lindqvist",
        email: "rora@example.com",
        second_currency: "EUR",
        savings: true,
        second_factor: true,
    },
    PsuSpec {
        username: "mits",
        password: "mits.",
        name: "Mitsuko Arden",
        email: "mits@example.com",
        second_currency: "USD",
        savings: false,
        second_factor: true,
    },
    PsuSpec {
        username: "ivsa",
        password: "ivsa.",
        name: "Ivsa Okonkwo",
        email: "ivsa@example.com",
        second_currency: "EUR",
        savings: false,
        second_factor: true,
    },
    // Appended last: the generator draws in order, so the first three
    // PSUs' data does not change.
    PsuSpec {
        username: "oska",
        password: "oska.",
        name: "Oskar Brandt",
        email: "oska@example.com",
        second_currency: "EUR",
        savings: false,
        second_factor: false,
    },
];

/// A sandbox customer's sign-in: password and, for all but one, the TOTP
/// secret of their authenticator (base32), derived from the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLogin {
    pub username: &'static str,
    pub password: &'static str,
    pub totp_secret: Option<String>,
}

pub fn sandbox_logins(seed: u64) -> Vec<SandboxLogin> {
    PSUS.iter()
        .enumerate()
        .map(|(i, p)| SandboxLogin {
            username: p.username,
            password: p.password,
            totp_secret: p.second_factor.then(|| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x70_7470 + i as u64));
                let bytes: [u8; 20] = rng.random();
                data_encoding::BASE32_NOPAD.encode(&bytes)
            }),
        })
        .collect()
}

struct Merchant {
    name: &'static str,
    mcc: &'static str,
    min: i64,
    max: i64,
}

const MERCHANTS: &[Merchant] = &[
    Merchant {
        name: "Tesco Stores",
        mcc: "5411",
        min: 300,
        max: 9000,
    },
    Merchant {
        name: "Sainsbury's",
        mcc: "5411",
        min: 250,
        max: 7500,
    },
    Merchant {
        name: "Pret A Manger",
        mcc: "5814",
        min: 250,
        max: 1200,
    },
    Merchant {
        name: "Transport for London",
        mcc: "4111",
        min: 170,
        max: 880,
    },
    Merchant {
        name: "Amazon UK",
        mcc: "5942",
        min: 500,
        max: 6500,
    },
    Merchant {
        name: "Boots",
        mcc: "5912",
        min: 199,
        max: 3500,
    },
    Merchant {
        name: "Shell Garage",
        mcc: "5541",
        min: 2000,
        max: 8000,
    },
    Merchant {
        name: "Netflix",
        mcc: "4899",
        min: 1099,
        max: 1099,
    },
    Merchant {
        name: "Waterstones",
        mcc: "5942",
        min: 799,
        max: 2999,
    },
    Merchant {
        name: "Dishoom",
        mcc: "5812",
        min: 2500,
        max: 9500,
    },
];

fn id(rng: &mut ChaCha8Rng, prefix: &str) -> String {
    let n: u128 = rng.random();
    format!("{prefix}{:020x}", n >> 48)
}

fn ms(d: NaiveDate, h: u32, m: u32) -> i64 {
    Utc.from_utc_datetime(&d.and_hms_opt(h, m, 0).unwrap_or_default())
        .timestamp_millis()
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
        .unwrap_or_default()
}

/// ISO 13616 check digits for a GB IBAN.
fn gb_iban(bank: &str, sort_code: &str, account: &str) -> String {
    let bban = format!("{bank}{sort_code}{account}");
    let digits: String = format!("{bban}GB00")
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                c.to_string()
            } else {
                (c as u32 - 'A' as u32 + 10).to_string()
            }
        })
        .collect();
    let rem = digits
        .bytes()
        .fold(0u32, |acc, b| (acc * 10 + (b - b'0') as u32) % 97);
    format!("GB{:02}{bban}", 98 - rem)
}

/// Validates an IBAN's check digits (mod 97 = 1).
pub fn iban_check_ok(iban: &str) -> bool {
    if iban.len() < 5 {
        return false;
    }
    let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = if c.is_ascii_digit() {
            c.to_string()
        } else if c.is_ascii_uppercase() {
            (c as u32 - 'A' as u32 + 10).to_string()
        } else {
            return false;
        };
        for b in v.bytes() {
            rem = (rem * 10 + (b - b'0') as u32) % 97;
        }
    }
    rem == 1
}

fn servicer() -> Value {
    json!({ "SchemeName": "UK.OBIE.BICFI", "Identification": BIC })
}

fn ident(scheme: &str, id: &str, name: &str) -> AccountIdentification {
    AccountIdentification {
        scheme_name: scheme.into(),
        identification: id.into(),
        name: Some(name.into()),
        secondary_identification: None,
    }
}

/// The account that receives bulk history: `rora`'s GBP account.
pub fn bulk_account_id(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    id(&mut rng, "acc-")
}

struct Ledger<'a> {
    rng: &'a mut ChaCha8Rng,
    account: &'a Account,
    txs: Vec<Transaction>,
    booked: i64,
    pending_debits: i64,
    pending_credits: i64,
}

impl Ledger<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        at: i64,
        amount: i64,
        cd: CreditDebit,
        pending: bool,
        info: &str,
        reference: Option<&str>,
        prop_code: &str,
        bank_code: (&str, &str),
        extra: Value,
    ) {
        let signed = if cd == CreditDebit::Credit {
            amount
        } else {
            -amount
        };
        // E-money never goes overdrawn: skip a debit the balance cannot
        // cover, as the real ledger would decline it.
        if cd == CreditDebit::Debit && self.booked - self.pending_debits - amount < 0 {
            return;
        }
        let balance = if pending {
            if cd == CreditDebit::Debit {
                self.pending_debits += amount
            } else {
                self.pending_credits += amount
            }
            None
        } else {
            self.booked += signed;
            Some(self.booked)
        };
        let mut detail = json!({
            "BankTransactionCode": { "Code": bank_code.0, "SubCode": bank_code.1 },
            "ProprietaryBankTransactionCode": { "Code": prop_code, "Issuer": BANK },
        });
        if let (Value::Object(d), Value::Object(e)) = (&mut detail, extra) {
            d.extend(e);
        }
        let tid = id(self.rng, "txn-");
        self.txs.push(Transaction {
            transaction_id: tid,
            account_id: self.account.account_id.clone(),
            booking_ms: at,
            value_ms: if pending { None } else { Some(at) },
            amount_minor: amount,
            currency: self.account.currency.clone(),
            credit_debit: cd,
            status: if pending {
                "Pending".into()
            } else {
                "Booked".into()
            },
            reference: reference.map(str::to_string),
            information: Some(info.to_string()),
            balance_minor: balance,
            detail: detail.into(),
        });
    }
}

fn creditor(name: &str, sort_code_account: &str) -> Value {
    json!({ "SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": sort_code_account, "Name": name })
}

pub fn generate_world(seed: u64, anchor: NaiveDate) -> World {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut world = World {
        seed,
        anchor: anchor.format("%Y-%m-%d").to_string(),
        ..World::default()
    };
    let start = anchor - Duration::days(HISTORY_DAYS);
    for (pi, spec) in PSUS.iter().enumerate() {
        let gbp_id = id(&mut rng, "acc-");
        let psu_id = id(&mut rng, "psu-");
        let salt_bytes: [u8; 16] = rng.random();
        let hash = {
            use argon2::PasswordHasher;
            let salt =
                argon2::password_hash::SaltString::encode_b64(&salt_bytes).unwrap_or_else(|_| {
                    argon2::password_hash::SaltString::from_b64("c2FuZGJveHNhbHQ")
                        .expect("static salt")
                });
            argon2::Argon2::default()
                .hash_password(spec.password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        let party_id = id(&mut rng, "pty-");
        let street = ["Acacia Avenue", "Harbour Row", "Mill Lane", "Canal Walk"][pi];
        let post_code = ["N1 9GU", "SE1 2AA", "E8 3PN", "N16 8EJ"][pi];
        let address = json!([{ "AddressType": "Residential", "StreetName": street, "BuildingNumber": format!("{}", 10 + pi * 7), "PostCode": post_code, "TownName": "London", "Country": "GB" }]);
        let party = json!({
            "PartyId": party_id,
            "PartyNumber": format!("{:08}", 10_000_000 + pi * 4_321),
            "PartyType": "Sole",
            "Name": spec.name,
            "FullLegalName": spec.name,
            "EmailAddress": spec.email,
            "Mobile": format!("+44-7700900{:03}", 100 + pi),
            "Address": address,
        });
        world.psus.push(Psu {
            id: psu_id.clone(),
            username: spec.username.into(),
            password_hash: hash,
            name: spec.name.into(),
            email: spec.email.into(),
            party: party.clone(),
        });

        let acct_no = format!("{:08}", rng.random_range(10_000_000..99_999_999u32));
        let mut accounts = vec![Account {
            account_id: gbp_id,
            psu_id: psu_id.clone(),
            currency: "GBP".into(),
            account_type: "Personal".into(),
            account_sub_type: "CurrentAccount".into(),
            description: "Financial Account".into(),
            nickname: Some("Financial Account".into()),
            opening_date: ms(start - Duration::days(400), 9, 0),
            identifications: vec![ident(
                "UK.OBIE.SortCodeAccountNumber",
                &format!("{SORT_CODE}{acct_no}"),
                spec.name,
            )],
            servicer: Some(servicer()),
            booked_minor: 0,
            pending_debits_minor: 0,
            pending_credits_minor: 0,
        }];
        let fx_no = format!("{:08}", rng.random_range(10_000_000..99_999_999u32));
        accounts.push(Account {
            account_id: id(&mut rng, "acc-"),
            psu_id: psu_id.clone(),
            currency: spec.second_currency.into(),
            account_type: "Personal".into(),
            account_sub_type: "CurrentAccount".into(),
            description: format!("{} Account", spec.second_currency),
            nickname: Some(format!("{} Wallet", spec.second_currency)),
            opening_date: ms(start - Duration::days(200), 9, 0),
            identifications: vec![ident(
                "UK.OBIE.IBAN",
                &gb_iban("ASPN", SORT_CODE, &fx_no),
                spec.name,
            )],
            servicer: Some(servicer()),
            booked_minor: 0,
            pending_debits_minor: 0,
            pending_credits_minor: 0,
        });
        if spec.savings {
            let sav_no = format!("{:08}", rng.random_range(10_000_000..99_999_999u32));
            accounts.push(Account {
                account_id: id(&mut rng, "acc-"),
                psu_id: psu_id.clone(),
                currency: "GBP".into(),
                account_type: "Personal".into(),
                account_sub_type: "Savings".into(),
                description: "Savings Account".into(),
                nickname: Some("Rainy Day".into()),
                opening_date: ms(start - Duration::days(100), 9, 0),
                identifications: vec![ident(
                    "UK.OBIE.SortCodeAccountNumber",
                    &format!("{SORT_CODE}{sav_no}"),
                    spec.name,
                )],
                servicer: Some(servicer()),
                booked_minor: 0,
                pending_debits_minor: 0,
                pending_credits_minor: 0,
            });
        }

        for (ai, mut account) in accounts.into_iter().enumerate() {
            let card_pan = format!(
                "4{:015}",
                rng.random_range(100_000_000_000_000u64..999_999_999_999_999u64)
            );
            let (txs, booked, pd, pc) = history(&mut rng, &account, start, anchor, ai, &card_pan);
            account.booked_minor = booked;
            account.pending_debits_minor = pd;
            account.pending_credits_minor = pc;
            world.resources.extend(resources(
                &mut rng, &account, &txs, &party, start, anchor, ai,
            ));
            world.transactions.extend(txs);
            world.accounts.push(account);
        }
    }
    world
}

#[allow(clippy::type_complexity)]
fn history(
    rng: &mut ChaCha8Rng,
    account: &Account,
    start: NaiveDate,
    anchor: NaiveDate,
    kind: usize,
    pan: &str,
) -> (Vec<Transaction>, i64, i64, i64) {
    let mut l = Ledger {
        rng,
        account,
        txs: Vec::new(),
        booked: 0,
        pending_debits: 0,
        pending_credits: 0,
    };
    let savings = account.account_sub_type == "Savings";
    let opening = if savings {
        250_000
    } else if kind == 0 {
        180_000
    } else {
        90_000
    };
    l.push(
        ms(start, 8, 0),
        opening,
        CreditDebit::Credit,
        false,
        "Opening deposit",
        Some("OPENING"),
        "Transfer",
        ("PMNT", "RCDT"),
        json!({}),
    );
    let masked_card = json!({ "CardSchemeName": "VISA", "AuthorisationType": "Contactless", "Name": "CARDHOLDER", "Identification": pan });
    let mut day = start + Duration::days(1);
    let last = anchor - Duration::days(1);
    while day <= last {
        let pending = (anchor - day).num_days() <= 1;
        if savings {
            if day.day() == 1 {
                l.push(
                    ms(day, 7, 0),
                    20_000,
                    CreditDebit::Credit,
                    pending,
                    "Monthly saving from Financial Account",
                    Some("SAVINGS"),
                    "Transfer",
                    ("PMNT", "ICDT"),
                    json!({}),
                );
            }
            if day.day() == 28 {
                let interest = (l.booked as f64 * 0.035 / 12.0) as i64;
                l.push(
                    ms(day, 23, 0),
                    interest.max(1),
                    CreditDebit::Credit,
                    pending,
                    "Interest paid",
                    None,
                    "Interest",
                    ("ACMT", "INTR"),
                    json!({}),
                );
            }
        } else if kind == 0 {
            if day.day() == 25 {
                l.push(
                    ms(day, 6, 30),
                    285_000,
                    CreditDebit::Credit,
                    pending,
                    "Salary ACME WIDGETS LTD",
                    Some("ACME PAYROLL"),
                    "BankGiroCredit",
                    ("PMNT", "RCDT"),
                    json!({ "DebtorAccount": creditor("ACME Widgets Ltd", "20000055667788") }),
                );
            }
            if day.day() == 1 {
                l.push(
                    ms(day, 9, 0),
                    120_000,
                    CreditDebit::Debit,
                    pending,
                    "Standing order Flat rent",
                    Some("RENT FLAT 4"),
                    "StandingOrder",
                    ("PMNT", "ICDT"),
                    json!({ "CreditorAccount": creditor("Harbour Lettings", "30000012345678") }),
                );
                l.push(
                    ms(day, 10, 0),
                    20_000,
                    CreditDebit::Debit,
                    pending,
                    "Transfer to Savings Account",
                    Some("SAVINGS"),
                    "Transfer",
                    ("PMNT", "ICDT"),
                    json!({}),
                );
            }
            if day.day() == 5 {
                l.push(
                    ms(day, 4, 0),
                    4_250,
                    CreditDebit::Debit,
                    pending,
                    "Direct debit Thames Water",
                    Some("TW-88123"),
                    "DirectDebit",
                    ("PMNT", "IDDT"),
                    json!({ "CreditorAccount": creditor("Thames Water", "40000022334455") }),
                );
            }
            if day.day() == 12 {
                l.push(
                    ms(day, 4, 0),
                    9_900,
                    CreditDebit::Debit,
                    pending,
                    "Direct debit Octopus Energy",
                    Some("OCTO-55671"),
                    "DirectDebit",
                    ("PMNT", "IDDT"),
                    json!({ "CreditorAccount": creditor("Octopus Energy", "60000033445566") }),
                );
            }
            if day.day() == 28 {
                l.push(
                    ms(day, 23, 30),
                    500,
                    CreditDebit::Debit,
                    pending,
                    "Monthly account fee",
                    None,
                    "Fee",
                    ("ACMT", "FEES"),
                    json!({}),
                );
            }
        } else if day.day() == 15 {
            l.push(
                ms(day, 11, 0),
                60_000,
                CreditDebit::Credit,
                pending,
                "Transfer from Financial Account",
                Some("TOPUP"),
                "Transfer",
                ("PMNT", "RCDT"),
                json!({}),
            );
        }
        if !savings {
            let purchases = l.rng.random_range(0..=if kind == 0 { 3 } else { 1 });
            for n in 0..purchases {
                let m = &MERCHANTS[l.rng.random_range(0..MERCHANTS.len())];
                let amount = l.rng.random_range(m.min..=m.max);
                let at = ms(day, 9 + n * 3, l.rng.random_range(0..59));
                l.push(at, amount, CreditDebit::Debit, pending, &format!("Card payment {}", m.name), None, "CardPayment", ("PMNT", "CCRD"), json!({
                    "MerchantDetails": { "MerchantName": m.name, "MerchantCategoryCode": m.mcc },
                    "CardInstrument": masked_card,
                }));
                // Now and then a purchase is refunded a few days later.
                if l.rng.random_range(0..40) == 0 && !pending {
                    l.push(at + 3 * 86_400_000, amount, CreditDebit::Credit, false, &format!("Refund {}", m.name), None, "Refund", ("PMNT", "RRCT"), json!({
                        "MerchantDetails": { "MerchantName": m.name, "MerchantCategoryCode": m.mcc },
                        "CardInstrument": masked_card,
                    }));
                }
            }
            if l.rng.random_range(0..14) == 0 {
                let amount = l.rng.random_range(1_000..15_000);
                l.push(
                    ms(day, 18, 15),
                    amount,
                    CreditDebit::Debit,
                    pending,
                    "Faster payment to J Smith",
                    Some("DINNER SPLIT"),
                    "FasterPayment",
                    ("PMNT", "ICDT"),
                    json!({ "CreditorAccount": creditor("J Smith", "11111122223333") }),
                );
            }
            if l.rng.random_range(0..20) == 0 {
                let amount = l.rng.random_range(1_000..8_000);
                l.push(
                    ms(day, 19, 45),
                    amount,
                    CreditDebit::Credit,
                    pending,
                    "Faster payment from A Patel",
                    Some("THANKS"),
                    "FasterPayment",
                    ("PMNT", "RCDT"),
                    json!({ "DebtorAccount": creditor("A Patel", "22222233334444") }),
                );
            }
        }
        day += Duration::days(1);
    }
    // Refunds are dated ahead: keep the ledger in time order.
    l.txs
        .sort_by(|a, b| (a.booking_ms, &a.transaction_id).cmp(&(b.booking_ms, &b.transaction_id)));
    let mut running = 0i64;
    for t in l.txs.iter_mut() {
        if t.status == "Booked" {
            running += t.signed_minor();
            t.balance_minor = Some(running);
        }
    }
    let (b, pd, pc) = (l.booked, l.pending_debits, l.pending_credits);
    (l.txs, b, pd, pc)
}

fn amount(minor: i64, ccy: &str) -> Value {
    json!({ "Amount": format_minor(minor), "Currency": ccy })
}

#[allow(clippy::too_many_arguments)]
fn resources(
    rng: &mut ChaCha8Rng,
    a: &Account,
    txs: &[Transaction],
    party: &Value,
    start: NaiveDate,
    anchor: NaiveDate,
    kind: usize,
) -> Vec<AccountResource> {
    let mut out = Vec::new();
    let ccy = a.currency.as_str();
    let mut push = |kind: ResourceKind, rid: String, sort: String, body: Value| {
        out.push(AccountResource {
            account_id: a.account_id.clone(),
            kind,
            resource_id: rid,
            sort_key: sort,
            body,
        });
    };
    let agent = json!({ "SchemeName": "UK.OBIE.BICFI", "Identification": "NWBKGB2LXXX" });
    if a.account_sub_type != "Savings" {
        for (i, (name, acct, reference)) in [
            ("Harbour Lettings", "30000012345678", "RENT FLAT 4"),
            ("J Smith", "11111122223333", "DINNER SPLIT"),
        ]
        .iter()
        .enumerate()
        {
            let bid = id(rng, "ben-");
            push(
                ResourceKind::Beneficiary,
                bid.clone(),
                format!("{i:03}"),
                json!({
                    "AccountId": a.account_id, "BeneficiaryId": bid, "Reference": reference,
                    "CreditorAgent": agent, "CreditorAccount": creditor(name, acct),
                }),
            );
        }
    }
    if kind == 0 && a.account_sub_type != "Savings" {
        for (i, (name, mandate, amt)) in [
            ("Thames Water", "TW-88123", 4_250),
            ("Octopus Energy", "OCTO-55671", 9_900),
        ]
        .iter()
        .enumerate()
        {
            let did = id(rng, "dd-");
            push(
                ResourceKind::DirectDebit,
                did.clone(),
                format!("{i:03}"),
                json!({
                    "AccountId": a.account_id, "DirectDebitId": did, "MandateIdentification": mandate,
                    "DirectDebitStatusCode": "Active", "Name": name,
                    "PreviousPaymentDateTime": iso(ms(anchor - Duration::days(20), 4, 0)),
                    "PreviousPaymentAmount": amount(*amt, ccy),
                }),
            );
        }
        let sid = id(rng, "so-");
        let next_month = NaiveDate::from_ymd_opt(
            if anchor.month() == 12 {
                anchor.year() + 1
            } else {
                anchor.year()
            },
            anchor.month() % 12 + 1,
            1,
        )
        .unwrap_or(anchor);
        push(
            ResourceKind::StandingOrder,
            sid.clone(),
            "000".into(),
            json!({
                "AccountId": a.account_id, "StandingOrderId": sid, "Frequency": "IntrvlMnthDay:01:01",
                "Reference": "RENT FLAT 4", "FirstPaymentDateTime": iso(ms(start, 9, 0)),
                "NextPaymentDateTime": iso(ms(next_month, 9, 0)), "StandingOrderStatusCode": "Active",
                "FirstPaymentAmount": amount(120_000, ccy), "NextPaymentAmount": amount(120_000, ccy),
                "CreditorAgent": agent, "CreditorAccount": creditor("Harbour Lettings", "30000012345678"),
            }),
        );
        let spid = id(rng, "sp-");
        push(
            ResourceKind::ScheduledPayment,
            spid.clone(),
            "000".into(),
            json!({
                "AccountId": a.account_id, "ScheduledPaymentId": spid,
                "ScheduledPaymentDateTime": iso(ms(anchor + Duration::days(10), 0, 0)),
                "ScheduledType": "Execution", "Reference": "CAR INSURANCE",
                "InstructedAmount": amount(38_400, ccy), "CreditorAgent": agent,
                "CreditorAccount": creditor("Admiral Insurance", "50000044556677"),
            }),
        );
    }
    // Monthly statements for each full month in the history; totals are
    // computed from the same ledger the transactions come from.
    let mut month = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap_or(start);
    let mut i = 0;
    loop {
        let next = NaiveDate::from_ymd_opt(
            if month.month() == 12 {
                month.year() + 1
            } else {
                month.year()
            },
            month.month() % 12 + 1,
            1,
        )
        .unwrap_or(month);
        if next > anchor {
            break;
        }
        if month >= start {
            let (from, to) = (ms(month, 0, 0), ms(next, 0, 0));
            let in_month: Vec<&Transaction> = txs
                .iter()
                .filter(|t| t.status == "Booked" && t.booking_ms >= from && t.booking_ms < to)
                .collect();
            let credits: i64 = in_month
                .iter()
                .filter(|t| t.credit_debit == CreditDebit::Credit)
                .map(|t| t.amount_minor)
                .sum();
            let debits: i64 = in_month
                .iter()
                .filter(|t| t.credit_debit == CreditDebit::Debit)
                .map(|t| t.amount_minor)
                .sum();
            let closing = txs
                .iter()
                .filter(|t| t.status == "Booked" && t.booking_ms < to)
                .map(|t| t.signed_minor())
                .sum::<i64>();
            let opening = closing - credits + debits;
            let signed = |v: i64| json!({ "Amount": format_minor(v.abs()), "Currency": ccy });
            let cd = |v: i64| if v < 0 { "Debit" } else { "Credit" };
            let st = format!("stm-{}-{}", &a.account_id[4..12], month.format("%Y%m"));
            push(
                ResourceKind::Statement,
                st.clone(),
                format!("{:04}", i),
                json!({
                    "AccountId": a.account_id, "StatementId": st,
                    "StatementReference": month.format("%Y-%m").to_string(), "Type": "RegularPeriodic",
                    "StartDateTime": iso(from), "EndDateTime": iso(to - 1000), "CreationDateTime": iso(to + 3_600_000),
                    "StatementDescription": [format!("Statement for {}", month.format("%B %Y"))],
                    "StatementAmount": [
                        { "CreditDebitIndicator": cd(opening), "Amount": signed(opening), "Type": "UK.OBIE.PreviousClosingBalance" },
                        { "CreditDebitIndicator": cd(closing), "Amount": signed(closing), "Type": "UK.OBIE.ClosingBalance" },
                        { "CreditDebitIndicator": "Credit", "Amount": signed(credits), "Type": "UK.OBIE.Credit" },
                        { "CreditDebitIndicator": "Debit", "Amount": signed(debits), "Type": "UK.OBIE.Debit" },
                    ],
                }),
            );
            i += 1;
        }
        month = next;
    }
    let (pname, ptype) = match a.account_sub_type.as_str() {
        "Savings" => ("Easy Access Saver", "Other"),
        _ => ("Aspen Financial Account", "PersonalCurrentAccount"),
    };
    push(
        ResourceKind::Product,
        format!("prd-{}", &a.account_id[4..]),
        "000".into(),
        json!({
            "ProductName": pname, "ProductId": format!("prd-{}", &a.account_id[4..]),
            "AccountId": a.account_id, "ProductType": ptype,
        }),
    );
    if kind == 0 && a.account_sub_type != "Savings" {
        let oid = id(rng, "off-");
        push(
            ResourceKind::Offer,
            oid.clone(),
            "000".into(),
            json!({
                "AccountId": a.account_id, "OfferId": oid, "OfferType": "LimitIncrease",
                "Description": "Arranged overdraft up to £500 at 0% for 3 months",
                "Amount": amount(50_000, ccy),
                "StartDateTime": iso(ms(anchor - Duration::days(5), 0, 0)),
                "EndDateTime": iso(ms(anchor + Duration::days(25), 0, 0)),
            }),
        );
    }
    let mut holder = party.clone();
    holder["AccountRole"] = json!("UK.OBIE.Principal");
    let pid = holder["PartyId"].as_str().unwrap_or_default().to_string();
    push(ResourceKind::Party, pid, "000".into(), holder);
    out
}

/// Bulk history for load tests: `count` small alternating entries spread
/// over the same window, after the `skip` already seeded. Streaming, so a
/// million entries never sit in memory at once.
pub fn bulk_transactions(
    seed: u64,
    anchor: NaiveDate,
    account_id: &str,
    skip: u64,
    count: u64,
) -> impl Iterator<Item = Transaction> + Send + use<> {
    let start = ms(anchor - Duration::days(HISTORY_DAYS), 0, 0);
    let span = ms(anchor, 0, 0) - start;
    let account_id = account_id.to_string();
    (skip..skip + count).map(move |i| {
        // Credit then debit of the same amount: the balance stays positive
        // whatever the order in which they are booked.
        let credit = i % 2 == 0;
        let amount = 100 + ((i / 2).wrapping_mul(seed | 1) % 900) as i64;
        let at = start + ((i as i128 * span as i128) / (skip + count).max(1) as i128) as i64;
        Transaction {
            transaction_id: format!("blk-{i:012}"),
            account_id: account_id.clone(),
            booking_ms: at,
            value_ms: Some(at),
            amount_minor: amount,
            currency: "GBP".into(),
            credit_debit: if credit { CreditDebit::Credit } else { CreditDebit::Debit },
            status: "Booked".into(),
            reference: Some(format!("BULK{i}")),
            information: Some(if credit { "Load test credit".into() } else { "Load test debit".into() }),
            balance_minor: None,
            detail: json!({
                "BankTransactionCode": { "Code": "PMNT", "SubCode": if credit { "RCDT" } else { "ICDT" } },
                "ProprietaryBankTransactionCode": { "Code": "Transfer", "Issuer": BANK },
            })
            .into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    #[test]
    fn deterministic_by_seed() {
        let a = generate_world(7, anchor());
        let b = generate_world(7, anchor());
        assert_eq!(a, b);
        let c = generate_world(8, anchor());
        assert_ne!(a.accounts[0].account_id, c.accounts[0].account_id);
        assert_eq!(bulk_account_id(7), a.accounts[0].account_id);
    }

    #[test]
    fn every_psu_has_the_required_accounts() {
        let w = generate_world(42, anchor());
        for (u, pw) in [("rora", "rora."), ("mits", "mits."), ("ivsa", "ivsa.")] {
            let p = w.psus.iter().find(|p| p.username == u).unwrap();
            assert!(!p.password_hash.contains(pw) && p.password_hash.starts_with("$argon2"));
            use argon2::{PasswordHash, PasswordVerifier};
            let h = PasswordHash::new(&p.password_hash).unwrap();
            assert!(
                argon2::Argon2::default()
                    .verify_password(pw.as_bytes(), &h)
                    .is_ok()
            );
            let accts: Vec<&Account> = w.accounts.iter().filter(|a| a.psu_id == p.id).collect();
            assert!(accts.len() >= 2);
            let gbp = accts
                .iter()
                .find(|a| a.currency == "GBP" && a.description == "Financial Account")
                .unwrap();
            let sc = &gbp.identifications[0];
            assert_eq!(sc.scheme_name, "UK.OBIE.SortCodeAccountNumber");
            assert!(
                sc.identification.len() == 14
                    && sc.identification.bytes().all(|b| b.is_ascii_digit())
            );
            let fx = accts
                .iter()
                .find(|a| a.currency == "EUR" || a.currency == "USD")
                .unwrap();
            assert_eq!(fx.identifications[0].scheme_name, "UK.OBIE.IBAN");
            assert!(iban_check_ok(&fx.identifications[0].identification));
        }
        assert_eq!(
            w.accounts
                .iter()
                .filter(|a| a.psu_id == w.psus[0].id)
                .count(),
            3
        );
    }

    #[test]
    fn balances_agree_with_history() {
        let w = generate_world(42, anchor());
        for a in &w.accounts {
            let txs: Vec<&Transaction> = w
                .transactions
                .iter()
                .filter(|t| t.account_id == a.account_id)
                .collect();
            let booked: i64 = txs
                .iter()
                .filter(|t| t.status == "Booked")
                .map(|t| t.signed_minor())
                .sum();
            let pend: i64 = txs
                .iter()
                .filter(|t| t.status == "Pending" && t.credit_debit == CreditDebit::Debit)
                .map(|t| t.amount_minor)
                .sum();
            assert_eq!(a.booked_minor, booked);
            assert_eq!(a.pending_debits_minor, pend);
            assert!(a.available_minor() >= 0);
            let first = txs.iter().map(|t| t.booking_ms).min().unwrap();
            assert!(
                anchor()
                    .signed_duration_since(
                        chrono::DateTime::from_timestamp_millis(first)
                            .unwrap()
                            .date_naive()
                    )
                    .num_days()
                    >= 180
            );
            // Running balances never go negative.
            assert!(txs.iter().filter_map(|t| t.balance_minor).all(|b| b >= 0));
        }
        let kinds = [
            "CardPayment",
            "FasterPayment",
            "DirectDebit",
            "StandingOrder",
            "Fee",
            "Refund",
            "BankGiroCredit",
        ];
        for k in kinds {
            assert!(
                w.transactions
                    .iter()
                    .any(|t| t.detail.to_value()["ProprietaryBankTransactionCode"]["Code"] == k),
                "{k}"
            );
        }
        assert!(w.transactions.iter().any(|t| t.status == "Pending"));
    }

    #[test]
    fn statements_match_transactions_and_every_account_has_a_product() {
        let w = generate_world(42, anchor());
        for a in &w.accounts {
            let stmts: Vec<&AccountResource> = w
                .resources
                .iter()
                .filter(|r| r.account_id == a.account_id && r.kind == ResourceKind::Statement)
                .collect();
            assert!(stmts.len() >= 5);
            for s in stmts {
                let from =
                    chrono::DateTime::parse_from_rfc3339(s.body["StartDateTime"].as_str().unwrap())
                        .unwrap()
                        .timestamp_millis();
                let to =
                    chrono::DateTime::parse_from_rfc3339(s.body["EndDateTime"].as_str().unwrap())
                        .unwrap()
                        .timestamp_millis()
                        + 1000;
                let credits: i64 = w
                    .transactions
                    .iter()
                    .filter(|t| {
                        t.account_id == a.account_id
                            && t.status == "Booked"
                            && t.booking_ms >= from
                            && t.booking_ms < to
                            && t.credit_debit == CreditDebit::Credit
                    })
                    .map(|t| t.amount_minor)
                    .sum();
                assert_eq!(
                    s.body["StatementAmount"][2]["Amount"]["Amount"],
                    format_minor(credits)
                );
            }
            assert_eq!(
                w.resources
                    .iter()
                    .filter(|r| r.account_id == a.account_id && r.kind == ResourceKind::Product)
                    .count(),
                1
            );
            assert!(
                w.resources
                    .iter()
                    .any(|r| r.account_id == a.account_id && r.kind == ResourceKind::Party)
            );
        }
        // Issue 10: every sandbox PSU has, on at least one account, a record
        // for every AIS endpoint, so a full-permission consent reads data
        // everywhere.
        for psu in &w.psus {
            let mine: Vec<&str> = w
                .accounts
                .iter()
                .filter(|a| a.psu_id == psu.id)
                .map(|a| a.account_id.as_str())
                .collect();
            for k in [
                ResourceKind::Beneficiary,
                ResourceKind::DirectDebit,
                ResourceKind::StandingOrder,
                ResourceKind::ScheduledPayment,
                ResourceKind::Statement,
                ResourceKind::Product,
                ResourceKind::Offer,
                ResourceKind::Party,
            ] {
                assert!(
                    w.resources
                        .iter()
                        .any(|r| r.kind == k && mine.contains(&r.account_id.as_str())),
                    "{} has no {k:?}",
                    psu.username
                );
            }
        }
    }

    #[test]
    fn bulk_is_balanced_in_pairs() {
        let total: i64 = bulk_transactions(42, anchor(), "acc-x", 0, 1000)
            .map(|t| t.signed_minor())
            .sum();
        assert_eq!(total, 0);
        let ids: std::collections::HashSet<String> =
            bulk_transactions(42, anchor(), "acc-x", 0, 1000)
                .map(|t| t.transaction_id)
                .collect();
        assert_eq!(ids.len(), 1000);
    }
}
