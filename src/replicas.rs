//! Which idgate processes serve the database now. With several replicas on one PostgreSQL, a
//! caller's rate limit is one allowance for the whole service (the contract keeps no state that
//! matters in one process), so each replica beats in the `replicas` table every
//! [`BEAT`] and charges each request as many cells of the caller's allowance as there are live
//! replicas: however a balancer spreads a caller's requests, together they get no more than the
//! allowance. (A caller held to one replica gets that share of it, which the burst keeps far above
//! any import.) On SQLite one process serves, and nothing beats.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use diesel::prelude::*;

use crate::auth::ratelimit::RateLimiter;
use crate::db::schema::replicas;
use crate::db::{Store, StoreError, Tx};

/// How often a replica says it is alive.
pub const BEAT: Duration = Duration::from_secs(2);
/// A replica not seen for this long is gone.
const GONE_AFTER: TimeDelta = TimeDelta::seconds(10);

/// Records that the replica `id` is alive, forgets replicas gone, and returns how many are alive.
/// No memo reads the table, so the write is untold (see [`Store::write_untold`]): beats do not
/// drop what this replica and the others keep.
pub async fn beat(store: &Store, id: &str) -> Result<u32, StoreError> {
    let id = id.to_owned();
    store
        .write_untold(move |tx| record_beat(tx, &id, crate::time::now()).map_err(StoreError::from))
        .await
}

fn record_beat(tx: &mut Tx<'_>, id: &str, now: chrono::NaiveDateTime) -> QueryResult<u32> {
    let updated = diesel::update(replicas::table.find(id))
        .set(replicas::seen_at.eq(now))
        .execute(tx.conn())?;
    if updated == 0 {
        diesel::insert_into(replicas::table)
            .values((replicas::id.eq(id), replicas::seen_at.eq(now)))
            .execute(tx.conn())?;
    }
    diesel::delete(replicas::table.filter(replicas::seen_at.lt(now - GONE_AFTER)))
        .execute(tx.conn())?;
    let alive: i64 = replicas::table.count().get_result(tx.conn())?;
    Ok(u32::try_from(alive).unwrap_or(u32::MAX).max(1))
}

/// Beats every [`BEAT`] until the server stops, telling the limiter how many replicas share the
/// allowance. A failed beat keeps the last count.
pub async fn run(store: Store, limiter: Arc<RateLimiter>) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut interval = actix_web::rt::time::interval(BEAT);
    loop {
        interval.tick().await;
        match beat(&store, &id).await {
            Ok(alive) => limiter.set_replicas(alive),
            Err(error) => tracing::warn!(%error, "cannot record this replica as alive"),
        }
    }
}
