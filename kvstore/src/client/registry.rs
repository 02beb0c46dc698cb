//! The suite's service registry, kept in the store itself: each running service (a
//! dictionary replica, a log aggregator, the thesaurus) says where it is, and the landing
//! page every store node serves (`/suite`, `server::suite`) lists them with their health
//! and the keyspaces they use. It is service discovery with leases, as etcd and Consul
//! offer it: a registration is a key with a TTL that its service renews; a service that dies
//! without saying goodbye drops out when its lease runs out.
//!
//! In the keyspace [`KEYSPACE`] (one partition), one key per instance,
//! `service:<name>:<url>`, its value lines of `field=value`:
//!
//! ```text
//! name=log-aggregator
//! url=http://127.0.0.1:8390
//! health=/health
//! keyspaces=logs
//! about=collect and search the logs of a handful of machines
//! ```
//!
//! [`register`] writes it with a TTL of [`LEASE`] and renews it every [`RENEW_EVERY`] from a
//! task of its own; [`Registration::withdraw`] deletes it (at a graceful stop).

use std::sync::Arc;
use std::time::Duration;

use crate::client::cluster::ClusterClient;
use crate::client::PutOptions;
use crate::partition::map::KeyspaceSpec;
use crate::wire::Condition;

/// The keyspace of the registry.
pub const KEYSPACE: &str = "suite";
/// How long a registration lives unless renewed.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a service renews it (a third of the lease: two renewals may fail in a row).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// The longest field kept (names, URLs, descriptions are short).
pub const FIELD_BYTES_MAX: usize = 512;

/// A running service, as the landing page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The case study it belongs to (`dictionary-search`, `log-aggregator`, …).
    pub name: String,
    /// Where its page is, `http://host:port`.
    pub url: String,
    /// Its health path, answered 200 when it serves.
    pub health: String,
    /// The keyspaces of the store it uses.
    pub keyspaces: Vec<String>,
    /// One line on what it does.
    pub about: String,
}

impl Service {
    /// Its key in [`KEYSPACE`].
    pub fn key(&self) -> String {
        format!("service:{}:{}", self.name, self.url)
    }

    /// Its value: `field=value` lines (newlines in a field become spaces; fields are cut at
    /// [`FIELD_BYTES_MAX`]).
    pub fn encode(&self) -> Vec<u8> {
        let clean = |s: &str| {
            let mut s: String = s.replace(['\n', '\r'], " ");
            if s.len() > FIELD_BYTES_MAX {
                let mut cut = FIELD_BYTES_MAX;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            s
        };
        format!(
            "name={}\nurl={}\nhealth={}\nkeyspaces={}\nabout={}\n",
            clean(&self.name),
            clean(&self.url),
            clean(&self.health),
            clean(&self.keyspaces.join(",")),
            clean(&self.about)
        )
        .into_bytes()
    }

    /// Reads a value [`Service::encode`] wrote; `None` if it lacks a name or a URL.
    pub fn decode(value: &[u8]) -> Option<Service> {
        let text = String::from_utf8_lossy(value);
        let mut s = Service {
            name: String::new(),
            url: String::new(),
            health: "/health".into(),
            keyspaces: Vec::new(),
            about: String::new(),
        };
        for line in text.lines() {
            let Some((field, v)) = line.split_once('=') else {
                continue;
            };
            match field {
                "name" => s.name = v.to_string(),
                "url" => s.url = v.to_string(),
                "health" => s.health = v.to_string(),
                "keyspaces" => {
                    s.keyspaces = v
                        .split(',')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                "about" => s.about = v.to_string(),
                _ => {}
            }
        }
        (!s.name.is_empty() && !s.url.is_empty()).then_some(s)
    }
}

/// A service's registration, renewed until withdrawn or dropped.
pub struct Registration {
    client: Arc<ClusterClient>,
    key: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Registration {
    /// Stops renewing and deletes the registration (a graceful stop): the landing page
    /// drops the service at once rather than when its lease runs out.
    pub async fn withdraw(self) {
        self.renewer.abort();
        if let Err(error) = self.client.delete(KEYSPACE, self.key.as_bytes()).await {
            tracing::debug!(%error, "could not withdraw the registration; it expires");
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Registers `service` in the store and renews it every [`RENEW_EVERY`] from a task of its
/// own (errors are logged and the next renewal tries again: a registry the store cannot take
/// must not stop the service). Creates the registry's keyspace if need be.
pub fn register(client: Arc<ClusterClient>, service: Service) -> Registration {
    let key = service.key();
    let value = service.encode();
    let renewer = {
        let (client, key) = (client.clone(), key.clone());
        tokio::spawn(async move {
            let mut spec = KeyspaceSpec::new(KEYSPACE);
            spec.partitions = 1;
            let mut ensured = false;
            loop {
                if !ensured {
                    match client.ensure_keyspace(spec.clone()).await {
                        Ok(_) => ensured = true,
                        Err(error) => tracing::debug!(%error, "the registry's keyspace"),
                    }
                }
                let options = PutOptions {
                    ttl_ms: Some(LEASE.as_millis() as u64),
                    condition: Condition::None,
                };
                if ensured {
                    match client
                        .put_with(KEYSPACE, key.as_bytes(), &value, options)
                        .await
                    {
                        Ok(_) => tracing::debug!(%key, "registered"),
                        Err(error) => tracing::warn!(%error, "could not renew the registration"),
                    }
                }
                tokio::time::sleep(RENEW_EVERY).await;
            }
        })
    };
    Registration {
        client,
        key,
        renewer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_survives_its_encoding_and_a_bad_field_is_cleaned() {
        let s = Service {
            name: "log-aggregator".into(),
            url: "http://127.0.0.1:8390".into(),
            health: "/health".into(),
            keyspaces: vec!["logs".into(), "suite".into()],
            about: "collect\nand search".into(),
        };
        let back = Service::decode(&s.encode()).unwrap();
        assert_eq!(back.keyspaces, s.keyspaces);
        assert_eq!(back.about, "collect and search");
        assert_eq!(back.url, s.url);
        assert!(Service::decode(b"url=http://x\n").is_none(), "no name");
        let long = Service {
            about: "é".repeat(FIELD_BYTES_MAX),
            ..s
        };
        let back = Service::decode(&long.encode()).unwrap();
        assert!(back.about.len() <= FIELD_BYTES_MAX);
    }
}
