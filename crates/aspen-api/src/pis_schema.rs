//! Request-body validation against the official v3.1.2 schemas
//! (`schemas/{pis,cof,events}-requests.json`, derived from the OpenAPI
//! files by `schemas/generate.py`). Schema failures map to OB codes by kind:
//! a missing field is `Field.Missing`, a wrong type or an unknown field
//! `Resource.InvalidFormat`, a bad value `Field.Invalid` (COMMON-52).

use aspen_http::{ObError, ObErrorCode};
use jsonschema::error::ValidationErrorKind;
use serde_json::{Value, json};

const SOURCES: [&str; 3] = [
    include_str!("../schemas/pis-requests.json"),
    include_str!("../schemas/cof-requests.json"),
    include_str!("../schemas/events-requests.json"),
];

pub struct Schemas {
    pub domestic_consent: jsonschema::Validator,
    pub domestic_payment: jsonschema::Validator,
    pub international_consent: jsonschema::Validator,
    pub international_payment: jsonschema::Validator,
    pub cof_consent: jsonschema::Validator,
    pub cof_confirmation: jsonschema::Validator,
    pub event_subscription: jsonschema::Validator,
    pub event_subscription_update: jsonschema::Validator,
    pub callback_url: jsonschema::Validator,
    pub event_polling: jsonschema::Validator,
}

/// COMMON-21: in the strict profile an object with declared properties
/// takes no others; `SupplementaryData` stays open (COMMON-10).
fn close_objects(v: &mut Value) {
    if let Value::Object(m) = v {
        // An object that already says what else it admits (`true`, or a
        // schema such as OBEventPolling1's `setErrs` map) keeps that.
        let said = m.contains_key("additionalProperties");
        if !said && m.get("properties").is_some_and(Value::is_object) {
            m.insert("additionalProperties".into(), Value::Bool(false));
        }
        m.values_mut().for_each(close_objects);
    } else if let Value::Array(a) = v {
        a.iter_mut().for_each(close_objects);
    }
}

impl Schemas {
    pub fn load(strict: bool) -> Result<Self, String> {
        let mut all = serde_json::Map::new();
        for src in SOURCES {
            let part: serde_json::Map<String, Value> =
                serde_json::from_str(src).map_err(|e| e.to_string())?;
            all.extend(part);
        }
        let mut all = Value::Object(all);
        // v3.1.4's `DestinationCountryCode` on an international initiation
        // is accepted as an extension: Stripe's rules route on it.
        for name in ["OBWriteInternationalConsent3", "OBWriteInternational2"] {
            all[name]["properties"]["Data"]["properties"]["Initiation"]["properties"]["DestinationCountryCode"] =
                json!({"type": "string", "pattern": "^[A-Z]{2,2}$"});
        }
        if strict {
            close_objects(&mut all);
        }
        let build = |name: &str| {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&all[name])
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Self {
            domestic_consent: build("OBWriteDomesticConsent3")?,
            domestic_payment: build("OBWriteDomestic2")?,
            international_consent: build("OBWriteInternationalConsent3")?,
            international_payment: build("OBWriteInternational2")?,
            cof_consent: build("OBFundsConfirmationConsent1")?,
            cof_confirmation: build("OBFundsConfirmation1")?,
            event_subscription: build("OBEventSubscription1")?,
            event_subscription_update: build("OBEventSubscriptionResponse1")?,
            callback_url: build("OBCallbackUrl1")?,
            event_polling: build("OBEventPolling1")?,
        })
    }
}

fn dotted(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn join(base: &str, leaf: &str) -> String {
    if base.is_empty() {
        leaf.to_string()
    } else {
        format!("{base}.{leaf}")
    }
}

/// Every schema failure as one OB error item each (COMMON-53).
pub fn validate(validator: &jsonschema::Validator, body: &Value) -> Result<(), ObError> {
    let mut err: Option<ObError> = None;
    for e in validator.iter_errors(body).take(20) {
        let at = dotted(&e.instance_path().to_string());
        let (code, path, message) = match e.kind() {
            ValidationErrorKind::Required { property } => {
                let p = join(&at, property.as_str().unwrap_or(""));
                (
                    ObErrorCode::FieldMissing,
                    p.clone(),
                    format!("{p} is required"),
                )
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let p = join(&at, unexpected.first().map(String::as_str).unwrap_or(""));
                (
                    ObErrorCode::ResourceInvalidFormat,
                    p.clone(),
                    format!("{p} is not a field of this schema"),
                )
            }
            ValidationErrorKind::Type { .. } => (
                ObErrorCode::ResourceInvalidFormat,
                at.clone(),
                format!("{at} has the wrong type"),
            ),
            _ => (ObErrorCode::FieldInvalid, at.clone(), format!("{at}: {e}")),
        };
        let path = if path.is_empty() {
            "$".to_string()
        } else {
            path
        };
        err = Some(match err {
            None => ObError::bad_request(code, message, Some(&path)),
            Some(x) => x.with(code, message, Some(&path)),
        });
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent() -> Value {
        json!({
            "Data": {"Initiation": {
                "InstructionIdentification": "ii", "EndToEndIdentification": "ee",
                "InstructedAmount": {"Amount": "10.00", "Currency": "GBP"},
                "CreditorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "11223344556677", "Name": "N"},
                "SupplementaryData": {"Anything": {"Goes": 1}},
            }},
            "Risk": {},
        })
    }

    #[test]
    fn strict_schema_maps_failures_to_ob_codes() {
        let s = Schemas::load(true).unwrap();
        validate(&s.domestic_consent, &consent()).unwrap();
        let mut v = consent();
        v["Data"]["Initiation"]
            .as_object_mut()
            .unwrap()
            .remove("EndToEndIdentification");
        v["Data"]["Initiation"]["InstructedAmount"]["Amount"] = json!("10");
        v["Risk"]["Unknown"] = json!(1);
        let e = validate(&s.domestic_consent, &v).unwrap_err();
        let got: Vec<(&str, Option<&str>)> = e
            .errors
            .iter()
            .map(|i| (i.error_code, i.path.as_deref()))
            .collect();
        assert!(got.contains(&(
            "UK.OBIE.Field.Missing",
            Some("Data.Initiation.EndToEndIdentification")
        )));
        assert!(got.contains(&(
            "UK.OBIE.Field.Invalid",
            Some("Data.Initiation.InstructedAmount.Amount")
        )));
        assert!(got.contains(&("UK.OBIE.Resource.InvalidFormat", Some("Risk.Unknown"))));
        let lax = Schemas::load(false).unwrap();
        let mut v = consent();
        v["Risk"]["Unknown"] = json!(1);
        validate(&lax.domestic_consent, &v).unwrap();
    }
}
