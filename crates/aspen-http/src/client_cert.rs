//! The client certificate a request arrived with, already verified against
//! the trusted CA bundle by the listener (native mTLS) or by the proxy-header
//! reader. Handlers read it from the request extensions.

use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A verified leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// Subject DN in RFC 4514 form (most specific RDN first), e.g.
    /// `CN=software,OU=org,O=Org Ltd,C=GB`.
    pub subject_dn: String,
    /// RFC 8705 `x5t#S256`: base64url(SHA-256(DER)) without padding.
    pub thumbprint: String,
    /// The subject, parsed with the certificate once per connection:
    /// parsing it again for each `tls_client_auth` token was an eighth of
    /// the token's instructions (issue 15).
    subject: Dn,
}

impl ClientCert {
    pub fn from_der(der: Vec<u8>) -> Option<Self> {
        let subject = {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            rdn_pairs(cert.subject())?
        };
        let subject_dn = subject
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_dn_value(v)))
            .collect::<Vec<_>>()
            .join(",");
        let thumbprint = sha256_b64url(&der);
        Some(Self {
            der,
            subject_dn,
            thumbprint,
            subject: Dn::new(subject),
        })
    }

    /// The subject, for comparing DNs by parsed RDNs rather than by string
    /// (DCR-19).
    pub fn subject(&self) -> &Dn {
        &self.subject
    }
}

/// A distinguished name in the one form two DNs are compared in: attribute
/// names normalised ([`normalise_attr`]), values unescaped and trimmed, the
/// pairs sorted. Two DNs are equal when they carry the same multiset of
/// attributes, whatever their order, spacing and escaping (DCR-19,
/// AUTH-48), so equality here is the derived one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn(Vec<(String, String)>);

impl Dn {
    /// Parses an RFC 4514 DN string; `None` when it names no attribute.
    pub fn parse(dn: &str) -> Option<Dn> {
        parse_dn(dn).map(Dn::new)
    }

    fn new(pairs: Vec<(String, String)>) -> Dn {
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (normalise_attr(&k), v.trim().to_string()))
            .collect();
        pairs.sort();
        Dn(pairs)
    }

    /// Whether the DN carries `attr` (a normalised name) with `value`.
    pub fn has(&self, attr: &str, value: &str) -> bool {
        self.0.iter().any(|(a, v)| a == attr && v == value)
    }
}

/// The peer certificate slot every request carries (`None` = no certificate).
#[derive(Debug, Clone, Default)]
pub struct PeerCert(pub Option<Arc<ClientCert>>);

pub fn sha256_b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn rdn_pairs(name: &x509_parser::x509::X509Name<'_>) -> Option<Vec<(String, String)>> {
    let registry = x509_parser::objects::oid_registry();
    let mut out = Vec::new();
    // RFC 4514 writes the most specific RDN first, the reverse of DER order.
    for rdn in name.iter().collect::<Vec<_>>().into_iter().rev() {
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let key = match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok(abbrev) => abbrev.to_string(),
                Err(_) => match oid.to_id_string().as_str() {
                    "2.5.4.97" => "organizationIdentifier".to_string(),
                    other => other.to_string(),
                },
            };
            let value = attr.as_str().ok()?.to_string();
            out.push((key, value));
        }
    }
    Some(out)
}

fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let needs = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if needs {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 4514 DN string's (attribute, value) pairs, unescaped, in order.
fn parse_dn(dn: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = dn.chars().peekable();
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let key = key.trim();
        if key.is_empty() {
            return if out.is_empty() { None } else { Some(out) };
        }
        let mut value = String::new();
        let mut escaped = false;
        while let Some(&c) = chars.peek() {
            chars.next();
            if escaped {
                value.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == ',' || c == '+' {
                break;
            } else {
                value.push(c);
            }
        }
        out.push((normalise_attr(key), value.trim().to_string()));
        if chars.peek().is_none() {
            return Some(out);
        }
    }
}

/// Attribute names compare case-insensitively, with the common OID aliases
/// and long names as their short names.
fn normalise_attr(key: &str) -> String {
    match key.to_ascii_lowercase().as_str() {
        "cn" | "commonname" | "2.5.4.3" => "CN".into(),
        "o" | "organizationname" | "2.5.4.10" => "O".into(),
        "ou" | "organizationalunitname" | "2.5.4.11" => "OU".into(),
        "c" | "countryname" | "2.5.4.6" => "C".into(),
        "l" | "localityname" | "2.5.4.7" => "L".into(),
        "st" | "stateorprovincename" | "2.5.4.8" => "ST".into(),
        "organizationidentifier" | "2.5.4.97" => "organizationIdentifier".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_parsing_ignores_order_spacing_and_escapes() {
        let a = Dn::parse("CN=abc, OU=org1,O=Acme\\, Ltd,C=GB").unwrap();
        let b = Dn::parse("C=GB,O=Acme\\, Ltd,ou=org1,commonName=abc").unwrap();
        assert_eq!(a, b);
        let c = Dn::parse("CN=abd,OU=org1,O=Acme\\, Ltd,C=GB").unwrap();
        assert_ne!(a, c);
        // A DN with one attribute more or less is another DN.
        assert_ne!(a, Dn::parse("CN=abc,OU=org1,O=Acme\\, Ltd").unwrap());
        assert_ne!(
            a,
            Dn::parse("CN=abc,OU=org1,OU=org1,O=Acme\\, Ltd,C=GB").unwrap()
        );
        assert!(a.has("O", "Acme, Ltd") && a.has("OU", "org1") && !a.has("OU", "org2"));
    }

    #[test]
    fn empty_dn_is_none() {
        assert!(Dn::parse("").is_none());
        assert!(Dn::parse("  ").is_none());
    }
}
