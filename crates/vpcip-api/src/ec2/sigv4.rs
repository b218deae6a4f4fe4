//! AWS Signature Version 4, checked: the request is canonicalised as the
//! client did, signed with the credential's secret, and the signatures
//! compared in constant time. (The algorithm: AWS's "Create a signed AWS
//! API request" — canonical request, string to sign, the key derived
//! from the date, region and service.)

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// What the `Authorization` header says.
#[derive(Debug, PartialEq)]
pub(crate) struct Authorization {
    pub access_key: String,
    /// `YYYYMMDD/region/service/aws4_request`.
    pub scope: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why a request's signature is refused, as EC2 names it.
#[derive(Debug, PartialEq)]
pub(crate) enum Refusal {
    /// No or malformed `Authorization` (`AuthFailure`).
    Malformed(String),
    /// The signature does not match (`SignatureDoesNotMatch`).
    Mismatch,
    /// `X-Amz-Date` too far from now (`RequestExpired`).
    Expired(String),
}

pub(crate) fn parse_authorization(header: &str) -> Result<Authorization, Refusal> {
    let bad = |why: &str| Refusal::Malformed(why.to_string());
    let rest = header.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        bad("the Authorization header must be AWS4-HMAC-SHA256 (Signature Version 4)")
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| bad("no Credential in the Authorization header"))?;
    let mut c = credential.splitn(5, '/');
    let (Some(access_key), Some(date), Some(region), Some(service), Some(term)) =
        (c.next(), c.next(), c.next(), c.next(), c.next())
    else {
        return Err(bad(
            "the Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if term != "aws4_request" || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "the Credential must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request",
        ));
    }
    let signed_headers: Vec<String> = signed
        .ok_or_else(|| bad("no SignedHeaders in the Authorization header"))?
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(bad("the Host header must be signed"));
    }
    let signature = signature
        .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| bad("no Signature of 64 hex digits in the Authorization header"))?;
    Ok(Authorization {
        access_key: access_key.to_string(),
        scope: format!("{date}/{region}/{service}/aws4_request"),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The request as signed: method, path, query, the headers (name, value)
/// as received, the body.
pub(crate) struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// RFC 3986 encoding as SigV4 wants it (unreserved characters kept): a
/// path segment's.
use vpcip_model::paths::segment as uri_encode;

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
            .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Checks `auth`'s signature of `req` with `secret`; `amz_date` is the
/// request's `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`), `now` Unix seconds.
pub(crate) fn verify(
    auth: &Authorization,
    req: &Signed<'_>,
    secret: &str,
    amz_date: &str,
    now: u64,
) -> Result<(), Refusal> {
    let when = parse_amz_date(amz_date).ok_or_else(|| {
        Refusal::Malformed(format!("X-Amz-Date {amz_date:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if when.abs_diff(now) > 15 * 60 {
        return Err(Refusal::Expired(format!(
            "the request was signed at {amz_date}, more than 15 minutes from the server's time"
        )));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(Refusal::Malformed(
            "the Credential's date is not X-Amz-Date's".into(),
        ));
    }
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(Refusal::Malformed(format!(
                "signed header {name} is missing"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        if req.path.is_empty() { "/" } else { req.path },
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        sha256_hex(req.body),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{}\n{}",
        auth.scope,
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    for part in [auth.region.as_str(), auth.service.as_str(), "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let same = expected.len() == auth.signature.len()
        && expected
            .bytes()
            .zip(auth.signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same { Ok(()) } else { Err(Refusal::Mismatch) }
}

/// `YYYYMMDDTHHMMSSZ` as Unix seconds.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm), from 1970.
    let (y, m) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example (the IAM ListUsers GET in the SigV4
    /// documentation's test suite, "get-vanilla-query-order-key-case").
    #[test]
    fn the_documented_example_verifies_and_a_changed_byte_does_not() {
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
        let auth = parse_authorization(header).unwrap();
        let headers = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), "20150830T123600Z".to_string()),
        ];
        let req = Signed {
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        let now = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(verify(&auth, &req, secret, "20150830T123600Z", now), Ok(()));
        let tampered = Signed {
            query: "Param2=value2&Param1=value9",
            ..req
        };
        assert_eq!(
            verify(&auth, &tampered, secret, "20150830T123600Z", now),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            verify(&auth, &req, "another secret", "20150830T123600Z", now),
            Err(Refusal::Mismatch)
        );
        assert!(matches!(
            verify(&auth, &req, secret, "20150830T123600Z", now + 3600),
            Err(Refusal::Expired(_))
        ));
    }

    #[test]
    fn malformed_authorizations_are_named() {
        for h in [
            "Bearer x",
            "AWS4-HMAC-SHA256 Credential=AK/2015/us/ec2/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us/ec2/aws4_request, SignedHeaders=x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ] {
            assert!(
                matches!(parse_authorization(h), Err(Refusal::Malformed(_))),
                "{h}"
            );
        }
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261201T000000Z"), Some(1_796_083_200));
        assert_eq!(parse_amz_date("2026-12-01"), None);
    }
}
