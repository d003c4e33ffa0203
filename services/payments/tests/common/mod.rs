//! Helpers for the payments tests: the service on a thread of its own, with its own
//! nats-server and database, called over NATS through the contract types.
#![allow(dead_code)]

use std::ops::Deref;

use courier_actors::{CallError, DrainReport, ServiceError};
use courier_contracts::payments::{Charge, Payment};
use courier_payments::{store, Settings};
use courier_runtime::testing::TestService;
use courier_store::testing::TestDatabase;
use courier_store::Database;

/// A payments service under test (the kit's [`TestService`]: its own nats-server, database
/// and thread), and a connection of the test's own to its database, to read the books.
pub struct Running {
    service: TestService<anyhow::Result<DrainReport>>,
    pub books: Database,
}

impl Deref for Running {
    type Target = TestService<anyhow::Result<DrainReport>>;
    fn deref(&self) -> &Self::Target {
        &self.service
    }
}

/// The service on a fresh SQLite file, `configure` changing its settings last.
pub async fn sqlite(test: &str, configure: impl FnOnce(&mut Settings)) -> Running {
    start(TestDatabase::sqlite(&format!("payments-{test}")), configure).await
}

pub async fn start(db: TestDatabase, configure: impl FnOnce(&mut Settings)) -> Running {
    let settings = db.settings.clone();
    let service = TestService::start(db, configure, |settings, on_start, stop| {
        courier_payments::run(settings, on_start, stop)
    })
    .await;
    let books = Database::connect(&settings, store::MIGRATIONS)
        .await
        .unwrap();
    Running { service, books }
}

impl Running {
    /// The ledger entries of `order_id`: `"<kind> <amount>"`, charge first.
    pub async fn ledger(&self, order_id: &str) -> Vec<String> {
        let sql = "SELECT kind || ' ' || CAST(amount AS TEXT) FROM ledger \
                   WHERE order_id = $1 ORDER BY id";
        self.books.all(sql, &[order_id.into()]).await.unwrap()
    }

    /// Every ledger entry.
    pub async fn entries(&self) -> i64 {
        let count = "SELECT COUNT(*) FROM ledger";
        self.books.one(count, &[]).await.unwrap().unwrap()
    }

    /// Stops the service, whose drain must be complete, and removes its database.
    pub async fn stop(self) {
        let Running { mut service, books } = self;
        books.close().await;
        let db = service.db.take();
        let report = service.stop().await.unwrap();
        assert!(report.complete && report.abandoned == 0, "{report:?}");
        if let Some(db) = db {
            db.remove().await;
        }
    }
}

pub fn charge(order_id: &str, user_id: &str, amount: i64) -> Charge {
    Charge {
        order_id: order_id.into(),
        user_id: user_id.into(),
        amount,
        currency: "EUR".into(),
    }
}

/// The service's error of a failed call.
pub fn error<T: std::fmt::Debug>(result: Result<T, CallError>) -> ServiceError {
    match result {
        Err(CallError::Service { error, .. }) => error,
        other => panic!("expected a service error, got {other:?}"),
    }
}

/// Asserts a payment's order, state and amount.
pub fn assert_payment(payment: &Payment, order_id: &str, state: &str, amount: i64) {
    let state_name = serde_json::to_value(payment.state).unwrap();
    assert_eq!(
        (
            payment.order_id.as_str(),
            state_name.as_str().unwrap(),
            payment.amount
        ),
        (order_id, state, amount),
        "{payment:?}"
    );
}

/// The flows both databases must get right, each on ids of its own (prefix `p`), under the
/// default limit of 100000.
pub mod flows {
    use courier_contracts::payments::{GetPayment, PaymentState, Refund};
    use futures::future::join_all;

    use super::*;

    /// A charge within the limit is charged, with one ledger entry; repeated (even with
    /// another amount) it gets the first outcome and charges nothing more.
    pub async fn charged_once(t: &Running, p: &str) {
        let order = format!("{p}-o1");
        let first = t
            .send(&charge(&order, &format!("{p}-u"), 400))
            .await
            .unwrap();
        assert_payment(&first, &order, "charged", 400);
        assert_eq!(
            (first.user_id.as_str(), first.reason.as_deref()),
            (&*format!("{p}-u"), None)
        );
        let again = t
            .send(&charge(&order, &format!("{p}-u"), 400))
            .await
            .unwrap();
        let other = t
            .send(&charge(&order, &format!("{p}-u"), 999))
            .await
            .unwrap();
        assert_eq!((&again, &other), (&first, &first));
        let got = t
            .send(&GetPayment {
                order_id: order.clone(),
            })
            .await
            .unwrap();
        assert_eq!(got, first);
        assert_eq!(t.ledger(&order).await, ["charge 400"]);
    }

    /// Twenty duplicates of one charge at once: one charge, the same answer to all.
    pub async fn concurrent_duplicates(t: &Running, p: &str) {
        let order = format!("{p}-dup");
        let body = charge(&order, &format!("{p}-u"), 250);
        let replies = join_all((0..20).map(|_| t.send(&body))).await;
        for reply in &replies {
            let payment = reply.as_ref().expect("every duplicate is answered");
            assert_payment(payment, &order, "charged", 250);
        }
        assert_eq!(t.ledger(&order).await, ["charge 250"]);
    }

    /// Over the limit: declined with a reason and no entry, and a retry stays declined even
    /// once the user is back under the limit.
    pub async fn declined_stays_declined(t: &Running, p: &str) {
        let user = format!("{p}-spender");
        let (big, over) = (format!("{p}-big"), format!("{p}-over"));
        let paid = t.send(&charge(&big, &user, 60_000)).await.unwrap();
        assert_payment(&paid, &big, "charged", 60_000);
        let declined = t.send(&charge(&over, &user, 40_001)).await.unwrap();
        assert_payment(&declined, &over, "declined", 40_001);
        assert!(
            declined
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("limit")),
            "{declined:?}"
        );
        assert!(t.ledger(&over).await.is_empty());
        let refunded = t
            .send(&Refund {
                order_id: big.clone(),
            })
            .await
            .unwrap();
        assert_payment(&refunded, &big, "refunded", 60_000);
        let retry = t.send(&charge(&over, &user, 40_001)).await.unwrap();
        assert_eq!(retry, declined);
        // The refund did lower the books: a new order of the same amount goes through.
        let fresh = t
            .send(&charge(&format!("{p}-fresh"), &user, 40_001))
            .await
            .unwrap();
        assert_eq!(fresh.state, PaymentState::Charged);
        // A declined payment has nothing to give back: it stays declined, with no entry.
        let kept = t
            .send(&Refund {
                order_id: over.clone(),
            })
            .await
            .unwrap();
        assert_eq!(kept, declined);
        assert!(t.ledger(&over).await.is_empty());
    }

    /// A refund gives the charge back once, however often it is asked; a charge after it
    /// answers refunded.
    pub async fn refunded_once(t: &Running, p: &str) {
        let order = format!("{p}-back");
        t.send(&charge(&order, &format!("{p}-u"), 700))
            .await
            .unwrap();
        let refund = Refund {
            order_id: order.clone(),
        };
        let refunds = join_all((0..5).map(|_| t.send(&refund))).await;
        for refund in refunds {
            assert_payment(&refund.unwrap(), &order, "refunded", 700);
        }
        let late = t
            .send(&charge(&order, &format!("{p}-u"), 700))
            .await
            .unwrap();
        assert_payment(&late, &order, "refunded", 700);
        assert_eq!(t.ledger(&order).await, ["charge 700", "refund 700"]);
    }

    /// A refund before any charge closes the order: the late charge answers refunded and
    /// charges nothing.
    pub async fn refund_before_charge(t: &Running, p: &str) {
        let order = format!("{p}-early");
        let tombstone = t
            .send(&Refund {
                order_id: order.clone(),
            })
            .await
            .unwrap();
        assert_payment(&tombstone, &order, "refunded", 0);
        assert_eq!(tombstone.user_id, "");
        let late = t
            .send(&charge(&order, &format!("{p}-u"), 500))
            .await
            .unwrap();
        assert_eq!(late, tombstone);
        let got = t
            .send(&GetPayment {
                order_id: order.clone(),
            })
            .await
            .unwrap();
        assert_eq!(got, tombstone);
        assert!(t.ledger(&order).await.is_empty());
    }

    /// Twenty charges of 10000 for one user at once, on twenty orders: exactly ten fit under
    /// the limit of 100000, whatever the interleaving.
    pub async fn the_limit_holds_under_concurrency(t: &Running, p: &str) {
        let user = format!("{p}-rush");
        let charges = (0..20).map(|i| charge(&format!("{p}-rush-{i}"), &user, 10_000));
        let charges: Vec<_> = charges.collect();
        let replies = join_all(charges.iter().map(|c| t.send(c))).await;
        let states: Vec<PaymentState> = replies.into_iter().map(|r| r.unwrap().state).collect();
        let charged = states
            .iter()
            .filter(|s| **s == PaymentState::Charged)
            .count();
        let declined = states
            .iter()
            .filter(|s| **s == PaymentState::Declined)
            .count();
        assert_eq!((charged, declined), (10, 10), "{states:?}");
        let net = t
            .books
            .one::<i64>(store::sql::NET, &[user.as_str().into()])
            .await
            .unwrap();
        assert_eq!(net, Some(100_000));
    }
}
