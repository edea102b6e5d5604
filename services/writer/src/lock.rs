//! The leader lock: the exclusive queue `<exchange>.writer.lock`
//! ([`crate::settings::CheckpointSettings::lock_name`]). The connection that declares it holds
//! it; another connection's declare fails with `RESOURCE_LOCKED`; the broker deletes it when the
//! holding connection closes (a crash included). Only the holder consumes, restores and
//! checkpoints, so each run's state lives in one process.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;

/// Whether `e` is the broker's `RESOURCE_LOCKED` (another connection holds an exclusive queue).
fn is_locked(e: &lapin::Error) -> bool {
    matches!(e, lapin::Error::ProtocolError(p) if p.get_id() == 405)
}

/// Takes the leader lock on `conn`, trying every `retry` while another writer holds it;
/// `standing_by` is called once when it is held by another. Returns the channel that declared
/// it (keep it open) or `None` on shutdown.
///
/// # Errors
///
/// A broker error other than `RESOURCE_LOCKED` (the connection is gone, a permission).
pub(crate) async fn take_lock(
    conn: &Connection,
    name: &str,
    retry: Duration,
    shutdown: &CancellationToken,
    mut standing_by: impl FnMut(),
) -> anyhow::Result<Option<Channel>> {
    let mut told = false;
    loop {
        let ch = conn.create_channel().await?;
        let declared = ch
            .queue_declare(
                name,
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => return Ok(Some(ch)),
            Err(e) if is_locked(&e) => {
                if !told {
                    told = true;
                    standing_by();
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("declaring {name}"))),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(retry) => {}
        }
    }
}
