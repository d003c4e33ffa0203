//! Crashes in the middle of sagas: the orders binary SIGKILLed while a charge is in flight
//! (after the reservation; the charge then lands while orders is dead), and the payments
//! binary SIGKILLed during a charge. After restarts every saga finishes, once in effect.

use std::time::{Duration, Instant};

use courier_actors::{Client, DrainReport, Meta};
use courier_contracts::orders::*;
use courier_contracts::payments::{GetPayment, PaymentState};
use courier_contracts::products::{CreateProduct, GetProduct, Item, Product};
use courier_contracts::users::{CreateUser, User};
use courier_runtime::testing::TestService;
use courier_store::testing::TestDatabase;
use courier_testkit::{workspace_binary, Process, TestNats};

type Running = TestService<anyhow::Result<DrainReport>>;

/// How long a charge takes at the simulated provider: the window the kills aim at.
const CHARGE_LATENCY: &str = "1500ms";

fn orders(nats: &str, db: &TestDatabase) -> Process {
    let mut orders = Process::spawn(
        env!("CARGO_BIN_EXE_courier-orders").as_ref(),
        &[
            ("NATS_URL", nats.to_owned()),
            ("COURIER_DATABASE__URL", db.settings.url.expose().to_owned()),
            ("COURIER_ADMIN__BIND", "127.0.0.1:0".into()),
            ("COURIER_ORDERS__RETRY_MIN", "50ms".into()),
            ("COURIER_ORDERS__RETRY_MAX", "300ms".into()),
            // A crashed instance's lease must not hold its sagas long.
            ("COURIER_ORDERS__LEASE", "2s".into()),
        ],
    );
    orders.wait_for_log("Service started", Duration::from_secs(20));
    orders
}

fn payments(nats: &str, db: &TestDatabase) -> Process {
    let mut payments = Process::spawn(
        &workspace_binary("courier-payments"),
        &[
            ("NATS_URL", nats.to_owned()),
            ("COURIER_DATABASE__URL", db.settings.url.expose().to_owned()),
            ("COURIER_ADMIN__BIND", "127.0.0.1:0".into()),
            ("COURIER_PAYMENTS__LATENCY", CHARGE_LATENCY.into()),
            ("COURIER_PAYMENTS__USER_LIMIT", "1000000".into()),
        ],
    );
    payments.wait_for_log("Service started", Duration::from_secs(20));
    payments
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn sagas_finish_once_in_effect_across_sigkills_of_orders_and_payments() {
    let nats = TestNats::start();
    let url = nats.url();
    let client = Client::new(
        async_nats::connect(&url).await.unwrap(),
        Duration::from_secs(5),
    );
    let users: Running = TestService::join(
        &url,
        TestDatabase::sqlite("crash-users"),
        |s: &mut courier_users::Settings| s.users.hash_workers = 1,
        |s, on, stop| courier_users::run(s, on, stop),
    )
    .await;
    let products: Running = TestService::join(
        &url,
        TestDatabase::sqlite("crash-products"),
        |_: &mut courier_products::Settings| {},
        |s, on, stop| courier_products::run(s, on, stop),
    )
    .await;
    let (orders_db, payments_db) = (
        TestDatabase::sqlite("crash-orders"),
        TestDatabase::sqlite("crash-payments"),
    );
    let mut orders_process = orders(&url, &orders_db);
    let mut payments_process = payments(&url, &payments_db);

    let ada: User = users
        .send(&CreateUser {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            password: "correct horse".into(),
        })
        .await
        .unwrap();
    let create = CreateProduct {
        name: "Tea".into(),
        description: String::new(),
        price: 250,
        currency: "EUR".into(),
        stock: 10,
    };
    let tea: Product = products.send(&create).await.unwrap();
    let stock = || async {
        products
            .send(&GetProduct { id: tea.id.clone() })
            .await
            .unwrap()
            .stock
    };
    let order = |quantity| CreateOrder {
        items: vec![Item {
            product_id: tea.id.clone(),
            quantity,
        }],
        user_id: Some(ada.id.clone()),
    };

    // 1. Orders dies after the reservation, its charge in flight; the charge lands meanwhile.
    let first: Order = client.send(&order(2), &Meta::root()).await.unwrap();
    until("the first reservation", async || {
        (stock().await == 8).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    orders_process.kill();
    let charged = async || {
        let payment = client
            .send(
                &GetPayment {
                    order_id: first.id.clone(),
                },
                &Meta::root(),
            )
            .await
            .ok()?;
        (payment.state == PaymentState::Charged).then_some(())
    };
    until("the charge of the first order, orders being dead", charged).await;
    orders_process = orders(&url, &orders_db);

    // 2. Payments dies during the second order's charge.
    let second: Order = client.send(&order(3), &Meta::root()).await.unwrap();
    until("the second reservation", async || {
        (stock().await == 5).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    payments_process.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    payments_process = payments(&url, &payments_db);

    // Every saga finishes; the books balance.
    for placed in [&first, &second] {
        let get = GetOrder {
            id: placed.id.clone(),
        };
        let done = until("the order to settle", async || {
            let now = client.send(&get, &Meta::root()).await.ok()?;
            (now.state != OrderState::Pending).then_some(now)
        })
        .await;
        assert_eq!(
            done.state,
            OrderState::Confirmed,
            "{done:?}\norders log:\n{}",
            orders_process.log()
        );
        let payment = client
            .send(
                &GetPayment {
                    order_id: placed.id.clone(),
                },
                &Meta::root(),
            )
            .await
            .unwrap();
        assert_eq!(
            (payment.state, payment.amount),
            (PaymentState::Charged, placed.total),
            "charged once, in full"
        );
    }
    assert_eq!(
        stock().await,
        5,
        "stock + reserved = initial: 10 = 5 + 2 + 3"
    );
    drop((orders_process, payments_process, users, products));
    drop(nats);
}
