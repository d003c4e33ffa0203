//! The products service over NATS, on SQLite and on PostgreSQL (skipped with a note when no
//! server answers, unless `COURIER_REQUIRE_POSTGRES` is set): the catalogue, and
//! reservations that are all or nothing, idempotent per order, and never oversell.

use courier_actors::{CallError, DrainReport};
use courier_contracts::products::*;
use courier_runtime::testing::TestService;
use courier_store::testing::TestDatabase;
use courier_testkit::micro_schema::{assert_valid, Kind};
use serde_json::Value;

type Products = TestService<anyhow::Result<DrainReport>>;

async fn start(db: TestDatabase) -> Products {
    TestService::start(
        db,
        |_: &mut courier_products::Settings| {},
        |settings, on_start, stop| courier_products::run(settings, on_start, stop),
    )
    .await
}

/// The service on SQLite, then on PostgreSQL.
async fn on_both<F, Fut>(name: &str, test: F)
where
    F: Fn(Products) -> Fut,
    Fut: std::future::Future<Output = Products>,
{
    test(start(TestDatabase::sqlite(name)).await)
        .await
        .remove()
        .await;
    if let Some(db) = TestDatabase::postgres(name).await {
        test(start(db).await).await.remove().await;
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, CallError>) -> (u16, Value) {
    match result {
        Err(CallError::Service { error, .. }) => (error.code, error.details.unwrap_or_default()),
        other => panic!("expected a service error, got {other:?}"),
    }
}

async fn product(t: &Products, name: &str, stock: i64) -> Product {
    let create = CreateProduct {
        name: name.into(),
        description: format!("A {name}"),
        price: 250,
        currency: "eur".into(),
        stock,
    };
    t.send(&create).await.unwrap()
}

async fn stock(t: &Products, id: &str) -> i64 {
    t.send(&GetProduct { id: id.into() }).await.unwrap().stock
}

fn items(list: &[(&Product, i64)]) -> Vec<Item> {
    let item = |(p, quantity): &(&Product, i64)| Item {
        product_id: p.id.clone(),
        quantity: *quantity,
    };
    list.iter().map(item).collect()
}

#[actix_rt::test]
async fn the_catalogue_is_created_read_paged_changed_and_deleted() {
    on_both("catalogue", |t| async move {
        let tea = product(&t, "Tea", 3).await;
        assert_eq!(
            (tea.price, tea.currency.as_str(), tea.stock),
            (250, "EUR", 3)
        );
        let cup = product(&t, "Cup", 0).await;
        let got = t.send(&GetProduct { id: tea.id.clone() }).await.unwrap();
        assert_eq!(got, tea);

        let first = ListProducts {
            limit: Some(1),
            after: None,
        };
        let page = t.send(&first).await.unwrap();
        assert_eq!(page.products, std::slice::from_ref(&tea));
        let rest = ListProducts {
            limit: Some(1),
            after: page.next,
        };
        let page = t.send(&rest).await.unwrap();
        assert_eq!(
            (page.products[0].id.as_str(), page.next),
            (cup.id.as_str(), None)
        );

        let restock = UpdateProduct {
            id: cup.id.clone(),
            stock: Some(12),
            ..Default::default()
        };
        let cup = t.send(&restock).await.unwrap();
        assert_eq!((cup.stock, cup.name.as_str()), (12, "Cup"));
        let gone = t.send(&DeleteProduct { id: cup.id.clone() }).await.unwrap();
        assert_eq!(gone.id, cup.id);
        assert_eq!(code(t.send(&GetProduct { id: cup.id }).await).0, 404);

        let negative = CreateProduct {
            name: "X".into(),
            description: String::new(),
            price: -1,
            currency: "EUR".into(),
            stock: 1,
        };
        assert_eq!(
            code(t.send(&negative).await),
            (400, serde_json::json!({"field": "price"}))
        );
        let nothing = UpdateProduct {
            id: tea.id.clone(),
            ..Default::default()
        };
        assert_eq!(code(t.send(&nothing).await).0, 400);
        let bad_id = GetProduct { id: "tea".into() };
        assert_eq!(
            code(t.send(&bad_id).await),
            (400, serde_json::json!({"field": "id"}))
        );
        t
    })
    .await;
}

#[actix_rt::test]
async fn a_reservation_is_all_or_nothing_and_once_per_order() {
    on_both("reserve", |t| async move {
        let tea = product(&t, "Tea", 5).await;
        let cup = product(&t, "Cup", 1).await;

        let greedy = Reserve {
            order_id: "o1".into(),
            items: items(&[(&tea, 2), (&cup, 2)]),
        };
        let (status, details) = code(t.send(&greedy).await);
        assert_eq!(status, 409);
        assert_eq!(details["short"][0]["product_id"], cup.id.as_str());
        assert_eq!(details["short"][0]["available"], 1);
        assert_eq!(
            (stock(&t, &tea.id).await, stock(&t, &cup.id).await),
            (5, 1),
            "nothing held"
        );

        let fits = Reserve {
            order_id: "o2".into(),
            items: items(&[(&tea, 2), (&cup, 1)]),
        };
        let held = t.send(&fits).await.unwrap();
        assert_eq!(held.state, ReservationState::Reserved);
        let again = t.send(&fits).await.unwrap();
        assert_eq!(again, held, "a repeat gets the reservation made");
        assert_eq!(
            (stock(&t, &tea.id).await, stock(&t, &cup.id).await),
            (3, 0),
            "taken once"
        );

        let release = Release {
            order_id: "o2".into(),
        };
        let released = t.send(&release).await.unwrap();
        assert_eq!(released.state, ReservationState::Released);
        t.send(&release).await.unwrap();
        assert_eq!(
            (stock(&t, &tea.id).await, stock(&t, &cup.id).await),
            (5, 1),
            "given back once"
        );
        assert_eq!(
            code(t.send(&fits).await).0,
            409,
            "a released order stays released"
        );
        t
    })
    .await;
}

#[actix_rt::test]
async fn a_release_before_its_reserve_closes_the_order() {
    on_both("early-release", |t| async move {
        let tea = product(&t, "Tea", 5).await;
        let released = t
            .send(&Release {
                order_id: "late".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            (released.state, released.items.len()),
            (ReservationState::Released, 0)
        );
        let late = Reserve {
            order_id: "late".into(),
            items: items(&[(&tea, 1)]),
        };
        assert_eq!(code(t.send(&late).await).0, 409);
        assert_eq!(stock(&t, &tea.id).await, 5);
        t
    })
    .await;
}

#[actix_rt::test]
async fn two_hundred_orders_at_once_for_fifty_units_sell_exactly_fifty() {
    on_both("rush", |t| async move {
        let tea = product(&t, "Tea", 50).await;
        let orders = (0..200).map(|i| Reserve {
            order_id: format!("rush-{i}"),
            items: items(&[(&tea, 1)]),
        });
        let outcomes =
            futures::future::join_all(orders.map(|o| async { (t.send(&o).await, o) })).await;
        let mut sold = 0;
        for (outcome, order) in &outcomes {
            match outcome {
                Ok(r) => {
                    assert_eq!(r.state, ReservationState::Reserved);
                    sold += 1;
                }
                Err(CallError::Service { error, .. }) if error.code == 409 => {}
                Err(e) => panic!("{}: {e}", order.order_id),
            }
        }
        assert_eq!(sold, 50);
        assert_eq!(stock(&t, &tea.id).await, 0);
        t
    })
    .await;
}

#[actix_rt::test]
async fn srv_info_lists_the_seven_endpoints_with_their_routes_in_a_valid_reply() {
    let t = start(TestDatabase::sqlite("info")).await;
    let subject = format!("$SRV.INFO.products.{}", t.id);
    let reply = t.raw.request(subject, Vec::new().into()).await.unwrap();
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_valid(Kind::Info, &info);
    let routes: Vec<(&str, &str)> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap(),
                e["metadata"]["http.route"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            ("products.create", "POST /products"),
            ("products.get", "GET /products/{id}"),
            ("products.list", "GET /products"),
            ("products.update", "PATCH /products/{id}"),
            ("products.delete", "DELETE /products/{id}"),
            ("inventory.reserve", "-"),
            ("inventory.release", "-"),
        ]
    );
    t.remove().await;
}
