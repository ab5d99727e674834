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

/// A client certificate with a plain subject (`O=Aspen`, `CN`): aspen's
/// identity towards the core connector.
pub fn client_cert(ca: &IssuedCert, common_name: &str) -> Result<IssuedCert> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Aspen");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
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

/// A leaf with the subject the OB Directory uses (`C=GB`, `O`
/// organisation, `OU` org id, `CN`), valid 825 days.
fn ob_leaf(org_name: &str, org_id: &str, common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "GB");
    dn.push(DnType::OrganizationName, org_name);
    dn.push(DnType::OrganizationalUnitName, org_id);
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 825);
    params
}

/// An OB-style transport certificate: `O` = organisation name, `OU` =
/// directory org id, `CN` = software id (DCR-20).
pub fn transport_cert(
    ca: &IssuedCert,
    org_name: &str,
    org_id: &str,
    software_id: &str,
    rsa: bool,
) -> Result<IssuedCert> {
    // RSA-2048 as the OB Directory issues (some TPP tools accept no other);
    // P-256 on request.
    let key = if rsa {
        let rsa = aspen_jose::SigningKey::generate(None).context("RSA key generation failed")?;
        KeyPair::from_pem_and_sign_algo(&rsa.to_pkcs8_pem()?, &rcgen::PKCS_RSA_SHA256)?
    } else {
        KeyPair::generate()?
    };
    let mut params = ob_leaf(org_name, org_id, software_id);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &load_issuer(ca)?)?;
    Ok(IssuedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A signing certificate for an existing RSA key (the bank's PS256 keys,
/// a kit's signing key), as the OB Directory issues them: `O` the
/// organisation, `OU` its org id, `CN` the key's owner (software id or
/// kid). Returns the chain PEM (leaf, then the CA).
pub fn signing_cert(
    ca: &IssuedCert,
    key: &aspen_jose::SigningKey,
    org_name: &str,
    org_id: &str,
    common_name: &str,
) -> Result<String> {
    let pair = KeyPair::from_pem_and_sign_algo(&key.to_pkcs8_pem()?, &rcgen::PKCS_RSA_SHA256)
        .context("the signing key cannot be certified")?;
    let mut params = ob_leaf(org_name, org_id, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ];
    let cert = params.signed_by(&pair, &load_issuer(ca)?)?;
    Ok(format!("{}{}", cert.pem(), ca.cert_pem))
}

/// Whether the leaf of a PEM chain certifies this RSA key (same modulus).
pub fn certifies(chain_pem: &str, key: &aspen_jose::SigningKey) -> Result<Vec<Vec<u8>>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .context("not a PEM certificate chain")?;
    let leaf = chain.first().context("the chain holds no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| anyhow::anyhow!("the leaf certificate does not parse: {e}"))?;
    let n = match cert.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => aspen_jose::b64(
            rsa.modulus
                .iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        ),
        _ => anyhow::bail!("the leaf certificate does not hold an RSA key"),
    };
    if key.jwk().n.as_deref() != Some(n.as_str()) {
        anyhow::bail!("the leaf certificate is for another key than {}", key.kid());
    }
    Ok(chain)
}
