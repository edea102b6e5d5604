//! A user's HTTP/2 connection (the `h2` crate, hyper's HTTP/2): one per user, shared by the
//! user's lanes (`--h2-streams N` requests in flight at once, each on its own stream).
//! The connection's I/O runs in its own task on the user's thread; a lane takes a handle,
//! opens a stream, sends the request and reads the response's data frames, releasing their
//! flow-control capacity as it goes. A connection that fails (I/O error, GOAWAY) is dropped and
//! the next request opens a new one.

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::sync::Mutex;

use super::connect::{Connector, Stream};
use super::error::FastError;
use super::target::FastTarget;

/// The user's HTTP/2 connection, if one is open: its request handle and a generation number
/// (so a lane drops only the connection it saw fail, not a newer one).
#[derive(Debug, Default)]
pub(super) struct H2Slot {
    conn: Mutex<Option<(SendRequest<Bytes>, u64)>>,
}

impl H2Slot {
    /// Makes `stream` (already speaking h2 by ALPN) the user's HTTP/2 connection.
    pub(super) async fn adopt(&self, stream: Stream) -> Result<(), FastError> {
        let mut slot = self.conn.lock().await;
        let generation = slot.as_ref().map_or(0, |(_, g)| g + 1);
        *slot = Some((handshake(stream).await?, generation));
        Ok(())
    }

    /// A handle on the open connection, or on a new one to `addr`.
    async fn handle(
        &self,
        connector: &Connector,
        addr: &str,
    ) -> Result<(SendRequest<Bytes>, u64), FastError> {
        let mut slot = self.conn.lock().await;
        if let Some((send, generation)) = slot.as_ref() {
            return Ok((send.clone(), *generation));
        }
        let (stream, _) = connector.open(addr).await?;
        let send = handshake(stream).await?;
        // Generations only need to differ from the one before.
        let generation = rand::random::<u64>();
        *slot = Some((send.clone(), generation));
        Ok((send, generation))
    }

    /// Drops the connection of `generation` if it is still the user's.
    async fn drop_conn(&self, generation: u64) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|(_, g)| *g == generation) {
            *slot = None;
        }
    }

    /// Sends `target`'s request on a stream of the user's connection and reads the whole
    /// response: the status and the body's length (bytes).
    /// `handle` is the lane's own copy of the connection's handle (taken from the slot when
    /// the lane has none), so a request on a working connection takes no lock.
    pub(super) async fn send(
        &self,
        handle: &mut Option<(SendRequest<Bytes>, u64)>,
        connector: &Connector,
        target: &FastTarget,
    ) -> Result<(u16, u64), FastError> {
        let (send, generation) = match handle {
            Some((send, generation)) => (send.clone(), *generation),
            None => {
                let (send, generation) = self.handle(connector, &target.addr).await?;
                *handle = Some((send.clone(), generation));
                (send, generation)
            }
        };
        match exchange(send, target).await {
            Ok(r) => Ok(r),
            Err(e) => {
                // A refused or reset stream leaves the connection usable; anything else
                // (I/O, GOAWAY, a connection-level protocol error) ends it.
                if !e.is_reset() || e.is_go_away() {
                    *handle = None;
                    self.drop_conn(generation).await;
                }
                tracing::debug!(error = %e, "HTTP/2 request failed");
                Err(match e.get_io() {
                    Some(io) => super::connect::io_error(io),
                    None if e.is_io() => FastError::Connection,
                    None => FastError::Http2,
                })
            }
        }
    }
}

/// The HTTP/2 handshake on `stream`; the connection's I/O task is spawned on the current
/// runtime and ends when the connection does (every handle dropped, or an error).
async fn handshake(stream: Stream) -> Result<SendRequest<Bytes>, FastError> {
    let (send, connection) = h2::client::Builder::new()
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| match e.get_io() {
            Some(io) => super::connect::io_error(io),
            None => FastError::Http2,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
        }
    });
    Ok(send)
}

/// One request on one stream.
async fn exchange(send: SendRequest<Bytes>, target: &FastTarget) -> Result<(u16, u64), h2::Error> {
    let mut send = send.ready().await?;
    let req = &target.h2;
    let end = req.body.is_empty();
    let (response, mut body_tx) = send.send_request(req.request(), end)?;
    if !end {
        body_tx.send_data(req.body.clone(), true)?;
    }
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut len = 0u64;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        len += chunk.len() as u64;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok((status, len))
}
