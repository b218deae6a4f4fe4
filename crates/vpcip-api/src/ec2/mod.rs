//! The EC2 address API (`POST /`, form-encoded, Signature Version 4, XML
//! answers in the `2016-11-15` namespace) over the same store and rules:
//! an Elastic IP address is an EIP (`AllocationId` = its ID), an instance a
//! server (its primary NIC), a network interface a NIC. The access key is
//! a tenant token's ID, made with `vpcip token create --ec2`, and the
//! secret access key the one printed then (`sigv4.rs`).

mod actions;
mod sigv4;

use actions::{allocate, associate, describe, disassociate, release};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use vpcip_store::Scope;

use crate::App;
use crate::error::ApiError;

const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// The bandwidth of an address allocated through EC2, which has no such
/// field (the Neutron facade's too): `vpcip eip update --bandwidth`.
pub(crate) const ADDRESS_MBPS: u32 = 1000;

/// An EC2 error: its code, message and HTTP status.
pub(crate) struct Ec2Error {
    status: StatusCode,
    code: String,
    message: String,
}

fn err(status: StatusCode, code: &str, message: impl Into<String>) -> Ec2Error {
    Ec2Error {
        status,
        code: code.into(),
        message: message.into(),
    }
}

fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl IntoResponse for Ec2Error {
    fn into_response(self) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            xml_escape(&self.code),
            xml_escape(&self.message),
            request_id()
        );
        (
            self.status,
            [("content-type", "text/xml;charset=UTF-8")],
            body,
        )
            .into_response()
    }
}

/// A store refusal in EC2's words; `missing` names what a 404 lacks
/// (`InvalidAllocationID.NotFound`).
fn refusal(e: ApiError, missing: &str) -> Ec2Error {
    let code = match (e.status, e.code.as_str()) {
        (StatusCode::NOT_FOUND, _) => missing,
        (_, "eip_bound" | "target_has_eip") => "Resource.AlreadyAssociated",
        (_, "in_use") => "InvalidIPAddress.InUse",
        (_, "address_taken" | "ip_in_use") => "InvalidAddress.InUse",
        (_, "quota_exceeded") => "AddressLimitExceeded",
        (_, "address_exhausted") => "InsufficientAddressCapacity",
        (_, "eip_not_bound") => "InvalidAssociationID.NotFound",
        (StatusCode::FORBIDDEN, _) => "UnauthorizedOperation",
        (StatusCode::CONFLICT | StatusCode::BAD_REQUEST, _) => "InvalidParameterValue",
        _ => "Unavailable",
    };
    let status = if e.status.is_server_error() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    // Said in EC2's words.
    err(
        status,
        code,
        e.message
            .replace("allow_reassociation", "AllowReassociation"),
    )
}

fn store_err(missing: &'static str) -> impl Fn(vpcip_store::StoreError) -> Ec2Error {
    move |e| refusal(ApiError::from(e), missing)
}

/// `POST /`: one EC2 action.
pub(crate) async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Ec2Error> {
    let scope = authenticate(&app, &method, &uri, &headers, &body).await?;
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            format!("the body is not form-encoded: {e}"),
        )
    })?;
    let p = Params(params);
    let action = p.get("Action").unwrap_or_default().to_string();
    let inner = match action.as_str() {
        "AllocateAddress" => allocate(&app, &scope, &p).await?,
        "AssociateAddress" => associate(&app, &scope, &p).await?,
        "DisassociateAddress" => disassociate(&app, &scope, &p).await?,
        "ReleaseAddress" => release(&app, &scope, &p).await?,
        "DescribeAddresses" => describe(&app, &scope, &p).await?,
        "" => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "MissingAction",
                "no Action in the request",
            ));
        }
        other => {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                format!(
                    "The action {other} is not valid for this web service: vpcip serves AllocateAddress, AssociateAddress, DisassociateAddress, ReleaseAddress and DescribeAddresses"
                ),
            ));
        }
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NAMESPACE}\"><requestId>{}</requestId>{inner}</{action}Response>",
        request_id()
    );
    Ok(([("content-type", "text/xml;charset=UTF-8")], body).into_response())
}

async fn authenticate(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Scope, Ec2Error> {
    let auth_failure = |m: String| err(StatusCode::UNAUTHORIZED, "AuthFailure", m);
    let header = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| {
            auth_failure(
                "no Authorization header: sign the request with Signature Version 4".into(),
            )
        })?;
    let auth = sigv4::parse_authorization(header).map_err(|r| match r {
        sigv4::Refusal::Malformed(m) | sigv4::Refusal::Expired(m) => auth_failure(m),
        sigv4::Refusal::Mismatch => auth_failure("signature".into()),
    })?;
    let (secret, scope) = app
        .store
        .ec2_credential(&auth.access_key)
        .await
        .map_err(store_err("AuthFailure"))?
        .ok_or_else(|| {
            auth_failure(format!(
                "AWS was not able to validate the provided access credentials: {} is not an EC2 credential (vpcip token create --ec2)",
                auth.access_key
            ))
        })?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let now = u64::try_from(vpcip_store::db::now()).unwrap_or(0);
    let signed = sigv4::Signed {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or_default(),
        headers: &pairs,
        body,
    };
    match sigv4::verify(&auth, &signed, &secret, amz_date, now) {
        Ok(()) => Ok(scope),
        Err(sigv4::Refusal::Mismatch) => Err(err(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        )),
        Err(sigv4::Refusal::Expired(m)) => Err(err(StatusCode::BAD_REQUEST, "RequestExpired", m)),
        Err(sigv4::Refusal::Malformed(m)) => Err(auth_failure(m)),
    }
}

/// The form's parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `Key.1`, `Key.2`, … in order.
    fn list(&self, key: &str) -> Vec<&str> {
        let mut v: Vec<(u32, &str)> = self
            .0
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(key)?.strip_prefix('.')?.parse().ok()?;
                Some((n, v.as_str()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, v)| v).collect()
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}
