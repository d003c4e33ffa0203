//! The products tables and their SQL; the rest of the database is `courier-store`'s.

use courier_contracts::products::{Item, Product};
use courier_store::{FromRow, Migration, Row, StoreError};

/// Schema changes, in order. Never edit one that has shipped: add the next.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create products",
        sql: "CREATE TABLE IF NOT EXISTS products (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            description TEXT NOT NULL,
            price BIGINT NOT NULL,
            currency TEXT NOT NULL,
            stock BIGINT NOT NULL CHECK (stock >= 0),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 2,
        name: "create reservation orders",
        // One row per order id seen: `reserved`, or `released` (also before any reserve).
        sql: "CREATE TABLE IF NOT EXISTS reservation_orders (
            order_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        sqlite_only: false,
    },
    Migration {
        version: 3,
        name: "create reservations",
        sql: "CREATE TABLE IF NOT EXISTS reservations (
            order_id TEXT NOT NULL,
            product_id TEXT NOT NULL,
            quantity BIGINT NOT NULL,
            PRIMARY KEY (order_id, product_id)
        )",
        sqlite_only: false,
    },
];

/// The columns of a product, in [`Product`]'s order.
const PRODUCT: &str = "id, name, description, price, currency, stock, created_at, updated_at";

pub fn get() -> String {
    format!("SELECT {PRODUCT} FROM products WHERE id = $1")
}

pub fn list() -> String {
    format!("SELECT {PRODUCT} FROM products WHERE id > $1 ORDER BY id LIMIT $2")
}

pub fn insert() -> String {
    format!("INSERT INTO products ({PRODUCT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
}

pub fn update() -> String {
    format!(
        "UPDATE products SET name = COALESCE($2, name), description = COALESCE($3, description), \
         price = COALESCE($4, price), currency = COALESCE($5, currency), \
         stock = COALESCE($6, stock), updated_at = $7 WHERE id = $1 RETURNING {PRODUCT}"
    )
}

pub const DELETE: &str = "DELETE FROM products WHERE id = $1";

/// Takes `$1` units of product `$2` if that many are in stock (one statement, so concurrent
/// reservations never take the same unit and stock never goes below 0).
pub const TAKE: &str =
    "UPDATE products SET stock = stock - $1, updated_at = $3 WHERE id = $2 AND stock >= $1";

pub const STOCK: &str = "SELECT stock FROM products WHERE id = $1";

/// Claims an order id for a reservation; a duplicate when it was seen before.
pub const CLAIM_ORDER: &str =
    "INSERT INTO reservation_orders (order_id, state, created_at) VALUES ($1, 'reserved', $2)";

pub const HOLD: &str =
    "INSERT INTO reservations (order_id, product_id, quantity) VALUES ($1, $2, $3)";

/// Marks a reserved order released; 1 row when it was reserved.
pub const RELEASE_ORDER: &str =
    "UPDATE reservation_orders SET state = 'released' WHERE order_id = $1 AND state = 'reserved'";

/// Closes an order id never reserved, so a late reserve is refused.
pub const CLOSE_ORDER: &str = "INSERT INTO reservation_orders (order_id, state, created_at) \
                               VALUES ($1, 'released', $2) ON CONFLICT (order_id) DO NOTHING";

/// Gives an order's held units back to their products.
pub const RESTOCK: &str = "UPDATE products SET stock = stock + (SELECT quantity FROM reservations \
                           r WHERE r.order_id = $1 AND r.product_id = products.id) \
                           WHERE id IN (SELECT product_id FROM reservations WHERE order_id = $1)";

pub const ORDER_STATE: &str = "SELECT state FROM reservation_orders WHERE order_id = $1";

pub const HELD: &str =
    "SELECT product_id, quantity FROM reservations WHERE order_id = $1 ORDER BY product_id";

/// A product row.
pub struct ProductRow(pub Product);

impl FromRow for ProductRow {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self(Product {
            id: row.text(0)?,
            name: row.text(1)?,
            description: row.text(2)?,
            price: row.int(3)?,
            currency: row.text(4)?,
            stock: row.int(5)?,
            created_at: row.text(6)?,
            updated_at: row.text(7)?,
        }))
    }
}

/// A held item row.
pub struct ItemRow(pub Item);

impl FromRow for ItemRow {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self(Item {
            product_id: row.text(0)?,
            quantity: row.int(1)?,
        }))
    }
}
