//! The payments service: charges and refunds per order, against a simulated provider, in a
//! ledger of its own.
//!
//! | subject           | request      | reply       |
//! |-------------------|--------------|-------------|
//! | `payments.charge` | [`Charge`]   | [`Payment`] |
//! | `payments.refund` | [`Refund`]   | [`Payment`] |
//! | `payments.get`    | [`GetPayment`] | [`Payment`] |
//!
//! Both writes are idempotent per order id: a charge repeated for an order gets the first
//! outcome (charged or declined, never a second charge); a refund repeated gets the first
//! refund; a refund that comes before its charge (a saga compensating a charge whose answer
//! it never saw) closes the order id, so that the late charge is answered `refunded` without
//! charging.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `payments.charge`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Charge {
    /// The order paid for: the idempotency key.
    pub order_id: String,
    /// Who pays.
    pub user_id: String,
    /// Minor units, 1 or more.
    pub amount: i64,
    /// ISO 4217 code (`EUR`).
    pub currency: String,
}

/// `payments.refund`: gives an order's charge back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    /// The order.
    pub order_id: String,
}

/// `payments.get`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPayment {
    /// The order.
    pub order_id: String,
}

/// Where an order's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// The amount was taken.
    Charged,
    /// The provider refused; nothing was taken. `reason` says why.
    Declined,
    /// The charge was given back, or never made (refunded before any charge).
    Refunded,
}

/// An order's payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Payment {
    /// The order.
    pub order_id: String,
    /// Who pays (empty for a refund that came before its charge).
    pub user_id: String,
    /// Minor units (0 for a refund that came before its charge).
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Charged, declined or refunded.
    pub state: PaymentState,
    /// Why a charge was declined.
    pub reason: Option<String>,
}

crate::contract! {
    Charge => Payment, "payments.charge";
    Refund => Payment, "payments.refund";
    GetPayment => Payment, "payments.get";
}
