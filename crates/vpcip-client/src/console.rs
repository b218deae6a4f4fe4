//! A signed-in session of the web console, reading its pages as a browser
//! would (for the lab's tests and the console's benchmark): the sign-in
//! form's own CSRF cookie, then the session cookie.

use crate::ClientError;

pub struct ConsoleSession {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl ConsoleSession {
    /// Signs in to the console at `base` (`http://host:port`) with `token`.
    pub async fn sign_in(base: &str, token: &str) -> Result<ConsoleSession, ClientError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|cause| ClientError::Transport {
                url: base.to_string(),
                cause,
            })?;
        let transport = |cause| ClientError::Transport {
            url: base.to_string(),
            cause,
        };
        let login = http
            .get(format!("{base}/ui/login"))
            .send()
            .await
            .map_err(transport)?;
        let csrf = cookie(&login, "vpcip_login").unwrap_or_default();
        let signed = http
            .post(format!("{base}/ui/login"))
            .header("cookie", format!("vpcip_login={csrf}"))
            .form(&[("token", token), ("csrf", csrf.as_str())])
            .send()
            .await
            .map_err(transport)?;
        let session = cookie(&signed, "vpcip_session").ok_or_else(|| ClientError::Protocol {
            url: format!("{base}/ui/login"),
            detail: format!("no session: the console answered {}", signed.status()),
        })?;
        Ok(ConsoleSession {
            http,
            base: base.to_string(),
            session,
        })
    }

    /// A page of the console: its status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), ClientError> {
        let url = format!("{}{path}", self.base);
        let transport = |cause| ClientError::Transport {
            url: url.clone(),
            cause,
        };
        let r = self
            .http
            .get(&url)
            .header("cookie", format!("vpcip_session={}", self.session))
            .send()
            .await
            .map_err(transport)?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(transport)?))
    }
}

/// A cookie the answer sets (not one it removes).
fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}
