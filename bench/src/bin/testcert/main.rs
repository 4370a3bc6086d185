//! `ringway-testcert`: writes a throwaway certificate authority and certificates signed by it,
//! for tests, the TLS scan and the benchmarks. Nothing here is for production.
//!
//! ```text
//! ringway-testcert DIR [--days N] [--ec|--rsa] NAME[,ALT...] ...
//! ```
//!
//! Writes `DIR/ca.pem`, `DIR/ca.key` and, for each argument, `DIR/<first name>.pem` (the leaf
//! then the CA) and `DIR/<first name>.key`. A name `client:CN` makes a client certificate
//! (`DIR/client-CN.pem`). Validity defaults to 90 days, within the 366 that scanners accept; a
//! negative `--days` writes certificates that have already expired.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringway-testcert: {e}");
            ExitCode::from(64)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut it = args.into_iter();
    const USAGE: &str = "usage: ringway-testcert DIR [--days N] [--rsa] NAME[,ALT...] ...";
    let dir = match it.next() {
        Some(d) if !d.starts_with('-') => PathBuf::from(d),
        _ => return Err(USAGE.into()),
    };
    let mut days = 90i64;
    let mut rsa = false;
    let mut names = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--days" => {
                days = it
                    .next()
                    .and_then(|d| d.parse().ok())
                    .ok_or("--days needs a number")?
            }
            "--rsa" => rsa = true,
            "--ec" => rsa = false,
            _ => names.push(a),
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let alg = if rsa {
        &rcgen::PKCS_RSA_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    };
    let now = time::OffsetDateTime::now_utc();
    // A day of slack for clocks; negative `--days` makes certificates that expired that many
    // days ago (valid for the 30 days before).
    let not_after = now + time::Duration::days(days);
    let not_before = if days > 0 {
        now - time::Duration::days(1)
    } else {
        not_after - time::Duration::days(30)
    };
    let ca_key = KeyPair::generate_for(alg).map_err(|e| e.to_string())?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = dn("Ringway Test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = not_after.max(now + time::Duration::days(1));
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| e.to_string())?;
    write(&dir.join("ca.pem"), &ca_cert.pem())?;
    write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
    for spec in names {
        let (client, list) = match spec.strip_prefix("client:") {
            Some(cn) => (true, cn.to_owned()),
            None => (false, spec),
        };
        let sans: Vec<String> = list.split(',').map(str::to_owned).collect();
        let key = KeyPair::generate_for(alg).map_err(|e| e.to_string())?;
        let mut p = if client {
            CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?
        } else {
            CertificateParams::new(sans.clone()).map_err(|e| e.to_string())?
        };
        p.distinguished_name = dn(&sans[0]);
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Strict verifiers (sslyze's, Python 3.13's default) want the issuer's key named.
        p.use_authority_key_identifier_extension = true;
        p.not_before = not_before;
        p.not_after = not_after;
        let cert = p
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(|e| e.to_string())?;
        let stem = if client {
            format!("client-{}", sans[0])
        } else {
            sans[0].replace('*', "wildcard")
        };
        write(
            &dir.join(format!("{stem}.pem")),
            &format!("{}{}", cert.pem(), ca_cert.pem()),
        )?;
        write(&dir.join(format!("{stem}.key")), &key.serialize_pem())?;
    }
    Ok(())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "Ringway tests");
    d
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
