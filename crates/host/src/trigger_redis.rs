//! The Redis trigger (Spin's `trigger-redis`): subscribes to every `[[trigger.redis]]` channel and
//! calls the component's `fermyon:spin/inbound-redis.handle-message` once per message.
//!
//! Addresses (`address`, else `[application.trigger.redis] address`) and channels are templates
//! over application variables. There is one subscriber connection per address; messages from it
//! are handled in order, and the components sharing a channel run concurrently, as in Spin. A
//! handler error or trap is logged and the subscription goes on. Unlike Spin (which exits when
//! the connection drops), a lost connection is re-established with exponential backoff (100 ms up
//! to 5 s) and the channels resubscribed. The first connection is made before the host reports
//! it is serving, so an unreachable Redis is a start-up error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;

use crate::manifest::App;
use crate::runtime::AppRuntime;
use crate::variables::AppVariables;

/// channel => component ids.
type ChannelComponents = BTreeMap<String, Vec<String>>;

/// Resolved subscriptions: address => channels => components.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Subscriptions {
    /// By address.
    pub by_address: BTreeMap<String, ChannelComponents>,
}

impl Subscriptions {
    /// Resolves addresses and channels from the manifest.
    pub fn resolve(app: &App, vars: &AppVariables) -> Result<Subscriptions> {
        let mut by_address: BTreeMap<String, ChannelComponents> = BTreeMap::new();
        for t in &app.redis_triggers {
            let address_expr = t
                .address
                .as_ref()
                .or(app.redis_global.address.as_ref())
                .with_context(|| {
                    format!(
                        "the Redis trigger for component {:?} has no address: set `address` on the trigger or [application.trigger.redis] address",
                        t.component
                    )
                })?;
            let address = vars.resolve_template(address_expr).with_context(|| {
                format!(
                    "failed to resolve redis trigger address {address_expr:?} for component {}",
                    t.component
                )
            })?;
            let channel = vars.resolve_template(&t.channel).with_context(|| {
                format!(
                    "failed to resolve redis trigger channel {:?} for component {}",
                    t.channel, t.component
                )
            })?;
            if channel.is_empty() {
                bail!(
                    "the Redis trigger for component {:?} has an empty channel",
                    t.component
                );
            }
            redis::Client::open(address.as_str())
                .with_context(|| format!("invalid Redis trigger address {address:?}"))?;
            by_address
                .entry(address)
                .or_default()
                .entry(channel)
                .or_default()
                .push(t.component.clone());
        }
        Ok(Subscriptions { by_address })
    }
}

async fn subscribe(
    client: &redis::Client,
    channels: &ChannelComponents,
) -> Result<redis::aio::PubSub> {
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .context("timed out connecting")??;
    for channel in channels.keys() {
        pubsub
            .subscribe(channel)
            .await
            .with_context(|| format!("cannot subscribe to channel {channel:?}"))?;
    }
    Ok(pubsub)
}

/// Connects and subscribes everything now (errors are start-up errors), then returns a future
/// that serves messages forever, reconnecting as needed.
pub async fn start(
    app: Arc<AppRuntime>,
    subs: Subscriptions,
) -> Result<impl std::future::Future<Output = ()>> {
    let mut tasks = Vec::new();
    for (address, channels) in subs.by_address {
        let client = redis::Client::open(address.as_str())
            .with_context(|| format!("invalid Redis trigger address {address:?}"))?;
        let pubsub = subscribe(&client, &channels)
            .await
            .with_context(|| format!("Redis trigger failed to connect to {address}"))?;
        tasks.push(run_listener(app.clone(), client, address, channels, pubsub));
    }
    Ok(async move {
        futures::future::join_all(tasks).await;
    })
}

async fn run_listener(
    app: Arc<AppRuntime>,
    client: redis::Client,
    address: String,
    channels: ChannelComponents,
    first: redis::aio::PubSub,
) {
    let channels = Arc::new(channels);
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(100);
    loop {
        let current = match pubsub.take() {
            Some(p) => p,
            None => match subscribe(&client, &channels).await {
                Ok(p) => {
                    eprintln!("spin-host: redis trigger: reconnected to {address}");
                    backoff = Duration::from_millis(100);
                    p
                }
                Err(e) => {
                    eprintln!("spin-host: redis trigger: cannot reconnect to {address}: {e:#}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        let mut stream = current.into_on_message();
        while let Some(msg) = stream.next().await {
            let channel = msg.get_channel_name().to_string();
            let payload = msg.get_payload_bytes().to_vec();
            let Some(components) = channels.get(&channel) else {
                continue;
            };
            let runs = components
                .iter()
                .map(|id| dispatch(&app, id, &channel, payload.clone()));
            futures::future::join_all(runs).await;
        }
        eprintln!("spin-host: redis trigger: lost connection to {address}; reconnecting");
    }
}

async fn dispatch(app: &Arc<AppRuntime>, component_id: &str, channel: &str, payload: Vec<u8>) {
    let result: Result<()> = async {
        let component = app
            .component(component_id)
            .with_context(|| format!("unknown component {component_id:?}"))?;
        let pre = component.redis.clone().with_context(|| {
            format!("component {component_id:?} does not export fermyon:spin/inbound-redis")
        })?;
        let mut store = app.new_store(component, crate::state::TriggerKind::Redis, None);
        let deadline = store.data().deadline;
        let result = crate::limits::until_deadline(deadline, async {
            let guest = pre.instantiate_async(&mut store).await?;
            let r = guest
                .fermyon_spin_inbound_redis()
                .call_handle_message(&mut store, &payload)
                .await?;
            if let Err(e) = r {
                bail!("handler returned {e:?}");
            }
            Ok(())
        })
        .await;
        crate::limits::explain(result, store.data().limits.refused())
    }
    .await;
    if let Err(e) = result {
        eprintln!("spin-host: redis trigger: component {component_id:?} failed on a message from {channel:?}: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn resolves_templates_and_groups_by_address() {
        let app = App::parse(
            r#"
spin_manifest_version = 2
[application]
name = "x"
[application.trigger.redis]
address = "redis://{{ host }}"
[variables]
host = { default = "127.0.0.1:7001" }
chan = { default = "events" }
[[trigger.redis]]
channel = "{{ chan }}"
component = "a"
[[trigger.redis]]
channel = "other"
component = "b"
address = "redis://127.0.0.1:7002"
[component.a]
source = "a.wasm"
[component.b]
source = "b.wasm"
"#,
            PathBuf::from("."),
        )
        .expect("parse");
        let vars = AppVariables::resolve(&app, &|_| None).expect("vars");
        let subs = Subscriptions::resolve(&app, &vars).expect("subs");
        assert_eq!(
            subs.by_address
                .get("redis://127.0.0.1:7001")
                .and_then(|c| c.get("events")),
            Some(&vec!["a".to_string()])
        );
        assert_eq!(
            subs.by_address
                .get("redis://127.0.0.1:7002")
                .and_then(|c| c.get("other")),
            Some(&vec!["b".to_string()])
        );
    }
}
