//! Events (`docker events`, and the API's waits): a broadcast of what happened to which
//! object. Subscribers that fall behind lose old events, never block the engine.

use std::collections::HashMap;

use tokio::sync::broadcast;

#[derive(Debug, Clone)]
pub struct Event {
    /// `container`, `image`, ...
    pub typ: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: HashMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
}

impl Event {
    pub fn container(id: &str, action: &str, attributes: HashMap<String, String>) -> Event {
        Event {
            typ: "container",
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time_nano: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        }
    }
}

pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events { tx }
    }

    pub fn send(&self, e: Event) {
        let _ = self.tx.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
