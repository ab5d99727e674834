//! The API reference: an OpenAPI 3.0 file read into what a reference page
//! shows — every operation with its parameters, request body and
//! responses, and every schema flattened into a data dictionary (dotted
//! paths, occurrence, type, constraints), the way the OB specifications
//! print theirs.

use serde_json::Value;

use crate::PortalError;

/// One OpenAPI file the portal serves and renders.
pub struct SpecFile {
    pub slug: &'static str,
    pub file: &'static str,
    pub yaml: &'static str,
    /// Who calls it: a TPP, the bank (TPP endpoints), or aspen itself.
    pub audience: &'static str,
}

pub const SPECS: &[SpecFile] = &[
    SpecFile {
        slug: "account-info",
        file: "account-info-openapi.yaml",
        yaml: include_str!("../openapi/account-info-openapi.yaml"),
        audience: "TPPs (AISP role)",
    },
    SpecFile {
        slug: "payment-initiation",
        file: "payment-initiation-openapi.yaml",
        yaml: include_str!("../openapi/payment-initiation-openapi.yaml"),
        audience: "TPPs (PISP role)",
    },
    SpecFile {
        slug: "confirmation-funds",
        file: "confirmation-funds-openapi.yaml",
        yaml: include_str!("../openapi/confirmation-funds-openapi.yaml"),
        audience: "TPPs (CBPII role)",
    },
    SpecFile {
        slug: "event-subscriptions",
        file: "event-subscriptions-openapi.yaml",
        yaml: include_str!("../openapi/event-subscriptions-openapi.yaml"),
        audience: "TPPs",
    },
    SpecFile {
        slug: "callback-urls",
        file: "callback-urls-openapi.yaml",
        yaml: include_str!("../openapi/callback-urls-openapi.yaml"),
        audience: "TPPs",
    },
    SpecFile {
        slug: "aggregated-polling",
        file: "aggregated-polling-openapi.yaml",
        yaml: include_str!("../openapi/aggregated-polling-openapi.yaml"),
        audience: "TPPs",
    },
    SpecFile {
        slug: "event-notifications",
        file: "event-notifications-openapi.yaml",
        yaml: include_str!("../openapi/event-notifications-openapi.yaml"),
        audience: "the bank calls the TPP (real-time event notification)",
    },
    SpecFile {
        slug: "client-registration",
        file: "client-registration-openapi.yaml",
        yaml: include_str!("../openapi/client-registration-openapi.yaml"),
        audience: "TPPs (Dynamic Client Registration v3.2)",
    },
    SpecFile {
        slug: "core-connector",
        file: "core-connector-openapi.yaml",
        yaml: include_str!("../openapi/core-connector-openapi.yaml"),
        audience: "banks running aspen: aspen calls their core banking through it",
    },
];

pub struct Param {
    pub name: String,
    pub location: String,
    pub required: bool,
    pub ty: String,
    pub description: String,
}

pub struct Resp {
    pub status: String,
    pub description: String,
    pub schema: Option<Body>,
}

/// A request or response body: a named schema (linked to its table) or
/// a bare type.
pub struct Body {
    pub name: String,
    pub named: bool,
}

pub struct Operation {
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    pub params: Vec<Param>,
    pub request: Option<Body>,
    pub responses: Vec<Resp>,
    pub security: String,
}

pub struct Row {
    pub path: String,
    pub depth: usize,
    pub occurs: String,
    pub ty: String,
    pub description: String,
    pub constraints: String,
}

pub struct SchemaDoc {
    pub name: String,
    pub rows: Vec<Row>,
}

pub struct Spec {
    pub slug: &'static str,
    pub file: &'static str,
    pub audience: &'static str,
    pub title: String,
    pub version: String,
    pub description: String,
    pub base: String,
    pub operations: Vec<Operation>,
    pub schemas: Vec<SchemaDoc>,
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];
/// Nesting below which a schema is named rather than expanded again (the
/// OB schemas are at most nine deep; a cycle would be endless).
const MAX_DEPTH: usize = 12;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().trim().to_string()
}

/// The name of a `#/components/<kind>/<name>` reference.
fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

pub fn anchor(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

impl Spec {
    pub fn parse(f: &SpecFile) -> Result<Spec, PortalError> {
        let doc: Value = serde_yaml::from_str(f.yaml)
            .map_err(|e| PortalError::OpenApi(f.file, e.to_string()))?;
        let resolve = |v: &Value| -> Value {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let mut cur = &doc;
                    for part in r.trim_start_matches("#/").split('/') {
                        cur = &cur[part];
                    }
                    cur.clone()
                }
                None => v.clone(),
            }
        };
        let base = doc["servers"][0]["url"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let schema_name = |content: &Value| -> Option<Body> {
            let media = content.as_object()?;
            let schema = media
                .get("application/json; charset=utf-8")
                .or_else(|| media.get("application/json"))
                .or_else(|| media.values().next())?
                .get("schema")?;
            Some(match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => Body {
                    name: ref_name(r).to_string(),
                    named: true,
                },
                None => Body {
                    name: schema["type"].as_str().unwrap_or("object").to_string(),
                    named: false,
                },
            })
        };
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let shared: Vec<Value> = item["parameters"].as_array().cloned().unwrap_or_default();
            for m in METHODS {
                let Some(op) = item.get(*m) else { continue };
                let mut params = Vec::new();
                for p in shared
                    .iter()
                    .chain(op["parameters"].as_array().into_iter().flatten())
                {
                    let p = resolve(p);
                    let schema = resolve(&p["schema"]);
                    params.push(Param {
                        name: s(&p["name"]),
                        location: s(&p["in"]),
                        required: p["required"].as_bool().unwrap_or(false),
                        ty: type_of(&p["schema"], &schema),
                        description: s(&p["description"]),
                    });
                }
                let body = resolve(&op["requestBody"]);
                let request = schema_name(&body["content"]);
                let mut responses = Vec::new();
                for (status, r) in op["responses"].as_object().into_iter().flatten() {
                    let r = resolve(r);
                    responses.push(Resp {
                        status: status.clone(),
                        description: s(&r["description"]),
                        schema: schema_name(&r["content"]),
                    });
                }
                let security = op["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                    .flat_map(|o| {
                        o.iter().map(|(k, v)| {
                            let scopes: Vec<String> =
                                v.as_array().into_iter().flatten().map(s).collect();
                            if scopes.is_empty() {
                                k.clone()
                            } else {
                                format!("{k} ({})", scopes.join(", "))
                            }
                        })
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let summary = s(&op["summary"]);
                operations.push(Operation {
                    anchor: anchor(&format!("{m}{path}")),
                    method: m.to_uppercase(),
                    path: format!("{base}{path}"),
                    summary,
                    params,
                    request,
                    responses,
                    security,
                });
            }
        }
        let mut schemas = Vec::new();
        for (name, schema) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            let mut rows = Vec::new();
            let mut seen = vec![name.clone()];
            flatten(&resolve, schema, "", 0, &mut seen, &mut rows);
            schemas.push(SchemaDoc {
                name: name.clone(),
                rows,
            });
        }
        schemas.sort_by(|a, b| a.name.cmp(&b.name));
        let description = s(&doc["info"]["description"]);
        Ok(Spec {
            slug: f.slug,
            file: f.file,
            audience: f.audience,
            title: s(&doc["info"]["title"]),
            version: s(&doc["info"]["version"]),
            description,
            base,
            operations,
            schemas,
        })
    }
}

/// `string (date-time)`, `array of OBCashAccount5`, the `$ref`'s name.
fn type_of(raw: &Value, resolved: &Value) -> String {
    if let Some(r) = raw.get("$ref").and_then(Value::as_str) {
        let t = resolved["type"].as_str().unwrap_or("object");
        if t == "object" || t == "array" {
            return ref_name(r).to_string();
        }
        return format!("{t} ({})", ref_name(r));
    }
    let t = resolved["type"].as_str().unwrap_or("object");
    match (t, resolved["format"].as_str()) {
        ("array", _) => {
            let items = &resolved["items"];
            match items.get("$ref").and_then(Value::as_str) {
                Some(r) => format!("array of {}", ref_name(r)),
                None => format!("array of {}", items["type"].as_str().unwrap_or("object")),
            }
        }
        (t, Some(f)) => format!("{t} ({f})"),
        (t, None) => t.to_string(),
    }
}

fn constraints(v: &Value) -> String {
    let mut out = Vec::new();
    for (k, label) in [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("pattern", "pattern"),
    ] {
        if let Some(x) = v.get(k) {
            let x = x
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string());
            out.push(format!("{label} {x}"));
        }
    }
    if let Some(e) = v["enum"].as_array() {
        let vals: Vec<String> = e
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect();
        out.push(format!("one of: {}", vals.join(", ")));
    }
    if let Some(x) = v.get("example") {
        let x = x
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| x.to_string());
        out.push(format!("example {x}"));
    }
    out.join("; ")
}

/// One row per field, depth first, `$ref`s expanded in place (each at
/// most once per branch, so a cycle ends).
fn flatten(
    resolve: &dyn Fn(&Value) -> Value,
    schema: &Value,
    path: &str,
    depth: usize,
    seen: &mut Vec<String>,
    rows: &mut Vec<Row>,
) {
    let resolved = resolve(schema);
    let mut props: Vec<(String, Value, bool)> = Vec::new();
    let mut collect = |s: &Value| {
        let s = resolve(s);
        let required: Vec<String> = s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        for (k, v) in s["properties"].as_object().into_iter().flatten() {
            props.push((k.clone(), v.clone(), required.contains(k)));
        }
    };
    collect(&resolved);
    for part in resolved["allOf"].as_array().into_iter().flatten() {
        collect(part);
    }
    for (name, raw, required) in props {
        let child = resolve(&raw);
        let is_array = child["type"] == "array";
        let max = child["maxItems"]
            .as_u64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "n".into());
        let occurs = match (required, is_array) {
            (true, false) => "1..1".to_string(),
            (false, false) => "0..1".to_string(),
            (true, true) => format!("1..{max}"),
            (false, true) => format!("0..{max}"),
        };
        let full = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let constraint_src = if is_array { &child["items"] } else { &child };
        let constraint_src = resolve(constraint_src);
        rows.push(Row {
            path: full.clone(),
            depth,
            occurs,
            ty: type_of(&raw, &child),
            description: s(&child["description"]).chars().take(600).collect(),
            constraints: {
                let mut c = constraints(&constraint_src);
                if is_array {
                    let own = constraints(&child);
                    if !own.is_empty() {
                        c = if c.is_empty() {
                            own
                        } else {
                            format!("{own}; {c}")
                        };
                    }
                }
                c
            },
        });
        let target = if is_array {
            child["items"].clone()
        } else {
            raw.clone()
        };
        let target_name = target
            .get("$ref")
            .and_then(Value::as_str)
            .map(|r| ref_name(r).to_string());
        if let Some(n) = &target_name
            && seen.contains(n)
        {
            continue;
        }
        let expanded = resolve(&target);
        let has_fields = expanded.get("properties").is_some() || expanded.get("allOf").is_some();
        if has_fields && depth + 1 < MAX_DEPTH {
            if let Some(n) = &target_name {
                seen.push(n.clone());
            }
            flatten(resolve, &target, &full, depth + 1, seen, rows);
            if target_name.is_some() {
                seen.pop();
            }
        }
    }
}
