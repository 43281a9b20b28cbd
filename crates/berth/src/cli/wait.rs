//! POST /containers/{id}/wait, registered before the container starts (see raw.rs for why
//! this is not a bollard call).

use super::raw::{self, Response};
use super::{CliError, Client, Result};

pub struct PendingWait {
    id: String,
    response: Response,
}

/// Sends the wait request and returns once the daemon has answered its headers.
pub async fn register(client: &Client, id: &str, condition: &str) -> Result<PendingWait> {
    let response = raw::send(
        client,
        "POST",
        &format!("/containers/{id}/wait?condition={condition}"),
    )
    .await?;
    if response.status != 200 {
        return Err(response
            .json()
            .await
            .err()
            .unwrap_or_else(|| CliError::Daemon {
                status: 500,
                message: format!("waiting for {id} failed"),
            }));
    }
    Ok(PendingWait {
        id: id.to_string(),
        response,
    })
}

impl PendingWait {
    /// The container's exit code, once it has met the condition.
    pub async fn status(self) -> Result<i64> {
        let v = self.response.json().await?;
        if let Some(msg) = v
            .get("Error")
            .and_then(|e| e.get("Message"))
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
        {
            return Err(CliError::Daemon {
                status: 500,
                message: format!("waiting for {}: {msg}", self.id),
            });
        }
        Ok(v.get("StatusCode").and_then(|c| c.as_i64()).unwrap_or(0))
    }
}
