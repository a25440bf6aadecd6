//! The keys that sign session tokens: RS256, a new one each day, all of them in the database so
//! every replica signs and verifies with the same set. A key stays published at
//! `/.well-known/jwks.json` until no token it signed can still be valid.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use jsonwebtoken::{DecodingKey, EncodingKey};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{Value, json};

use super::MAX_LIFETIME;
use crate::db::schema::session_keys;
use crate::db::{Conn, DbConnection, StoreError};

/// How long one key signs new tokens.
const SIGNING_PERIOD: TimeDelta = TimeDelta::days(1);
const RSA_BITS: u32 = 2048;

/// A key is published, and accepted, while a token it signed may still be valid.
fn published_since(now: NaiveDateTime) -> NaiveDateTime {
    now - SIGNING_PERIOD - MAX_LIFETIME
}

struct Published {
    created_at: NaiveDateTime,
    decoding: DecodingKey,
    /// The JWK: kty, kid, use, alg, n, e.
    jwk: Value,
}

/// The keys this process has read, so that verifying a token costs no query for its key.
#[derive(Default)]
pub struct KeyRing {
    signing: Mutex<Option<(String, NaiveDateTime, EncodingKey)>>,
    published: Mutex<HashMap<String, Published>>,
}

fn published(kid: &str, created_at: NaiveDateTime, pem: &str) -> Result<Published, StoreError> {
    let broken = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("session key {kid}: {e}"));
    let key = PKey::private_key_from_pem(pem.as_bytes()).map_err(|e| broken(&e))?;
    let rsa = key.rsa().map_err(|e| broken(&e))?;
    let (n, e) = (rsa.n().to_vec(), rsa.e().to_vec());
    Ok(Published {
        created_at,
        decoding: DecodingKey::from_rsa_raw_components(&n, &e),
        jwk: json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        }),
    })
}

/// The key a session token is signed with, and its id.
pub struct Signer {
    pub kid: String,
    pub key: EncodingKey,
}

impl KeyRing {
    /// The key to sign with now: the newest if it is less than a day old, else a new one. Asked
    /// before the login's write, so that a new key is made (an RSA key takes tens of
    /// milliseconds) outside it and stored in a write of its own.
    pub fn signing_key(&self, conn: &mut Conn, now: NaiveDateTime) -> Result<Signer, StoreError> {
        if let Some((kid, created_at, key)) = &*self.signing.lock().expect("not poisoned")
            && *created_at > now - SIGNING_PERIOD
        {
            return Ok(Signer {
                kid: kid.clone(),
                key: key.clone(),
            });
        }
        let newest: Option<(String, String, NaiveDateTime)> = session_keys::table
            .filter(session_keys::created_at.gt(now - SIGNING_PERIOD))
            .order(session_keys::created_at.desc())
            .select((
                session_keys::kid,
                session_keys::private_key_pem,
                session_keys::created_at,
            ))
            .first(&mut **conn)
            .optional()?;
        let (kid, pem, created_at) = match newest {
            Some(newest) => newest,
            None => Self::make_key(conn, now)?,
        };
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("session key {kid}: {e}")))?;
        *self.signing.lock().expect("not poisoned") = Some((kid.clone(), created_at, key.clone()));
        Ok(Signer { kid, key })
    }

    /// Makes and stores a new key, and forgets the ones no token can need any more. Two replicas
    /// rotating at once each add one; both are published, and the newer signs.
    fn make_key(
        conn: &mut Conn,
        now: NaiveDateTime,
    ) -> Result<(String, String, NaiveDateTime), StoreError> {
        let pem = Rsa::generate(RSA_BITS)
            .and_then(PKey::from_rsa)
            .and_then(|key| key.private_key_to_pem_pkcs8())
            .map_err(|e| StoreError::Corrupt(format!("making a session key: {e}")))?;
        let pem = String::from_utf8(pem).expect("PEM is ASCII");
        let kid = crate::secrets::random_secret()[..22].to_owned();
        conn.write(|tx| {
            diesel::delete(
                session_keys::table.filter(session_keys::created_at.lt(published_since(now))),
            )
            .execute(tx.conn())?;
            diesel::insert_into(session_keys::table)
                .values((
                    session_keys::kid.eq(&kid),
                    session_keys::private_key_pem.eq(&pem),
                    session_keys::created_at.eq(now),
                ))
                .execute(tx.conn())
        })?;
        Ok((kid, pem, now))
    }

    /// The key that signed a token, if it is one of ours and still published.
    pub fn decoding_key(
        &self,
        conn: &mut DbConnection,
        kid: &str,
        now: NaiveDateTime,
    ) -> Result<Option<DecodingKey>, StoreError> {
        let live = |key: &Published| key.created_at > published_since(now);
        if let Some(key) = self.published.lock().expect("not poisoned").get(kid) {
            return Ok(live(key).then(|| key.decoding.clone()));
        }
        let row: Option<(String, NaiveDateTime)> = session_keys::table
            .find(kid)
            .select((session_keys::private_key_pem, session_keys::created_at))
            .first(conn)
            .optional()?;
        let Some((pem, created_at)) = row else {
            return Ok(None);
        };
        let key = published(kid, created_at, &pem)?;
        let decoding = live(&key).then(|| key.decoding.clone());
        self.published
            .lock()
            .expect("not poisoned")
            .insert(kid.to_owned(), key);
        Ok(decoding)
    }

    /// Every published public key, as a JWK Set.
    pub fn jwks(&self, conn: &mut DbConnection, now: NaiveDateTime) -> Result<Value, StoreError> {
        let rows: Vec<(String, String, NaiveDateTime)> = session_keys::table
            .filter(session_keys::created_at.gt(published_since(now)))
            .order(session_keys::created_at.desc())
            .select((
                session_keys::kid,
                session_keys::private_key_pem,
                session_keys::created_at,
            ))
            .load(conn)?;
        let mut cache = self.published.lock().expect("not poisoned");
        let mut keys = Vec::with_capacity(rows.len());
        for (kid, pem, created_at) in rows {
            if !cache.contains_key(&kid) {
                let key = published(&kid, created_at, &pem)?;
                cache.insert(kid.clone(), key);
            }
            keys.push(cache[&kid].jwk.clone());
        }
        Ok(json!({ "keys": keys }))
    }
}
