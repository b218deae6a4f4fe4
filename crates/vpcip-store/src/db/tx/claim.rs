//! Idempotent creates: a client token claimed for the resource it makes.

use super::*;

impl Tx {
    /// Starts a create: the resource an earlier request with the same client
    /// token made, or a new ID with the token claimed for it. The token row
    /// is written first, so a concurrent duplicate waits on it and then
    /// replays instead of creating twice.
    /// The same token with another request (another body) is refused,
    /// as AWS's IdempotentParameterMismatch: 409 `idempotency_conflict`.
    pub async fn claim<R: Resource>(
        &mut self,
        tenant: &str,
        token: Option<&str>,
        request: &impl serde::Serialize,
    ) -> Result<Claim<R>, StoreError> {
        let id = new_id(R::KIND);
        let Some(token) = token else {
            return Ok(Claim::New(id));
        };
        if token.is_empty() || token.len() > 128 {
            return Err(RuleError::invalid("client_token", "must be 1 to 128 characters").into());
        }
        let digest = request_digest(request);
        let prior = self
            .sql
            .query_opt(
                "SELECT resource_id, request FROM client_tokens WHERE tenant = $1 AND token = $2",
                &[tenant.into(), token.into()],
            )
            .await?;
        if let Some(row) = prior {
            let made = row.text(0)?;
            if row.opt_text(1)?.is_some_and(|d| d != digest) {
                return Err(RuleError::IdempotencyConflict {
                    token: token.to_string(),
                    kind: R::KIND.as_str(),
                    id: made,
                }
                .into());
            }
            return Ok(Claim::Existing(self.get(&made, false).await?));
        }
        let res = self
            .write(
                "INSERT INTO client_tokens (tenant, token, resource_id, request) VALUES ($1, $2, $3, $4)",
                &[
                    tenant.into(),
                    token.into(),
                    id.as_str().into(),
                    digest.as_str().into(),
                ],
            )
            .await;
        match res {
            // A concurrent create with the same token committed first: run
            // again, and the replay returns its resource.
            Err(e) if e.is_unique_violation() => Err(StoreError::Retry),
            Err(e) => Err(e),
            Ok(_) => Ok(Claim::New(id)),
        }
    }
}

/// A request's digest, its client token left out: what makes two creates
/// with one token the same request.
fn request_digest(request: &impl serde::Serialize) -> String {
    use sha2::{Digest, Sha256};
    let mut v = serde_json::to_value(request).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.remove("client_token");
    }
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}
