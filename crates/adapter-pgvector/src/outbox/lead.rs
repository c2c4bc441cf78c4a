//! Coordination of relays across processes: one leads an outbox (a PostgreSQL session
//! lock on a connection of its own), and writers wake it with NOTIFY.

use std::fmt;

use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use vectorgate_domain::outbox::{Leadership, Wakeups};
use vectorgate_domain::GatewayError;

use super::PgOutbox;
use crate::error::Seam;

impl PgOutbox {
    pub(super) async fn lead(&self) -> Result<Option<Box<dyn Leadership>>, GatewayError> {
        let op = "relay lock";
        let options = self.store.connect_options();
        let connect = PgConnection::connect_with(&options);
        let mut conn = tokio::time::timeout(self.store.config().connect_timeout, connect)
            .await
            .map_err(|_| self.store.inner.seam.connect_timed_out(op))?
            .map_err(self.err(op))?;
        // A session lock: held while this connection lives, released by PostgreSQL when the
        // process dies, so another process takes over.
        let led: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(format!("vectorgate.relay.{}", self.name))
            .fetch_one(&mut conn)
            .await
            .map_err(self.err(op))?;
        if !led {
            conn.close().await.ok();
            return Ok(None);
        }
        Ok(Some(Box::new(PgLeadership {
            conn: Some(conn),
            seam: self.store.inner.seam.clone(),
        })))
    }

    pub(super) async fn listen(&self) -> Result<Box<dyn Wakeups>, GatewayError> {
        let op = "listen for outbox wake-ups";
        let mut listener = PgListener::connect_with(&self.store.inner.pool)
            .await
            .map_err(self.err(op))?;
        listener.listen(&self.name).await.map_err(self.err(op))?;
        Ok(Box::new(PgWakeups {
            listener,
            seam: self.store.inner.seam.clone(),
        }))
    }
}

struct PgLeadership {
    conn: Option<PgConnection>,
    seam: Seam,
}

impl fmt::Debug for PgLeadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgLeadership").finish_non_exhaustive()
    }
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn check(&mut self) -> Result<(), GatewayError> {
        let op = "relay lock";
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| GatewayError::misuse("relay leadership used after release"))?;
        conn.ping().await.map_err(|e| self.seam.map(op, e))
    }

    async fn release(mut self: Box<Self>) {
        if let Some(conn) = self.conn.take() {
            // Closing the session releases its advisory lock.
            conn.close().await.ok();
        }
    }
}

struct PgWakeups {
    listener: PgListener,
    seam: Seam,
}

impl fmt::Debug for PgWakeups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgWakeups").finish_non_exhaustive()
    }
}

#[async_trait]
impl Wakeups for PgWakeups {
    async fn next(&mut self) -> Result<(), GatewayError> {
        self.listener
            .recv()
            .await
            .map(|_| ())
            .map_err(|e| self.seam.map("listen for outbox wake-ups", e))
    }
}
