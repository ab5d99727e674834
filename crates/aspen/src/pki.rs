//! The sandbox PKI: a local CA, the server certificate it issues for
//! `localhost`/`127.0.0.1`, and OB-style TPP transport certificates for
//! sandbox kits. ECDSA P-256 keeps generation instant; TPPs with RSA
//! transport certificates from a real CA are trusted through
//! `[trust] client_ca_files`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: u64) {
    let now = SystemTime::now();
    // Backdate an hour so clocks that are slightly behind still accept it.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(days * 86_400)).into();
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG available");
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

pub fn new_ca(common_name: &str) -> Result<IssuedCert> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Aspen Sandbox");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(random_serial());
    validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn load_issuer(ca: &IssuedCert) -> Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(&ca.key_pem).context("CA key is not a valid PEM key")?;
    Issuer::from_ca_cert_pem(&ca.cert_pem, key).context("CA certificate is not valid PEM")
}

pub fn server_cert(ca: &IssuedCert, names: &[String]) -> Result<IssuedCert> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Aspen Sandbox");
    dn.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("localhost"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 825);
    let cert = params.signed_by(&key, &load_issuer(ca)?)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// An OB-style transport certificate: `O` = organisation name, `OU` =
/// directory org id, `CN` = software id (DCR-20).
pub fn transport_cert(
    ca: &IssuedCert,
    org_name: &str,
    org_id: &str,
    software_id: &str,
) -> Result<IssuedCert> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "GB");
    dn.push(DnType::OrganizationName, org_name);
    dn.push(DnType::OrganizationalUnitName, org_id);
    dn.push(DnType::CommonName, software_id);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 825);
    let cert = params.signed_by(&key, &load_issuer(ca)?)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
