//! The logic: plain async methods on [`Payments`], one clone per worker thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_actors::Meta;
use courier_contracts::payments::{Charge, GetPayment, Payment, PaymentState, Refund};
use courier_store::{now_millis, Database, StoreError, Write};

use crate::config::PaymentsSettings;
use crate::domain::{self, PaymentsError};
use crate::store::{self, sql, Stored};

/// The service's state: its database, the decline limit and the simulated provider.
#[derive(Clone, Debug)]
pub struct Payments {
    db: Database,
    user_limit: i64,
    provider: Provider,
}

/// The simulated provider: a think time, and the first attempts of each order that fail.
#[derive(Clone, Debug, Default)]
struct Provider {
    latency: Duration,
    fail_first: u32,
    /// Failed attempts per order id, in this instance's memory (see
    /// [`PaymentsSettings::fail_first_attempts`]); shared by the worker threads' clones.
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

impl Provider {
    /// [`PaymentsError::ProviderUnavailable`] for the first `fail_first` attempts of `order_id`.
    fn attempt(&self, order_id: &str) -> Result<(), PaymentsError> {
        if self.fail_first == 0 {
            return Ok(());
        }
        // Invariant: nothing panics while holding the lock (a map lookup and an increment).
        let mut attempts = self
            .attempts
            .lock()
            .expect("attempts lock is never poisoned");
        let failed = attempts.entry(order_id.to_owned()).or_default();
        if *failed < self.fail_first {
            *failed += 1;
            return Err(PaymentsError::ProviderUnavailable);
        }
        Ok(())
    }
}

impl Payments {
    /// The state the endpoints serve from.
    pub fn new(db: Database, settings: &PaymentsSettings) -> Self {
        let provider = Provider {
            latency: settings.latency,
            fail_first: settings.fail_first_attempts,
            attempts: Arc::default(),
        };
        Self {
            db,
            user_limit: settings.user_limit,
            provider,
        }
    }

    /// `payments.charge`: the order's first outcome, deciding it if there is none yet.
    pub async fn charge(self, charge: Charge, meta: Meta) -> Result<Payment, PaymentsError> {
        domain::valid_charge(&charge)?;
        self.provider.attempt(&charge.order_id)?;
        if !self.provider.latency.is_zero() {
            tokio::time::sleep(self.provider.latency).await;
        }
        let now = now_millis();
        let mut write = self.db.begin().await?;
        match insert_pending(&mut write, &charge, now).await {
            Err(StoreError::Duplicate) => {
                // Decided before (or refunded before any charge): that outcome stands.
                write.rollback().await?;
                return self.stored(&charge.order_id).await;
            }
            inserted => inserted?,
        }
        write
            .execute(sql::LOCK_PAYER, &[(&charge.user_id).into()])
            .await?;
        let net: i64 = write
            .one(sql::NET, &[(&charge.user_id).into()])
            .await?
            .unwrap_or(0);
        let (state, reason) = domain::decide(net, charge.amount, self.user_limit);
        let settle = [
            state_param(state),
            reason.as_ref().into(),
            (&charge.order_id).into(),
        ];
        write.execute(sql::SETTLE, &settle).await?;
        let payment = Payment {
            order_id: charge.order_id,
            user_id: charge.user_id,
            amount: charge.amount,
            currency: charge.currency,
            state,
            reason,
        };
        if state == PaymentState::Charged {
            store::entry(&mut write, "charge", &payment, now).await?;
        }
        write.commit_reply(&payment, &meta).await?;
        Ok(payment)
    }

    /// `payments.refund`: gives a charge back once; a declined payment stays declined; an
    /// unknown order is closed with a `refunded` tombstone, so a late charge is refused.
    pub async fn refund(self, refund: Refund, meta: Meta) -> Result<Payment, PaymentsError> {
        domain::valid_id("order_id", &refund.order_id)?;
        let now = now_millis();
        let order_id = refund.order_id.as_str();
        let mut write = self.db.begin().await?;
        // Waits for a charge of the same order in flight; inserts nothing when there is one.
        let tombstone = write
            .execute(sql::TOMBSTONE, &[order_id.into(), now.into()])
            .await?;
        let refunded = match tombstone {
            1 => None,
            _ => {
                write
                    .one::<Stored>(sql::REFUND, &[now.into(), order_id.into()])
                    .await?
            }
        };
        if let Some(Stored(payment)) = &refunded {
            store::entry(&mut write, "refund", payment, now).await?;
        }
        let payment = match refunded {
            Some(Stored(payment)) => payment,
            None => read(&mut write, order_id).await?,
        };
        write.commit_reply(&payment, &meta).await?;
        Ok(payment)
    }

    /// `payments.get`: the order's payment, or 404.
    pub async fn get(self, get: GetPayment) -> Result<Payment, PaymentsError> {
        domain::valid_id("order_id", &get.order_id)?;
        self.stored(&get.order_id).await
    }

    async fn stored(&self, order_id: &str) -> Result<Payment, PaymentsError> {
        let stored: Option<Stored> = self.db.one(sql::GET, &[order_id.into()]).await?;
        stored
            .map(|Stored(payment)| payment)
            .ok_or_else(|| PaymentsError::NotFound(order_id.to_owned()))
    }
}

async fn insert_pending(write: &mut Write, charge: &Charge, now: i64) -> Result<(), StoreError> {
    let params = [
        (&charge.order_id).into(),
        (&charge.user_id).into(),
        charge.amount.into(),
        (&charge.currency).into(),
        now.into(),
    ];
    write.execute(sql::INSERT_PENDING, &params).await.map(drop)
}

/// The order's payment inside `write` (which has just made sure there is one).
async fn read(write: &mut Write, order_id: &str) -> Result<Payment, PaymentsError> {
    let stored: Option<Stored> = write.one(sql::GET, &[order_id.into()]).await?;
    stored
        .map(|Stored(payment)| payment)
        .ok_or_else(|| PaymentsError::NotFound(order_id.to_owned()))
}

fn state_param(state: PaymentState) -> courier_store::Param<'static> {
    store::state_text(state).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_fails_the_first_attempts_of_each_order_only() {
        let provider = Provider {
            fail_first: 2,
            ..Provider::default()
        };
        for _ in 0..2 {
            assert!(provider.attempt("o1").is_err());
        }
        assert!(provider.attempt("o1").is_ok());
        assert!(provider.attempt("o1").is_ok());
        assert!(
            provider.attempt("o2").is_err(),
            "another order counts apart"
        );
        assert!(Provider::default().attempt("o3").is_ok());
    }
}
