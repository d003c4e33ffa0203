//! A write in progress: one transaction holding the change, its idempotency key and reply.

use serde::Serialize;
use sqlx::{Any, Transaction};

use super::{duplicate_or_query, from_row, roles_column, StoreError, UserChange, UserRow, COLUMNS};

/// A write in progress under its [`WriteKey`](super::WriteKey): changes, then
/// [`Write::record`] of the reply, then [`Write::commit`]. Dropped without a commit, it rolls
/// back, key included.
#[derive(Debug)]
pub struct Write {
    pub(super) tx: Transaction<'static, Any>,
    pub(super) request_id: String,
    pub(super) endpoint: String,
}

impl Write {
    /// Inserts a user; [`StoreError::Duplicate`] when the email is taken.
    pub async fn insert(&mut self, row: &UserRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.email)
        .bind(roles_column(&row.roles))
        .bind(&row.password_hash)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&mut *self.tx)
        .await
        .map_err(duplicate_or_query)?;
        Ok(())
    }

    /// Sets the given columns only, in one statement, so that concurrent updates of other
    /// columns are kept; the row as it is now, or `None` when there is no such user.
    /// [`StoreError::Duplicate`] when the new email is taken.
    pub async fn update(&mut self, change: &UserChange) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE users SET name = COALESCE($1, name), email = COALESCE($2, email), \
             password_hash = COALESCE($3, password_hash), updated_at = $4 \
             WHERE id = $5 RETURNING {COLUMNS}"
        ))
        .bind(&change.name)
        .bind(&change.email)
        .bind(&change.password_hash)
        .bind(&change.updated_at)
        .bind(&change.id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(duplicate_or_query)?;
        row.map(from_row).transpose()
    }

    /// Deletes the user with `id`; `false` when there is none.
    pub async fn delete(&mut self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores `reply` as what every retry under this write's key gets.
    pub async fn record<R: Serialize>(&mut self, reply: &R) -> Result<(), StoreError> {
        let json = serde_json::to_string(reply).map_err(StoreError::Reply)?;
        sqlx::query(
            "UPDATE idempotency_keys SET reply = $1 WHERE request_id = $2 AND endpoint = $3",
        )
        .bind(json)
        .bind(&self.request_id)
        .bind(&self.endpoint)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Makes the changes, key and reply included, durable.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Undoes the changes, key included, now rather than when the connection is next used.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await?;
        Ok(())
    }
}
