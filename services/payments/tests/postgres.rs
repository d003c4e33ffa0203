//! The payments service on PostgreSQL: the same flows, and the limit held by the per-user
//! lock under concurrency (which a SQLite write gets for free). Skipped (with a note) when no
//! server answers, unless `COURIER_REQUIRE_POSTGRES` is set.

mod common;

use common::*;
use courier_store::testing::TestDatabase;

#[actix_rt::test]
async fn every_flow_holds_on_postgres() {
    let Some(db) = TestDatabase::postgres("payments").await else {
        return;
    };
    let t = start(db, |_| {}).await;
    flows::charged_once(&t, "pg").await;
    flows::concurrent_duplicates(&t, "pg").await;
    flows::declined_stays_declined(&t, "pg").await;
    flows::refunded_once(&t, "pg").await;
    flows::refund_before_charge(&t, "pg").await;
    flows::the_limit_holds_under_concurrency(&t, "pg").await;
    // Charged once 1, duplicates 1, declined 3 (two charges, a refund), refunded 2,
    // tombstone 0, rush 10.
    assert_eq!(t.entries().await, 17);
    t.stop().await;
}
