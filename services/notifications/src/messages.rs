//! What a notification says: pure functions from an event to its [`Notification`], so the
//! wording is tested without a database or a broker.

use std::time::SystemTime;

use courier_contracts::notifications::{Notification, NotificationKind};
use courier_contracts::orders::Order;
use courier_contracts::users::User;

/// The welcome for a new account (`events.users.created`).
pub fn welcome(user: &User, event_id: &str) -> Notification {
    let body = format!(
        "Hello {},\n\nwelcome to Courier: your account for {} is ready.\n",
        user.name, user.email
    );
    let subject_line = "Welcome to Courier".to_owned();
    notification(
        NotificationKind::Welcome,
        &user.id,
        event_id,
        None,
        subject_line,
        body,
    )
}

/// The news that an order was confirmed (`events.orders.confirmed`).
pub fn order_confirmed(order: &Order, event_id: &str) -> Notification {
    let body = format!(
        "Your order {} ({} item(s), {}) is confirmed: the stock is held and the payment taken.\n",
        order.id,
        items(order),
        money(order.total, &order.currency)
    );
    let subject_line = format!("Order {} confirmed", order.id);
    let kind = NotificationKind::OrderConfirmed;
    notification(
        kind,
        &order.user_id,
        event_id,
        Some(&order.id),
        subject_line,
        body,
    )
}

/// The news that an order was cancelled, and why (`events.orders.cancelled`).
pub fn order_cancelled(order: &Order, event_id: &str) -> Notification {
    let reason = order.reason.as_deref().unwrap_or("no reason was given");
    let body = format!(
        "Your order {} ({} item(s), {}) was cancelled: {reason}.\n\
         Nothing was charged, and nothing is held for it.\n",
        order.id,
        items(order),
        money(order.total, &order.currency)
    );
    let subject_line = format!("Order {} cancelled", order.id);
    let kind = NotificationKind::OrderCancelled;
    notification(
        kind,
        &order.user_id,
        event_id,
        Some(&order.id),
        subject_line,
        body,
    )
}

fn notification(
    kind: NotificationKind,
    user_id: &str,
    event_id: &str,
    order_id: Option<&str>,
    subject_line: String,
    body: String,
) -> Notification {
    Notification {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_owned(),
        kind,
        subject_line,
        body,
        event_id: event_id.to_owned(),
        order_id: order_id.map(str::to_owned),
        created_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        delivered: false,
    }
}

fn items(order: &Order) -> i64 {
    order.lines.iter().map(|l| l.quantity).sum()
}

/// Minor units as `12.50 EUR` (two decimals, as every currency the shop takes has).
fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

#[cfg(test)]
mod tests {
    use courier_contracts::orders::{OrderLine, OrderState};

    use super::*;

    fn order(state: OrderState, reason: Option<&str>) -> Order {
        let line = |quantity| OrderLine {
            product_id: "p".into(),
            quantity,
            price: 125,
        };
        Order {
            id: "o1".into(),
            user_id: "u1".into(),
            lines: vec![line(2), line(1)],
            total: 375,
            currency: "EUR".into(),
            state,
            reason: reason.map(str::to_owned),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn a_welcome_greets_the_user_by_name_for_their_address() {
        let user = User {
            id: "u1".into(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            roles: vec![],
            created_at: String::new(),
            updated_at: String::new(),
        };
        let n = welcome(&user, "e1");
        assert_eq!(
            (n.kind, n.user_id.as_str()),
            (NotificationKind::Welcome, "u1")
        );
        assert_eq!((n.event_id.as_str(), n.order_id), ("e1", None));
        assert!(n.body.contains("Hello Ada") && n.body.contains("ada@example.com"));
        assert!(!n.delivered);
    }

    #[test]
    fn an_order_notification_names_the_order_its_size_and_its_total() {
        let n = order_confirmed(&order(OrderState::Confirmed, None), "e2");
        assert_eq!(n.kind, NotificationKind::OrderConfirmed);
        assert_eq!(
            (n.user_id.as_str(), n.order_id.as_deref()),
            ("u1", Some("o1"))
        );
        assert_eq!(n.subject_line, "Order o1 confirmed");
        assert!(n.body.contains("3 item(s), 3.75 EUR"), "{}", n.body);
    }

    #[test]
    fn a_cancellation_says_why() {
        let n = order_cancelled(
            &order(OrderState::Cancelled, Some("payment declined")),
            "e3",
        );
        assert_eq!(n.kind, NotificationKind::OrderCancelled);
        assert!(
            n.body.contains("cancelled: payment declined."),
            "{}",
            n.body
        );
        let n = order_cancelled(&order(OrderState::Cancelled, None), "e4");
        assert!(n.body.contains("no reason was given"));
    }

    #[test]
    fn money_has_two_decimals() {
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(120_000, "USD"), "1200.00 USD");
        assert_eq!(money(-250, "EUR"), "-2.50 EUR");
    }
}
