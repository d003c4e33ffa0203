//! The products logic: plain async methods over the database, the domain rules, and the
//! domain error with its wire codes.

use std::time::SystemTime;

use courier_actors::{Cancelled, Meta, ServiceError, Subject};
use courier_config::{Invalid, Validate};
use courier_contracts::products::*;
use courier_store::{now_millis, Claim, Database, Param, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::store::{self, ItemRow, ProductRow};

/// The role that may change the catalogue.
pub const ADMIN: &str = "admin";

/// Changes with the meaning of the fingerprints' fields.
const FINGERPRINT: &str = "courier-products/request/1";

/// Most items in one reservation.
const MAX_ITEMS: usize = 100;

/// The products service's own settings (section `products`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProductsSettings {
    /// Most products one `products.list` page returns.
    pub max_page_size: u32,
}

impl Default for ProductsSettings {
    fn default() -> Self {
        Self { max_page_size: 100 }
    }
}

impl Validate for ProductsSettings {
    fn validate(&self) -> Result<(), Invalid> {
        if !(1..=1000).contains(&self.max_page_size) {
            let reason = "must be between 1 and 1000";
            return Err(Invalid::new(
                "products.max_page_size",
                self.max_page_size,
                reason,
            ));
        }
        Ok(())
    }
}

/// Why a products request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProductsError {
    /// A field is missing its rule.
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No product with that id.
    #[error("no product with id {0}")]
    NotFound(String),
    /// Some items are short: nothing was reserved.
    #[error("insufficient stock")]
    Short(Vec<serde_json::Value>),
    /// The order's reservation was released (or closed before it was made).
    #[error("the reservation of order {0} was released")]
    Released(String),
    /// The database failed, a request id was reused, or the deadline passed before the write
    /// committed (the kit's wire codes: 500, 422, 504).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Cancelled> for ProductsError {
    fn from(_: Cancelled) -> Self {
        Self::Store(StoreError::DeadlinePassed)
    }
}

impl From<ProductsError> for ServiceError {
    fn from(e: ProductsError) -> Self {
        let message = e.to_string();
        match e {
            ProductsError::Invalid { field, .. } => {
                ServiceError::bad_request(message).with_details(json!({ "field": field }))
            }
            ProductsError::NotFound(_) => ServiceError::not_found(message),
            ProductsError::Short(items) => {
                ServiceError::conflict(message).with_details(json!({ "short": items }))
            }
            ProductsError::Released(_) => ServiceError::conflict(message),
            ProductsError::Store(e) => e.into(),
        }
    }
}

type Result<T, E = ProductsError> = std::result::Result<T, E>;

/// The service's state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Products {
    db: Database,
    max_page_size: u32,
}

impl Products {
    /// The logic over `db`.
    pub fn new(db: Database, settings: &ProductsSettings) -> Self {
        Self {
            db,
            max_page_size: settings.max_page_size,
        }
    }

    /// Adds a product. A retry under the same request id gets the first product back.
    pub async fn create(self, req: CreateProduct, meta: Meta) -> Result<Product> {
        let now = now();
        let product = Product {
            id: uuid::Uuid::now_v7().to_string(),
            name: valid_name(&req.name)?,
            description: valid_description(&req.description)?,
            price: at_least(0, "price", req.price)?,
            currency: valid_currency(&req.currency)?,
            stock: at_least(0, "stock", req.stock)?,
            created_at: now.clone(),
            updated_at: now,
        };
        let p = &product;
        let fields = json!([p.name, p.description, p.price, p.currency, p.stock]);
        let claim = self
            .db
            .claim_request(&meta, FINGERPRINT, CreateProduct::SUBJECT, fields);
        let mut write = match claim.await? {
            Claim::Done(product) => return Ok(product),
            Claim::Fresh(write) => write,
        };
        let params: [Param<'_>; 8] = [
            (&p.id).into(),
            (&p.name).into(),
            (&p.description).into(),
            p.price.into(),
            (&p.currency).into(),
            p.stock.into(),
            (&p.created_at).into(),
            (&p.updated_at).into(),
        ];
        write.execute(&store::insert(), &params).await?;
        write.commit_reply(&product, &meta).await?;
        Ok(product)
    }

    /// The product with that id.
    pub async fn get(self, req: GetProduct) -> Result<Product> {
        let id = valid_id("id", &req.id)?;
        let row: Option<ProductRow> = self.db.one(&store::get(), &[id.as_str().into()]).await?;
        row.map(|r| r.0).ok_or(ProductsError::NotFound(id))
    }

    /// A page of products, oldest first.
    pub async fn list(self, req: ListProducts) -> Result<ProductPage> {
        let limit = req.limit.unwrap_or(20);
        if limit == 0 || limit > self.max_page_size {
            let reason = format!("must be between 1 and {}", self.max_page_size);
            return Err(ProductsError::Invalid {
                field: "limit",
                reason,
            });
        }
        let after = req
            .after
            .as_deref()
            .map(|a| valid_id("after", a))
            .transpose()?;
        let params = [after.as_deref().unwrap_or("").into(), (limit + 1).into()];
        let mut rows: Vec<ProductRow> = self.db.all(&store::list(), &params).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more.then(|| rows.last().map(|r| r.0.id.clone())).flatten();
        Ok(ProductPage {
            products: rows.into_iter().map(|r| r.0).collect(),
            next,
        })
    }

    /// Changes the fields given (at least one). Idempotent by request id.
    pub async fn update(self, req: UpdateProduct, meta: Meta) -> Result<Product> {
        let id = valid_id("id", &req.id)?;
        let name = req.name.as_deref().map(valid_name).transpose()?;
        let description = req
            .description
            .as_deref()
            .map(valid_description)
            .transpose()?;
        let price = req.price.map(|p| at_least(0, "price", p)).transpose()?;
        let currency = req.currency.as_deref().map(valid_currency).transpose()?;
        let stock = req.stock.map(|s| at_least(0, "stock", s)).transpose()?;
        if (&name, &description, price, &currency, stock) == (&None, &None, None, &None, None) {
            let reason = "give at least one of name, description, price, currency, stock".into();
            return Err(ProductsError::Invalid {
                field: "request",
                reason,
            });
        }
        let fields = json!([id, name, description, price, currency, stock]);
        let claim = self
            .db
            .claim_request(&meta, FINGERPRINT, UpdateProduct::SUBJECT, fields);
        let mut write = match claim.await? {
            Claim::Done(product) => return Ok(product),
            Claim::Fresh(write) => write,
        };
        let now = now();
        let params = [
            id.as_str().into(),
            name.as_ref().into(),
            description.as_ref().into(),
            price.into(),
            currency.as_ref().into(),
            stock.into(),
            now.as_str().into(),
        ];
        let row: Option<ProductRow> = write.one(&store::update(), &params).await?;
        let product = row.map(|r| r.0).ok_or(ProductsError::NotFound(id))?;
        write.commit_reply(&product, &meta).await?;
        Ok(product)
    }

    /// Removes a product. Idempotent by request id.
    pub async fn delete(self, req: DeleteProduct, meta: Meta) -> Result<Deleted> {
        let id = valid_id("id", &req.id)?;
        let claim = self
            .db
            .claim_request(&meta, FINGERPRINT, DeleteProduct::SUBJECT, json!([id]));
        let mut write = match claim.await? {
            Claim::Done(deleted) => return Ok(deleted),
            Claim::Fresh(write) => write,
        };
        if write.execute(store::DELETE, &[id.as_str().into()]).await? == 0 {
            return Err(ProductsError::NotFound(id));
        }
        let deleted = Deleted { id };
        write.commit_reply(&deleted, &meta).await?;
        Ok(deleted)
    }

    /// Holds every item for the order, or none (409 with the short items). Idempotent per
    /// order id: a repeat gets the reservation made; after a release, 409.
    pub async fn reserve(self, req: Reserve) -> Result<Reservation> {
        let order = valid_order(&req.order_id)?;
        let items = valid_items(&req.items)?;
        let mut write = self.db.begin().await?;
        // The claim is the transaction's first statement: a concurrent repeat waits on it.
        match write
            .execute(store::CLAIM_ORDER, &[order.into(), now_millis().into()])
            .await
        {
            Err(StoreError::Duplicate) => {
                write.rollback().await?;
                let made = self.reservation(order).await?;
                return match made.state {
                    ReservationState::Reserved => Ok(made),
                    ReservationState::Released => Err(ProductsError::Released(order.to_owned())),
                };
            }
            other => other?,
        };
        let now = now();
        let mut short = Vec::new();
        for item in &items {
            let (id, quantity) = (item.product_id.as_str(), item.quantity);
            let taken = write
                .execute(
                    store::TAKE,
                    &[quantity.into(), id.into(), now.as_str().into()],
                )
                .await?;
            if taken == 0 {
                let stock: Option<i64> = write.one(store::STOCK, &[id.into()]).await?;
                short.push(json!({ "product_id": id, "requested": quantity, "available": stock }));
                continue;
            }
            write
                .execute(store::HOLD, &[order.into(), id.into(), quantity.into()])
                .await?;
        }
        if !short.is_empty() {
            write.rollback().await?;
            return Err(ProductsError::Short(short));
        }
        write.commit().await?;
        Ok(Reservation {
            order_id: order.to_owned(),
            state: ReservationState::Reserved,
            items,
        })
    }

    /// Gives the order's held stock back, once; closes an order id never reserved.
    pub async fn release(self, req: Release) -> Result<Reservation> {
        let order = valid_order(&req.order_id)?;
        // Writes first (no read-then-write upgrade, which SQLite cannot queue).
        let mut write = self.db.begin().await?;
        if write.execute(store::RELEASE_ORDER, &[order.into()]).await? == 1 {
            write.execute(store::RESTOCK, &[order.into()]).await?;
        } else {
            write
                .execute(store::CLOSE_ORDER, &[order.into(), now_millis().into()])
                .await?;
        }
        write.commit().await?;
        self.reservation(order).await
    }

    /// The order's reservation as stored: reserved, or 409 once released.
    async fn reservation(&self, order: &str) -> Result<Reservation> {
        let state: Option<String> = self.db.one(store::ORDER_STATE, &[order.into()]).await?;
        let held: Vec<ItemRow> = self.db.all(store::HELD, &[order.into()]).await?;
        let items = held.into_iter().map(|r| r.0).collect();
        let state = match state.as_deref() {
            Some("reserved") => ReservationState::Reserved,
            _ => ReservationState::Released,
        };
        Ok(Reservation {
            order_id: order.to_owned(),
            state,
            items,
        })
    }
}

fn valid_name(name: &str) -> Result<String> {
    let name = name.trim();
    match name.chars().count() {
        1..=200 => Ok(name.to_owned()),
        _ => Err(invalid("name", "must be 1 to 200 characters")),
    }
}

fn valid_description(text: &str) -> Result<String> {
    match text.chars().count() {
        0..=2000 => Ok(text.trim().to_owned()),
        _ => Err(invalid("description", "must be at most 2000 characters")),
    }
}

fn valid_currency(code: &str) -> Result<String> {
    let code = code.trim().to_ascii_uppercase();
    match code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        true => Ok(code),
        false => Err(invalid("currency", "must be an ISO 4217 code such as EUR")),
    }
}

fn at_least(min: i64, field: &'static str, n: i64) -> Result<i64> {
    match n >= min {
        true => Ok(n),
        false => Err(invalid(field, &format!("must be {min} or more"))),
    }
}

fn valid_id(field: &'static str, id: &str) -> Result<String> {
    match uuid::Uuid::parse_str(id.trim()) {
        Ok(id) => Ok(id.hyphenated().to_string()),
        Err(_) => Err(invalid(field, "must be a product id (a UUID)")),
    }
}

fn valid_order(id: &str) -> Result<&str> {
    match (1..=100).contains(&id.len()) {
        true => Ok(id),
        false => Err(invalid("order_id", "must be 1 to 100 characters")),
    }
}

/// The items of a reservation: 1 to [`MAX_ITEMS`], each product once, quantities of 1 or
/// more, in product id order (so concurrent reservations take rows in one order).
fn valid_items(items: &[Item]) -> Result<Vec<Item>> {
    if !(1..=MAX_ITEMS).contains(&items.len()) {
        return Err(invalid(
            "items",
            &format!("must hold 1 to {MAX_ITEMS} items"),
        ));
    }
    let mut checked = Vec::with_capacity(items.len());
    for item in items {
        let product_id = valid_id("items.product_id", &item.product_id)?;
        let quantity = at_least(1, "items.quantity", item.quantity)?;
        checked.push(Item {
            product_id,
            quantity,
        });
    }
    checked.sort_by(|a, b| a.product_id.cmp(&b.product_id));
    if checked
        .windows(2)
        .any(|w| w[0].product_id == w[1].product_id)
    {
        return Err(invalid("items", "must name each product once"));
    }
    Ok(checked)
}

fn invalid(field: &'static str, reason: &str) -> ProductsError {
    ProductsError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
