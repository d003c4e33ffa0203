//! Taking and reading orders; the domain error and its wire codes.

use std::sync::Arc;
use std::time::SystemTime;

use courier_actors::{CallError, Cancelled, Client, Meta, ServiceError, Subject};
use courier_contracts::orders::*;
use courier_contracts::products::{GetProduct, Item};
use courier_contracts::users::GetUser;
use courier_store::{Claim, Database, Fingerprint, StoreError, WriteKey};
use serde_json::json;
use tokio::sync::Notify;

use crate::saga::OrdersSettings;
use crate::store::{self, step, OrderRow};

/// The role that may read anyone's orders.
pub const ADMIN: &str = "admin";

/// Changes with the meaning of the fingerprints' fields.
const FINGERPRINT: &str = "courier-orders/request/1";

/// Most items in one order.
const MAX_ITEMS: usize = 100;

/// Why an orders request failed.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// A field breaks a rule.
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The user ordering does not exist.
    #[error("no user with id {0}")]
    UnknownUser(String),
    /// No order with that id (for this caller).
    #[error("no order with id {0}")]
    NotFound(String),
    /// The caller may not read this order.
    #[error("this order is another user's")]
    Forbidden,
    /// A service this one calls failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The database failed, a request id was reused, or the deadline passed before the order
    /// was stored (the kit's wire codes: 500, 422, 504).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Cancelled> for OrdersError {
    fn from(_: Cancelled) -> Self {
        Self::Store(StoreError::DeadlinePassed)
    }
}

impl From<OrdersError> for ServiceError {
    fn from(e: OrdersError) -> Self {
        let message = e.to_string();
        match e {
            OrdersError::Invalid { field, .. } => {
                ServiceError::bad_request(message).with_details(json!({ "field": field }))
            }
            OrdersError::UnknownUser(_) => ServiceError::unprocessable(message),
            OrdersError::NotFound(_) => ServiceError::not_found(message),
            OrdersError::Forbidden => ServiceError::new(403, message),
            OrdersError::Call(e) => ServiceError::from(e),
            OrdersError::Store(e) => e.into(),
        }
    }
}

type Result<T, E = OrdersError> = std::result::Result<T, E>;

/// The service's state. Cheap to clone.
#[derive(Clone)]
pub struct Orders {
    db: Database,
    client: Client,
    /// Rung after an order is taken, so the saga runner starts it at once.
    saga: Arc<Notify>,
    max_page_size: u32,
}

impl Orders {
    /// The logic over `db`, calling other services with `client`.
    pub fn new(db: Database, client: Client, saga: Arc<Notify>, settings: &OrdersSettings) -> Self {
        let max_page_size = settings.max_page_size;
        Self {
            db,
            client,
            saga,
            max_page_size,
        }
    }

    /// Takes an order for the caller (or, from inside the system, `user_id`): checks the
    /// user, prices the items, stores the order `pending` with its saga and the event
    /// `events.orders.created`. Idempotent by request id.
    pub async fn create(self, req: CreateOrder, meta: Meta) -> Result<Order> {
        let user_id = whose(&meta, req.user_id.as_deref())?;
        let items = valid_items(&req.items)?;
        let fields = json!([
            user_id,
            items
                .iter()
                .map(|i| (&i.product_id, i.quantity))
                .collect::<Vec<_>>()
        ]);
        let fingerprint = Fingerprint::of(
            FINGERPRINT,
            CreateOrder::SUBJECT,
            meta.caller.as_ref(),
            fields,
        );
        let key = WriteKey::of(&meta, CreateOrder::SUBJECT, &fingerprint);
        // A retry is answered from the stored reply, without calling anyone.
        if let Some(order) = self.db.reply(key).await? {
            return Ok(order);
        }
        self.check_user(&user_id, &meta).await?;
        let (lines, currency) = self.price(&items, &meta).await?;
        let now = now();
        let order = Order {
            id: uuid::Uuid::now_v7().to_string(),
            user_id,
            total: lines.iter().map(|l| l.price * l.quantity).sum(),
            lines,
            currency,
            state: OrderState::Pending,
            reason: None,
            created_at: now.clone(),
            updated_at: now,
        };
        let mut write = match self.db.claim(key).await? {
            Claim::Done(order) => return Ok(order),
            Claim::Fresh(write) => write,
        };
        let lines = serde_json::to_string(&order.lines).map_err(StoreError::Json)?;
        let traceparent = meta.trace.to_header();
        let o = &order;
        let params = [
            o.id.as_str().into(),
            o.user_id.as_str().into(),
            lines.as_str().into(),
            o.total.into(),
            o.currency.as_str().into(),
            "pending".into(),
            None::<&str>.into(),
            o.created_at.as_str().into(),
            o.updated_at.as_str().into(),
            step::RESERVE.into(),
            traceparent.as_str().into(),
            courier_store::now_millis().into(),
        ];
        write.execute(&store::insert(), &params).await?;
        write.event(ORDER_CREATED, &order, &meta).await?;
        write.commit_reply(&order, &meta).await?;
        self.saga.notify_one();
        Ok(order)
    }

    /// The order, to its owner, an admin, or a caller inside the system.
    pub async fn get(self, req: GetOrder, meta: Meta) -> Result<Order> {
        let row: Option<OrderRow> = self
            .db
            .one(&store::get(), &[req.id.as_str().into()])
            .await?;
        let order = row
            .ok_or_else(|| OrdersError::NotFound(req.id.clone()))?
            .order;
        match &meta.caller {
            Some(c) if c.subject != order.user_id && !c.has_role(ADMIN) => {
                Err(OrdersError::Forbidden)
            }
            _ => Ok(order),
        }
    }

    /// The caller's orders (or `user_id`'s, from inside the system), oldest first.
    pub async fn list(self, req: ListOrders, meta: Meta) -> Result<OrderPage> {
        let user_id = whose(&meta, req.user_id.as_deref())?;
        let limit = req.limit.unwrap_or(20);
        if limit == 0 || limit > self.max_page_size {
            let reason = format!("must be between 1 and {}", self.max_page_size);
            return Err(OrdersError::Invalid {
                field: "limit",
                reason,
            });
        }
        let after = req.after.as_deref().unwrap_or("");
        let params = [user_id.as_str().into(), after.into(), (limit + 1).into()];
        let mut rows: Vec<OrderRow> = self.db.all(&store::list(), &params).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = more
            .then(|| rows.last().map(|r| r.order.id.clone()))
            .flatten();
        Ok(OrderPage {
            orders: rows.into_iter().map(|r| r.order).collect(),
            next,
        })
    }

    async fn check_user(&self, id: &str, meta: &Meta) -> Result<()> {
        match self.client.send(&GetUser { id: id.to_owned() }, meta).await {
            Ok(_) => Ok(()),
            Err(CallError::Service { error, .. }) if matches!(error.code, 400 | 404) => {
                Err(OrdersError::UnknownUser(id.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Each item's unit price, asked of the products service all at once; one currency.
    async fn price(&self, items: &[Item], meta: &Meta) -> Result<(Vec<OrderLine>, String)> {
        let ask = |item: &Item| {
            let get = GetProduct {
                id: item.product_id.clone(),
            };
            async move { self.client.send(&get, meta).await }
        };
        let products = futures::future::join_all(items.iter().map(ask)).await;
        let mut lines = Vec::with_capacity(items.len());
        let mut currency = None;
        for (item, product) in items.iter().zip(products) {
            let product = match product {
                Ok(product) => product,
                Err(CallError::Service { error, .. }) if matches!(error.code, 400 | 404) => {
                    let reason = format!("names no product: {}", item.product_id);
                    return Err(OrdersError::Invalid {
                        field: "items.product_id",
                        reason,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if currency.get_or_insert_with(|| product.currency.clone()) != &product.currency {
                let reason = "must all be priced in one currency".to_owned();
                return Err(OrdersError::Invalid {
                    field: "items",
                    reason,
                });
            }
            lines.push(OrderLine {
                product_id: product.id,
                quantity: item.quantity,
                price: product.price,
            });
        }
        Ok((lines, currency.unwrap_or_default()))
    }
}

/// Whose request: the caller's (through the gateway), or `user_id` for a call from inside.
fn whose(meta: &Meta, user_id: Option<&str>) -> Result<String> {
    match (&meta.caller, user_id) {
        (Some(caller), _) => Ok(caller.subject.clone()),
        (None, Some(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        (None, _) => {
            let reason = "is needed from inside the system (through the gateway, the token's user)";
            Err(OrdersError::Invalid {
                field: "user_id",
                reason: reason.into(),
            })
        }
    }
}

/// 1 to [`MAX_ITEMS`] items, each product once, quantities of 1 or more.
fn valid_items(items: &[Item]) -> Result<Vec<Item>> {
    let invalid = |field, reason: &str| OrdersError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    if !(1..=MAX_ITEMS).contains(&items.len()) {
        return Err(invalid(
            "items",
            &format!("must hold 1 to {MAX_ITEMS} items"),
        ));
    }
    if items.iter().any(|i| i.quantity < 1) {
        return Err(invalid("items.quantity", "must be 1 or more"));
    }
    let mut ids: Vec<&str> = items.iter().map(|i| i.product_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid("items", "must name each product once"));
    }
    Ok(items.to_vec())
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
