//! The order saga end to end: the real users, products, payments and orders services on one
//! nats-server (JetStream on), each with its own database (SQLite; PostgreSQL for one run).

use std::time::{Duration, Instant};

use courier_actors::{CallError, DrainReport};
use courier_contracts::orders::*;
use courier_contracts::payments::{GetPayment, PaymentState};
use courier_contracts::products::{CreateProduct, GetProduct, Item, Product};
use courier_contracts::users::{CreateUser, User};
use courier_runtime::testing::TestService;
use courier_store::testing::TestDatabase;
use courier_testkit::TestNats;

type Running = TestService<anyhow::Result<DrainReport>>;

/// Payments declines once a user's charges pass this (minor units).
const LIMIT: i64 = 1_000;

/// Four services on one NATS server (dropped last, after the services have drained).
struct System {
    users: Running,
    products: Running,
    payments: Option<Running>,
    orders: Option<Running>,
    /// The orders database, kept across restarts of the orders service.
    orders_db: TestDatabase,
    nats: TestNats,
}

async fn products(url: &str, db: TestDatabase) -> Running {
    TestService::join(
        url,
        db,
        |_: &mut courier_products::Settings| {},
        |s, on, stop| courier_products::run(s, on, stop),
    )
    .await
}

async fn payments(url: &str, db: TestDatabase, fail_first: u32) -> Running {
    let configure = move |s: &mut courier_payments::Settings| {
        s.payments.user_limit = LIMIT;
        s.payments.fail_first_attempts = fail_first;
    };
    TestService::join(url, db, configure, |s, on, stop| {
        courier_payments::run(s, on, stop)
    })
    .await
}

async fn orders(url: &str, db: TestDatabase) -> Running {
    let configure = |s: &mut courier_orders::Settings| {
        s.orders.retry_min = Duration::from_millis(50);
        s.orders.retry_max = Duration::from_millis(400);
        s.orders.census_every = Duration::from_millis(100);
    };
    TestService::join(url, db, configure, |s, on, stop| {
        courier_orders::run(s, on, stop)
    })
    .await
}

/// A database for one service of a test: SQLite, or a PostgreSQL database of its own.
async fn database(name: &str, postgres: bool) -> TestDatabase {
    match postgres {
        true => TestDatabase::postgres(name)
            .await
            .expect("PostgreSQL answers"),
        false => TestDatabase::sqlite(name),
    }
}

impl System {
    async fn start(name: &str, fail_first: u32) -> Self {
        Self::start_on(name, fail_first, false).await
    }

    /// The four services, each on a database of its own (PostgreSQL ones when `postgres`).
    async fn start_on(name: &str, fail_first: u32, postgres: bool) -> Self {
        let nats = TestNats::start();
        let url = nats.url();
        let users_db = database("users", postgres).await;
        let users = TestService::join(
            &url,
            users_db,
            |s: &mut courier_users::Settings| s.users.hash_workers = 1,
            |s, on, stop| courier_users::run(s, on, stop),
        )
        .await;
        let orders_db = database(name, postgres).await;
        Self {
            products: products(&url, database("products", postgres).await).await,
            payments: Some(payments(&url, database("payments", postgres).await, fail_first).await),
            orders: Some(orders(&url, orders_db.again()).await),
            users,
            nats,
            orders_db,
        }
    }

    fn orders(&self) -> &Running {
        self.orders.as_ref().expect("orders runs")
    }

    async fn user(&self) -> User {
        let ada = CreateUser {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            password: "correct horse".into(),
        };
        self.users.send(&ada).await.unwrap()
    }

    async fn product(&self, name: &str, price: i64, stock: i64) -> Product {
        let create = CreateProduct {
            name: name.into(),
            description: String::new(),
            price,
            currency: "EUR".into(),
            stock,
        };
        self.products.send(&create).await.unwrap()
    }

    async fn stock(&self, product: &Product) -> i64 {
        self.products
            .send(&GetProduct {
                id: product.id.clone(),
            })
            .await
            .unwrap()
            .stock
    }

    async fn order(&self, user: &User, items: &[(&Product, i64)]) -> Order {
        let items = items
            .iter()
            .map(|(p, quantity)| Item {
                product_id: p.id.clone(),
                quantity: *quantity,
            })
            .collect();
        let create = CreateOrder {
            items,
            user_id: Some(user.id.clone()),
        };
        let order = self.orders().send(&create).await.unwrap();
        assert_eq!(order.state, OrderState::Pending);
        order
    }

    /// The order once its saga has finished.
    async fn settled(&self, order: &Order) -> Order {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self
                .orders()
                .send(&GetOrder {
                    id: order.id.clone(),
                })
                .await
                .unwrap();
            if now.state != OrderState::Pending {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "order {} still pending",
                order.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn payment(&self, order: &Order) -> Result<PaymentState, u16> {
        let payments = self.payments.as_ref().expect("payments runs");
        match payments
            .send(&GetPayment {
                order_id: order.id.clone(),
            })
            .await
        {
            Ok(payment) => Ok(payment.state),
            Err(CallError::Service { error, .. }) => Err(error.code),
            Err(e) => panic!("{e}"),
        }
    }
}

#[actix_rt::test]
async fn orders_end_confirmed_or_cancelled_with_the_books_balanced() {
    books_balance(System::start("orders-books", 0).await).await;
}

#[actix_rt::test]
async fn on_postgresql_too() {
    if TestDatabase::postgres("probe").await.is_none() {
        return;
    }
    books_balance(System::start_on("orders-books", 0, true).await).await;
}

async fn books_balance(system: System) {
    let ada = system.user().await;
    let tea = system.product("Tea", 250, 10).await;
    let lamp = system.product("Lamp", 5_000, 3).await;

    // Within stock and within the payment limit: confirmed, stock down, one charge.
    let fits = system.order(&ada, &[(&tea, 2)]).await;
    assert_eq!((fits.total, fits.currency.as_str()), (500, "EUR"));
    let fits = system.settled(&fits).await;
    assert_eq!(
        (fits.state, fits.reason.as_deref()),
        (OrderState::Confirmed, None)
    );
    assert_eq!(system.stock(&tea).await, 8);
    assert_eq!(system.payment(&fits).await, Ok(PaymentState::Charged));

    // Over the payment limit: declined, the reservation released, cancelled with the reason.
    let dear = system
        .settled(&system.order(&ada, &[(&lamp, 1)]).await)
        .await;
    assert_eq!(dear.state, OrderState::Cancelled);
    assert!(
        dear.reason
            .as_deref()
            .unwrap()
            .starts_with("payment declined"),
        "{dear:?}"
    );
    assert_eq!(system.stock(&lamp).await, 3, "stock given back");
    assert_eq!(system.payment(&dear).await, Ok(PaymentState::Declined));

    // Out of stock: cancelled, never charged.
    let short = system
        .settled(&system.order(&ada, &[(&tea, 9)]).await)
        .await;
    assert_eq!(short.state, OrderState::Cancelled);
    assert!(
        short.reason.as_deref().unwrap().starts_with("out of stock"),
        "{short:?}"
    );
    assert_eq!(system.stock(&tea).await, 8);
    assert_eq!(
        system.payment(&short).await,
        Err(404),
        "no charge was asked for"
    );

    // The caller's list holds all three; the stream holds their events.
    let mine = system
        .orders()
        .send(&ListOrders {
            user_id: Some(ada.id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.orders.len(), 3);
    let js = async_nats::jetstream::new(system.orders().raw.clone());
    let stream = js.get_stream("COURIER_EVENTS").await.unwrap();
    let count = |subject: &'static str| {
        let mut stream = stream.clone();
        async move {
            stream.info().await.map(|_| ()).ok();
            stream
                .get_last_raw_message_by_subject(subject)
                .await
                .is_ok()
        }
    };
    assert!(
        count(ORDER_CREATED).await && count(ORDER_CONFIRMED).await && count(ORDER_CANCELLED).await
    );
}

#[actix_rt::test]
async fn a_saga_left_at_its_charge_by_a_stopped_orders_service_finishes_after_a_restart() {
    let mut system = System::start("orders-resume", 0).await;
    let ada = system.user().await;
    let tea = system.product("Tea", 250, 10).await;
    // Payments is gone: the saga reserves, then retries its charge.
    let _ = system.payments.take().unwrap().stop().await;
    let order = system.order(&ada, &[(&tea, 3)]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while system.stock(&tea).await != 7 {
        assert!(Instant::now() < deadline, "not reserved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = system.orders.take().unwrap().stop().await;
    assert_eq!(
        system.stock(&tea).await,
        7,
        "the reservation outlives the saga's runner"
    );

    // Both back: the saga resumes from its row and confirms, charging once.
    let url = system.nats.url();
    system.payments = Some(payments(&url, TestDatabase::sqlite("payments"), 0).await);
    system.orders = Some(orders(&url, system.orders_db.again()).await);
    let done = system.settled(&order).await;
    assert_eq!(done.state, OrderState::Confirmed, "{done:?}");
    assert_eq!(system.stock(&tea).await, 7);
    assert_eq!(system.payment(&done).await, Ok(PaymentState::Charged));
}

#[actix_rt::test]
async fn a_charge_that_fails_twice_is_retried_and_taken_once() {
    let system = System::start("orders-retry", 2).await;
    let ada = system.user().await;
    let tea = system.product("Tea", 250, 10).await;
    let order = system
        .settled(&system.order(&ada, &[(&tea, 1)]).await)
        .await;
    assert_eq!(order.state, OrderState::Confirmed);
    assert_eq!(system.payment(&order).await, Ok(PaymentState::Charged));
    assert_eq!(system.stock(&tea).await, 9);
    // The two failed charges and the rest of the saga, as /metrics shows them.
    let series = |step: &str, outcome: &str| {
        format!(
            r#"courier_saga_steps_total{{outcome="{outcome}",saga="order",service="orders",step="{step}"}}"#
        )
    };
    let admin = system.orders().admin;
    let metrics = courier_testkit::eventually(Duration::from_secs(5), "the census", || async {
        let (_, body) =
            courier_testkit::http_get(admin, "/metrics", &[], Duration::from_secs(5)).ok()?;
        body.contains(r#"courier_sagas{saga="order",service="orders",state="confirmed"} 1"#)
            .then_some(body)
    })
    .await;
    for (line, value) in [
        (series("reserve", "advanced"), 1),
        (series("charge", "retried"), 2),
        (series("charge", "advanced"), 1),
        (series("release", "advanced"), 0),
        (r#"courier_sagas{saga="order",service="orders",state="pending"}"#.to_owned(), 0),
        (r#"courier_saga_oldest_pending_seconds{saga="order",service="orders"}"#.to_owned(), 0),
        (
            r#"courier_saga_step_duration_seconds_count{saga="order",service="orders",step="charge"}"#
                .to_owned(),
            3,
        ),
    ] {
        let want = format!("{line} {value}");
        assert!(metrics.lines().any(|l| l == want), "{want} in\n{metrics}");
    }
}

#[actix_rt::test]
async fn orders_of_unknown_users_or_products_are_refused() {
    let system = System::start("orders-refused", 0).await;
    let ada = system.user().await;
    let tea = system.product("Tea", 250, 10).await;
    let ghost = User {
        id: uuid_like(),
        ..ada.clone()
    };
    let unknown_user = CreateOrder {
        items: vec![Item {
            product_id: tea.id.clone(),
            quantity: 1,
        }],
        user_id: Some(ghost.id),
    };
    let code = |r: Result<Order, CallError>| match r {
        Err(CallError::Service { error, .. }) => error.code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(system.orders().send(&unknown_user).await), 422);
    let unknown_product = CreateOrder {
        items: vec![Item {
            product_id: uuid_like(),
            quantity: 1,
        }],
        user_id: Some(ada.id.clone()),
    };
    assert_eq!(code(system.orders().send(&unknown_product).await), 400);
    let nobody = CreateOrder {
        items: vec![Item {
            product_id: tea.id.clone(),
            quantity: 1,
        }],
        user_id: None,
    };
    assert_eq!(code(system.orders().send(&nobody).await), 400);
}

#[actix_rt::test]
async fn two_hundred_orders_at_once_for_fifty_units_sell_fifty_and_none_stays_pending() {
    let system = System::start("orders-rush", 0).await;
    let ada = system.user().await;
    let tea = system.product("Tea", 1, 50).await;
    let orders = futures::future::join_all(
        (0..200).map(|_| async { system.order(&ada, &[(&tea, 1)]).await }),
    )
    .await;
    let settled = futures::future::join_all(orders.iter().map(|o| system.settled(o))).await;
    let confirmed: Vec<&Order> = settled
        .iter()
        .filter(|o| o.state == OrderState::Confirmed)
        .collect();
    assert_eq!(confirmed.len(), 50);
    assert!(settled.iter().all(|o| o.state != OrderState::Pending));
    assert_eq!(system.stock(&tea).await, 0);
    // Charges minus refunds are the totals of the confirmed orders: one charge each, no other.
    for order in &settled {
        let expected = match order.state {
            OrderState::Confirmed => Ok(PaymentState::Charged),
            _ => Err(404),
        };
        assert_eq!(system.payment(order).await, expected, "{order:?}");
    }
}

fn uuid_like() -> String {
    "01900000-0000-7000-8000-000000000000".into()
}
